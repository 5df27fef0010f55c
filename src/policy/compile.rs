//! Merging the files of a policy directory and compiling them into a
//! `PolicySet`: names split, masks built with their keys, every problem
//! collected with its location before anything takes effect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;

use super::error::{PolicyError, PolicyErrors, Problem, SourceLocation};
use super::model::{DefaultAction, Filter, MaskSpec, RuleAction};
use super::role::{RoleMembership, RolePolicy};
use super::source::{closest, SourceFile};
use crate::analyze::policy_view::{
    ColumnAction, FilterRight, QualifiedColumn, DEFAULT_MAX_CANDIDATES,
};
use crate::mask::{self, ArgValue, KeyRing, Mask, MaskError};

/// Where the bytes of the keys named in `keys:` come from.
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    /// `PGVEIL_KEY_<NAME>`, else the file `<dir>/<name>`.
    Load { dir: Option<&'a Path> },
    /// Validate names only (CI without the secrets): masks are built with a
    /// placeholder key. Never for serving.
    NamesOnly,
}

/// Long enough for every keyed mask; only ever used by `check --skip-key-bytes`.
const PLACEHOLDER_KEY: &[u8; 32] = b"pgveil-check-placeholder-key-32b";

/// What a matching rule (or the default) gives: the action and the filter
/// right.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub action: ColumnAction,
    pub filter: FilterRight,
    pub max_candidates: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub roles: Vec<String>,
    pub outcome: Outcome,
    /// e.g. `public.customers.id_number rule 2 (roles: call_center)`.
    pub label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledColumn {
    pub class: Option<String>,
    pub default: Outcome,
    pub rules: Vec<CompiledRule>,
    pub default_label: String,
    pub location: SourceLocation,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledTable {
    pub denied_roles: Vec<String>,
    pub label: String,
    pub location: SourceLocation,
}

/// The compiled, merged policy of a directory. Immutable; a reload builds a
/// new one.
#[derive(Debug)]
pub struct PolicySet {
    version: u64,
    pub(crate) columns: HashMap<QualifiedColumn, CompiledColumn>,
    pub(crate) tables: HashMap<(String, String), CompiledTable>,
    pub(crate) functions: HashSet<(String, String)>,
    pub(crate) function_locations: Vec<((String, String), SourceLocation)>,
    masks: Vec<Mask>,
    /// Per mask, its function and arguments as written (key names, never
    /// key bytes): two masks of one spec hide the same parts.
    pub(crate) mask_specs: Vec<String>,
    pub(crate) mask_locations: Vec<SourceLocation>,
    /// Every role some rule names, with where it is first named.
    pub(crate) role_locations: BTreeMap<String, SourceLocation>,
    files: Vec<PathBuf>,
    /// Hex SHA-256 over the names and contents of the files, in order.
    sha256: String,
    /// Per-login-role views, keyed by the membership generation they were
    /// built from so a membership refresh is picked up.
    role_cache: DashMap<String, (u64, Arc<RolePolicy>)>,
}

impl PolicySet {
    /// Reads every `*.yaml` file of the given files and directories and
    /// compiles them into one set. Key bytes are read from
    /// `PGVEIL_KEY_<NAME>` or `keys_dir`.
    pub fn load(paths: &[PathBuf], keys_dir: Option<&Path>) -> Result<PolicySet, PolicyErrors> {
        Self::load_with(paths, KeySource::Load { dir: keys_dir })
    }

    /// Like `load`, choosing where key bytes come from.
    pub fn load_with(paths: &[PathBuf], keys: KeySource<'_>) -> Result<PolicySet, PolicyErrors> {
        let files = read_sources(paths)?;
        Self::compile(&files, keys)
    }

    /// Compiles already parsed files.
    pub fn compile(files: &[SourceFile], keys: KeySource<'_>) -> Result<PolicySet, PolicyErrors> {
        let mut compiler = Compiler {
            errors: Vec::new(),
            declared_keys: HashMap::new(),
            keyring: KeyRing::new(),
            set: PolicySet {
                version: 0,
                columns: HashMap::new(),
                tables: HashMap::new(),
                functions: HashSet::new(),
                function_locations: Vec::new(),
                masks: Vec::new(),
                mask_specs: Vec::new(),
                mask_locations: Vec::new(),
                role_locations: BTreeMap::new(),
                files: files.iter().map(|f| f.path.clone()).collect(),
                sha256: files_digest(files),
                role_cache: DashMap::new(),
            },
        };
        for file in files {
            compiler.declare_keys(file, keys);
        }
        for file in files {
            compiler.compile_file(file);
        }
        if compiler.errors.is_empty() {
            Ok(compiler.set)
        } else {
            Err(PolicyErrors(compiler.errors))
        }
    }

    /// The version a `PolicyStore` gave this set (0 outside a store).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The compiled mask behind a `ColumnAction::Mask { mask_id, .. }`.
    /// Ids come from this set only, so they are always in range for it.
    pub fn mask(&self, mask_id: usize) -> &Mask {
        &self.masks[mask_id]
    }

    /// All compiled masks; `mask_id` indexes this slice.
    pub fn masks(&self) -> &[Mask] {
        &self.masks
    }

    /// Hex SHA-256 over the names and contents of the files it was
    /// compiled from: which policy is in force, for metrics and audits.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The files this set was compiled from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Protected columns.
    pub fn protected_columns(&self) -> impl Iterator<Item = &QualifiedColumn> {
        self.columns.keys()
    }

    /// Every role some rule or table entry names.
    pub fn named_roles(&self) -> impl Iterator<Item = &str> {
        self.role_locations.keys().map(String::as_str)
    }

    /// The view of one login role. `SET ROLE` must not change it, so the
    /// session passes the login role of the startup message, never the
    /// current role.
    pub fn for_role(&self, login_role: &str, memberships: &RoleMembership) -> Arc<RolePolicy> {
        if let Some(entry) = self.role_cache.get(login_role) {
            if entry.0 == memberships.generation() {
                return Arc::clone(&entry.1);
            }
        }
        let view = Arc::new(RolePolicy::build(self, login_role, memberships));
        self.role_cache.insert(
            login_role.to_string(),
            (memberships.generation(), Arc::clone(&view)),
        );
        view
    }
}

fn files_digest(files: &[SourceFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned());
        h.update(name.unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(f.sha256);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Expands directories to their `*.yaml` / `*.yml` files (sorted, hidden
/// entries skipped) and parses each.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, PolicyErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let at = |problem| {
            PolicyError::new(
                SourceLocation {
                    file: path.clone(),
                    line: 1,
                    column: 1,
                },
                problem,
            )
        };
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    errors.push(at(Problem::Unreadable(e.to_string())));
                    continue;
                }
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_policy_file(p))
                .collect();
            found.sort();
            if found.is_empty() {
                errors.push(at(Problem::NoFiles));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut sources = Vec::new();
    for file in files {
        match SourceFile::read(&file) {
            Ok(source) => sources.push(source),
            Err(e) => errors.push(*e),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(PolicyErrors(errors))
    }
}

fn is_policy_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    !hidden && yaml && path.is_file()
}

struct Compiler {
    errors: Vec<PolicyError>,
    declared_keys: HashMap<String, SourceLocation>,
    keyring: KeyRing,
    set: PolicySet,
}

impl Compiler {
    fn declare_keys(&mut self, file: &SourceFile, keys: KeySource<'_>) {
        for (i, name) in file.policy.keys.iter().enumerate() {
            if self.declared_keys.contains_key(name) {
                continue;
            }
            let location = file.value_at(&["keys", &i.to_string()]);
            let keys_dir = match keys {
                KeySource::Load { dir } => dir,
                KeySource::NamesOnly => {
                    self.keyring.insert(name, PLACEHOLDER_KEY.to_vec());
                    self.declared_keys.insert(name.clone(), location);
                    continue;
                }
            };
            // One key at a time so every missing key is reported, not only the first.
            match KeyRing::load(std::slice::from_ref(name), keys_dir) {
                Ok(ring) => {
                    if let Some(bytes) = ring.get(name) {
                        self.keyring.insert(name, bytes.to_vec());
                    }
                }
                Err(e) => self
                    .errors
                    .push(PolicyError::new(location.clone(), Problem::Mask(e))),
            }
            self.declared_keys.insert(name.clone(), location);
        }
    }

    fn compile_file(&mut self, file: &SourceFile) {
        let policy = &file.policy;
        if policy.version != 1 {
            self.errors.push(PolicyError::new(
                file.value_at(&["version"]),
                Problem::Version(policy.version),
            ));
        }
        for (name, column) in &policy.columns {
            self.compile_column(file, name, column);
        }
        for (name, table) in &policy.tables {
            let location = file.key_at(&["tables", name]);
            let Some(key) = split_name::<2>(name) else {
                self.errors.push(PolicyError::new(
                    location,
                    Problem::BadName {
                        name: name.clone(),
                        expected: "schema.table",
                    },
                ));
                continue;
            };
            let key = (key[0].clone(), key[1].clone());
            if let Some(first) = self.set.tables.get(&key) {
                self.errors.push(PolicyError::new(
                    location,
                    Problem::DuplicateTable {
                        name: name.clone(),
                        first: first.location.to_string(),
                    },
                ));
                continue;
            }
            for (i, role) in table.deny.iter().enumerate() {
                self.name_role(
                    role,
                    file.value_at(&["tables", name, "deny", &i.to_string()]),
                );
            }
            let label = format!("tables.{name} (deny: {})", table.deny.join(", "));
            self.set.tables.insert(
                key,
                CompiledTable {
                    denied_roles: table.deny.clone(),
                    label,
                    location,
                },
            );
        }
        for (i, name) in policy.functions.allow.iter().enumerate() {
            let location = file.value_at(&["functions", "allow", &i.to_string()]);
            match split_name::<2>(name) {
                Some([schema, function]) => {
                    let key = (schema, function);
                    self.set.functions.insert(key.clone());
                    self.set.function_locations.push((key, location));
                }
                None => self.errors.push(PolicyError::new(
                    location,
                    Problem::BadName {
                        name: name.clone(),
                        expected: "schema.function",
                    },
                )),
            }
        }
    }

    fn compile_column(
        &mut self,
        file: &SourceFile,
        name: &str,
        column: &super::model::ColumnPolicy,
    ) {
        let location = file.key_at(&["columns", name]);
        let Some([schema, table, column_name]) = split_name::<3>(name) else {
            self.errors.push(PolicyError::new(
                location,
                Problem::BadName {
                    name: name.to_string(),
                    expected: "schema.table.column",
                },
            ));
            return;
        };
        let qualified = QualifiedColumn {
            schema,
            table,
            column: column_name,
        };
        if let Some(first) = self.set.columns.get(&qualified) {
            self.errors.push(PolicyError::new(
                location,
                Problem::DuplicateColumn {
                    name: name.to_string(),
                    first: first.location.to_string(),
                },
            ));
            return;
        }
        let default_action = match (&column.mask, column.action) {
            (Some(_), Some(_)) => {
                self.errors.push(PolicyError::new(
                    file.key_at(&["columns", name, "action"]),
                    Problem::ActionAndMask,
                ));
                None
            }
            (None, None) => {
                self.errors.push(PolicyError::new(
                    location.clone(),
                    Problem::NoDefault(name.to_string()),
                ));
                None
            }
            (None, Some(DefaultAction::Deny)) => Some(ColumnAction::Deny),
            (Some(spec), None) => self.compile_mask(file, &["columns", name, "mask"], spec),
        };
        let Some(default_action) = default_action else {
            return;
        };
        let default_candidates = column.max_candidates.unwrap_or(DEFAULT_MAX_CANDIDATES);
        let default = Outcome {
            filter: filter_right(column.filter, &default_action),
            action: default_action,
            max_candidates: default_candidates,
        };
        let mut rules = Vec::new();
        for (i, rule) in column.rules.iter().enumerate() {
            let index = i.to_string();
            let rule_path = ["columns", name, "rules", &index];
            if rule.roles.is_empty() {
                self.errors.push(PolicyError::new(
                    file.value_at(&rule_path),
                    Problem::RuleWithoutRoles,
                ));
            }
            for (r, role) in rule.roles.iter().enumerate() {
                let role_index = r.to_string();
                self.name_role(
                    role,
                    file.value_at(&["columns", name, "rules", &index, "roles", &role_index]),
                );
            }
            let action = match (rule.action, &rule.mask) {
                (Some(_), Some(_)) => {
                    self.errors.push(PolicyError::new(
                        file.key_at(&["columns", name, "rules", &index, "action"]),
                        Problem::ActionAndMask,
                    ));
                    continue;
                }
                (Some(RuleAction::Allow), None) => ColumnAction::Allow,
                (Some(RuleAction::Deny), None) => ColumnAction::Deny,
                (None, Some(spec)) => {
                    match self.compile_mask(file, &["columns", name, "rules", &index, "mask"], spec)
                    {
                        Some(action) => action,
                        None => continue,
                    }
                }
                (None, None) => default.action.clone(),
            };
            rules.push(CompiledRule {
                label: format!("{name} rule {} (roles: {})", i + 1, rule.roles.join(", ")),
                roles: rule.roles.clone(),
                outcome: Outcome {
                    filter: filter_right(rule.filter, &action),
                    action,
                    max_candidates: rule.max_candidates.unwrap_or(default_candidates),
                },
            });
        }
        self.set.columns.insert(
            qualified,
            CompiledColumn {
                class: column.class.clone(),
                default,
                rules,
                default_label: format!("{name} default"),
                location,
            },
        );
    }

    fn name_role(&mut self, role: &str, location: SourceLocation) {
        self.set
            .role_locations
            .entry(role.to_string())
            .or_insert(location);
    }

    /// Builds a mask, reporting problems at the node they concern.
    fn compile_mask(
        &mut self,
        file: &SourceFile,
        path: &[&str],
        spec: &MaskSpec,
    ) -> Option<ColumnAction> {
        if let Some(ArgValue::Str(key)) = spec.args.get("key") {
            if !self.declared_keys.contains_key(key) {
                self.errors.push(PolicyError::new(
                    file.value_at(&child(path, "key")),
                    Problem::UndeclaredKey(key.clone()),
                ));
                return None;
            }
        }
        match mask::build(&spec.function, &spec.args, &self.keyring) {
            Ok(compiled) => {
                let mask_id = self.set.masks.len();
                self.set.masks.push(compiled);
                self.set
                    .mask_specs
                    .push(format!("{}{:?}", spec.function, spec.args));
                self.set.mask_locations.push(file.value_at(path));
                Some(ColumnAction::Mask {
                    mask_id,
                    mask_name: spec.function.clone(),
                })
            }
            // Declared keys without bytes are reported once, at `keys:`.
            Err(MaskError::MissingKey { key }) if self.declared_keys.contains_key(&key) => None,
            Err(error) => {
                let location = match &error {
                    MaskError::UnknownFunction { .. } => file.value_at(&child(path, "fn")),
                    MaskError::UnknownArgument { argument, .. } => {
                        file.key_at(&child(path, argument))
                    }
                    MaskError::BadArgument { argument, .. } => {
                        file.value_at(&child(path, argument))
                    }
                    MaskError::MissingKey { .. } => file.value_at(&child(path, "key")),
                    MaskError::MissingArgument { .. } => file.value_at(path),
                };
                let error = match error {
                    MaskError::UnknownFunction {
                        name,
                        suggestion: None,
                    } => MaskError::UnknownFunction {
                        suggestion: closest(&name, mask::function_names()),
                        name,
                    },
                    other => other,
                };
                self.errors
                    .push(PolicyError::new(location, Problem::Mask(error)));
                None
            }
        }
    }
}

/// Clear-text readers gain nothing by being kept out of WHERE clauses, so an
/// `allow` without an explicit filter may filter freely.
fn filter_right(filter: Option<Filter>, action: &ColumnAction) -> FilterRight {
    match (filter, action) {
        (Some(Filter::Deny), _) => FilterRight::Deny,
        (Some(Filter::Equality), _) => FilterRight::Equality,
        (Some(Filter::Allow), _) => FilterRight::Allow,
        (None, ColumnAction::Allow) => FilterRight::Allow,
        (None, _) => FilterRight::Deny,
    }
}

/// Splits `a.b.c` into exactly N non-empty parts.
fn split_name<const N: usize>(name: &str) -> Option<[String; N]> {
    let parts: Vec<String> = name.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    parts.try_into().ok()
}

/// `path` with one more segment.
fn child<'a>(path: &[&'a str], segment: &'a str) -> Vec<&'a str> {
    let mut full = path.to_vec();
    full.push(segment);
    full
}
