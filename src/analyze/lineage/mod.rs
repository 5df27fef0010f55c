//! Lineage: which catalog columns each output column carries, and every
//! other use of a column (filters, joins, ordering, writes). Built by
//! walking sqlparser's AST; independent of any policy so it can be cached
//! and re-judged when the policy changes.
//!
//! Fail-closed rule for this folder: a construct the walker does not model
//! either falls back to "everything inside flows, derived" or records a
//! `Hazard`, never silently drops a column.
//!
//! This file owns the lineage types, the `Walker` with its scope frames, and
//! the fallback scan of unmodelled nodes. Each statement family lives in its
//! own module:
//! - `query`: SELECT, set operations, CTEs, VALUES, ORDER BY / LIMIT;
//! - `from`: FROM items, joins, relations, views, table functions;
//! - `names`: resolving column and FROM-item names in scope;
//! - `expr`: expressions and boolean conditions;
//! - `functions`: function calls and built-in function knowledge;
//! - `json`: the shape of JSON values a statement builds;
//! - `operators`: which function an operator runs (built-in or user-defined);
//! - `dml`: INSERT, UPDATE, DELETE, MERGE;
//! - `utility`: COPY sources, renames and DDL expressions.

mod dml;
mod expr;
mod from;
mod functions;
mod json;
mod names;
mod operators;
mod query;
mod utility;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{self, Expr, Ident, ObjectName, Query, Visit, Visitor};

use super::catalog::Catalog;
use super::policy_view::QualifiedColumn;

pub use from::SENSITIVE_SYSTEM_RELATIONS;
use names::VALUE_KEYWORDS;

/// How a value reaches an output or a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    /// The output is the column's value unchanged (maskable).
    Copy,
    /// The output is computed from the column (cannot be masked safely).
    Derived,
}

/// Columns an expression's value comes from.
pub type Sources = BTreeMap<QualifiedColumn, Flow>;

fn merge_into(into: &mut Sources, from: &Sources) {
    for (column, flow) in from {
        let entry = into.entry(column.clone()).or_insert(*flow);
        if *flow > *entry {
            *entry = *flow;
        }
    }
}

/// Stands for "values that come from no column" where they are merged with
/// column values (`COALESCE(col, 'x')`, `UNION ALL` with literals, CASE): such
/// an expression is no longer a pure copy of a column, so it cannot be the
/// partner of an equi-join. No policy names it.
pub fn constant_source() -> QualifiedColumn {
    QualifiedColumn {
        schema: String::new(),
        table: String::new(),
        column: "(constant)".to_owned(),
    }
}

/// Merges one alternative of a value (a CASE branch, a UNION branch, a
/// COALESCE argument) into `into`; an alternative carrying no column marks
/// the result with `constant_source()`.
fn merge_alternative(into: &mut Sources, alternative: &Sources) {
    if alternative.is_empty() {
        into.insert(constant_source(), Flow::Copy);
    }
    merge_into(into, alternative);
}

/// The built-in types a column of either branch of a set operation (or
/// of either iteration of a recursive CTE) may be of: PostgreSQL's
/// select_common_type picks one of the branches' types. Not known when a
/// branch's is not; any built-in type when a branch's may be any.
fn merge_types(into: &mut Option<Vec<String>>, other: &Option<Vec<String>>) {
    match (into.as_mut(), other) {
        (Some(types), Some(more)) if !types.is_empty() && !more.is_empty() => {
            types.extend(more.iter().cloned());
            types.sort();
            types.dedup();
        }
        (Some(types), Some(_)) => types.clear(),
        _ => *into = None,
    }
}

fn as_derived(mut sources: Sources) -> Sources {
    sources.values_mut().for_each(|f| *f = Flow::Derived);
    sources
}

/// True when PostgreSQL computes the output columns of `query`, used as a
/// subquery (in FROM, as a view, as an inlined CTE), that nobody reads. It
/// drops them (`remove_unused_subquery_outputs`) only from a plain SELECT:
/// a set operation, UNION ALL included when it is not pulled up into the
/// outer query (OFFSET, LIMIT, ORDER BY on it), keeps and computes every
/// column of every branch, and whether that fails tells something of the
/// values. Volatile columns are kept too (`Walker::query_volatility`), and
/// DISTINCT compares all columns (a use already).
pub(crate) fn computes_unread_columns(query: &Query) -> bool {
    match query.body.as_ref() {
        ast::SetExpr::Select(_) => false,
        ast::SetExpr::Query(inner) => computes_unread_columns(inner),
        _ => true,
    }
}

/// What an INSERT proposed for each column it names (None: DEFAULT).
type Proposed = Vec<(String, Option<Operand>)>;

/// One output column, in RowDescription order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub sources: Sources,
    /// The built-in `typname`s the column may be of (empty: some built-in
    /// type), when pgveil knows it is of one: a select-list expression's
    /// type (see `operators`), which a subquery's or CTE's column keeps.
    /// None: not known.
    pub builtin_type: Option<Vec<String>>,
    /// For a JSON value the statement builds: where each part's value
    /// comes from (see `json`). None for any other column.
    pub shape: Option<Arc<JsonShape>>,
    /// `name` is the one PostgreSQL gives the column (a catalog column, a
    /// column reference, an alias under 64 bytes); not for an unaliased
    /// expression. `row_to_json` names its members so.
    pub name_known: bool,
}

/// The parts of a JSON value a statement builds (`json_build_object` with
/// constant keys, `json_build_array`, `json_agg`, `row_to_json` of a row):
/// what each part's value comes from, so that a protected column's value
/// inside it can be masked where it sits (`mask::JsonMask`). The column's
/// `sources` still hold every part's columns, derived, for every other
/// judgement.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonShape {
    /// A part whose JSON text comes from these columns.
    Value(Sources),
    /// An array whose element i is shaped by entry i.
    Array(Vec<JsonShape>),
    /// An object whose member named k is shaped by k's entry (keys unique).
    Object(Vec<(String, JsonShape)>),
    /// An array whose every element has this shape.
    Elements(Box<JsonShape>),
}

/// How a column is used outside the select list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseKind {
    /// `col = constant`, `col IN (constants)`, grouping, IS NULL.
    Equality,
    /// An equi-join with other columns (`ColumnUse::partners`): allowed
    /// under `filter: equality` only when a partner has the same protection.
    Join,
    /// Anything else: ranges, LIKE, functions of it, ordering.
    General,
}

/// Where a use happened, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Clause {
    SelectList,
    Where,
    JoinOn,
    GroupBy,
    Having,
    OrderBy,
    Window,
    Distinct,
    SetOperation,
    Limit,
    Assignment,
    Returning,
    Ddl,
    /// Arguments of a set-returning function: they decide how many rows
    /// exist, which `count(*)` or EXPLAIN ANALYZE then reveal.
    RowCount,
    /// Values the server computes without returning them (EXPLAIN
    /// ANALYZE, a materialized CTE, the unread columns of a subquery or
    /// view that calls a volatile function, what `count()` counts):
    /// whether that fails depends on values.
    Evaluated,
    /// A written value the server compares with values stored in other
    /// rows (a unique index, an exclusion constraint, a foreign key):
    /// whether the write conflicts tells whether the value is stored.
    KeyCheck,
}

impl Clause {
    pub fn as_str(self) -> &'static str {
        match self {
            Clause::SelectList => "select list",
            Clause::RowCount => "arguments of a set-returning function",
            Clause::Evaluated => {
                "a value the server computes without returning it (EXPLAIN ANALYZE, a \
                 materialized CTE, a volatile query's unread column, what count() counts), where \
                 an error would tell something about the value"
            }
            Clause::Where => "WHERE",
            Clause::JoinOn => "JOIN",
            Clause::GroupBy => "GROUP BY",
            Clause::Having => "HAVING",
            Clause::OrderBy => "ORDER BY",
            Clause::Window => "window clause",
            Clause::Distinct => "DISTINCT",
            Clause::SetOperation => "INTERSECT/EXCEPT/UNION",
            Clause::Limit => "LIMIT/OFFSET",
            Clause::Assignment => "SET",
            Clause::Returning => "RETURNING",
            Clause::Ddl => "DDL expression",
            Clause::KeyCheck => {
                "a write the server checks against a unique index, exclusion constraint or \
                 foreign key, whose conflict or success tells whether the value is stored"
            }
        }
    }
}

/// A protected-or-not column used outside the select list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnUse {
    pub column: QualifiedColumn,
    pub kind: UseKind,
    pub clause: Clause,
    /// For `UseKind::Join`: the columns it was compared with.
    pub partners: Vec<QualifiedColumn>,
}

/// The other side of an equality comparison.
#[derive(Debug, Clone)]
enum Operand {
    /// Constants the caller supplied (literals, bind parameters): how many.
    Constants(usize),
    /// A pure copy of these columns.
    Columns(Vec<QualifiedColumn>),
    /// Anything computed: generated candidates, functions, mixtures.
    Computed,
}

/// A value written somewhere readable (INSERT … SELECT, UPDATE SET, CTAS…).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sink {
    pub source: QualifiedColumn,
    pub flow: Flow,
    /// The column written, when known.
    pub target: Option<QualifiedColumn>,
    pub via: &'static str,
}

/// Fail-closed rules that block restricted roles regardless of columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HazardRule {
    /// sqlparser's tree and PostgreSQL's disagree on what the statement
    /// references (first, so that it is the rule reported and counted).
    Misunderstood,
    /// pgveil could not analyse (part of) the statement.
    Unanalysable,
    /// Dynamic SQL: DO, query_to_xml and friends, EXECUTE of unseen text.
    DynamicSql,
    /// Server-side files, large objects, WAL decoding.
    ServerFile,
    /// A change of search_path.
    SearchPath,
    /// Server-side code definitions (functions, triggers, rules).
    ServerCode,
    /// A name not in the catalog (stale catalog or typo).
    UnknownName,
    /// Statistics and activity views that carry raw values.
    SensitiveCatalog,
    /// A pg_catalog function that is not on pgveil's list of PostgreSQL's
    /// built-in functions (a newer release's), or an internal one.
    UnlistedFunction,
    /// A type name that would be found before pg_catalog's type of that
    /// name (in pg_temp, or a schema listed before pg_catalog).
    BuiltinTypeShadow,
    /// A change of role memberships or role names, which decide the policy
    /// rules a login matches.
    RoleMatching,
}

/// The rule name of statements pgveil reads differently from PostgreSQL
/// (`pgveil_statements_misunderstood_total` counts its blocks).
pub const MISUNDERSTOOD_RULE: &str = "misunderstood-statement";

impl HazardRule {
    pub fn as_str(self) -> &'static str {
        match self {
            HazardRule::Misunderstood => MISUNDERSTOOD_RULE,
            HazardRule::Unanalysable => "unanalysable-statement",
            HazardRule::DynamicSql => "dynamic-sql",
            HazardRule::ServerFile => "server-file-access",
            HazardRule::SearchPath => "search-path-change",
            HazardRule::ServerCode => "server-side-code",
            HazardRule::UnknownName => "unknown-name",
            HazardRule::SensitiveCatalog => "sensitive-system-catalog",
            HazardRule::UnlistedFunction => "unlisted-builtin-function",
            HazardRule::BuiltinTypeShadow => "builtin-type-shadow",
            HazardRule::RoleMatching => "role-membership-change",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hazard {
    pub rule: HazardRule,
    pub detail: String,
}

/// Why a column may not reach some code: its value would come back in an
/// error or land where others can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guard {
    /// A built-in lookup by name or OID (`to_regclass`, `::regclass` …).
    Lookup,
    /// A built-in function that leaves its arguments readable (`nextval`,
    /// advisory locks …).
    Write,
    /// A cast to a type outside pg_catalog: a domain's CHECK or a type's
    /// input function is server code pgveil cannot see.
    UserType,
    /// A user-defined function's argument: the function may store it
    /// where others read it (`target` is `schema.name()`).
    UserFunction,
}

/// A column whose value reaches guarded code (see `Guard`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuardedArgument {
    pub column: QualifiedColumn,
    /// What it reaches, for the error message: `to_regclass()`, `cast to
    /// public.varchar`.
    pub target: String,
    pub guard: Guard,
}

/// Everything a statement touches besides its output columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub uses: BTreeSet<ColumnUse>,
    /// Every relation read or written (schema, name), views included.
    pub relations: BTreeSet<(String, String)>,
    /// User-defined functions called (schema, name).
    pub user_functions: BTreeSet<(String, String)>,
    /// What each user-defined function called reaches (see `sealed`).
    pub sealed_calls: BTreeMap<(String, String), crate::analyze::sealed::SealedCall>,
    /// Functions (re)defined, renamed or moved (schema, name): a role must
    /// not redefine one the policy allows it to call.
    pub defined_functions: BTreeSet<(String, String)>,
    pub sinks: BTreeSet<Sink>,
    pub hazards: BTreeSet<Hazard>,
    /// Columns reaching arguments of built-in lookups and writes.
    pub guarded: BTreeSet<GuardedArgument>,
    /// Per column, how many constants the statement compares it with.
    pub candidates: BTreeMap<QualifiedColumn, usize>,
    /// Per column, the bind parameters (1-based) holding arrays it is
    /// compared with (`= ANY($1)`): counted as one candidate each here;
    /// their elements are counted when the values are bound.
    pub array_parameters: BTreeMap<QualifiedColumn, BTreeSet<usize>>,
    /// Relations a new temporary table without rows would shadow (schema,
    /// name): harmless unless they carry protected columns (see plan).
    pub shadows: BTreeSet<(String, String)>,
    /// Relations the catalog lacks where the server answers for them: the
    /// target of `ALTER TABLE IF EXISTS` (skipped with a notice) or of
    /// `COPY … FROM` (42P01). They block nothing, but the session reads
    /// the catalog again first: one made since must be analysed.
    pub absent: BTreeSet<String>,
    /// Every column a name in the statement resolved to, whether or not its
    /// value goes anywhere (a subquery column nobody selects): lets the fuzz
    /// oracle tell a name the walker skipped from one it read and dropped.
    pub reads: BTreeSet<QualifiedColumn>,
    /// Every column a write (INSERT, UPDATE, MERGE, COPY FROM) stores into,
    /// with the columns it stands for (a view's base column, a child's
    /// ancestors'): a role must not store values it chose into a column it
    /// reads as keyed tokens.
    pub written: BTreeSet<QualifiedColumn>,
}

impl Effects {
    pub(crate) fn absorb(&mut self, other: &Effects) {
        self.uses.extend(other.uses.iter().cloned());
        self.relations.extend(other.relations.iter().cloned());
        self.user_functions
            .extend(other.user_functions.iter().cloned());
        for (key, call) in &other.sealed_calls {
            self.sealed_calls
                .entry(key.clone())
                .or_insert_with(|| call.clone());
        }
        self.defined_functions
            .extend(other.defined_functions.iter().cloned());
        self.sinks.extend(other.sinks.iter().cloned());
        self.hazards.extend(other.hazards.iter().cloned());
        self.guarded.extend(other.guarded.iter().cloned());
        self.shadows.extend(other.shadows.iter().cloned());
        self.reads.extend(other.reads.iter().cloned());
        self.absent.extend(other.absent.iter().cloned());
        self.written.extend(other.written.iter().cloned());
        for (column, n) in &other.candidates {
            *self.candidates.entry(column.clone()).or_default() += n;
        }
        for (column, params) in &other.array_parameters {
            self.array_parameters
                .entry(column.clone())
                .or_default()
                .extend(params.iter().copied());
        }
    }

    /// True when the statement names something the catalog lacks (a read
    /// of the catalog may find it).
    pub fn names_unknown(&self) -> bool {
        !self.absent.is_empty()
            || self
                .hazards
                .iter()
                .any(|h| h.rule == HazardRule::UnknownName)
    }

    pub(crate) fn hazard(&mut self, rule: HazardRule, detail: impl Into<String>) {
        self.hazards.insert(Hazard {
            rule,
            detail: detail.into(),
        });
    }
}

/// The lineage of a view's columns plus what its definition touches.
#[derive(Debug, Clone, Default)]
pub struct RelationLineage {
    pub columns: Vec<OutputColumn>,
    pub effects: Effects,
}

/// The column a `root.a.b[…]…` field access starts with, as PostgreSQL's
/// grammar reads it: the root identifier and every field name before the
/// first subscript form one ColumnRef. `None` when the root is not a bare
/// identifier or no field name follows it.
pub(crate) fn dotted_column(root: &Expr, chain: &[ast::AccessExpr]) -> Option<Vec<String>> {
    let Expr::Identifier(root) = root else {
        return None;
    };
    let mut parts = vec![ident_name(root)];
    for access in chain {
        match access {
            ast::AccessExpr::Dot(Expr::Identifier(field)) => parts.push(ident_name(field)),
            _ => break,
        }
    }
    (parts.len() > 1).then_some(parts)
}

/// Folds an identifier the way PostgreSQL does: unquoted names lower-case,
/// A–Z only (in UTF-8 databases `Év` stays `Év`; it is not `év`).
pub(crate) fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

pub(crate) fn object_name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident_name(ident),
            // A dialect-specific computed name: cannot match any relation.
            None => part.to_string(),
        })
        .collect()
}

/// One FROM item visible by name.
#[derive(Debug, Clone)]
struct ScopeItem {
    alias: String,
    /// The relation behind it, for `schema.table.column` references.
    relation: Option<(String, String)>,
    columns: Vec<OutputColumn>,
    /// Unknown shape: a relation not in the catalog (a hazard was recorded)
    /// or a function whose output columns are not known.
    opaque: bool,
    /// What any column of an opaque item derives from.
    opaque_sources: Sources,
    /// Columns known to be of a built-in type (a built-in function's
    /// scalar result, WITH ORDINALITY, a subquery's or CTE's column typed
    /// from its expression), with the `typname`s it may be
    /// (empty: any): operators over types those do not reach are not
    /// candidates (see `operators`).
    builtin_typed: BTreeMap<String, Vec<String>>,
}

impl ScopeItem {
    fn whole_row(&self) -> Sources {
        let mut sources = Sources::new();
        for column in &self.columns {
            merge_into(&mut sources, &column.sources);
        }
        as_derived(sources)
    }

    /// Whether a reference qualified by `qualifier` (`alias`,
    /// `schema.table` or `db.schema.table`) names this item; an
    /// unqualified reference names none in particular.
    fn is_named(&self, qualifier: &[String]) -> bool {
        let relation_is = |schema: &String, table: &String| {
            self.relation
                .as_ref()
                .is_some_and(|(s, t)| s == schema && t == table)
        };
        match qualifier {
            [alias] => &self.alias == alias,
            [schema, table] => relation_is(schema, table) && &self.alias == table,
            [_, schema, table] => relation_is(schema, table),
            _ => false,
        }
    }
}

/// The names one query level can see.
#[derive(Debug, Default)]
struct Frame {
    items: Vec<ScopeItem>,
    /// Columns `SELECT *` expands to, in order (USING/NATURAL merged).
    star: Vec<OutputColumn>,
}

/// Builds lineage for statements against one catalog.
pub(crate) struct Walker<'c> {
    catalog: &'c Catalog,
    search_path: &'c [String],
    frames: Vec<Frame>,
    ctes: Vec<(String, Arc<Vec<OutputColumn>>)>,
    pub(crate) effects: Effects,
    clause: Clause,
    pub(crate) literal_sensitive: bool,
    view_depth: usize,
    /// Calls of volatile or user-defined functions walked so far: a query
    /// with one keeps the columns nobody reads, and computes them.
    volatile_calls: usize,
    /// While an ON CONFLICT DO UPDATE is walked: where its EXCLUDED row is
    /// in scope (frame, item) and what the INSERT proposed for each column.
    excluded: Option<((usize, usize), Proposed)>,
    /// The shape of the JSON value the last walked constructor call or
    /// scalar subquery builds, keyed by that node's address (see `json`).
    made_shape: Option<(usize, Arc<JsonShape>)>,
}

const MAX_VIEW_DEPTH: usize = 32;

impl<'c> Walker<'c> {
    pub(crate) fn new(catalog: &'c Catalog, search_path: &'c [String]) -> Walker<'c> {
        Walker {
            catalog,
            search_path,
            frames: Vec::new(),
            ctes: Vec::new(),
            effects: Effects::default(),
            clause: Clause::SelectList,
            literal_sensitive: false,
            view_depth: 0,
            volatile_calls: 0,
            excluded: None,
            made_shape: None,
        }
    }

    fn hazard(&mut self, rule: HazardRule, detail: impl Into<String>) {
        self.effects.hazard(rule, detail);
    }

    /// The catalog relation `[[database.]schema.]name` names.
    pub(crate) fn catalog_relation(
        &self,
        parts: &[String],
    ) -> Option<&'c super::catalog::Relation> {
        match parts {
            [name] => self.catalog.resolve_relation(self.search_path, name),
            [schema, name] => self.catalog.relation(schema, name),
            [database, schema, name] if database == self.catalog.database() => {
                self.catalog.relation(schema, name)
            }
            _ => None,
        }
    }

    /// Values the server computes but may not return (EXPLAIN ANALYZE, a
    /// materialized CTE's unread columns, count()'s argument): whether
    /// computing them fails depends on the values, so each computed one is
    /// a general use.
    /// The query `walk` walks (a subquery, a view, an inlined CTE) and
    /// whether it calls a volatile or user-defined function: PostgreSQL
    /// then keeps the columns nobody reads, and computes them.
    pub(crate) fn query_volatility<T>(&mut self, walk: impl FnOnce(&mut Self) -> T) -> (T, bool) {
        let before = self.volatile_calls;
        let result = walk(self);
        (result, self.volatile_calls > before)
    }

    pub(crate) fn use_computed_outputs<'s>(
        &mut self,
        outputs: impl IntoIterator<Item = &'s Sources>,
    ) {
        for sources in outputs {
            let computed: Sources = sources
                .iter()
                .filter(|(_, flow)| **flow != Flow::Copy)
                .map(|(c, f)| (c.clone(), *f))
                .collect();
            self.with_clause(Clause::Evaluated, |w| w.use_sources(&computed, false));
        }
    }

    /// Records each column of `sources` as used in the current clause. An
    /// equality use (`equality_allowed`) compares the column's own values
    /// only when the value is nothing but that column: one that may also
    /// be a constant or another column (`UNION ALL`, a USING column)
    /// compares the column with whatever else it carries, so it is a
    /// general use, as `operand` judges a comparison's other side.
    fn use_sources(&mut self, sources: &Sources, equality_allowed: bool) {
        let pure_copy = sources.len() == 1
            && sources
                .iter()
                .all(|(c, f)| *f == Flow::Copy && *c != constant_source());
        for (column, flow) in sources {
            let kind = if equality_allowed && pure_copy && *flow == Flow::Copy {
                UseKind::Equality
            } else {
                UseKind::General
            };
            self.effects.uses.insert(ColumnUse {
                column: column.clone(),
                kind,
                clause: self.clause,
                partners: Vec::new(),
            });
        }
    }

    /// What the other side of `= expr` is; `sources` is its lineage.
    fn operand(&mut self, expr: &Expr, sources: &Sources) -> Operand {
        if is_constant(expr) {
            return Operand::Constants(1);
        }
        // `EXCLUDED.c` is the value the INSERT proposed for the row
        // (DEFAULT's value when it gave none).
        if let Some(proposed) = self.excluded_operand(expr) {
            return proposed.unwrap_or(Operand::Computed);
        }
        let pure_copy = !sources.is_empty()
            && sources
                .iter()
                .all(|(c, f)| *f == Flow::Copy && *c != constant_source());
        if pure_copy {
            Operand::Columns(sources.keys().cloned().collect())
        } else {
            Operand::Computed
        }
    }

    /// Records the columns of `sources` as compared with `other`: an
    /// equality use when it is constants, a join when it is other columns, a
    /// general use when it is computed.
    fn compare(&mut self, sources: &Sources, other: &Operand) {
        for (column, flow) in sources {
            let (kind, partners) = match (flow, other) {
                (Flow::Copy, Operand::Constants(n)) => {
                    *self.effects.candidates.entry(column.clone()).or_default() += n;
                    (UseKind::Equality, Vec::new())
                }
                (Flow::Copy, Operand::Columns(partners)) => (UseKind::Join, partners.clone()),
                _ => (UseKind::General, Vec::new()),
            };
            self.effects.uses.insert(ColumnUse {
                column: column.clone(),
                kind,
                clause: self.clause,
                partners,
            });
        }
    }

    /// `left = right` (and `<>`, `IS DISTINCT FROM`, CASE x WHEN v …).
    fn compare_both(&mut self, left: &Expr, right: &Expr) {
        let l = self.expr(left);
        let r = self.expr(right);
        if self.same_row_value(left, right, &l, &r) {
            return;
        }
        let lo = self.operand(left, &l);
        let ro = self.operand(right, &r);
        self.compare(&l, &ro);
        self.compare(&r, &lo);
    }

    /// `t.c = t.c`: one row's value compared with itself, which PostgreSQL
    /// plans as `t.c IS NOT NULL` (an index returns every row, in the
    /// column's order), not as a join: a general use of both sides.
    pub(super) fn same_row_value(
        &mut self,
        left: &Expr,
        right: &Expr,
        l: &Sources,
        r: &Sources,
    ) -> bool {
        let same = match (self.column_reference(left), self.column_reference(right)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if same {
            self.use_sources(l, false);
            self.use_sources(r, false);
        }
        same
    }

    /// Records every column of `sources` as reaching guarded code.
    fn guard_sources(&mut self, sources: &Sources, target: &str, guard: Guard) {
        for column in sources.keys() {
            self.effects.guarded.insert(GuardedArgument {
                column: column.clone(),
                target: target.to_owned(),
                guard,
            });
        }
    }

    fn with_clause<T>(&mut self, clause: Clause, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.clause, clause);
        let result = f(self);
        self.clause = saved;
        result
    }

    /// Anything not modelled: every column it mentions is a general use and
    /// any subquery inside is analysed in the current scope.
    pub(crate) fn generic_scan_node<T: Visit>(&mut self, node: &T) {
        let mut collector = NameCollector::default();
        let _ = node.visit(&mut collector);
        let mut mentioned = Sources::new();
        for parts in collector.columns {
            if let Some(sources) = self.resolve_column(&parts) {
                self.use_sources(&sources, false);
                merge_into(&mut mentioned, &sources);
            } else if parts.len() == 1 && VALUE_KEYWORDS.contains(&parts[0].as_str()) {
            } else {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("name {} could not be resolved", parts.join(".")),
                );
            }
        }
        // Which argument a column reaches is not known here: any of them.
        for function in collector.functions {
            let category = self.check_function(&function, None);
            let name = function.last().map(String::as_str).unwrap_or_default();
            if name == "set_config" {
                self.set_config_setting(None);
            }
            self.guard_arguments(name, category, std::slice::from_ref(&mentioned));
            self.guard_user_function(&function, std::slice::from_ref(&mentioned), None);
        }
        if collector.has_query {
            self.hazard(
                HazardRule::Unanalysable,
                "subquery inside an expression form pgveil does not model",
            );
        }
    }
}

/// `ScopeItem::builtin_typed` of a subquery or CTE: its columns known to be
/// of a built-in type, by name (a name two columns have is left out).
fn builtin_typed(columns: &[OutputColumn]) -> BTreeMap<String, Vec<String>> {
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for column in columns {
        *named.entry(&column.name).or_default() += 1;
    }
    columns
        .iter()
        .filter(|c| named.get(c.name.as_str()) == Some(&1))
        .filter_map(|c| Some((c.name.clone(), c.builtin_type.clone()?)))
        .collect()
}

fn rename_columns(
    mut columns: Vec<OutputColumn>,
    names: &[ast::TableAliasColumnDef],
) -> Vec<OutputColumn> {
    for (column, name) in columns.iter_mut().zip(names) {
        column.name = ident_name(&name.name);
        column.name_known = column.name.len() < 64;
    }
    columns
}

fn truncate(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A value the caller supplied: a literal or bind parameter, possibly cast
/// or signed. Anything computed, even from literals only, is not.
fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) | Expr::TypedString(_) => true,
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_constant(inner),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus | ast::UnaryOperator::Plus,
            expr,
        } => is_constant(expr),
        _ => false,
    }
}

/// Collects column-like names, function names and nested queries of an
/// unmodelled AST node.
#[derive(Default)]
struct NameCollector {
    columns: Vec<Vec<String>>,
    functions: Vec<Vec<String>>,
    has_query: bool,
}

impl Visitor for NameCollector {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.has_query = true;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => self.columns.push(vec![ident_name(ident)]),
            Expr::CompoundIdentifier(idents) => {
                self.columns.push(idents.iter().map(ident_name).collect())
            }
            Expr::Function(f) => self.functions.push(object_name_parts(&f.name)),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
