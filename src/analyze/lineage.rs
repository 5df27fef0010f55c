//! Lineage: which catalog columns each output column carries, and every
//! other use of a column (filters, joins, ordering, writes). Built by
//! walking sqlparser's AST; independent of any policy so it can be cached
//! and re-judged when the policy changes.
//!
//! Fail-closed rule for this file: a construct the walker does not model
//! either falls back to "everything inside flows, derived" or records a
//! `Hazard`, never silently drops a column.

// Guards on operator kinds keep each comparison family on one arm.
#![allow(clippy::redundant_guards)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, Ident,
    ObjectName, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableFactor, TableWithJoins, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::catalog::{Catalog, Relation};
use super::policy_view::QualifiedColumn;

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

fn as_derived(mut sources: Sources) -> Sources {
    sources.values_mut().for_each(|f| *f = Flow::Derived);
    sources
}

/// One output column, in RowDescription order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub sources: Sources,
}

/// How a column is used outside the select list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseKind {
    /// `col = v`, `col IN (...)`, equi-joins, grouping, IS NULL.
    Equality,
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
}

impl Clause {
    pub fn as_str(self) -> &'static str {
        match self {
            Clause::SelectList => "select list",
            Clause::RowCount => "arguments of a set-returning function",
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
        }
    }
}

/// A protected-or-not column used outside the select list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnUse {
    pub column: QualifiedColumn,
    pub kind: UseKind,
    pub clause: Clause,
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
}

impl HazardRule {
    pub fn as_str(self) -> &'static str {
        match self {
            HazardRule::Unanalysable => "unanalysable-statement",
            HazardRule::DynamicSql => "dynamic-sql",
            HazardRule::ServerFile => "server-file-access",
            HazardRule::SearchPath => "search-path-change",
            HazardRule::ServerCode => "server-side-code",
            HazardRule::UnknownName => "unknown-name",
            HazardRule::SensitiveCatalog => "sensitive-system-catalog",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hazard {
    pub rule: HazardRule,
    pub detail: String,
}

/// Everything a statement touches besides its output columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub uses: BTreeSet<ColumnUse>,
    /// Every relation read or written (schema, name), views included.
    pub relations: BTreeSet<(String, String)>,
    /// User-defined functions called (schema, name).
    pub user_functions: BTreeSet<(String, String)>,
    /// Functions (re)defined, renamed or moved (schema, name): a role must
    /// not redefine one the policy allows it to call.
    pub defined_functions: BTreeSet<(String, String)>,
    pub sinks: BTreeSet<Sink>,
    pub hazards: BTreeSet<Hazard>,
}

impl Effects {
    fn absorb(&mut self, other: &Effects) {
        self.uses.extend(other.uses.iter().cloned());
        self.relations.extend(other.relations.iter().cloned());
        self.user_functions
            .extend(other.user_functions.iter().cloned());
        self.defined_functions
            .extend(other.defined_functions.iter().cloned());
        self.sinks.extend(other.sinks.iter().cloned());
        self.hazards.extend(other.hazards.iter().cloned());
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

/// Built-in functions that run SQL given as text, read server files or
/// large objects, or decode WAL: they bypass lineage entirely.
const DYNAMIC_SQL_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "dblink",
    "dblink_exec",
    "dblink_send_query",
    "dblink_open",
    "dblink_fetch",
];
const SERVER_FILE_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_file_write",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "lo_from_bytea",
    "loread",
    "lowrite",
    "lo_open",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_logical_emit_message",
    // Other sessions' query texts, literals included.
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_stat_statements",
];
/// Functions whose arguments land somewhere other sessions can read.
const SINK_FUNCTIONS: &[&str] = &["pg_notify", "set_config"];
/// Functions whose result is one of their arguments' values unchanged.
const VALUE_PRESERVING_FUNCTIONS: &[&str] = &[
    "coalesce",
    "greatest",
    "least",
    "min",
    "max",
    "any_value",
    "first_value",
    "last_value",
    "nth_value",
    "lag",
    "lead",
];
/// Value-preserving functions that pick a value by comparing them.
const ORDERING_FUNCTIONS: &[&str] = &["greatest", "least", "min", "max"];
/// Functions whose result reveals nothing of their arguments' values.
const VALUE_FREE_FUNCTIONS: &[&str] = &["count", "row_number", "rank", "dense_rank", "ntile"];
/// SQL syntax that sqlparser represents as a function call but that is not a
/// pg_proc entry.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "row",
    "array",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_schema",
    "current_catalog",
    "grouping",
    "xmlelement",
    "xmlforest",
    "xmlconcat",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmlexists",
    "json_object",
    "json_array",
    "json_objectagg",
    "json_arrayagg",
    "json_scalar",
    "json_serialize",
    "json_query",
    "json_value",
    "json_exists",
];
/// Bare identifiers that are SQL value keywords, not columns.
const VALUE_KEYWORDS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_schema",
    "current_catalog",
    "default",
];
/// System relations that expose raw values of user tables.
pub const SENSITIVE_SYSTEM_RELATIONS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_largeobject",
    "pg_prepared_xacts",
];

/// Folds an identifier the way PostgreSQL does: unquoted names lower-case.
pub(crate) fn ident_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn object_name_parts(name: &ObjectName) -> Vec<String> {
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
}

impl ScopeItem {
    fn whole_row(&self) -> Sources {
        let mut sources = Sources::new();
        for column in &self.columns {
            merge_into(&mut sources, &column.sources);
        }
        as_derived(sources)
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
}

const MAX_VIEW_DEPTH: usize = 32;

/// Set-returning functions (their arguments decide the number of rows), and
/// whether each has exactly one output column.
const SET_RETURNING_FUNCTIONS: &[(&str, bool)] = &[
    ("generate_series", true),
    ("generate_subscripts", true),
    ("unnest", true),
    ("regexp_matches", true),
    ("regexp_split_to_table", true),
    ("string_to_table", true),
    ("json_array_elements", true),
    ("json_array_elements_text", true),
    ("jsonb_array_elements", true),
    ("jsonb_array_elements_text", true),
    ("json_object_keys", true),
    ("jsonb_object_keys", true),
    ("jsonb_path_query", true),
    ("pg_ls_dir", true),
    ("json_each", false),
    ("json_each_text", false),
    ("jsonb_each", false),
    ("jsonb_each_text", false),
    ("json_populate_recordset", false),
    ("jsonb_populate_recordset", false),
    ("json_to_recordset", false),
    ("jsonb_to_recordset", false),
    ("pg_options_to_table", false),
];

/// `Some(single_column)` for a known set-returning function.
fn set_returning(name: &str) -> Option<bool> {
    SET_RETURNING_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, single)| *single)
}

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
        }
    }

    fn hazard(&mut self, rule: HazardRule, detail: impl Into<String>) {
        self.effects.hazard(rule, detail);
    }

    fn use_sources(&mut self, sources: &Sources, equality_allowed: bool) {
        for (column, flow) in sources {
            let kind = if equality_allowed && *flow == Flow::Copy {
                UseKind::Equality
            } else {
                UseKind::General
            };
            self.effects.uses.insert(ColumnUse {
                column: column.clone(),
                kind,
                clause: self.clause,
            });
        }
    }

    fn with_clause<T>(&mut self, clause: Clause, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.clause, clause);
        let result = f(self);
        self.clause = saved;
        result
    }

    // ---------------------------------------------------------------- queries

    /// Lineage of a query's outputs; uses and effects go to `self.effects`.
    pub(crate) fn query(&mut self, query: &Query) -> Vec<OutputColumn> {
        let cte_mark = self.ctes.len();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = ident_name(&cte.alias.name);
                let columns = if with.recursive {
                    self.recursive_cte(&name, &cte.query, &cte.alias.columns)
                } else {
                    self.query(&cte.query)
                };
                let columns = rename_columns(columns, &cte.alias.columns);
                self.ctes.push((name, Arc::new(columns)));
            }
        }
        if !query.pipe_operators.is_empty() {
            self.hazard(HazardRule::Unanalysable, "pipe operators");
        }
        let outputs = match query.body.as_ref() {
            SetExpr::Select(select) => self.select(select, Some(query)),
            body => {
                let outputs = self.set_expr(body);
                if let Some(order_by) = &query.order_by {
                    self.order_by_outputs(order_by, &outputs, None);
                }
                self.limit(query);
                outputs
            }
        };
        self.ctes.truncate(cte_mark);
        outputs
    }

    /// A recursive CTE's columns can move into each other on every
    /// iteration, so iterate its analysis until the lineage stops growing.
    fn recursive_cte(
        &mut self,
        name: &str,
        query: &Query,
        alias_columns: &[ast::TableAliasColumnDef],
    ) -> Vec<OutputColumn> {
        let seed = match query.body.as_ref() {
            SetExpr::SetOperation { left, .. } => {
                let mut probe = Walker::new(self.catalog, self.search_path);
                probe.ctes = self.ctes.clone();
                probe.frames = std::mem::take(&mut self.frames);
                let seed = probe.set_expr(left);
                self.frames = std::mem::take(&mut probe.frames);
                rename_columns(seed, alias_columns)
            }
            _ => Vec::new(),
        };
        let mut current = seed;
        for _ in 0..8 {
            self.ctes.push((name.to_owned(), Arc::new(current.clone())));
            let next = rename_columns(self.query(query), alias_columns);
            self.ctes.pop();
            let mut merged = next.clone();
            for (out, prev) in merged.iter_mut().zip(current.iter()) {
                merge_into(&mut out.sources, &prev.sources);
            }
            if merged == current {
                return merged;
            }
            current = merged;
        }
        self.hazard(
            HazardRule::Unanalysable,
            format!("recursive CTE {name} did not converge"),
        );
        current
    }

    fn set_expr(&mut self, body: &SetExpr) -> Vec<OutputColumn> {
        match body {
            SetExpr::Select(select) => self.select(select, None),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let mut outputs = self.set_expr(left);
                let right_outputs = self.set_expr(right);
                for (out, other) in outputs.iter_mut().zip(right_outputs.iter()) {
                    merge_into(&mut out.sources, &other.sources);
                }
                // INTERSECT/EXCEPT/UNION (distinct) compare values across
                // branches: a membership test on every output column.
                let compares = !matches!(op, ast::SetOperator::Union)
                    || !matches!(set_quantifier, ast::SetQuantifier::All);
                if compares {
                    let all: Vec<Sources> = outputs.iter().map(|o| o.sources.clone()).collect();
                    self.with_clause(Clause::SetOperation, |w| {
                        all.iter().for_each(|s| w.use_sources(s, true))
                    });
                }
                outputs
            }
            SetExpr::Values(values) => self.values(values),
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement)
            | SetExpr::Merge(statement) => self.dml(statement),
            SetExpr::Table(table) => {
                let mut parts = Vec::new();
                if let Some(schema) = &table.schema_name {
                    parts.push(ident_name(schema));
                }
                if let Some(name) = &table.table_name {
                    parts.push(ident_name(name));
                }
                match self.relation_item(&parts, None) {
                    Some(item) => item.columns,
                    None => Vec::new(),
                }
            }
        }
    }

    fn values(&mut self, values: &ast::Values) -> Vec<OutputColumn> {
        let mut outputs: Vec<OutputColumn> = Vec::new();
        for row in &values.rows {
            for (i, expr) in row.content.iter().enumerate() {
                let sources = self.expr(expr);
                match outputs.get_mut(i) {
                    Some(out) => merge_into(&mut out.sources, &sources),
                    None => outputs.push(OutputColumn {
                        name: format!("column{}", i + 1),
                        sources,
                    }),
                }
            }
        }
        outputs
    }

    fn select(&mut self, select: &Select, query: Option<&Query>) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        for table in &select.from {
            let star = self.table_with_joins(table);
            if let Some(frame) = self.frames.last_mut() {
                frame.star.extend(star);
            }
        }
        if !select.lateral_views.is_empty()
            || select.top.is_some()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.prewhere.is_some()
            || !select.connect_by.is_empty()
            || select.qualify.is_some()
        {
            self.hazard(HazardRule::Unanalysable, "non-PostgreSQL SELECT clause");
        }
        if let Some(selection) = &select.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        for window in &select.named_window {
            if let ast::NamedWindowExpr::WindowSpec(spec) = &window.1 {
                self.window_spec(spec);
            }
        }
        let mut outputs = Vec::new();
        self.with_clause(Clause::SelectList, |w| {
            for item in &select.projection {
                w.select_item(item, &mut outputs);
            }
        });
        match &select.group_by {
            ast::GroupByExpr::Expressions(exprs, _) => {
                self.with_clause(Clause::GroupBy, |w| {
                    for expr in exprs {
                        let sources = w.output_reference(expr, &outputs, false);
                        w.use_sources(&sources, true);
                    }
                });
            }
            ast::GroupByExpr::All(_) => {
                let all: Vec<Sources> = outputs.iter().map(|o| o.sources.clone()).collect();
                self.with_clause(Clause::GroupBy, |w| {
                    all.iter().for_each(|s| w.use_sources(s, true))
                });
            }
        }
        if let Some(having) = &select.having {
            self.with_clause(Clause::Having, |w| w.predicate(having));
        }
        match &select.distinct {
            Some(ast::Distinct::Distinct) => {
                let all: Vec<Sources> = outputs.iter().map(|o| o.sources.clone()).collect();
                self.with_clause(Clause::Distinct, |w| {
                    all.iter().for_each(|s| w.use_sources(s, true))
                });
            }
            Some(ast::Distinct::On(exprs)) => {
                self.with_clause(Clause::Distinct, |w| {
                    for expr in exprs {
                        let sources = w.output_reference(expr, &outputs, true);
                        w.use_sources(&sources, true);
                    }
                });
            }
            Some(ast::Distinct::All) | None => {}
        }
        if let Some(query) = query {
            if let Some(order_by) = &query.order_by {
                self.order_by_outputs(order_by, &outputs, Some(()));
            }
            self.limit(query);
        }
        if let Some(into) = &select.into {
            // SELECT … INTO creates a table holding the outputs.
            for output in &outputs {
                for (column, flow) in &output.sources {
                    self.effects.sinks.insert(Sink {
                        source: column.clone(),
                        flow: *flow,
                        target: None,
                        via: "SELECT INTO",
                    });
                }
            }
            let _ = into;
        }
        self.frames.pop();
        outputs
    }

    /// GROUP BY / DISTINCT ON / ORDER BY items may name an output column by
    /// alias or position; otherwise they are expressions over the FROM list.
    ///
    /// `prefer_output`: ORDER BY and DISTINCT ON resolve a bare name to an
    /// output column first, GROUP BY to an input column first (as PostgreSQL
    /// does); resolving the wrong one would judge the wrong column.
    fn output_reference(
        &mut self,
        expr: &Expr,
        outputs: &[OutputColumn],
        prefer_output: bool,
    ) -> Sources {
        match expr {
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    // The decision depends on this literal's text.
                    self.literal_sensitive = true;
                    if let Some(out) = n
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| outputs.get(i))
                    {
                        return out.sources.clone();
                    }
                }
                Sources::new()
            }
            Expr::Identifier(ident) => {
                let name = ident_name(ident);
                let input_found = self.resolve_column(std::slice::from_ref(&name)).is_some();
                if prefer_output || !input_found {
                    let mut matched: Option<Sources> = None;
                    for out in outputs.iter().filter(|o| o.name == name) {
                        merge_into(matched.get_or_insert_with(Sources::new), &out.sources);
                    }
                    if let Some(sources) = matched {
                        return sources;
                    }
                }
                self.expr(expr)
            }
            _ => self.expr(expr),
        }
    }

    fn order_by_outputs(
        &mut self,
        order_by: &ast::OrderBy,
        outputs: &[OutputColumn],
        frame_visible: Option<()>,
    ) {
        self.with_clause(Clause::OrderBy, |w| match &order_by.kind {
            ast::OrderByKind::Expressions(exprs) => {
                for item in exprs {
                    let sources = if frame_visible.is_some() {
                        w.output_reference(&item.expr, outputs, true)
                    } else {
                        match &item.expr {
                            Expr::Identifier(ident) => {
                                let name = ident_name(ident);
                                outputs.iter().filter(|o| o.name == name).fold(
                                    Sources::new(),
                                    |mut acc, o| {
                                        merge_into(&mut acc, &o.sources);
                                        acc
                                    },
                                )
                            }
                            other => w.output_reference(other, outputs, true),
                        }
                    };
                    w.use_sources(&sources, false);
                }
            }
            ast::OrderByKind::All(_) => {
                for out in outputs {
                    w.use_sources(&out.sources, false);
                }
            }
        });
    }

    fn limit(&mut self, query: &Query) {
        self.with_clause(Clause::Limit, |w| {
            if let Some(limit) = &query.limit_clause {
                match limit {
                    ast::LimitClause::LimitOffset {
                        limit,
                        offset,
                        limit_by,
                    } => {
                        if let Some(limit) = limit {
                            let s = w.expr(limit);
                            w.use_sources(&s, false);
                        }
                        if let Some(offset) = offset {
                            let s = w.expr(&offset.value);
                            w.use_sources(&s, false);
                        }
                        for e in limit_by {
                            let s = w.expr(e);
                            w.use_sources(&s, false);
                        }
                    }
                    ast::LimitClause::OffsetCommaLimit { offset, limit } => {
                        let s = w.expr(offset);
                        w.use_sources(&s, false);
                        let s = w.expr(limit);
                        w.use_sources(&s, false);
                    }
                }
            }
            if let Some(fetch) = &query.fetch {
                if let Some(quantity) = &fetch.quantity {
                    let s = w.expr(quantity);
                    w.use_sources(&s, false);
                }
            }
        });
    }

    fn select_item(&mut self, item: &SelectItem, outputs: &mut Vec<OutputColumn>) {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let sources = self.expr(expr);
                outputs.push(OutputColumn {
                    name: default_column_name(expr),
                    sources,
                });
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let sources = self.expr(expr);
                outputs.push(OutputColumn {
                    name: ident_name(alias),
                    sources,
                });
            }
            SelectItem::ExprWithAliases { expr, aliases } => {
                let sources = self.expr(expr);
                for alias in aliases {
                    outputs.push(OutputColumn {
                        name: ident_name(alias),
                        sources: sources.clone(),
                    });
                }
            }
            SelectItem::Wildcard(options) => {
                if wildcard_has_options(options) {
                    self.hazard(HazardRule::Unanalysable, "wildcard options");
                }
                let star = self
                    .frames
                    .last()
                    .map(|f| f.star.clone())
                    .unwrap_or_default();
                if self
                    .frames
                    .last()
                    .is_some_and(|f| f.items.iter().any(|i| i.opaque))
                {
                    // Output positions after an item of unknown width are
                    // unknown too: masks could land on the wrong column.
                    self.hazard(
                        HazardRule::Unanalysable,
                        "* over a FROM item whose columns are not known; list the columns",
                    );
                }
                outputs.extend(star);
            }
            SelectItem::QualifiedWildcard(kind, options) => {
                if wildcard_has_options(options) {
                    self.hazard(HazardRule::Unanalysable, "wildcard options");
                }
                match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        let parts = object_name_parts(name);
                        match self.find_item(&parts) {
                            Some(item) if item.opaque => {
                                self.hazard(
                                    HazardRule::Unanalysable,
                                    format!(
                                        "{}.* has columns pgveil does not know; list them",
                                        parts.join(".")
                                    ),
                                );
                                outputs.extend(item.columns);
                            }
                            Some(item) => outputs.extend(item.columns),
                            None => self.hazard(
                                HazardRule::UnknownName,
                                format!("{}.* does not name a FROM item", parts.join(".")),
                            ),
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => {
                        // (composite).* expands to unknown fields of a value.
                        let sources = as_derived(self.expr(expr));
                        self.hazard(HazardRule::Unanalysable, "(expression).* expansion");
                        outputs.push(OutputColumn {
                            name: "?column?".into(),
                            sources,
                        });
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ FROM list

    /// Registers the items of one FROM entry; returns its `*` columns.
    fn table_with_joins(&mut self, table: &TableWithJoins) -> Vec<OutputColumn> {
        let mut star = self.table_factor(&table.relation);
        for join in &table.joins {
            let right = self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                ast::JoinOperator::Join(c)
                | ast::JoinOperator::Inner(c)
                | ast::JoinOperator::Left(c)
                | ast::JoinOperator::LeftOuter(c)
                | ast::JoinOperator::Right(c)
                | ast::JoinOperator::RightOuter(c)
                | ast::JoinOperator::FullOuter(c)
                | ast::JoinOperator::CrossJoin(c)
                | ast::JoinOperator::Semi(c)
                | ast::JoinOperator::LeftSemi(c)
                | ast::JoinOperator::RightSemi(c)
                | ast::JoinOperator::Anti(c)
                | ast::JoinOperator::LeftAnti(c)
                | ast::JoinOperator::RightAnti(c)
                | ast::JoinOperator::StraightJoin(c) => Some(c),
                ast::JoinOperator::CrossApply | ast::JoinOperator::OuterApply => None,
                _ => {
                    self.hazard(HazardRule::Unanalysable, "non-PostgreSQL join");
                    None
                }
            };
            star = match constraint {
                Some(ast::JoinConstraint::On(on)) => {
                    self.with_clause(Clause::JoinOn, |w| w.predicate(on));
                    star.into_iter().chain(right).collect()
                }
                Some(ast::JoinConstraint::Using(names)) => {
                    let names: Vec<String> = names
                        .iter()
                        .filter_map(|n| object_name_parts(n).pop())
                        .collect();
                    self.merge_join_columns(star, right, &names)
                }
                Some(ast::JoinConstraint::Natural) => {
                    let names: Vec<String> = star
                        .iter()
                        .filter(|l| right.iter().any(|r| r.name == l.name))
                        .map(|l| l.name.clone())
                        .collect();
                    self.merge_join_columns(star, right, &names)
                }
                Some(ast::JoinConstraint::UsingAlias(..)) => {
                    self.hazard(HazardRule::Unanalysable, "USING … AS alias");
                    star.into_iter().chain(right).collect()
                }
                Some(ast::JoinConstraint::None) | None => star.into_iter().chain(right).collect(),
            };
        }
        star
    }

    /// USING / NATURAL: the common columns come first, once, and the join
    /// compares them for equality.
    fn merge_join_columns(
        &mut self,
        left: Vec<OutputColumn>,
        right: Vec<OutputColumn>,
        names: &[String],
    ) -> Vec<OutputColumn> {
        let mut merged = Vec::new();
        for name in names {
            let mut sources = Sources::new();
            for side in [&left, &right] {
                if let Some(col) = side.iter().find(|c| &c.name == name) {
                    merge_into(&mut sources, &col.sources);
                }
            }
            self.with_clause(Clause::JoinOn, |w| w.use_sources(&sources, true));
            merged.push(OutputColumn {
                name: name.clone(),
                sources,
            });
        }
        merged.extend(left.into_iter().filter(|c| !names.contains(&c.name)));
        merged.extend(right.into_iter().filter(|c| !names.contains(&c.name)));
        merged
    }

    fn push_item(&mut self, item: ScopeItem) {
        if let Some(frame) = self.frames.last_mut() {
            frame.items.push(item);
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Vec<OutputColumn> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                sample,
                version,
                ..
            } => {
                if let Some(args) = args {
                    // `FROM f(args)` parsed as a table with arguments.
                    return self.table_function(name, &args.args, alias.as_ref());
                }
                if version.is_some() || sample.is_some() {
                    self.hazard(HazardRule::Unanalysable, "table version or sample");
                }
                let parts = object_name_parts(name);
                match self.relation_item(&parts, alias.as_ref()) {
                    Some(item) => {
                        let columns = item.columns.clone();
                        self.push_item(item);
                        columns
                    }
                    None => Vec::new(),
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let columns = self.query(subquery);
                let columns = match alias {
                    Some(alias) => rename_columns(columns, &alias.columns),
                    None => columns,
                };
                self.push_item(ScopeItem {
                    alias: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_default(),
                    relation: None,
                    columns: columns.clone(),
                    opaque: false,
                    opaque_sources: Sources::new(),
                });
                columns
            }
            TableFactor::Function {
                name, args, alias, ..
            } => self.table_function(name, args, alias.as_ref()),
            TableFactor::TableFunction { expr, alias } => {
                let sources = as_derived(self.expr(expr));
                self.opaque_function_item(sources, alias.as_ref())
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let mut columns = Vec::new();
                for (i, e) in array_exprs.iter().enumerate() {
                    // unnest hands out the array's elements unchanged.
                    let sources = self.expr(e);
                    columns.push(OutputColumn {
                        name: if array_exprs.len() == 1 {
                            "unnest".into()
                        } else {
                            format!("unnest{}", i + 1)
                        },
                        sources,
                    });
                }
                let columns = match alias {
                    Some(a) => rename_columns(columns, &a.columns),
                    None => columns,
                };
                self.push_item(ScopeItem {
                    alias: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_else(|| "unnest".into()),
                    relation: None,
                    columns: columns.clone(),
                    opaque: false,
                    opaque_sources: Sources::new(),
                });
                columns
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let columns = self.table_with_joins(table_with_joins);
                if let Some(alias) = alias {
                    let columns = rename_columns(columns, &alias.columns);
                    self.push_item(ScopeItem {
                        alias: ident_name(&alias.name),
                        relation: None,
                        columns: columns.clone(),
                        opaque: false,
                        opaque_sources: Sources::new(),
                    });
                    return columns;
                }
                columns
            }
            other => {
                // JSON_TABLE, XMLTABLE and non-PostgreSQL forms: whatever
                // they read flows into columns we cannot name.
                self.generic_scan_node(other);
                self.hazard(
                    HazardRule::Unanalysable,
                    "table expression not modelled (JSON_TABLE/XMLTABLE/…)",
                );
                Vec::new()
            }
        }
    }

    /// `FROM generate_series(…) AS g(x)`: outputs derived from arguments.
    fn table_function(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&ast::TableAlias>,
    ) -> Vec<OutputColumn> {
        let parts = object_name_parts(name);
        self.check_function(&parts);
        let mut sources = Sources::new();
        for arg in args {
            let s = self.function_arg(arg);
            merge_into(&mut sources, &s);
        }
        // How many rows a FROM function yields depends on its arguments.
        self.with_clause(Clause::RowCount, |w| w.use_sources(&sources, false));
        let bare = parts.last().cloned().unwrap_or_default();
        // unnest(array) returns the elements themselves.
        let sources = if bare == "unnest" {
            sources
        } else {
            as_derived(sources)
        };
        let alias_name = alias.map(|a| ident_name(&a.name)).unwrap_or(bare.clone());
        let listed = alias.is_some_and(|a| !a.columns.is_empty());
        // Functions known to return one column; others (OUT parameters,
        // records) have a shape pgveil does not know.
        let single = set_returning(&bare) == Some(true);
        let column_names: Vec<String> = match alias {
            Some(a) if !a.columns.is_empty() => {
                a.columns.iter().map(|c| ident_name(&c.name)).collect()
            }
            _ => vec![alias.map(|a| ident_name(&a.name)).unwrap_or(bare)],
        };
        let columns: Vec<OutputColumn> = column_names
            .into_iter()
            .map(|name| OutputColumn {
                name,
                sources: sources.clone(),
            })
            .collect();
        let opaque = !listed && !single;
        self.push_item(ScopeItem {
            alias: alias_name,
            relation: None,
            columns: columns.clone(),
            opaque,
            opaque_sources: if opaque { sources } else { Sources::new() },
        });
        columns
    }

    fn opaque_function_item(
        &mut self,
        sources: Sources,
        alias: Option<&ast::TableAlias>,
    ) -> Vec<OutputColumn> {
        let columns: Vec<OutputColumn> = alias
            .map(|a| {
                a.columns
                    .iter()
                    .map(|c| OutputColumn {
                        name: ident_name(&c.name),
                        sources: sources.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.push_item(ScopeItem {
            alias: alias.map(|a| ident_name(&a.name)).unwrap_or_default(),
            relation: None,
            columns: columns.clone(),
            opaque: columns.is_empty(),
            opaque_sources: sources,
        });
        columns
    }

    /// A named relation: CTE, table, view. Records the relation as read.
    fn relation_item(
        &mut self,
        parts: &[String],
        alias: Option<&ast::TableAlias>,
    ) -> Option<ScopeItem> {
        let alias_name = alias.map(|a| ident_name(&a.name));
        if parts.len() == 1 {
            if let Some((_, columns)) = self.ctes.iter().rev().find(|(n, _)| n == &parts[0]) {
                let columns = (**columns).clone();
                let columns = match alias {
                    Some(a) => rename_columns(columns, &a.columns),
                    None => columns,
                };
                return Some(ScopeItem {
                    alias: alias_name.unwrap_or_else(|| parts[0].clone()),
                    relation: None,
                    columns,
                    opaque: false,
                    opaque_sources: Sources::new(),
                });
            }
        }
        let relation = match parts {
            [name] => self.catalog.resolve_relation(self.search_path, name),
            [schema, name] => self.catalog.relation(schema, name),
            [database, schema, name] if database == self.catalog.database() => {
                self.catalog.relation(schema, name)
            }
            _ => None,
        };
        let Some(relation) = relation else {
            self.hazard(
                HazardRule::UnknownName,
                format!("relation {} is not in the catalog", parts.join(".")),
            );
            return Some(ScopeItem {
                alias: alias_name.unwrap_or_else(|| parts.last().cloned().unwrap_or_default()),
                relation: None,
                columns: Vec::new(),
                opaque: true,
                opaque_sources: Sources::new(),
            });
        };
        self.effects
            .relations
            .insert((relation.schema.clone(), relation.name.clone()));
        if relation.is_system() && SENSITIVE_SYSTEM_RELATIONS.contains(&relation.name.as_str()) {
            self.hazard(
                HazardRule::SensitiveCatalog,
                format!(
                    "{}.{} exposes raw column values",
                    relation.schema, relation.name
                ),
            );
        }
        // pg_stat_statements lives in whatever schema the extension went to.
        if relation.name == "pg_stat_statements" && !relation.is_system() {
            self.hazard(
                HazardRule::SensitiveCatalog,
                "pg_stat_statements exposes query texts",
            );
        }
        let columns = self.relation_columns(relation);
        let columns = match alias {
            Some(a) => rename_columns(columns, &a.columns),
            None => columns,
        };
        Some(ScopeItem {
            alias: alias_name.unwrap_or_else(|| relation.name.clone()),
            relation: Some((relation.schema.clone(), relation.name.clone())),
            columns,
            opaque: false,
            opaque_sources: Sources::new(),
        })
    }

    /// A relation's columns with their lineage; a view's columns carry both
    /// the view column itself and what its definition reads.
    pub(crate) fn relation_columns(&mut self, relation: &Relation) -> Vec<OutputColumn> {
        let own = |name: &str| QualifiedColumn {
            schema: relation.schema.clone(),
            table: relation.name.clone(),
            column: name.to_owned(),
        };
        let mut columns: Vec<OutputColumn> = relation
            .columns
            .iter()
            .map(|c| OutputColumn {
                name: c.name.clone(),
                sources: Sources::from([(own(&c.name), Flow::Copy)]),
            })
            .collect();
        // Partitions and inheritance children carry their ancestors' columns.
        let mut ancestors: Vec<&Relation> = Vec::new();
        let mut pending: Vec<&(String, String)> = relation.parents.iter().collect();
        while let Some((schema, name)) = pending.pop() {
            match self.catalog.relation(schema, name) {
                Some(parent) if ancestors.len() < MAX_VIEW_DEPTH => {
                    pending.extend(parent.parents.iter());
                    ancestors.push(parent);
                }
                Some(_) => {}
                None => self.hazard(
                    HazardRule::UnknownName,
                    format!(
                        "parent {schema}.{name} of {} is not in the catalog",
                        relation.name
                    ),
                ),
            }
        }
        for ancestor in ancestors {
            for column in columns.iter_mut() {
                if ancestor.columns.iter().any(|c| c.name == column.name) {
                    column.sources.insert(
                        QualifiedColumn {
                            schema: ancestor.schema.clone(),
                            table: ancestor.name.clone(),
                            column: column.name.clone(),
                        },
                        Flow::Copy,
                    );
                }
            }
        }
        if relation.has_definition() && !relation.is_system() {
            let lineage = self.view_lineage(relation);
            self.effects.absorb(&lineage.effects);
            for (column, view_column) in columns.iter_mut().zip(lineage.columns.iter()) {
                merge_into(&mut column.sources, &view_column.sources);
            }
        }
        columns
    }

    fn view_lineage(&mut self, relation: &Relation) -> Arc<RelationLineage> {
        if let Some(lineage) = relation.view_lineage.get() {
            return Arc::clone(lineage);
        }
        let lineage = if self.view_depth >= MAX_VIEW_DEPTH {
            let mut effects = Effects::default();
            effects.hazard(HazardRule::Unanalysable, "views nested too deeply");
            RelationLineage {
                columns: Vec::new(),
                effects,
            }
        } else {
            analyse_view(self.catalog, relation, self.view_depth + 1)
        };
        let lineage = Arc::new(lineage);
        // Another thread may have won the race; either value is identical.
        let _ = relation.view_lineage.set(Arc::clone(&lineage));
        lineage
    }

    // ----------------------------------------------------------- name lookup

    fn find_item(&self, qualifier: &[String]) -> Option<ScopeItem> {
        for frame in self.frames.iter().rev() {
            for item in frame.items.iter().rev() {
                let matches = match qualifier {
                    [alias] => &item.alias == alias,
                    [schema, table] => item
                        .relation
                        .as_ref()
                        .is_some_and(|(s, t)| s == schema && t == table && &item.alias == table),
                    [_, schema, table] => item
                        .relation
                        .as_ref()
                        .is_some_and(|(s, t)| s == schema && t == table),
                    _ => false,
                };
                if matches {
                    return Some(item.clone());
                }
            }
        }
        None
    }

    /// `ctid`, `t.xmin` …: a system column of a catalog relation in scope.
    fn is_system_column(&self, parts: &[String]) -> bool {
        const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "ctid", "xmin", "xmax", "cmin", "cmax"];
        let Some((column, qualifier)) = parts.split_last() else {
            return false;
        };
        if !SYSTEM_COLUMNS.contains(&column.as_str()) {
            return false;
        }
        if qualifier.is_empty() {
            // Unqualified: every item of the innermost level must be a table.
            self.frames.last().is_some_and(|f| {
                !f.items.is_empty() && f.items.iter().all(|i| i.relation.is_some() && !i.opaque)
            })
        } else {
            self.find_item(qualifier)
                .is_some_and(|i| i.relation.is_some() && !i.opaque)
        }
    }

    /// Resolves `col`, `t.col`, `s.t.col`; `None` when nothing matches.
    fn resolve_column(&self, parts: &[String]) -> Option<Sources> {
        let (qualifier, column) = parts.split_last().map(|(c, q)| (q, c))?;
        if qualifier.is_empty() {
            for frame in self.frames.iter().rev() {
                let mut found: Option<Sources> = None;
                for item in &frame.items {
                    if let Some(col) = item.columns.iter().find(|c| &c.name == column) {
                        let acc = found.get_or_insert_with(Sources::new);
                        merge_into(acc, &col.sources);
                    } else if item.opaque {
                        let acc = found.get_or_insert_with(Sources::new);
                        merge_into(acc, &item.opaque_sources);
                    }
                }
                if found.is_some() {
                    return found;
                }
            }
            return None;
        }
        let item = self.find_item(qualifier)?;
        match item.columns.iter().find(|c| &c.name == column) {
            Some(col) => Some(col.sources.clone()),
            None if item.opaque => Some(item.opaque_sources.clone()),
            None => None,
        }
    }

    fn identifier(&mut self, parts: &[String]) -> Sources {
        if let Some(sources) = self.resolve_column(parts) {
            return sources;
        }
        // System columns of a table (ctid, xmin …) hold no row data; only
        // when no FROM item has a real column of that name.
        if self.is_system_column(parts) {
            return Sources::new();
        }
        // A bare FROM-item name is a whole-row reference.
        if let Some(item) = self.find_item(parts) {
            return item.whole_row();
        }
        // `t.col.field` — a field of a composite column.
        if parts.len() >= 2 {
            if let Some(sources) = self.resolve_column(&parts[..parts.len() - 1]) {
                return as_derived(sources);
            }
        }
        if let [name] = parts {
            if VALUE_KEYWORDS.contains(&name.as_str()) {
                return Sources::new();
            }
        }
        self.hazard(
            HazardRule::UnknownName,
            format!("column {} could not be resolved", parts.join(".")),
        );
        Sources::new()
    }

    // ---------------------------------------------------------- expressions

    /// Records a boolean condition's column uses.
    pub(crate) fn predicate(&mut self, expr: &Expr) {
        use ast::BinaryOperator as Op;
        match expr {
            Expr::Nested(inner) => self.predicate(inner),
            Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                expr,
            } => self.predicate(expr),
            Expr::BinaryOp { left, op, right } if matches!(op, Op::And | Op::Or) => {
                self.predicate(left);
                self.predicate(right);
            }
            Expr::BinaryOp { left, op, right }
                if matches!(op, Op::Eq | Op::NotEq | Op::Spaceship) =>
            {
                let l = self.expr(left);
                let r = self.expr(right);
                self.use_sources(&l, true);
                self.use_sources(&r, true);
            }
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                let l = self.expr(left);
                let r = self.expr(right);
                self.use_sources(&l, true);
                self.use_sources(&r, true);
            }
            Expr::In {
                expr: lhs,
                target,
                negated: _,
                global: _,
            } => {
                let l = self.expr(lhs);
                self.use_sources(&l, true);
                match target {
                    ast::InTarget::List(list) => {
                        for item in list {
                            let s = self.expr(item);
                            self.use_sources(&s, true);
                        }
                    }
                    ast::InTarget::Subquery(query) => {
                        let outputs = self.query(query);
                        for out in &outputs {
                            self.use_sources(&out.sources, true);
                        }
                    }
                    ast::InTarget::Unnest(e) => {
                        let s = self.expr(e);
                        self.use_sources(&s, true);
                    }
                    ast::InTarget::Table { .. } => {
                        self.hazard(HazardRule::Unanalysable, "IN table");
                    }
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } if matches!(compare_op, Op::Eq) => {
                let l = self.expr(left);
                let r = self.expr(right);
                self.use_sources(&l, true);
                self.use_sources(&r, true);
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let s = self.expr(inner);
                self.use_sources(&s, true);
            }
            Expr::Exists { subquery, .. } => {
                let _ = self.query(subquery);
            }
            other => match general_operands(other) {
                // Ranges, LIKE, IS TRUE …: every operand is a general use.
                Some(operands) => {
                    for operand in operands {
                        let s = self.expr(operand);
                        self.use_sources(&s, false);
                    }
                }
                None => {
                    let s = self.expr(other);
                    self.use_sources(&s, false);
                }
            },
        }
    }

    /// The value lineage of an expression; conditions inside it (CASE WHEN,
    /// comparisons, subquery filters) are recorded as uses.
    pub(crate) fn expr(&mut self, expr: &Expr) -> Sources {
        use ast::BinaryOperator as Op;
        match expr {
            Expr::Identifier(ident) => self.identifier(&[ident_name(ident)]),
            Expr::CompoundIdentifier(idents) => {
                let parts: Vec<String> = idents.iter().map(ident_name).collect();
                self.identifier(&parts)
            }
            Expr::QualifiedWildcard(name, _) => {
                let parts = object_name_parts(name);
                match self.find_item(&parts) {
                    Some(item) => item.whole_row(),
                    None => self.identifier(&parts),
                }
            }
            Expr::Wildcard(_) => Sources::new(),
            Expr::Value(_) | Expr::TypedString(_) => Sources::new(),
            Expr::Interval(interval) => as_derived(self.expr(&interval.value)),
            Expr::Nested(inner) => self.expr(inner),
            Expr::Collate { expr, .. } => self.expr(expr),
            Expr::Cast {
                expr, data_type, ..
            } => {
                let sources = self.expr(expr);
                // A cast to a text type keeps the value's bytes; any other
                // cast computes a new value (and can quote it in an error).
                if is_text_type(data_type) {
                    sources
                } else {
                    as_derived(sources)
                }
            }
            // Comparisons yield a boolean: record the use, no value flows.
            Expr::BinaryOp { op, .. }
                if matches!(
                    op,
                    Op::Eq
                        | Op::NotEq
                        | Op::Lt
                        | Op::LtEq
                        | Op::Gt
                        | Op::GtEq
                        | Op::Spaceship
                        | Op::And
                        | Op::Or
                ) =>
            {
                self.predicate(expr);
                Sources::new()
            }
            Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::In { .. }
            | Expr::Exists { .. }
            | Expr::AnyOp { .. }
            | Expr::AllOp { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::SimilarTo { .. }
            | Expr::RLike { .. }
            | Expr::IsJson { .. }
            | Expr::IsNormalized { .. } => {
                self.predicate(expr);
                Sources::new()
            }
            Expr::UnaryOp {
                op: ast::UnaryOperator::Not,
                ..
            } => {
                self.predicate(expr);
                Sources::new()
            }
            Expr::BinaryOp { left, right, .. } => {
                let mut s = self.expr(left);
                merge_into(&mut s, &self.expr(right));
                as_derived(s)
            }
            Expr::UnaryOp { expr, .. } => as_derived(self.expr(expr)),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut result = Sources::new();
                let operand_sources = operand.as_ref().map(|o| self.expr(o));
                for when in conditions {
                    match &operand_sources {
                        // CASE x WHEN v: an equality test of x against v.
                        Some(op) => {
                            let op = op.clone();
                            let v = self.expr(&when.condition);
                            self.use_sources(&op, true);
                            self.use_sources(&v, true);
                        }
                        None => self.predicate(&when.condition),
                    }
                    let r = self.expr(&when.result);
                    merge_into(&mut result, &r);
                }
                if let Some(else_result) = else_result {
                    let r = self.expr(else_result);
                    merge_into(&mut result, &r);
                }
                result
            }
            Expr::Function(function) => self.function(function),
            Expr::Subquery(query) => {
                let outputs = self.query(query);
                let mut sources = Sources::new();
                for out in &outputs {
                    merge_into(&mut sources, &out.sources);
                }
                if outputs.len() != 1 {
                    sources = as_derived(sources);
                }
                sources
            }
            Expr::Tuple(items) | Expr::Array(ast::Array { elem: items, .. }) => {
                let mut s = Sources::new();
                for item in items {
                    let e = self.expr(item);
                    merge_into(&mut s, &e);
                }
                as_derived(s)
            }
            Expr::Extract { expr, .. }
            | Expr::Ceil { expr, .. }
            | Expr::Floor { expr, .. }
            | Expr::AtTimeZone {
                timestamp: expr, ..
            } => as_derived(self.expr(expr)),
            Expr::Position { expr, r#in } => {
                let mut s = self.expr(expr);
                merge_into(&mut s, &self.expr(r#in));
                as_derived(s)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut s = self.expr(expr);
                for e in [substring_from, substring_for].into_iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let mut s = self.expr(expr);
                if let Some(what) = trim_what {
                    merge_into(&mut s, &self.expr(what));
                }
                for e in trim_characters.iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                let mut s = self.expr(expr);
                merge_into(&mut s, &self.expr(overlay_what));
                merge_into(&mut s, &self.expr(overlay_from));
                if let Some(e) = overlay_for {
                    merge_into(&mut s, &self.expr(e));
                }
                as_derived(s)
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                // `(alias).column` of a whole-row reference is that column.
                if let (Expr::Nested(inner), [ast::AccessExpr::Dot(Expr::Identifier(field))]) =
                    (root.as_ref(), access_chain.as_slice())
                {
                    if let Expr::Identifier(alias) = inner.as_ref() {
                        let alias = ident_name(alias);
                        if self.resolve_column(std::slice::from_ref(&alias)).is_none() {
                            let parts = [alias, ident_name(field)];
                            if let Some(sources) = self.resolve_column(&parts) {
                                return sources;
                            }
                        }
                    }
                }
                let mut s = self.expr(root);
                for access in access_chain {
                    match access {
                        ast::AccessExpr::Dot(e) => {
                            // `(row).field`: a field name, not a column.
                            if !matches!(e, Expr::Identifier(_)) {
                                merge_into(&mut s, &self.expr(e));
                            }
                        }
                        ast::AccessExpr::Subscript(sub) => {
                            self.generic_scan_node(sub);
                        }
                    }
                }
                as_derived(s)
            }
            Expr::JsonAccess { value, .. } => as_derived(self.expr(value)),
            Expr::Prefixed { value, .. } => self.expr(value),
            Expr::Named { expr, .. } => self.expr(expr),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                let mut s = Sources::new();
                for e in sets.iter().flatten() {
                    merge_into(&mut s, &self.expr(e));
                }
                s
            }
            other => {
                self.generic_scan_node(other);
                self.hazard(
                    HazardRule::Unanalysable,
                    format!(
                        "expression form not modelled: {}",
                        truncate(&other.to_string())
                    ),
                );
                Sources::new()
            }
        }
    }

    fn function_arg(&mut self, arg: &FunctionArg) -> Sources {
        let arg_expr = match arg {
            FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
            FunctionArg::Unnamed(arg) => arg,
        };
        match arg_expr {
            FunctionArgExpr::Expr(e) => self.expr(e),
            FunctionArgExpr::QualifiedWildcard(name) => {
                let parts = object_name_parts(name);
                match self.find_item(&parts) {
                    Some(item) => item.whole_row(),
                    None => self.identifier(&parts),
                }
            }
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => Sources::new(),
        }
    }

    /// Checks the function is known and allowed; records hazards.
    pub(crate) fn check_function(&mut self, parts: &[String]) {
        let (schema, name) = match parts {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("function {}", parts.join(".")),
                );
                return;
            }
        };
        let builtin_schema = schema.is_none_or(|s| s == "pg_catalog");
        if builtin_schema && DYNAMIC_SQL_FUNCTIONS.contains(&name) {
            self.hazard(
                HazardRule::DynamicSql,
                format!("{name}() runs SQL pgveil cannot see"),
            );
        }
        if DYNAMIC_SQL_FUNCTIONS.contains(&name) && name.starts_with("dblink") {
            self.hazard(HazardRule::DynamicSql, format!("{name}() runs remote SQL"));
        }
        if builtin_schema && SERVER_FILE_FUNCTIONS.contains(&name) {
            self.hazard(
                HazardRule::ServerFile,
                format!("{name}() reads or writes server-side data"),
            );
        }
        if schema.is_none() && SYNTAX_FUNCTIONS.contains(&name) {
            return;
        }
        match self
            .catalog
            .resolve_function(self.search_path, schema, name)
        {
            Some(function) if function.is_builtin() => {}
            Some(function) => {
                self.effects
                    .user_functions
                    .insert((function.schema.clone(), function.name.clone()));
            }
            None => self.hazard(
                HazardRule::UnknownName,
                format!("function {} is not in the catalog", parts.join(".")),
            ),
        }
    }

    fn function(&mut self, function: &ast::Function) -> Sources {
        let parts = object_name_parts(&function.name);
        self.check_function(&parts);
        let name = parts.last().map(String::as_str).unwrap_or_default();
        let mut args: Vec<Sources> = Vec::new();
        match &function.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => {
                let outputs = self.query(query);
                for out in outputs {
                    args.push(out.sources);
                }
            }
            FunctionArguments::List(list) => {
                for arg in &list.args {
                    args.push(self.function_arg(arg));
                }
                if matches!(
                    list.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                ) {
                    // count(DISTINCT x) and friends compare values.
                    for a in &args {
                        self.use_sources(a, true);
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(items) => {
                            self.with_clause(Clause::OrderBy, |w| {
                                for item in items {
                                    let s = w.expr(&item.expr);
                                    w.use_sources(&s, false);
                                }
                            })
                        }
                        FunctionArgumentClause::Where(e) => self.predicate(e),
                        FunctionArgumentClause::Limit(e) => {
                            let s = self.expr(e);
                            self.use_sources(&s, false);
                        }
                        _ => {}
                    }
                }
            }
        }
        if !matches!(function.parameters, FunctionArguments::None) {
            self.hazard(HazardRule::Unanalysable, "parametric function call");
        }
        for item in &function.within_group {
            let s = self.expr(&item.expr);
            self.with_clause(Clause::OrderBy, |w| w.use_sources(&s, false));
        }
        if let Some(filter) = &function.filter {
            self.predicate(filter);
        }
        if let Some(over) = &function.over {
            match over {
                ast::WindowType::WindowSpec(spec) => self.window_spec(spec),
                ast::WindowType::NamedWindow(_) => {}
            }
        }
        if set_returning(name).is_some() {
            self.with_clause(Clause::RowCount, |w| {
                for a in &args {
                    w.use_sources(a, false);
                }
            });
        }
        if SINK_FUNCTIONS.contains(&name) {
            self.sink_function(name, &function.args, &args);
        }
        if ORDERING_FUNCTIONS.contains(&name) {
            // The result tells which argument or row is largest.
            for a in &args {
                self.use_sources(a, false);
            }
        }
        let mut sources = Sources::new();
        if VALUE_FREE_FUNCTIONS.contains(&name) {
            return sources;
        }
        if name == "nullif" {
            // NULLIF(a, b) is a or NULL after comparing a = b.
            if let Some(second) = args.get(1) {
                let second = second.clone();
                self.with_clause(self.clause, |w| w.use_sources(&second, true));
            }
            if let Some(first) = args.first() {
                let first = first.clone();
                self.use_sources(&first, true);
                return first;
            }
            return sources;
        }
        for a in &args {
            merge_into(&mut sources, a);
        }
        if VALUE_PRESERVING_FUNCTIONS.contains(&name) {
            sources
        } else {
            as_derived(sources)
        }
    }

    fn sink_function(&mut self, name: &str, raw_args: &FunctionArguments, args: &[Sources]) {
        for a in args {
            for (column, flow) in a {
                self.effects.sinks.insert(Sink {
                    source: column.clone(),
                    flow: *flow,
                    target: None,
                    via: if name == "pg_notify" {
                        "pg_notify"
                    } else {
                        "set_config"
                    },
                });
            }
        }
        if name == "set_config" {
            // Whether it changes search_path depends on the literal.
            self.literal_sensitive = true;
            let first = match raw_args {
                FunctionArguments::List(list) => list.args.first(),
                _ => None,
            };
            let literal = match first {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => {
                    match &v.value {
                        Value::SingleQuotedString(s) => Some(s.to_lowercase()),
                        _ => None,
                    }
                }
                _ => None,
            };
            match literal {
                Some(setting) if setting.trim() != "search_path" => {}
                _ => self.hazard(HazardRule::SearchPath, "set_config may change search_path"),
            }
        }
    }

    fn window_spec(&mut self, spec: &ast::WindowSpec) {
        self.with_clause(Clause::Window, |w| {
            for e in &spec.partition_by {
                let s = w.expr(e);
                w.use_sources(&s, true);
            }
            for item in &spec.order_by {
                let s = w.expr(&item.expr);
                w.use_sources(&s, false);
            }
        });
        if let Some(frame) = &spec.window_frame {
            self.generic_scan_node(frame);
        }
    }

    /// Anything not modelled: every column it mentions is a general use and
    /// any subquery inside is analysed in the current scope.
    pub(crate) fn generic_scan_node<T: Visit>(&mut self, node: &T) {
        let mut collector = NameCollector::default();
        let _ = node.visit(&mut collector);
        for parts in collector.columns {
            if let Some(sources) = self.resolve_column(&parts) {
                self.use_sources(&sources, false);
            } else if parts.len() == 1 && VALUE_KEYWORDS.contains(&parts[0].as_str()) {
            } else {
                self.hazard(
                    HazardRule::UnknownName,
                    format!("name {} could not be resolved", parts.join(".")),
                );
            }
        }
        for function in collector.functions {
            self.check_function(&function);
        }
        if collector.has_query {
            self.hazard(
                HazardRule::Unanalysable,
                "subquery inside an expression form pgveil does not model",
            );
        }
    }

    // ------------------------------------------------------------------ DML

    /// Analyses INSERT/UPDATE/DELETE/MERGE; returns RETURNING outputs.
    pub(crate) fn dml(&mut self, statement: &Statement) -> Vec<OutputColumn> {
        match statement {
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => self.update(update),
            Statement::Delete(delete) => self.delete(delete),
            Statement::Merge(merge) => self.merge(merge),
            other => {
                self.hazard(
                    HazardRule::Unanalysable,
                    format!("statement in a CTE: {}", truncate(&other.to_string())),
                );
                Vec::new()
            }
        }
    }

    fn target_item(&mut self, name: &ObjectName, alias: Option<Ident>) -> Option<ScopeItem> {
        let parts = object_name_parts(name);
        let alias = alias.map(|a| ast::TableAlias {
            explicit: true,
            name: a,
            columns: Vec::new(),
            at: None,
        });
        self.relation_item(&parts, alias.as_ref())
    }

    fn write_sinks(
        &mut self,
        target: &ScopeItem,
        column: &str,
        sources: &Sources,
        via: &'static str,
    ) {
        let target_column = target.relation.as_ref().map(|(s, t)| QualifiedColumn {
            schema: s.clone(),
            table: t.clone(),
            column: column.to_owned(),
        });
        for (source, flow) in sources {
            self.effects.sinks.insert(Sink {
                source: source.clone(),
                flow: *flow,
                target: target_column.clone(),
                via,
            });
        }
    }

    fn returning(&mut self, items: Option<&Vec<SelectItem>>) -> Vec<OutputColumn> {
        let mut outputs = Vec::new();
        if let Some(items) = items {
            self.with_clause(Clause::Returning, |w| {
                for item in items {
                    w.select_item(item, &mut outputs);
                }
            });
        }
        outputs
    }

    fn insert(&mut self, insert: &ast::Insert) -> Vec<OutputColumn> {
        let ast::TableObject::TableName(name) = &insert.table else {
            self.hazard(HazardRule::Unanalysable, "INSERT into a table function");
            return Vec::new();
        };
        let alias = insert.table_alias.as_ref().map(|a| a.alias.clone());
        let Some(target) = self.target_item(name, alias) else {
            return Vec::new();
        };
        let target_columns: Vec<String> = if insert.columns.is_empty() {
            target.columns.iter().map(|c| c.name.clone()).collect()
        } else {
            insert
                .columns
                .iter()
                .filter_map(|c| object_name_parts(c).pop())
                .collect()
        };
        let source_outputs = match &insert.source {
            Some(query) => {
                self.frames.push(Frame::default());
                let outputs = self.query(query);
                self.frames.pop();
                outputs
            }
            None => Vec::new(),
        };
        for (column, output) in target_columns.iter().zip(source_outputs.iter()) {
            self.write_sinks(&target, column, &output.sources, "INSERT");
        }
        if !insert.assignments.is_empty() {
            self.hazard(HazardRule::Unanalysable, "INSERT … SET");
        }
        self.frames.push(Frame::default());
        self.push_item(target.clone());
        if let Some(on) = &insert.on {
            match on {
                ast::OnInsert::OnConflict(conflict) => {
                    if let ast::OnConflictAction::DoUpdate(update) = &conflict.action {
                        // EXCLUDED holds the row that was proposed for insertion.
                        let excluded_columns = target
                            .columns
                            .iter()
                            .map(|c| {
                                let sources = target_columns
                                    .iter()
                                    .position(|t| t == &c.name)
                                    .and_then(|i| source_outputs.get(i))
                                    .map(|o| o.sources.clone())
                                    .unwrap_or_default();
                                OutputColumn {
                                    name: c.name.clone(),
                                    sources,
                                }
                            })
                            .collect();
                        self.push_item(ScopeItem {
                            alias: "excluded".into(),
                            relation: None,
                            columns: excluded_columns,
                            opaque: false,
                            opaque_sources: Sources::new(),
                        });
                        self.assignments(&target, &update.assignments, "ON CONFLICT DO UPDATE");
                        if let Some(selection) = &update.selection {
                            self.with_clause(Clause::Where, |w| w.predicate(selection));
                        }
                    }
                }
                _ => {
                    self.hazard(
                        HazardRule::Unanalysable,
                        "non-PostgreSQL ON clause of INSERT",
                    );
                }
            }
        }
        let outputs = self.returning(insert.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn assignments(
        &mut self,
        target: &ScopeItem,
        assignments: &[ast::Assignment],
        via: &'static str,
    ) {
        for assignment in assignments {
            let columns: Vec<String> = match &assignment.target {
                ast::AssignmentTarget::ColumnName(name) => {
                    object_name_parts(name).pop().into_iter().collect()
                }
                ast::AssignmentTarget::Tuple(names) => names
                    .iter()
                    .filter_map(|n| object_name_parts(n).pop())
                    .collect(),
            };
            let sources = self.with_clause(Clause::Assignment, |w| w.expr(&assignment.value));
            for column in &columns {
                self.write_sinks(target, column, &sources, via);
            }
        }
    }

    fn update(&mut self, update: &ast::Update) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        let star = self.table_with_joins(&update.table);
        let target = self
            .frames
            .last()
            .and_then(|f| f.items.first().cloned())
            .unwrap_or(ScopeItem {
                alias: String::new(),
                relation: None,
                columns: star,
                opaque: true,
                opaque_sources: Sources::new(),
            });
        if let Some(from) = &update.from {
            let tables = match from {
                ast::UpdateTableFromKind::BeforeSet(t) | ast::UpdateTableFromKind::AfterSet(t) => t,
            };
            for table in tables {
                self.table_with_joins(table);
            }
        }
        if let Some(selection) = &update.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        self.assignments(&target, &update.assignments, "UPDATE … SET");
        let outputs = self.returning(update.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn delete(&mut self, delete: &ast::Delete) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        let tables = match &delete.from {
            ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
        };
        for table in tables {
            self.table_with_joins(table);
        }
        for table in delete.using.iter().flatten() {
            self.table_with_joins(table);
        }
        if let Some(selection) = &delete.selection {
            self.with_clause(Clause::Where, |w| w.predicate(selection));
        }
        let outputs = self.returning(delete.returning.as_ref());
        self.frames.pop();
        outputs
    }

    fn merge(&mut self, merge: &ast::Merge) -> Vec<OutputColumn> {
        self.frames.push(Frame::default());
        self.table_factor(&merge.table);
        let target = self.frames.last().and_then(|f| f.items.first().cloned());
        self.table_factor(&merge.source);
        self.with_clause(Clause::JoinOn, |w| w.predicate(&merge.on));
        for clause in &merge.clauses {
            if let Some(predicate) = &clause.predicate {
                self.with_clause(Clause::Where, |w| w.predicate(predicate));
            }
            match &clause.action {
                ast::MergeAction::Update(update) => match (&update.kind, &target) {
                    (ast::MergeUpdateKind::Set(assignments), Some(target)) => {
                        self.assignments(target, assignments, "MERGE UPDATE")
                    }
                    _ => self.hazard(HazardRule::Unanalysable, "MERGE UPDATE form"),
                },
                ast::MergeAction::Insert(insert) => match (&insert.kind, &target) {
                    (ast::MergeInsertKind::Values(values), Some(target)) => {
                        let outputs = self.values(values);
                        let columns: Vec<String> = if insert.columns.is_empty() {
                            target.columns.iter().map(|c| c.name.clone()).collect()
                        } else {
                            insert
                                .columns
                                .iter()
                                .filter_map(|c| object_name_parts(c).pop())
                                .collect()
                        };
                        for (column, out) in columns.iter().zip(outputs.iter()) {
                            self.write_sinks(target, column, &out.sources, "MERGE INSERT");
                        }
                    }
                    _ => self.hazard(HazardRule::Unanalysable, "MERGE INSERT form"),
                },
                ast::MergeAction::Delete { .. } | ast::MergeAction::DoNothing { .. } => {}
            }
        }
        let outputs = match &merge.output {
            Some(ast::OutputClause::Returning { select_items, .. }) => {
                self.returning(Some(select_items))
            }
            Some(ast::OutputClause::Output { .. }) => {
                self.hazard(HazardRule::Unanalysable, "MERGE OUTPUT");
                Vec::new()
            }
            None => Vec::new(),
        };
        self.frames.pop();
        outputs
    }

    /// COPY's outputs: the listed (or all) columns of a table, or a query's.
    pub(crate) fn copy_source(&mut self, source: &ast::CopySource) -> Vec<OutputColumn> {
        match source {
            ast::CopySource::Table {
                table_name,
                columns,
            } => {
                let parts = object_name_parts(table_name);
                let Some(item) = self.relation_item(&parts, None) else {
                    return Vec::new();
                };
                if columns.is_empty() {
                    item.columns
                } else {
                    columns
                        .iter()
                        .map(|c| {
                            let name = ident_name(c);
                            let sources = item
                                .columns
                                .iter()
                                .find(|col| col.name == name)
                                .map(|col| col.sources.clone())
                                .unwrap_or_default();
                            OutputColumn { name, sources }
                        })
                        .collect()
                }
            }
            ast::CopySource::Query(query) => self.query(query),
        }
    }

    /// Renaming a table or column moves its values out from under the
    /// policy rules that name it: a write of every affected column.
    pub(crate) fn rename(&mut self, table: &ObjectName, column: Option<&Ident>) {
        let parts = object_name_parts(table);
        let Some(item) = self.relation_item(&parts, None) else {
            return;
        };
        let renamed = column.map(ident_name);
        for col in &item.columns {
            if renamed.as_ref().is_some_and(|r| r != &col.name) {
                continue;
            }
            for source in col.sources.keys() {
                self.effects.sinks.insert(Sink {
                    source: source.clone(),
                    flow: Flow::Derived,
                    target: None,
                    via: "ALTER … RENAME",
                });
            }
        }
    }

    /// DDL on `table` whose expressions (CHECK, USING, policies) read its
    /// columns: every column they mention is a general use.
    pub(crate) fn ddl_on_table<T: Visit>(&mut self, table: &ObjectName, node: &T) {
        let parts = object_name_parts(table);
        self.frames.push(Frame::default());
        if let Some(item) = self.relation_item(&parts, None) {
            self.push_item(item);
        }
        let mut collector = NameCollector::default();
        let _ = node.visit(&mut collector);
        self.with_clause(Clause::Ddl, |w| {
            for parts in &collector.columns {
                // Unresolvable names in DDL are new column names; harmless.
                if let Some(sources) = w.resolve_column(parts) {
                    w.use_sources(&sources, false);
                }
            }
            for function in &collector.functions {
                w.check_function(function);
            }
        });
        if collector.has_query {
            self.hazard(HazardRule::Unanalysable, "subquery inside DDL");
        }
        self.frames.pop();
    }
}

/// Lineage of a view, analysed like the query it stands for.
fn analyse_view(catalog: &Catalog, relation: &Relation, depth: usize) -> RelationLineage {
    let mut effects = Effects::default();
    let Some(definition) = relation.definition.as_deref() else {
        effects.hazard(
            HazardRule::Unanalysable,
            format!(
                "view {}.{} has no definition in the catalog",
                relation.schema, relation.name
            ),
        );
        return RelationLineage {
            columns: Vec::new(),
            effects,
        };
    };
    // pg_get_viewdef qualifies names not visible on the default path.
    let search_path = vec![relation.schema.clone(), "public".to_owned()];
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, definition);
    let query = match statements.as_deref() {
        Ok([Statement::Query(query)]) => query.clone(),
        _ => {
            effects.hazard(
                HazardRule::Unanalysable,
                format!(
                    "definition of view {}.{} could not be parsed",
                    relation.schema, relation.name
                ),
            );
            return RelationLineage {
                columns: Vec::new(),
                effects,
            };
        }
    };
    let mut walker = Walker::new(catalog, &search_path);
    walker.view_depth = depth;
    let outputs = walker.query(&query);
    let columns = relation
        .columns
        .iter()
        .zip(outputs)
        .map(|(c, o)| OutputColumn {
            name: c.name.clone(),
            sources: o.sources,
        })
        .collect();
    RelationLineage {
        columns,
        effects: walker.effects,
    }
}

/// Operands of a boolean test other than equality; `None` for expressions
/// that are not such a test.
fn general_operands(expr: &Expr) -> Option<Vec<&Expr>> {
    Some(match expr {
        Expr::BinaryOp { left, right, .. } => vec![left.as_ref(), right.as_ref()],
        Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
            vec![left.as_ref(), right.as_ref()]
        }
        Expr::Between {
            expr, low, high, ..
        } => vec![expr.as_ref(), low.as_ref(), high.as_ref()],
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. }
        | Expr::RLike { expr, pattern, .. } => vec![expr.as_ref(), pattern.as_ref()],
        Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e)
        | Expr::IsJson { expr: e, .. }
        | Expr::IsNormalized { expr: e, .. } => vec![e.as_ref()],
        Expr::UnaryOp { expr, .. } => vec![expr.as_ref()],
        _ => return None,
    })
}

fn rename_columns(
    mut columns: Vec<OutputColumn>,
    names: &[ast::TableAliasColumnDef],
) -> Vec<OutputColumn> {
    for (column, name) in columns.iter_mut().zip(names) {
        column.name = ident_name(&name.name);
    }
    columns
}

fn wildcard_has_options(options: &ast::WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
}

fn is_text_type(data_type: &ast::DataType) -> bool {
    use ast::DataType as T;
    match data_type {
        T::Text | T::Varchar(_) | T::CharVarying(_) | T::CharacterVarying(_) | T::String(_) => true,
        T::Custom(name, _) => matches!(
            object_name_parts(name).last().map(String::as_str),
            Some("text" | "varchar" | "citext" | "name" | "bpchar")
        ),
        _ => false,
    }
}

/// PostgreSQL's default output column name for an unaliased expression.
fn default_column_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident_name(ident),
        Expr::CompoundIdentifier(idents) => idents.last().map(ident_name).unwrap_or_default(),
        Expr::Function(f) => object_name_parts(&f.name).pop().unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => default_column_name(expr),
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(ast::AccessExpr::Dot(Expr::Identifier(field))) => ident_name(field),
            _ => "?column?".to_owned(),
        },
        // A scalar subquery is named after its one output.
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.as_slice() {
                [SelectItem::UnnamedExpr(e)] => default_column_name(e),
                [SelectItem::ExprWithAlias { alias, .. }] => ident_name(alias),
                _ => "?column?".to_owned(),
            },
            _ => "?column?".to_owned(),
        },
        Expr::Case { .. } => "case".to_owned(),
        _ => "?column?".to_owned(),
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
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
