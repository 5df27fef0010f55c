//! The catalog of one upstream database: what `SELECT *`, unqualified names,
//! views and function calls resolve to. Loaded from `pg_catalog` over
//! pgveil's own connection, or from the JSON that `pgveil catalog dump`
//! writes. Immutable once built; a refresh builds a new one with a higher
//! generation, so cached analyses keyed on the generation never go stale.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::lineage::RelationLineage;
use super::sealed::BodyReach;

/// Schemas whose objects ship with PostgreSQL.
pub const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Why a catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog from the upstream failed: {}", upstream_text(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("catalog JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading catalog file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog row has an unexpected {what}: {value}")]
    UnexpectedValue { what: &'static str, value: String },
}

impl CatalogError {
    /// The read met an object another session dropped while it ran: the
    /// read's snapshot still lists it, but functions such as
    /// `pg_get_viewdef` look it up as of now ("could not open relation
    /// with OID …", "cache lookup failed …"). Reading again succeeds.
    pub fn is_concurrent_change(&self) -> bool {
        let CatalogError::Query(e) = self else {
            return false;
        };
        e.as_db_error().is_some_and(|db| {
            let code = db.code().code();
            (code == "XX000"
                && (db.message().starts_with("could not open relation")
                    || db.message().starts_with("cache lookup failed")))
                || code == "42P01"
                || code == "42704"
                || code == "42883"
        })
    }
}

/// The server's own message and SQLSTATE of a failed catalog read
/// (`tokio_postgres::Error` alone says only "db error").
fn upstream_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// What kind of relation a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
    /// Sequences are read like one-row tables (`SELECT last_value FROM s`).
    Sequence,
    /// A composite type (`CREATE TYPE t AS (a int, …)`): holds no rows; its
    /// attributes are the columns of `json_populate_record(null::t, …)`.
    CompositeType,
}

/// One column of a relation, in attnum order; dropped columns are omitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogColumn {
    pub name: String,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_name: String,
    /// `atttypmod`: a length or precision (`varchar(n)` is n + 4); -1 for
    /// none, or when not read.
    #[serde(
        default = "no_type_modifier",
        skip_serializing_if = "is_no_type_modifier"
    )]
    pub type_modifier: i32,
}

fn no_type_modifier() -> i32 {
    -1
}

fn is_no_type_modifier(m: &i32) -> bool {
    *m == -1
}

/// A table, view or materialized view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub columns: Vec<CatalogColumn>,
    /// `pg_get_viewdef` text of a view or materialized view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Direct parents (partitioned table or inheritance parent), as
    /// (schema, name): a child's rows are its parent's rows, so the
    /// parent's column rules follow them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<(String, String)>,
    /// Where the server compares a value written into one of its columns
    /// with values stored in other rows.
    #[serde(default, skip_serializing_if = "RelationKeys::is_empty")]
    pub keys: RelationKeys,
    /// Lineage of a view's columns, computed once per catalog generation.
    #[serde(skip)]
    pub(crate) view_lineage: OnceLock<Arc<RelationLineage>>,
}

impl Relation {
    /// A relation of a session's temporary schema, read by the session.
    pub fn temporary(
        oid: u32,
        name: String,
        kind: RelationKind,
        columns: Vec<CatalogColumn>,
        definition: Option<String>,
    ) -> Relation {
        Relation {
            oid,
            schema: "pg_temp".into(),
            name,
            kind,
            columns,
            definition,
            parents: Vec::new(),
            keys: RelationKeys::default(),
            view_lineage: OnceLock::new(),
        }
    }

    /// True for objects that ship with PostgreSQL.
    pub fn is_system(&self) -> bool {
        SYSTEM_SCHEMAS.contains(&self.schema.as_str())
    }

    /// True when its rows are computed from a stored query we must analyse.
    pub fn has_definition(&self) -> bool {
        matches!(
            self.kind,
            RelationKind::View | RelationKind::MaterializedView
        )
    }
}

/// What the server checks a relation's rows against beyond the row
/// itself: unique indexes (primary keys and UNIQUE constraints too) and
/// exclusion constraints, which compare a written row with the rows stored,
/// foreign keys, which look a row's key up in another relation, and CHECK
/// constraints, which read several columns of one row. Whether a write
/// passes them tells the writer something of the values they read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationKeys {
    /// Each unique index or exclusion constraint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<UniqueKey>,
    /// Its foreign keys, each the column pairs it matches: a value written
    /// into a `column` is looked up in the referenced column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Vec<KeyLink>>,
    /// Other relations' foreign keys into it: deleting a row, or changing
    /// a `column`, looks the old value up in the referencing column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referenced_by: Vec<Vec<KeyLink>>,
    /// Each CHECK constraint: the columns it reads. The server checks them
    /// on every row an UPDATE writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Vec<String>>,
    /// CHECK constraints added NOT VALID: stored rows may fail them, so an
    /// UPDATE of any column of a row tests its stored values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unvalidated_checks: Vec<Vec<String>>,
    /// Stored generated columns and the columns each is computed from: a
    /// write into one of those writes a value computed from it into the
    /// generated column, which keys and CHECKs may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<(String, Vec<String>)>,
}

/// One unique index or exclusion constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UniqueKey {
    /// Key columns compared for equality (a unique index's plain key
    /// columns; not INCLUDE columns, which are only stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equal: Vec<String>,
    /// Columns compared otherwise: inside a key expression (`left(c, 6)`),
    /// in the predicate of a partial index, or under an exclusion
    /// constraint's operator (`&&`, `<>` …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub computed: Vec<String>,
    /// `NULLS NOT DISTINCT`: a NULL key column conflicts with a stored
    /// NULL, so leaving one out of an INSERT tests `IS NULL`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nulls_not_distinct: bool,
}

impl UniqueKey {
    fn covers_any(&self) -> bool {
        !self.equal.is_empty() || !self.computed.is_empty()
    }

    /// True when the key reads `column` at all.
    pub fn covers(&self, column: &str) -> bool {
        self.equal.iter().chain(&self.computed).any(|c| c == column)
    }
}

impl RelationKeys {
    pub fn is_empty(&self) -> bool {
        self.unique.is_empty()
            && self.references.is_empty()
            && self.referenced_by.is_empty()
            && self.checks.is_empty()
            && self.unvalidated_checks.is_empty()
            && self.generated.is_empty()
    }

    /// True when a key, foreign key or CHECK reads `column`.
    pub fn reads(&self, column: &str) -> bool {
        let named = |c: &String| c == column;
        self.unique.iter().any(|k| k.covers(column))
            || self.references.iter().flatten().any(|l| l.column == column)
            || self.checks.iter().flatten().any(named)
            || self.unvalidated_checks.iter().flatten().any(named)
    }
}

/// One column pair of a foreign key: this relation's `column` and the
/// column of the other relation (schema, relation, column) it is matched
/// with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyLink {
    pub column: String,
    pub other: (String, String, String),
}

/// A function or procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogFunction {
    /// pg_proc oid (0 in catalog files written before it was recorded).
    #[serde(default)]
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub language: String,
    /// `i` immutable, `s` stable, `v` volatile.
    pub volatility: String,
    /// `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: String,
    /// The columns it yields in FROM (`SELECT * FROM f(…)`).
    #[serde(default)]
    pub result: FunctionResult,
    /// `typname` of a `Scalar` result (empty when not read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result_type: String,
    /// `pg_get_functiondef` of a user function written in SQL or PL/pgSQL
    /// (None for any other, and in catalog files written before it was
    /// recorded): what `reach` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// What its definition reaches, read once.
    #[serde(skip)]
    pub(crate) body: OnceLock<Arc<BodyReach>>,
    /// A user function's parameters, for telling which calls may run it
    /// (None for built-ins, and in catalog files written before they were
    /// recorded: any call of its name may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// A user function's input parameters (`proargtypes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// Per parameter, the built-in types an argument can be implicitly
    /// coerced to it from (as `CatalogOperator::left_reach`; None: any).
    pub reach: Vec<Option<Vec<String>>>,
    /// How many of the last parameters have defaults.
    pub defaults: usize,
    /// The last parameter is VARIADIC.
    pub variadic: bool,
}

impl Parameters {
    /// Whether a call with `count` positional arguments can match.
    pub fn takes(&self, count: usize) -> bool {
        let n = self.reach.len();
        if self.variadic {
            count + 1 >= n
        } else {
            count <= n && count + self.defaults >= n
        }
    }
}

/// The shape of a function's result in FROM, by PostgreSQL's rules: OUT
/// parameters name the columns, a composite return type gives its
/// attributes, any other type is one column named after the function (or
/// the FROM alias).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionResult {
    /// `record` without OUT parameters, a domain, or a catalog file
    /// written before shapes were recorded: the call needs a column
    /// definition list.
    #[default]
    Unknown,
    /// One column of a base, enum or range type (or `void`).
    Scalar,
    /// OUT parameters or the attributes of a composite type.
    Columns(Vec<String>),
    /// `anyelement` taken from the first argument (`json_populate_record`).
    FirstArgumentType,
    /// Another polymorphic type (`anyelement`, `anyrange` …): its shape
    /// follows the arguments' types, which pgveil does not resolve.
    Polymorphic,
}

impl FunctionResult {
    /// Parses the shape column of a catalog read (see `CatalogRead::sql`):
    /// a JSON array of column names, or one of the unit variants' names.
    fn parse(text: &str) -> FunctionResult {
        match text {
            // `scalar:typname` since the result type is read too.
            _ if text == "scalar" || text.starts_with("scalar:") => FunctionResult::Scalar,
            "first_argument_type" => FunctionResult::FirstArgumentType,
            "polymorphic" => FunctionResult::Polymorphic,
            _ => match serde_json::from_str::<Vec<String>>(text) {
                Ok(columns) if !columns.is_empty() => FunctionResult::Columns(columns),
                _ => FunctionResult::Unknown,
            },
        }
    }
}

impl CatalogFunction {
    /// What the body of a SQL or PL/pgSQL user function names and runs
    /// (see `sealed`); None for other functions.
    pub fn reach(&self) -> Option<Arc<BodyReach>> {
        let definition = self.definition.as_deref()?;
        Some(Arc::clone(self.body.get_or_init(|| {
            Arc::new(super::sealed::reach(definition, &self.language))
        })))
    }

    /// Built-in functions live in pg_catalog or information_schema.
    pub fn is_builtin(&self) -> bool {
        SYSTEM_SCHEMAS.contains(&self.schema.as_str())
    }
}

/// A user-defined operator (outside pg_catalog and information_schema) and
/// the function it runs: an expression using it calls that function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogOperator {
    pub schema: String,
    pub name: String,
    /// `typname` of the left operand; empty for a prefix operator.
    pub left: String,
    pub right: String,
    pub function_schema: String,
    pub function_name: String,
    /// The built-in types (`typname`) a value of which PostgreSQL can pass
    /// as the left (right) operand: it coerces operands implicitly only, so
    /// an operator over `hstore` never runs on an `int4`, nor one over
    /// `text` on an `int4`, unless an implicit cast leads there (see
    /// `builtin_reach`). None: any built-in type may (a polymorphic,
    /// composite, array or domain parameter, or not read).
    #[serde(default)]
    pub left_reach: Option<Vec<String>>,
    #[serde(default)]
    pub right_reach: Option<Vec<String>>,
}

/// The serialised form, also what `catalog dump` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CatalogData {
    database: String,
    #[serde(default)]
    generation: u64,
    schemas: Vec<String>,
    relations: Vec<Relation>,
    functions: Vec<CatalogFunction>,
    /// User-defined operators; read in full on every refresh (few rows).
    #[serde(default)]
    operators: Vec<CatalogOperator>,
    /// Snapshot the catalog was read under, for incremental refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
}

/// Relations and functions with their lookup indexes. A refresh builds a
/// new set from the old one's entries (shared, not copied) plus what the
/// read returned.
#[derive(Debug, Default)]
struct ObjectSet {
    /// Sorted by oid.
    relations: Vec<Arc<Relation>>,
    /// Sorted by (schema, name, oid).
    functions: Vec<Arc<CatalogFunction>>,
    relation_index: HashMap<(String, String), usize>,
    relation_oids: HashMap<u32, usize>,
    function_index: HashMap<String, Vec<usize>>,
}

impl ObjectSet {
    fn new(
        mut relations: Vec<Arc<Relation>>,
        mut functions: Vec<Arc<CatalogFunction>>,
    ) -> ObjectSet {
        relations.sort_by_key(|r| r.oid);
        functions.sort_by(|a, b| (&a.schema, &a.name, a.oid).cmp(&(&b.schema, &b.name, b.oid)));
        let mut relation_index = HashMap::with_capacity(relations.len());
        let mut relation_oids = HashMap::with_capacity(relations.len());
        for (i, r) in relations.iter().enumerate() {
            relation_index.insert((r.schema.clone(), r.name.clone()), i);
            relation_oids.insert(r.oid, i);
        }
        let mut function_index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, f) in functions.iter().enumerate() {
            function_index.entry(f.name.clone()).or_default().push(i);
        }
        ObjectSet {
            relations,
            functions,
            relation_index,
            relation_oids,
            function_index,
        }
    }

    fn relation(&self, schema: &str, name: &str) -> Option<&Relation> {
        // Borrowed lookups would need a key type of their own; the tuple of
        // two short strings costs less than the statement it resolves.
        self.relation_index
            .get(&(schema.to_owned(), name.to_owned()))
            .and_then(|&i| self.relations.get(i))
            .map(|r| &**r)
    }

    fn relation_by_oid(&self, oid: u32) -> Option<&Relation> {
        self.relation_oids
            .get(&oid)
            .and_then(|&i| self.relations.get(i))
            .map(|r| &**r)
    }

    fn functions_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a CatalogFunction> {
        self.function_index
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.functions.get(i))
            .map(|f| &**f)
    }
}

/// The catalog of one database.
///
/// Objects that ship with PostgreSQL (schemas `pg_catalog` and
/// `information_schema`: some 3,000 functions and 200 relations) are held
/// apart and shared by every generation read from the same server: a
/// refresh after DDL rebuilds only the user objects' indexes.
#[derive(Debug)]
pub struct Catalog {
    database: String,
    generation: u64,
    schemas: Vec<String>,
    system: Arc<ObjectSet>,
    user: ObjectSet,
    operators: Vec<CatalogOperator>,
    snapshot: Option<String>,
    /// Snapshot of the last read that looked at every object, built-in ones
    /// included (`ReadScope::All`), and when it was made.
    system_snapshot: Option<String>,
    system_read_at: Instant,
    /// Read inside a transaction: the last command id of it whose catalog
    /// rows this catalog includes (see `CatalogRead::after_command`).
    transaction_command: Option<u32>,
}

/// Generation numbers are process-wide so two loads never share one.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// A user relation carried into a new generation: shared when nothing
/// about it can have changed, copied with an empty lineage cache when it is
/// a view (its text resolves against the new catalog) or its parents moved.
fn carried(r: &Arc<Relation>, parents: Option<Vec<(String, String)>>) -> Arc<Relation> {
    let parents = parents.unwrap_or_default();
    if !r.has_definition() && r.parents == parents {
        return Arc::clone(r);
    }
    Arc::new(Relation {
        view_lineage: OnceLock::new(),
        parents,
        ..(**r).clone()
    })
}

/// The relations with the keys of `raw` (relation oid -> attnums), named:
/// a relation whose keys changed is copied, the others are shared.
fn with_keys(relations: Vec<Arc<Relation>>, raw: &HashMap<u32, RawKeys>) -> Vec<Arc<Relation>> {
    let by_oid: HashMap<u32, &Relation> = relations.iter().map(|r| (r.oid, &**r)).collect();
    let column = |oid: u32, attnum: i16| -> Option<(&Relation, &str)> {
        let relation = by_oid.get(&oid)?;
        let column = relation.columns.iter().find(|c| c.attnum == attnum)?;
        Some((relation, column.name.as_str()))
    };
    // Attnum 0 is a whole-row reference: every column.
    let names = |oid: u32, attnums: &[i16]| -> Vec<String> {
        let mut names: Vec<String> = if attnums.contains(&0) {
            by_oid
                .get(&oid)
                .map(|r| r.columns.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default()
        } else {
            attnums
                .iter()
                .filter_map(|a| column(oid, *a).map(|(_, n)| n.to_owned()))
                .collect()
        };
        names.sort();
        names.dedup();
        names
    };
    let mut keys: HashMap<u32, RelationKeys> = HashMap::new();
    for (&oid, raw) in raw {
        for (equal, computed, nulls_not_distinct) in raw.unique.values() {
            let key = UniqueKey {
                equal: names(oid, equal),
                computed: names(oid, computed),
                nulls_not_distinct: *nulls_not_distinct,
            };
            if key.covers_any() {
                keys.entry(oid).or_default().unique.push(key);
            }
        }
        for (attnums, validated) in &raw.checks {
            let set = names(oid, attnums);
            if !set.is_empty() {
                let k = keys.entry(oid).or_default();
                if *validated {
                    k.checks.push(set);
                } else {
                    k.unvalidated_checks.push(set);
                }
            }
        }
        for (generated, reads) in &raw.generated {
            if let Some((_, g)) = column(oid, *generated) {
                let reads = names(oid, reads);
                if !reads.is_empty() {
                    keys.entry(oid)
                        .or_default()
                        .generated
                        .push((g.to_owned(), reads));
                }
            }
        }
        for (own, other, referenced) in &raw.references {
            let (mut out, mut back) = (Vec::new(), Vec::new());
            for (&a, &b) in own.iter().zip(referenced.iter()) {
                let (Some((child, c)), Some((parent, p))) = (column(oid, a), column(*other, b))
                else {
                    continue;
                };
                out.push(KeyLink {
                    column: c.to_owned(),
                    other: (parent.schema.clone(), parent.name.clone(), p.to_owned()),
                });
                back.push(KeyLink {
                    column: p.to_owned(),
                    other: (child.schema.clone(), child.name.clone(), c.to_owned()),
                });
            }
            if !out.is_empty() {
                keys.entry(oid).or_default().references.push(out);
                keys.entry(*other).or_default().referenced_by.push(back);
            }
        }
    }
    for k in keys.values_mut() {
        k.unique.sort();
        k.unique.dedup();
        k.checks.sort();
        k.checks.dedup();
        k.unvalidated_checks.sort();
        k.unvalidated_checks.dedup();
        k.generated.sort();
        k.references.sort();
        k.references.dedup();
        k.referenced_by.sort();
        k.referenced_by.dedup();
    }
    relations
        .into_iter()
        .map(|r| {
            let k = keys.remove(&r.oid).unwrap_or_default();
            if r.keys == k {
                r
            } else {
                Arc::new(Relation {
                    keys: k,
                    ..(*r).clone()
                })
            }
        })
        .collect()
}

impl Catalog {
    /// This catalog plus one session's temporary relations (schema
    /// `pg_temp`), which pgveil's own catalog connection cannot see.
    pub fn with_session_relations(&self, extra: &[Relation]) -> Catalog {
        let mut relations: Vec<Arc<Relation>> = self
            .user
            .relations
            .iter()
            .map(|r| carried(r, Some(r.parents.clone())))
            .collect();
        relations.extend(extra.iter().cloned().map(Arc::new));
        let mut schemas = self.schemas.clone();
        if !schemas.iter().any(|s| s == "pg_temp") {
            schemas.push("pg_temp".into());
        }
        Catalog {
            database: self.database.clone(),
            generation: next_generation(),
            schemas,
            system: Arc::clone(&self.system),
            user: ObjectSet::new(relations, self.user.functions.clone()),
            operators: self.operators.clone(),
            snapshot: self.snapshot.clone(),
            system_snapshot: self.system_snapshot.clone(),
            system_read_at: self.system_read_at,
            transaction_command: self.transaction_command,
        }
    }

    /// Builds a catalog and its lookup indexes; assigns a fresh generation.
    pub fn new(
        database: String,
        schemas: Vec<String>,
        relations: Vec<Relation>,
        functions: Vec<CatalogFunction>,
    ) -> Catalog {
        Catalog::from_data(CatalogData {
            database,
            generation: 0,
            schemas,
            relations,
            functions,
            operators: Vec::new(),
            snapshot: None,
        })
    }

    fn from_data(data: CatalogData) -> Catalog {
        let (system_relations, user_relations): (Vec<_>, Vec<_>) = data
            .relations
            .into_iter()
            .map(Arc::new)
            .partition(|r| r.is_system());
        let (system_functions, user_functions): (Vec<_>, Vec<_>) = data
            .functions
            .into_iter()
            .map(Arc::new)
            .partition(|f| f.is_builtin());
        Catalog {
            database: data.database,
            generation: next_generation(),
            schemas: data.schemas,
            system: Arc::new(ObjectSet::new(system_relations, system_functions)),
            user: ObjectSet::new(user_relations, user_functions),
            operators: data.operators,
            system_snapshot: data.snapshot.clone(),
            system_read_at: Instant::now(),
            snapshot: data.snapshot,
            transaction_command: None,
        }
    }

    /// Parses the JSON written by `catalog dump`.
    pub fn from_json(json: &str) -> Result<Catalog, CatalogError> {
        Ok(Catalog::from_data(serde_json::from_str(json)?))
    }

    /// Reads a catalog JSON file.
    pub fn from_file(path: &str) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::File {
            path: path.to_owned(),
            source,
        })?;
        Catalog::from_json(&text)
    }

    /// The JSON `catalog dump` writes.
    pub fn to_json(&self) -> Result<String, CatalogError> {
        let mut relations: Vec<Relation> = self.relations().cloned().collect();
        relations.sort_by_key(|r| r.oid);
        let data = CatalogData {
            database: self.database.clone(),
            generation: self.generation,
            schemas: self.schemas.clone(),
            relations,
            functions: self.functions().cloned().collect(),
            operators: self.operators.clone(),
            snapshot: self.snapshot.clone(),
        };
        Ok(serde_json::to_string_pretty(&data)?)
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Changes whenever the catalog is rebuilt; part of every cache key.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn schemas(&self) -> &[String] {
        &self.schemas
    }

    /// Every relation: the built-in ones, then the user's, each by oid.
    pub fn relations(&self) -> impl Iterator<Item = &Relation> + '_ {
        self.system
            .relations
            .iter()
            .chain(self.user.relations.iter())
            .map(|r| &**r)
    }

    /// Every function: the built-in ones, then the user's, each by
    /// (schema, name, oid).
    pub fn functions(&self) -> impl Iterator<Item = &CatalogFunction> + '_ {
        self.system
            .functions
            .iter()
            .chain(self.user.functions.iter())
            .map(|f| &**f)
    }

    /// User-defined operators named `name`, in any schema.
    pub fn operators_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a CatalogOperator> + 'a {
        self.operators.iter().filter(move |o| o.name == name)
    }

    pub fn relation(&self, schema: &str, name: &str) -> Option<&Relation> {
        if SYSTEM_SCHEMAS.contains(&schema) {
            self.system.relation(schema, name)
        } else {
            self.user.relation(schema, name)
        }
    }

    /// The relation with this pg_class oid (a RowDescription's table oid).
    pub fn relation_by_oid(&self, oid: u32) -> Option<&Relation> {
        self.system
            .relation_by_oid(oid)
            .or_else(|| self.user.relation_by_oid(oid))
    }

    /// Resolves an unqualified relation name the way PostgreSQL does:
    /// pg_catalog first (unless listed explicitly), then the search_path.
    /// The partitions and inheritance children of `schema.name`, theirs,
    /// and so on (a cycle or a depth past 32 ends the walk).
    pub fn descendants(&self, schema: &str, name: &str) -> Vec<&Relation> {
        let mut found: Vec<&Relation> = Vec::new();
        let mut frontier = vec![(schema.to_owned(), name.to_owned())];
        for _ in 0..32 {
            let next: Vec<&Relation> = self
                .user
                .relations
                .iter()
                .map(|r| &**r)
                .filter(|r| r.parents.iter().any(|p| frontier.contains(p)))
                .filter(|r| !found.iter().any(|f| f.oid == r.oid))
                .collect();
            if next.is_empty() {
                break;
            }
            frontier = next
                .iter()
                .map(|r| (r.schema.clone(), r.name.clone()))
                .collect();
            found.extend(next);
        }
        found
    }

    pub fn resolve_relation(&self, search_path: &[String], name: &str) -> Option<&Relation> {
        let implicit_catalog = !search_path.iter().any(|s| s == "pg_catalog");
        let implicit = implicit_catalog.then_some("pg_catalog");
        implicit
            .into_iter()
            .chain(search_path.iter().map(String::as_str))
            .find_map(|schema| self.relation(schema, name))
    }

    /// All functions with this name, in any schema.
    pub fn functions_named<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = &'a CatalogFunction> + 'a {
        self.system
            .functions_named(name)
            .chain(self.user.functions_named(name))
    }

    /// Resolves a function call: the explicit schema, else the function it
    /// may run. PostgreSQL picks among every schema of the path by argument
    /// types, so a user function of the same name on the path can win over
    /// a built-in (`public.lower(varchar)` over `pg_catalog.lower(text)`):
    /// pgveil, which does not type arguments, takes the user function then,
    /// so the call is judged as one.
    pub fn resolve_function(
        &self,
        search_path: &[String],
        schema: Option<&str>,
        name: &str,
    ) -> Option<&CatalogFunction> {
        match schema {
            Some(schema) => self.functions_named(name).find(|f| f.schema == schema),
            None => {
                let on_path = |f: &&CatalogFunction| search_path.iter().any(|s| s == &f.schema);
                let user = search_path
                    .iter()
                    .filter(|s| !SYSTEM_SCHEMAS.contains(&s.as_str()))
                    .find_map(|schema| self.functions_named(name).find(|f| &f.schema == schema));
                user.or_else(|| {
                    std::iter::once("pg_catalog")
                        .chain(search_path.iter().map(String::as_str))
                        .find_map(|schema| self.functions_named(name).find(|f| f.schema == schema))
                })
                .filter(|f| f.schema == "pg_catalog" || on_path(f))
            }
        }
    }

    /// Reads the catalog of the database `client` is connected to.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
        let rows = simple_rows(client, &CatalogRead::full().sql()).await?;
        Catalog::from_read(rows.iter().map(|r| r.as_slice()))
    }

    /// The snapshot (`txid_current_snapshot()` text) this catalog reflects,
    /// when it was read from a database in one statement.
    pub fn snapshot(&self) -> Option<&str> {
        self.snapshot.as_deref()
    }

    /// Read inside a transaction over its own connection: the last command
    /// of it whose schema changes this catalog includes, for the next read
    /// (`CatalogRead::after_command`).
    pub fn transaction_command(&self) -> Option<u32> {
        self.transaction_command
    }

    /// The query that reads what changed in the user's objects since this
    /// catalog was read (`ReadScope::User`), or None when it cannot be
    /// refreshed incrementally (read from a file).
    pub fn changes_query(&self) -> Option<CatalogRead> {
        CatalogRead::since(self.snapshot()?)
    }

    /// The query that reads what changed in any object, built-in ones
    /// included, since the last read that looked at them all
    /// (`ReadScope::All`).
    pub fn all_changes_query(&self) -> Option<CatalogRead> {
        Some(CatalogRead::since(self.system_snapshot.as_deref()?)?.in_scope(ReadScope::All))
    }

    /// Time since a read looked at every object (see `all_changes_query`).
    pub fn all_read_age(&self) -> Duration {
        self.system_read_at.elapsed()
    }

    /// This catalog brought up to date with the changes of the user's
    /// objects (see `refreshed_by`).
    pub async fn refreshed(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Catalog, CatalogError> {
        match self.changes_query() {
            Some(read) => self.refreshed_by(client, &read, None).await,
            None => Catalog::load(client).await,
        }
    }

    /// This catalog brought up to date with the rows of `read`, run as
    /// `statement` (`CatalogRead::parameterised_sql` of its scope, prepared
    /// on `client`) when given. Relations and functions the rows list are
    /// replaced or added, the others kept only while they still exist;
    /// every view's lineage is recomputed (a renamed table changes what a
    /// view's text resolves to).
    pub async fn refreshed_by(
        &self,
        client: &tokio_postgres::Client,
        read: &CatalogRead,
        statement: Option<&tokio_postgres::Statement>,
    ) -> Result<Catalog, CatalogError> {
        let (Some(statement), Some([xmax, xip])) = (statement, read.parameters()) else {
            let rows = simple_rows(client, &read.sql()).await?;
            return self.apply(read, rows.iter().map(|r| r.as_slice()));
        };
        let rows = client.query(statement, &[&xmax, &xip]).await?;
        let rows: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<_, Option<String>>(i))
                    .collect::<Result<_, _>>()
            })
            .collect::<Result<_, _>>()?;
        self.apply(read, rows.iter().map(|r| r.as_slice()))
    }

    /// Builds a catalog from the rows of a full `CatalogRead`.
    pub fn from_read<'a>(
        rows: impl Iterator<Item = &'a [Option<String>]>,
    ) -> Result<Catalog, CatalogError> {
        let empty = Catalog::new(String::new(), Vec::new(), Vec::new(), Vec::new());
        empty.apply(&CatalogRead::full(), rows)
    }

    /// Applies the rows of `read` to this catalog (see `refreshed`).
    pub fn apply<'a>(
        &self,
        read: &CatalogRead,
        rows: impl Iterator<Item = &'a [Option<String>]>,
    ) -> Result<Catalog, CatalogError> {
        let read_rows = ReadRows::parse(rows)?;
        let (database, snapshot) = match (read_rows.database, read_rows.snapshot) {
            (Some(d), Some(s)) => (d, s),
            _ => {
                return Err(CatalogError::UnexpectedValue {
                    what: "catalog read",
                    value: "no snapshot row".into(),
                })
            }
        };
        let incremental = read.snapshot.is_some();
        let mut parents: HashMap<u32, Vec<(String, String)>> = read_rows
            .parents
            .into_iter()
            .map(|(oid, mut p)| {
                p.sort_by_key(|(seq, _)| *seq);
                (oid, p.into_iter().map(|(_, name)| name).collect())
            })
            .collect();
        let (system_relations, user_relations): (Vec<Relation>, Vec<Relation>) = read_rows
            .relations
            .into_iter()
            .partition(Relation::is_system);
        let (system_functions, user_functions): (Vec<CatalogFunction>, Vec<CatalogFunction>) =
            read_rows
                .functions
                .into_iter()
                .partition(CatalogFunction::is_builtin);
        let fresh = |r: Relation, parents: &mut HashMap<u32, Vec<(String, String)>>| {
            let p = parents.remove(&r.oid).unwrap_or_default();
            Arc::new(Relation { parents: p, ..r })
        };
        // Built-in objects change only with the server (or a superuser
        // adding to pg_catalog): then the set is rebuilt, else shared.
        let system = if incremental && system_relations.is_empty() && system_functions.is_empty() {
            Arc::clone(&self.system)
        } else {
            let replaced: HashSet<u32> = system_relations.iter().map(|r| r.oid).collect();
            let replaced_functions: HashSet<u32> = system_functions.iter().map(|f| f.oid).collect();
            let mut relations: Vec<Arc<Relation>> = Vec::new();
            let mut functions: Vec<Arc<CatalogFunction>> = Vec::new();
            if incremental {
                relations.extend(
                    self.system
                        .relations
                        .iter()
                        .filter(|r| !replaced.contains(&r.oid))
                        .cloned(),
                );
                functions.extend(
                    self.system
                        .functions
                        .iter()
                        .filter(|f| !replaced_functions.contains(&f.oid))
                        .cloned(),
                );
            }
            relations.extend(system_relations.into_iter().map(|r| fresh(r, &mut parents)));
            functions.extend(system_functions.into_iter().map(Arc::new));
            Arc::new(ObjectSet::new(relations, functions))
        };
        let changed: HashSet<u32> = user_relations.iter().map(|r| r.oid).collect();
        let changed_functions: HashSet<u32> = user_functions.iter().map(|f| f.oid).collect();
        let mut relations: Vec<Arc<Relation>> = Vec::new();
        let mut functions: Vec<Arc<CatalogFunction>> = Vec::new();
        if incremental {
            for r in &self.user.relations {
                if read_rows.live_relations.contains(&r.oid) && !changed.contains(&r.oid) {
                    relations.push(carried(r, parents.remove(&r.oid)));
                }
            }
            functions.extend(
                self.user
                    .functions
                    .iter()
                    .filter(|f| {
                        read_rows.live_functions.contains(&f.oid)
                            && !changed_functions.contains(&f.oid)
                    })
                    .cloned(),
            );
        }
        relations.extend(user_relations.into_iter().map(|r| fresh(r, &mut parents)));
        functions.extend(user_functions.into_iter().map(Arc::new));
        let relations = if read.keys {
            with_keys(relations, &read_rows.keys)
        } else {
            relations
        };
        let mut schemas = read_rows.schemas;
        schemas.sort();
        let (system_snapshot, system_read_at) = if incremental && read.scope == ReadScope::User {
            (self.system_snapshot.clone(), self.system_read_at)
        } else {
            (Some(snapshot.clone()), Instant::now())
        };
        Ok(Catalog {
            database,
            generation: next_generation(),
            schemas,
            system,
            user: ObjectSet::new(relations, functions),
            operators: read_rows.operators,
            snapshot: Some(snapshot),
            system_snapshot,
            system_read_at,
            transaction_command: read.after_command.max(read_rows.own_command),
        })
    }
}

async fn simple_rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, CatalogError> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Command tags (CommandComplete) of DDL that changes nothing a catalog
/// holds (schemas, relations with their columns, keys and view
/// definitions, functions): no refresh is needed after them. Not CREATE
/// INDEX: a unique one is a key (see `RelationKeys`).
const CATALOG_NEUTRAL_TAGS: &[&str] = &[
    "COMMENT",
    "GRANT",
    "REVOKE",
    "SECURITY LABEL",
    "ALTER DEFAULT PRIVILEGES",
    "CREATE STATISTICS",
    "ALTER STATISTICS",
    "DROP STATISTICS",
    "CREATE ROLE",
    "ALTER ROLE",
    "DROP ROLE",
];

/// True when a statement that completed with `tag` left every object a
/// catalog holds as it was (see `CATALOG_NEUTRAL_TAGS`).
pub fn command_is_catalog_neutral(tag: &[u8]) -> bool {
    CATALOG_NEUTRAL_TAGS.iter().any(|t| t.as_bytes() == tag)
}

/// True when `tag` completed a CREATE INDEX that cannot have made a key:
/// no statement in flight could make a unique index (`may_make_key` false,
/// see `Guard::may_make_key`). Such an index changes nothing a catalog
/// holds.
pub fn is_plain_index(tag: &[u8], may_make_key: bool) -> bool {
    tag == b"CREATE INDEX" && !may_make_key
}

/// True when a statement that completed with `tag` may have changed what a
/// catalog holds: schema DDL, and DO blocks (migrations run conditional DDL
/// in them). Statements that change the schema from inside a function
/// called by SELECT or CALL are not seen here; the catalog TTL covers them.
pub fn command_changes_catalog(tag: &[u8]) -> bool {
    if command_is_catalog_neutral(tag) {
        return false;
    }
    tag == b"DO"
        || tag == b"IMPORT FOREIGN SCHEMA"
        || [&b"CREATE "[..], b"ALTER ", b"DROP "]
            .iter()
            .any(|p| tag.starts_with(p))
}

/// One read of the catalog: everything, or what changed since a snapshot.
///
/// A catalog row changed since snapshot S when its `xmin` is a transaction
/// S does not see (at or after S's xmax, or in progress at S). Read over a
/// session's own connection inside its transaction, that includes the
/// transaction's own uncommitted DDL, which is what lets a masked session
/// go on after DDL in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRead {
    /// (xmax, in-progress xids) of S, as 32-bit xids; None reads everything.
    snapshot: Option<(u64, Vec<u64>)>,
    /// Read inside the transaction that wrote the changes, after an earlier
    /// read of it that saw its rows up to this command id: rows the
    /// transaction wrote at or before it are not read again.
    after_command: Option<u32>,
    /// Read inside the transaction, building on an earlier read of it made
    /// under this snapshot: rows other transactions committed before it
    /// are not read again either.
    chained_since: Option<(u64, Vec<u64>)>,
    /// Which objects' changes an incremental read looks for.
    scope: ReadScope,
    /// Whether it reads the keys (rows `K`, see `KEY_ROWS`); a read without
    /// them keeps the keys the catalog it is applied to holds.
    keys: bool,
}

/// (xmax, in-progress xids) of the snapshot text `xmin:xmax:xip,…`, as
/// 32-bit xids; None when the text is not one.
fn parse_snapshot(snapshot: &str) -> Option<(u64, Vec<u64>)> {
    let mut parts = snapshot.trim().split(':');
    let _xmin: u64 = parts.next()?.parse().ok()?;
    let xmax: u64 = parts.next()?.parse().ok()?;
    let xip = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let xip = xip
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<u64>().ok().map(|x| x & 0xffff_ffff))
        .collect::<Option<Vec<u64>>>()?;
    Some((xmax & 0xffff_ffff, xip))
}

/// The first oid PostgreSQL gives an object created after initdb (also
/// after the oid counter wraps around): `FirstNormalObjectId`.
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Which changed rows an incremental `CatalogRead` looks for.
///
/// Objects with oids below `FIRST_NORMAL_OBJECT_ID` were made by initdb and
/// belong to the bootstrap superuser, except the schema `public` (which the
/// database owner may rename): only a superuser can change the others. The
/// read after DDL looks at the user's objects (`User`, index range scans);
/// a periodic read looks at everything (`All`), so even a superuser's change
/// of a built-in object is noticed within the catalog TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// Namespaces, and rows of objects with oids from
    /// `FIRST_NORMAL_OBJECT_ID` up.
    User,
    /// Every row.
    All,
}

impl CatalogRead {
    pub fn full() -> CatalogRead {
        CatalogRead {
            snapshot: None,
            after_command: None,
            chained_since: None,
            scope: ReadScope::All,
            keys: true,
        }
    }

    /// Changes since the snapshot text `xmin:xmax:xip,…`; None when the text
    /// is not one.
    pub fn since(snapshot: &str) -> Option<CatalogRead> {
        Some(CatalogRead {
            snapshot: Some(parse_snapshot(snapshot)?),
            after_command: None,
            chained_since: None,
            scope: ReadScope::User,
            keys: true,
        })
    }

    /// The same read without the keys. A session reads its open
    /// transaction's catalog so, after each of its DDL statements: a key
    /// it makes there is one it may use (making it is a use of the same
    /// columns, judged by the same filter, see `Clause::Ddl`), and the keys
    /// others commit meanwhile are read with the shared catalog when the
    /// transaction ends.
    pub fn without_keys(self) -> CatalogRead {
        CatalogRead {
            keys: false,
            ..self
        }
    }

    /// The same read over `scope`.
    pub fn in_scope(self, scope: ReadScope) -> CatalogRead {
        CatalogRead { scope, ..self }
    }

    /// Which objects' changes it looks for.
    pub fn scope(&self) -> ReadScope {
        self.scope
    }

    /// The same read, leaving out the rows the reading transaction wrote up
    /// to `command` (`Catalog::transaction_command` of the catalog the rows
    /// are applied to). Rows of its subtransactions and of other
    /// transactions are read as before.
    pub fn after_command(self, command: Option<u32>) -> CatalogRead {
        CatalogRead {
            after_command: command,
            ..self
        }
    }

    /// The same read inside a transaction, building on `last`, the catalog
    /// the transaction's previous read gave: rows the transaction wrote up
    /// to `last`'s command, and rows other transactions committed before
    /// `last`'s snapshot, are not read again (`last` has them). Rows of
    /// the transaction's subtransactions are read again.
    pub fn after(self, last: &Catalog) -> CatalogRead {
        CatalogRead {
            after_command: last.transaction_command(),
            chained_since: last.snapshot().and_then(parse_snapshot),
            ..self
        }
    }

    /// The one statement (one snapshot) that reads it; rows of text columns
    /// `kind, a, b, c, d, e, f`.
    pub fn sql(&self) -> String {
        self.sql_text(false)
    }

    /// The statement of an incremental read over `scope` with the snapshot
    /// as parameters `$1` (xmax) and `$2` (in-progress xids), both text:
    /// prepared once per connection, it is planned once, not on every
    /// refresh.
    pub fn parameterised_sql(scope: ReadScope) -> String {
        CatalogRead {
            snapshot: Some((0, Vec::new())),
            after_command: None,
            chained_since: None,
            scope,
            keys: true,
        }
        .sql_text(true)
    }

    /// The values of `parameterised_sql`'s parameters, or None for a full
    /// read.
    pub fn parameters(&self) -> Option<[String; 2]> {
        let (xmax, xip) = self.snapshot.as_ref()?;
        let list: Vec<String> = xip.iter().map(u64::to_string).collect();
        Some([xmax.to_string(), format!("{{{}}}", list.join(","))])
    }

    fn sql_text(&self, placeholders: bool) -> String {
        // SQL predicate over a table alias: its row changed since the
        // snapshot (xmax, xip).
        let since = |alias: &str, xmax: &u64, xip: &[u64]| {
            // age() counts back from one reference xid, so comparing
            // ages compares xids modulo wraparound, at C speed.
            let mut p = format!("(pg_catalog.age({alias}.xmin) <= pg_catalog.age('{xmax}'::xid)");
            if !xip.is_empty() {
                let list: Vec<String> = xip.iter().map(u64::to_string).collect();
                p.push_str(&format!(
                    " OR {alias}.xmin = ANY ('{{{}}}'::xid[])",
                    list.join(",")
                ));
            }
            p.push(')');
            p
        };
        // Changed since S.
        let changed = |alias: &str| match &self.snapshot {
            None => "true".to_string(),
            Some(_) if placeholders => format!(
                "(pg_catalog.age({alias}.xmin) <= pg_catalog.age($1::text::xid) \
                 OR {alias}.xmin = ANY ($2::text::xid[]))"
            ),
            Some((xmax, xip)) => since(alias, xmax, xip),
        };
        // Changed since S and, inside the transaction that wrote it, not
        // seen by the previous read (see `after_command` and `after`).
        let changed = |alias: &str| match (&self.chained_since, self.after_command) {
            (None, None) => changed(alias),
            (None, Some(command)) => format!(
                "({} AND ({alias}.xmin IS DISTINCT FROM (SELECT xid FROM own_tx) \
                 OR {alias}.cmin::text::bigint > {command}))",
                changed(alias)
            ),
            // The transaction's own rows by command id; other rows by the
            // previous read's snapshot, which leaves out the transaction's
            // own xids: a row written under an xid the snapshot counts as
            // done is a subtransaction's of this transaction (still in
            // progress) or another transaction's committed before it.
            // The 32-bit xmin is widened against the current snapshot for
            // txid_status. CASE keeps that call to rows changed since S.
            (Some((last_xmax, last_xip)), command) => format!(
                "(CASE WHEN {shared} THEN \
                   CASE WHEN {alias}.xmin = (SELECT xid FROM own_tx) \
                          THEN {alias}.cmin::text::bigint > {command} \
                        WHEN {last} THEN true \
                        ELSE pg_catalog.txid_status((SELECT cur FROM own_tx) \
                               - ((SELECT cur FROM own_tx) % 4294967296 \
                                  - {alias}.xmin::text::bigint + 4294967296) % 4294967296) \
                             IS NOT DISTINCT FROM 'in progress' END \
                 ELSE false END)",
                shared = changed(alias),
                last = since(alias, last_xmax, last_xip),
                command = command.map_or(-1, i64::from),
            ),
        };
        // Objects created after initdb have oids from FirstNormalObjectId
        // up (also after oid wraparound); only a superuser can change one
        // below it (`ReadScope`). An index range scan then visits the
        // user's rows of pg_class, pg_attribute … and not the thousands
        // that ship with PostgreSQL.
        let user_only = self.scope == ReadScope::User;
        let range = |column: &str| {
            if user_only {
                format!("{column} >= {FIRST_NORMAL_OBJECT_ID} AND ")
            } else {
                String::new()
            }
        };
        // Relations with a column of a changed type (a renamed enum or
        // domain changes the column's type name). A column of a type made
        // after initdb depends on it in pg_depend, whose index finds them;
        // built-in types are pinned (no pg_depend rows), so a read of every
        // object scans the columns instead.
        let typed_columns = if user_only {
            "SELECT d.objid, t.x, t.m FROM changed_type t \
               JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_type'::regclass \
                AND d.refobjid = t.oid AND d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid > 0"
        } else {
            "SELECT a.attrelid, t.x, t.m FROM pg_catalog.pg_attribute a \
               JOIN changed_type t ON t.oid = a.atttypid"
        };
        let user_ns = "n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast%'";
        let kinds = "c.relkind IN ('r','p','v','m','f','S','c')";
        let (with, rel_filter, fn_filter, live) = match &self.snapshot {
            None => (
                String::new(),
                "true".to_string(),
                "true".to_string(),
                String::new(),
            ),
            Some(_) => {
                // Each changed row also carries its xmin and cmin: the
                // largest cmin of the reading transaction's own rows is
                // what the next read inside it starts after (row `C`).
                // pg_namespace is read whole: the database owner may
                // rename `public`, whose oid is below the user range.
                let with = format!(
                    "WITH RECURSIVE own_tx AS (SELECT (pg_catalog.txid_current_if_assigned() % 4294967296)::text::xid AS xid, \
                        pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) AS cur), \
                     changed_ns AS (SELECT n.oid, n.xmin AS x, n.cmin::text::bigint AS m \
                        FROM pg_catalog.pg_namespace n WHERE {ns}), \
                     changed_type AS (SELECT t.oid, t.xmin AS x, t.cmin::text::bigint AS m \
                        FROM pg_catalog.pg_type t WHERE {type_range}{typ}), \
                     changed_proc AS (SELECT p.oid, p.xmin AS x, p.cmin::text::bigint AS m \
                        FROM pg_catalog.pg_proc p WHERE {proc_range}({proc} \
                        OR p.pronamespace IN (SELECT oid FROM changed_ns))), \
                     seeds AS (SELECT c.oid, c.xmin AS x, c.cmin::text::bigint AS m \
                        FROM pg_catalog.pg_class c WHERE {class_range}({class} \
                        OR c.relnamespace IN (SELECT oid FROM changed_ns)) \
                       UNION ALL SELECT a.attrelid, a.xmin, a.cmin::text::bigint FROM pg_catalog.pg_attribute a \
                         WHERE {attr_range}{attr} \
                       UNION ALL SELECT r.ev_class, r.xmin, r.cmin::text::bigint FROM pg_catalog.pg_rewrite r \
                         WHERE {rule_range}{rule} \
                       UNION ALL SELECT i.inhrelid, i.xmin, i.cmin::text::bigint FROM pg_catalog.pg_inherits i WHERE {inh} \
                       UNION ALL {typed_columns}), \
                     affected(classid, oid) AS ( \
                         SELECT 'pg_catalog.pg_class'::regclass::oid, oid FROM seeds \
                       UNION SELECT 'pg_catalog.pg_proc'::regclass::oid, oid FROM changed_proc \
                       UNION SELECT 'pg_catalog.pg_class'::regclass::oid, r.ev_class FROM affected a \
                         JOIN pg_catalog.pg_depend d ON d.refclassid = a.classid AND d.refobjid = a.oid \
                          AND d.classid = 'pg_catalog.pg_rewrite'::regclass \
                         JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND r.ev_class <> a.oid) ",
                    ns = changed("n"),
                    proc = changed("p"),
                    class = changed("c"),
                    attr = changed("a"),
                    rule = changed("r"),
                    inh = changed("i"),
                    typ = changed("t"),
                    type_range = range("t.oid"),
                    typed_columns = typed_columns,
                    proc_range = range("p.oid"),
                    class_range = range("c.oid"),
                    attr_range = range("a.attrelid"),
                    rule_range = range("r.oid"),
                );
                let live = format!(
                    " UNION ALL SELECT 'L', c.oid::text, NULL, NULL, NULL, NULL, NULL, NULL \
                       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                      WHERE {class_range}{kinds} AND {user_ns} AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     UNION ALL SELECT 'P', p.oid::text, NULL, NULL, NULL, NULL, NULL, NULL \
                       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                      WHERE {proc_range}n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     UNION ALL SELECT 'C', max(s.m)::text, NULL, NULL, NULL, NULL, NULL, NULL \
                       FROM (SELECT x, m FROM seeds UNION ALL SELECT x, m FROM changed_proc \
                             UNION ALL SELECT x, m FROM changed_ns) s \
                      WHERE s.x = (SELECT xid FROM own_tx)",
                    class_range = range("c.oid"),
                    proc_range = range("p.oid"),
                );
                (
                    with,
                    "c.oid IN (SELECT oid FROM affected WHERE classid = 'pg_catalog.pg_class'::regclass)"
                        .to_string(),
                    "p.oid IN (SELECT oid FROM changed_proc)".to_string(),
                    live,
                )
            }
        };
        let operator_range = if self.snapshot.is_some() {
            range("o.oid")
        } else {
            String::new()
        };
        format!(
            "{with}SELECT 'S', current_database()::text, txid_current_snapshot()::text, NULL, NULL, NULL, NULL, NULL \
             UNION ALL SELECT 'N', n.nspname::text, NULL, NULL, NULL, NULL, NULL, NULL FROM pg_catalog.pg_namespace n \
             UNION ALL SELECT 'R', c.oid::text, n.nspname::text, c.relname::text, c.relkind::text, \
                    CASE WHEN c.relkind IN ('v','m') THEN pg_catalog.pg_get_viewdef(c.oid) END, NULL, NULL \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE {kinds} AND {user_ns} AND {rel_filter} \
             UNION ALL SELECT 'A', a.attrelid::text, a.attname::text, a.attnum::text, a.atttypid::text, t.typname::text, a.atttypmod::text, NULL \
               FROM pg_catalog.pg_attribute a \
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
              WHERE {kinds} AND {user_ns} AND a.attnum > 0 AND NOT a.attisdropped AND {rel_filter} \
             UNION ALL SELECT 'I', i.inhrelid::text, pn.nspname::text, p.relname::text, i.inhseqno::text, NULL, NULL, NULL \
               FROM pg_catalog.pg_inherits i \
               JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace \
             {keys} \
             UNION ALL SELECT 'F', p.oid::text, \
                    CASE WHEN p.pronamespace = pg_catalog.pg_my_temp_schema() THEN 'pg_temp' ELSE n.nspname::text END, \
                    p.proname::text, l.lanname::text, \
                    p.provolatile::text, p.prokind::text, \
                    CASE WHEN p.proargmodes && ARRAY['o','b','t']::\"char\"[] THEN \
                      array_to_json(ARRAY(SELECT coalesce(nullif(p.proargnames[i], ''), 'column' || i) \
                        FROM generate_subscripts(p.proargmodes, 1) i \
                       WHERE p.proargmodes[i] IN ('o','b','t') ORDER BY i))::text \
                    WHEN rt.typrelid <> 0 THEN \
                      array_to_json(ARRAY(SELECT ra.attname::text FROM pg_catalog.pg_attribute ra \
                       WHERE ra.attrelid = rt.typrelid AND ra.attnum > 0 AND NOT ra.attisdropped \
                       ORDER BY ra.attnum))::text \
                    WHEN rt.typtype IN ('b','e','r','m') OR rt.typname = 'void' THEN 'scalar:' || rt.typname::text \
                    WHEN rt.typname = 'anyelement' AND p.proargtypes[0] = p.prorettype \
                      THEN 'first_argument_type' \
                    WHEN rt.typtype = 'p' AND rt.typname LIKE 'any%' THEN 'polymorphic' \
                    ELSE 'unknown' END \
               FROM pg_catalog.pg_proc p \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
               JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype \
              WHERE {fn_filter}{live} \
             UNION ALL SELECT 'G', p.oid::text, p.pronargdefaults::text, (p.provariadic <> 0)::text, \
                    (SELECT pg_catalog.string_agg({arg_reach}, '|' ORDER BY a.o) \
                       FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) WITH ORDINALITY a(t, o)), \
                    p.pronargs::text, NULL, NULL \
               FROM pg_catalog.pg_proc p \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
              WHERE ({fn_filter}) AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'B', p.oid::text, pg_catalog.pg_get_functiondef(p.oid), NULL, NULL, NULL, NULL, NULL \
               FROM pg_catalog.pg_proc p \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
              WHERE ({fn_filter}) AND p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql') \
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL SELECT 'O', n.nspname::text, o.oprname::text, coalesce(lt.typname::text, ''), \
                    rt.typname::text, pn.nspname::text, p.proname::text, \
                    CASE WHEN o.oprleft = 0 THEN '*' ELSE {left_reach} END || '|' || {right_reach} \
               FROM pg_catalog.pg_operator o \
               JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
               JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
               JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
               LEFT JOIN pg_catalog.pg_type lt ON lt.oid = o.oprleft \
               JOIN pg_catalog.pg_type rt ON rt.oid = o.oprright \
              WHERE {operator_range}n.nspname NOT IN ('pg_catalog', 'information_schema')",
            left_reach = builtin_reach("o.oprleft"),
            right_reach = builtin_reach("o.oprright"),
            arg_reach = builtin_reach("a.t"),
            keys = if self.keys { KEY_ROWS } else { "" },
        )
    }
}

/// Rows `K` of every catalog read: the keys of every user relation (see
/// `RelationKeys`), by attnum, read whole like pg_inherits (one row per
/// index and foreign key, a few milliseconds for a thousand), so that an
/// index or constraint dropped is forgotten as soon as one made is learnt.
/// `u`: a unique index's key columns (`indkey` without INCLUDE columns)
/// and oid (`v` when NULLS NOT DISTINCT); `x`: the same of an exclusion
/// constraint, whose operators may be other than equality; `e`: a column
/// inside key expressions or the predicate (the index depends on it in
/// pg_depend; 0, every column, for a whole-row reference); `f`: a foreign
/// key's columns, the referenced relation and its columns; `c` (`n` when
/// NOT VALID): the columns a CHECK constraint reads (0: the whole row), and
/// a partitioned table's partition key, which an UPDATE moving a row
/// checks like one; `g`: the columns a stored generated column reads, and
/// its attnum (a plain default reads no column of its table, so an
/// expression that does is a generated column's). The `OFFSET 0` fence
/// keeps that a look-up into pg_depend per default, not a scan of all of
/// pg_attribute.
/// 16384 is `FIRST_NORMAL_OBJECT_ID`.
const KEY_ROWS: &str = "UNION ALL SELECT 'K', i.indrelid::text, \
            CASE WHEN i.indisexclusion THEN 'x' WHEN i.indnullsnotdistinct THEN 'v' ELSE 'u' END, \
            (i.indkey::pg_catalog.int2[])[0:i.indnkeyatts - 1]::text, i.indexrelid::text, NULL, NULL, NULL \
       FROM pg_catalog.pg_index i \
      WHERE i.indrelid >= 16384 AND (i.indisunique OR i.indisexclusion) \
     UNION ALL SELECT 'K', i.indrelid::text, 'e', d.refobjsubid::text, i.indexrelid::text, NULL, NULL, NULL \
       FROM pg_catalog.pg_index i \
       JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass \
        AND d.objid = i.indexrelid AND d.objsubid = 0 \
        AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = i.indrelid \
        AND d.refobjsubid > 0 \
        AND NOT d.refobjsubid = ANY ((i.indkey::pg_catalog.int2[])[i.indnkeyatts:]) \
      WHERE i.indrelid >= 16384 AND (i.indisunique OR i.indisexclusion) \
        AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) \
     UNION ALL SELECT 'K', i.indrelid::text, 'e', '0', i.indexrelid::text, NULL, NULL, NULL \
       FROM pg_catalog.pg_index i \
      WHERE i.indrelid >= 16384 AND (i.indisunique OR i.indisexclusion) \
        AND (i.indexprs::text LIKE '%:varattno 0 %' OR i.indpred::text LIKE '%:varattno 0 %') \
     UNION ALL SELECT 'K', pt.partrelid::text, 'c', pt.partattrs::text, NULL, NULL, NULL, NULL \
       FROM pg_catalog.pg_partitioned_table pt WHERE pt.partrelid >= 16384 \
     UNION ALL SELECT 'K', g.adrelid::text, 'g', g.reads::text, g.adnum::text, NULL, NULL, NULL \
       FROM (SELECT ad.adrelid, ad.adnum, \
               (SELECT pg_catalog.array_agg(d.refobjsubid ORDER BY d.refobjsubid) FROM pg_catalog.pg_depend d \
                 WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid AND d.objsubid = 0 \
                   AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = ad.adrelid \
                   AND d.refobjsubid <> ad.adnum) AS reads \
              FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid >= 16384 OFFSET 0) g \
      WHERE g.reads IS NOT NULL \
     UNION ALL SELECT 'K', k.conrelid::text, 'f', k.conkey::text, k.confrelid::text, k.confkey::text, NULL, NULL \
       FROM pg_catalog.pg_constraint k \
      WHERE k.contype = 'f' AND k.conrelid >= 16384 \
     UNION ALL SELECT 'K', k.conrelid::text, CASE WHEN k.convalidated THEN 'c' ELSE 'n' END, k.conkey::text, NULL, NULL, NULL, NULL \
       FROM pg_catalog.pg_constraint k \
      WHERE k.contype = 'c' AND k.conrelid >= 16384 AND k.conkey IS NOT NULL";

/// SQL for the built-in types whose values PostgreSQL may pass to a
/// parameter of type `type_oid` (`can_coerce_type` with implicit casts):
/// `*` for any (a pseudo-type, composite, array or domain parameter: a ROW
/// is `record`, polymorphic and array coercions follow the elements, a
/// domain its base), else the comma-separated `typname`s of the built-in
/// types (oid below `FIRST_NORMAL_OBJECT_ID`) that are it or have an
/// implicit cast to it, with the built-in domains over those. Empty: no
/// operator over it is a candidate for a built-in-typed operand.
fn builtin_reach(type_oid: &str) -> String {
    format!(
        "(SELECT CASE WHEN p.typtype IN ('p', 'c', 'd') OR p.typelem <> 0 THEN '*' \
           ELSE coalesce((SELECT pg_catalog.string_agg(t.typname::text, ',' ORDER BY t.typname) \
             FROM pg_catalog.pg_type t \
            WHERE t.oid < {FIRST_NORMAL_OBJECT_ID} \
              AND CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END IN ( \
                    SELECT p.oid UNION ALL SELECT k.castsource FROM pg_catalog.pg_cast k \
                     WHERE k.casttarget = p.oid AND k.castcontext = 'i')), '') END \
           FROM pg_catalog.pg_type p WHERE p.oid = {type_oid})"
    )
}

/// One parameter's `builtin_reach`: `*` (any built-in type may reach it)
/// or the comma-separated types that do.
fn reach_list(side: &str) -> Option<Vec<String>> {
    (side != "*").then(|| {
        side.split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// (inhseqno, (parent schema, parent name)) of one pg_inherits row.
type ParentRow = (i32, (String, String));

/// Keys of one relation as a read gives them, by attnum (see
/// `RelationKeys`, which `with_keys` names them into).
#[derive(Default)]
struct RawKeys {
    /// Per unique index or exclusion constraint (by index oid): the
    /// columns compared for equality, and those compared otherwise.
    unique: BTreeMap<u32, (Vec<i16>, Vec<i16>, bool)>,
    /// Foreign keys: (own columns, referenced relation, its columns).
    references: Vec<(Vec<i16>, u32, Vec<i16>)>,
    /// CHECK constraints: the columns each reads, and whether validated.
    checks: Vec<(Vec<i16>, bool)>,
    /// Stored generated columns and the columns each reads.
    generated: Vec<(i16, Vec<i16>)>,
}

/// The rows of one `CatalogRead`, sorted out.
#[derive(Default)]
struct ReadRows {
    database: Option<String>,
    snapshot: Option<String>,
    schemas: Vec<String>,
    relations: Vec<Relation>,
    parents: HashMap<u32, Vec<ParentRow>>,
    functions: Vec<CatalogFunction>,
    operators: Vec<CatalogOperator>,
    live_relations: HashSet<u32>,
    live_functions: HashSet<u32>,
    /// Keys per relation oid, by attnum (see `RelationKeys`).
    keys: HashMap<u32, RawKeys>,
    /// Largest command id of the reading transaction's own rows read.
    own_command: Option<u32>,
    /// `pg_get_functiondef` of SQL and PL/pgSQL user functions, by oid.
    definitions: HashMap<u32, String>,
    /// Input parameters of user functions, by oid.
    parameters: HashMap<u32, Parameters>,
}

impl ReadRows {
    fn parse<'a>(
        rows: impl Iterator<Item = &'a [Option<String>]>,
    ) -> Result<ReadRows, CatalogError> {
        fn field<'r>(
            row: &'r [Option<String>],
            i: usize,
            what: &'static str,
        ) -> Result<&'r str, CatalogError> {
            row.get(i)
                .and_then(|v| v.as_deref())
                .ok_or(CatalogError::UnexpectedValue {
                    what,
                    value: "NULL".into(),
                })
        }
        fn number<T: std::str::FromStr>(
            row: &[Option<String>],
            i: usize,
            what: &'static str,
        ) -> Result<T, CatalogError> {
            let text = field(row, i, what)?;
            text.parse().map_err(|_| CatalogError::UnexpectedValue {
                what,
                value: text.to_owned(),
            })
        }
        let mut out = ReadRows::default();
        let mut columns: HashMap<u32, Vec<CatalogColumn>> = HashMap::new();
        for row in rows {
            match field(row, 0, "row kind")? {
                "S" => {
                    out.database = Some(field(row, 1, "database")?.to_owned());
                    out.snapshot = Some(field(row, 2, "snapshot")?.to_owned());
                }
                "N" => out.schemas.push(field(row, 1, "schema")?.to_owned()),
                "R" => {
                    let relkind = field(row, 4, "relkind")?;
                    let kind = match relkind {
                        "r" => RelationKind::Table,
                        "p" => RelationKind::PartitionedTable,
                        "v" => RelationKind::View,
                        "m" => RelationKind::MaterializedView,
                        "f" => RelationKind::ForeignTable,
                        "S" => RelationKind::Sequence,
                        "c" => RelationKind::CompositeType,
                        _ => {
                            return Err(CatalogError::UnexpectedValue {
                                what: "relkind",
                                value: relkind.to_owned(),
                            })
                        }
                    };
                    out.relations.push(Relation {
                        oid: number(row, 1, "relation oid")?,
                        schema: field(row, 2, "schema")?.to_owned(),
                        name: field(row, 3, "relation name")?.to_owned(),
                        kind,
                        columns: Vec::new(),
                        definition: row.get(5).cloned().flatten(),
                        parents: Vec::new(),
                        keys: RelationKeys::default(),
                        view_lineage: OnceLock::new(),
                    });
                }
                "A" => columns
                    .entry(number(row, 1, "attrelid")?)
                    .or_default()
                    .push(CatalogColumn {
                        name: field(row, 2, "attname")?.to_owned(),
                        attnum: number(row, 3, "attnum")?,
                        type_oid: number(row, 4, "atttypid")?,
                        type_name: field(row, 5, "typname")?.to_owned(),
                        type_modifier: match row.get(6).cloned().flatten() {
                            Some(_) => number(row, 6, "atttypmod")?,
                            None => -1,
                        },
                    }),
                "I" => out
                    .parents
                    .entry(number(row, 1, "inhrelid")?)
                    .or_default()
                    .push((
                        number(row, 4, "inhseqno")?,
                        (
                            field(row, 2, "parent schema")?.to_owned(),
                            field(row, 3, "parent name")?.to_owned(),
                        ),
                    )),
                "F" => out.functions.push(CatalogFunction {
                    oid: number(row, 1, "function oid")?,
                    schema: field(row, 2, "schema")?.to_owned(),
                    name: field(row, 3, "function name")?.to_owned(),
                    language: field(row, 4, "language")?.to_owned(),
                    volatility: field(row, 5, "volatility")?.to_owned(),
                    kind: field(row, 6, "prokind")?.to_owned(),
                    result: FunctionResult::parse(field(row, 7, "function result")?),
                    result_type: field(row, 7, "function result")?
                        .strip_prefix("scalar:")
                        .unwrap_or("")
                        .to_owned(),
                    definition: None,
                    body: OnceLock::new(),
                    parameters: None,
                }),
                "G" => {
                    let count: usize = number(row, 5, "argument count")?;
                    let reach: Vec<Option<Vec<String>>> =
                        match row.get(4).and_then(|f| f.as_deref()) {
                            Some(text) => text.split('|').map(reach_list).collect(),
                            None => Vec::new(),
                        };
                    if reach.len() != count {
                        return Err(CatalogError::UnexpectedValue {
                            what: "argument types",
                            value: format!("{} of {count}", reach.len()),
                        });
                    }
                    out.parameters.insert(
                        number(row, 1, "function oid")?,
                        Parameters {
                            reach,
                            defaults: number(row, 2, "argument defaults")?,
                            variadic: field(row, 3, "variadic")? == "true",
                        },
                    );
                }
                "B" => {
                    out.definitions.insert(
                        number(row, 1, "function oid")?,
                        field(row, 2, "function definition")?.to_owned(),
                    );
                }
                "K" => {
                    let keys = out
                        .keys
                        .entry(number(row, 1, "key relation oid")?)
                        .or_default();
                    let attnums =
                        |i: usize, what: &'static str| -> Result<Vec<i16>, CatalogError> {
                            let text = field(row, i, what)?;
                            text.trim_matches(|c| c == '{' || c == '}')
                                .split([' ', ','])
                                .filter(|a| !a.is_empty())
                                .map(|a| {
                                    a.parse().map_err(|_| CatalogError::UnexpectedValue {
                                        what,
                                        value: text.to_owned(),
                                    })
                                })
                                .collect()
                        };
                    match field(row, 2, "key kind")? {
                        // An expression's entry in indkey is 0.
                        "u" | "v" => {
                            let key = keys.unique.entry(number(row, 4, "index oid")?).or_default();
                            key.0
                                .extend(attnums(3, "index key")?.into_iter().filter(|a| *a > 0));
                            key.2 = field(row, 2, "key kind")? == "v";
                        }
                        "g" => keys.generated.push((
                            number(row, 4, "generated column")?,
                            attnums(3, "generated column reads")?,
                        )),
                        "x" => keys
                            .unique
                            .entry(number(row, 4, "index oid")?)
                            .or_default()
                            .1
                            .extend(attnums(3, "exclusion key")?.into_iter().filter(|a| *a > 0)),
                        "e" => keys
                            .unique
                            .entry(number(row, 4, "index oid")?)
                            .or_default()
                            .1
                            .extend(attnums(3, "index expression column")?),
                        "c" | "n" => keys.checks.push((
                            attnums(3, "check constraint columns")?,
                            field(row, 2, "key kind")? == "c",
                        )),
                        "f" => keys.references.push((
                            attnums(3, "foreign key columns")?,
                            number(row, 4, "referenced relation oid")?,
                            attnums(5, "referenced columns")?,
                        )),
                        other => {
                            return Err(CatalogError::UnexpectedValue {
                                what: "key kind",
                                value: other.to_owned(),
                            })
                        }
                    }
                }
                "L" => {
                    out.live_relations.insert(number(row, 1, "relation oid")?);
                }
                "O" => {
                    // `left|right`, each `*` (any built-in type may reach
                    // that operand) or the list of those that do.
                    let reach = row.get(7).and_then(|v| v.as_deref()).unwrap_or("*|*");
                    let (left, right) = reach.split_once('|').unwrap_or(("*", "*"));
                    let list = reach_list;
                    out.operators.push(CatalogOperator {
                        schema: field(row, 1, "operator schema")?.to_owned(),
                        name: field(row, 2, "operator name")?.to_owned(),
                        left: field(row, 3, "left operand type")?.to_owned(),
                        right: field(row, 4, "right operand type")?.to_owned(),
                        function_schema: field(row, 5, "operator function schema")?.to_owned(),
                        function_name: field(row, 6, "operator function")?.to_owned(),
                        left_reach: list(left),
                        right_reach: list(right),
                    })
                }
                "P" => {
                    out.live_functions.insert(number(row, 1, "function oid")?);
                }
                "C" => {
                    if row.get(1).is_some_and(Option::is_some) {
                        out.own_command = Some(number(row, 1, "command id")?);
                    }
                }
                other => {
                    return Err(CatalogError::UnexpectedValue {
                        what: "row kind",
                        value: other.to_owned(),
                    })
                }
            }
        }
        for r in &mut out.relations {
            let mut cols = columns.remove(&r.oid).unwrap_or_default();
            cols.sort_by_key(|c| c.attnum);
            r.columns = cols;
        }
        for f in &mut out.functions {
            f.definition = out.definitions.remove(&f.oid);
            f.parameters = out.parameters.remove(&f.oid);
        }
        Ok(out)
    }
}

/// Catalogs per database, refreshed after `ttl` or on `invalidate`.
///
/// The cache itself does no I/O: the session asks `get`, and when it returns
/// `None` reads the changes since `last` (or a whole catalog) over its
/// catalog connection and calls `insert` with the `epoch` it saw before the
/// read began.
#[derive(Debug)]
pub struct CatalogCache {
    ttl: Duration,
    entries: DashMap<String, CachedCatalog>,
    /// Invalidations per database so far. A catalog read that began before
    /// the latest one may lack the change it announced, so it is not
    /// current however recently it was inserted.
    epochs: DashMap<String, u64>,
}

#[derive(Debug, Clone)]
struct CachedCatalog {
    catalog: Arc<Catalog>,
    loaded_at: Instant,
    /// The database's epoch when the read began.
    epoch: u64,
}

impl CatalogCache {
    pub fn new(ttl: Duration) -> CatalogCache {
        CatalogCache {
            ttl,
            entries: DashMap::new(),
            epochs: DashMap::new(),
        }
    }

    /// How long a catalog stays current without a change announced.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Invalidations of `database` so far: take it before reading a
    /// catalog, give it to `insert` after.
    pub fn epoch(&self, database: &str) -> u64 {
        self.epochs.get(database).map_or(0, |e| *e)
    }

    /// The cached catalog of `database`, unless it is missing, expired or
    /// was read before the latest invalidation.
    pub fn get(&self, database: &str) -> Option<Arc<Catalog>> {
        let epoch = self.epoch(database);
        let entry = self.entries.get(database)?;
        (entry.epoch == epoch && entry.loaded_at.elapsed() < self.ttl)
            .then(|| Arc::clone(&entry.catalog))
    }

    /// The last catalog read for `database`, current or not: the base an
    /// incremental refresh starts from.
    pub fn last(&self, database: &str) -> Option<Arc<Catalog>> {
        self.entries.get(database).map(|e| Arc::clone(&e.catalog))
    }

    /// Stores a catalog whose read began at `epoch` (see `epoch`).
    pub fn insert(&self, catalog: Catalog, epoch: u64) -> Arc<Catalog> {
        let catalog = Arc::new(catalog);
        self.entries.insert(
            catalog.database().to_owned(),
            CachedCatalog {
                catalog: Arc::clone(&catalog),
                loaded_at: Instant::now(),
                epoch,
            },
        );
        catalog
    }

    /// Forgets every database's catalog (SIGHUP): the next read is whole.
    pub fn clear(&self) {
        self.entries.clear();
        // A read in flight now must not count as current when it lands.
        for mut e in self.epochs.iter_mut() {
            *e += 1;
        }
    }

    /// Marks `database`'s catalog out of date; the session calls it after
    /// DDL passed. The next `get` misses, and the refresh reads only what
    /// changed since it.
    pub fn invalidate(&self, database: &str) {
        *self.epochs.entry(database.to_owned()).or_insert(0) += 1;
    }

    /// The cached catalog, or one brought up to date over `client`
    /// (connected to `database`) when missing, expired or invalidated.
    pub async fn get_or_load(
        &self,
        database: &str,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, CatalogError> {
        if let Some(catalog) = self.get(database) {
            return Ok(catalog);
        }
        let epoch = self.epoch(database);
        let catalog = match self.last(database) {
            Some(last) => {
                let read = if last.all_read_age() >= self.ttl {
                    last.all_changes_query()
                } else {
                    last.changes_query()
                };
                match read {
                    Some(read) => last.refreshed_by(client, &read, None).await?,
                    None => Catalog::load(client).await?,
                }
            }
            None => Catalog::load(client).await?,
        };
        Ok(self.insert(catalog, epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        Catalog::new(
            "bank".into(),
            vec!["public".into()],
            vec![Relation {
                oid: 1,
                schema: "public".into(),
                name: "t".into(),
                kind: RelationKind::Table,
                columns: vec![CatalogColumn {
                    name: "a".into(),
                    attnum: 1,
                    type_oid: 25,
                    type_name: "text".into(),
                    type_modifier: -1,
                }],
                definition: None,
                parents: Vec::new(),
                keys: RelationKeys::default(),
                view_lineage: OnceLock::new(),
            }],
            vec![CatalogFunction {
                oid: 1,
                schema: "public".into(),
                name: "f".into(),
                language: "sql".into(),
                volatility: "v".into(),
                kind: "f".into(),
                result: FunctionResult::Scalar,
                result_type: String::new(),
                definition: None,
                body: OnceLock::new(),
                parameters: None,
            }],
        )
    }

    #[test]
    fn json_round_trip_gets_a_new_generation() {
        let catalog = sample();
        let json = match catalog.to_json() {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        };
        let again = match Catalog::from_json(&json) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_ne!(again.generation(), catalog.generation());
        assert!(again.resolve_relation(&["public".into()], "t").is_some());
        assert!(again
            .resolve_function(&["public".into()], None, "f")
            .is_some());
    }

    #[test]
    fn cache_invalidates_per_database() {
        let cache = CatalogCache::new(Duration::from_secs(60));
        cache.insert(sample(), cache.epoch("bank"));
        assert!(cache.get("bank").is_some());
        cache.invalidate("bank");
        assert!(cache.get("bank").is_none());
        let expired = CatalogCache::new(Duration::ZERO);
        expired.insert(sample(), 0);
        assert!(expired.get("bank").is_none());
    }

    #[test]
    fn a_read_begun_before_an_invalidation_is_not_current() {
        let cache = CatalogCache::new(Duration::from_secs(60));
        let begun = cache.epoch("bank");
        // DDL commits while the read is running: the read may miss it.
        cache.invalidate("bank");
        cache.insert(sample(), begun);
        assert!(cache.get("bank").is_none());
        assert!(cache.last("bank").is_some());
        let again = cache.epoch("bank");
        cache.insert(sample(), again);
        assert!(cache.get("bank").is_some());
        // SIGHUP: a read in flight does not count either.
        let begun = cache.epoch("bank");
        cache.clear();
        cache.insert(sample(), begun);
        assert!(cache.get("bank").is_none());
    }

    #[test]
    fn builtins_are_shared_between_generations() {
        let mut data: CatalogData = match serde_json::from_str(&match sample().to_json() {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        }) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        data.functions.push(CatalogFunction {
            oid: 870,
            schema: "pg_catalog".into(),
            name: "lower".into(),
            language: "internal".into(),
            volatility: "i".into(),
            kind: "f".into(),
            result: FunctionResult::Scalar,
            result_type: String::new(),
            definition: None,
            body: OnceLock::new(),
            parameters: None,
        });
        let first = Catalog::from_data(data);
        let second = first.with_session_relations(&[]);
        assert!(Arc::ptr_eq(&first.system, &second.system));
        assert!(second.functions_named("lower").any(|f| f.oid == 870));
        assert!(second.relation_by_oid(1).is_some_and(|r| r.name == "t"));
    }
}
