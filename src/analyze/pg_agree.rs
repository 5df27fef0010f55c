//! The agreement check: sqlparser's tree (which the lineage walker reads)
//! must mention what PostgreSQL's own tree of the same text mentions. Any
//! difference means pgveil would analyse another statement than the one
//! the server runs (a lexing trick, a grammar corner sqlparser reads
//! differently), so the statement is not understood and is blocked for
//! masked roles (and counted in `pgveil_statements_misunderstood_total`).
//!
//! The direction checked is the one that can hide something: every
//! relation, column, function and type name in PostgreSQL's tree must be
//! in sqlparser's. sqlparser seeing more than the server only makes the
//! analysis stricter.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{self, Expr, Statement, Visit, Visitor};

use super::lineage::ident_name;
use super::pg_tree::References;

/// Functions PostgreSQL's grammar calls for SQL-standard syntax
/// (`EXTRACT(… FROM …)`, `a AT TIME ZONE b`, `TRIM(…)`, `x OVERLAPS y` …):
/// its tree names them, sqlparser's models the syntax instead. Taken from
/// the grammar's `SystemFuncName(…)` uses.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "btrim",
    "extract",
    "is_normalized",
    "json_object",
    "like_escape",
    "ltrim",
    "normalize",
    "overlaps",
    "overlay",
    "pg_collation_for",
    "position",
    "rtrim",
    "similar_to_escape",
    "substring",
    "system_user",
    "timezone",
    "xmlexists",
];

/// What sqlparser's tree of one statement mentions.
#[derive(Debug, Default)]
struct Mentions {
    /// Every identifier anywhere in the tree, folded.
    idents: BTreeSet<String>,
    relations: BTreeSet<Vec<String>>,
    columns: BTreeSet<Vec<String>>,
    functions: BTreeSet<Vec<String>>,
    /// Names of cast target types (`text`, `public.varchar`, `int4`).
    types: BTreeSet<String>,
}

fn folded(name: &ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(ident_name)
        .collect()
}

/// The name a type is spelled with, without modifiers or array bounds.
fn type_name(data_type: &ast::DataType) -> String {
    match data_type {
        ast::DataType::Custom(name, _) => folded(name).join("."),
        ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _))
        | ast::DataType::Array(ast::ArrayElemTypeDef::AngleBracket(inner))
        | ast::DataType::Array(ast::ArrayElemTypeDef::Parenthesis(inner)) => type_name(inner),
        other => {
            let text = other.to_string().to_ascii_lowercase();
            let end = text.find(['(', '[']).unwrap_or(text.len());
            text[..end].trim().to_owned()
        }
    }
}

impl Visitor for Mentions {
    type Break = ();

    fn pre_visit_ident(&mut self, ident: &ast::Ident) -> ControlFlow<()> {
        self.idents.insert(ident_name(ident));
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ast::ObjectName) -> ControlFlow<()> {
        let name = folded(relation);
        self.idents.extend(name.iter().cloned());
        self.relations.insert(name);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &ast::Select) -> ControlFlow<()> {
        for item in &select.projection {
            self.select_item(item);
        }
        // `SELECT … INTO t` creates the relation it names.
        if let Some(into) = &select.into {
            for target in &into.targets {
                let name: Vec<String> = match target {
                    Expr::Identifier(ident) => vec![ident_name(ident)],
                    Expr::CompoundIdentifier(idents) => idents.iter().map(ident_name).collect(),
                    _ => continue,
                };
                self.idents.extend(name.iter().cloned());
                self.relations.insert(name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        // `FOR UPDATE OF t` names relations outside any FROM.
        for lock in &query.locks {
            if let Some(of) = &lock.of {
                self.relations.insert(folded(of));
            }
        }
        self.table_statements(query.body.as_ref());
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &ast::TableFactor) -> ControlFlow<()> {
        // Set-returning functions in FROM, and the column types of their
        // alias (`AS x(a text)`).
        let (function, alias) = match factor {
            ast::TableFactor::Table {
                name,
                args: Some(_),
                alias,
                ..
            } => (Some(name), alias.as_ref()),
            ast::TableFactor::Function { name, alias, .. } => (Some(name), alias.as_ref()),
            ast::TableFactor::TableFunction { alias, .. }
            | ast::TableFactor::UNNEST { alias, .. } => (None, alias.as_ref()),
            _ => (None, None),
        };
        if let Some(name) = function {
            self.functions.insert(folded(name));
        }
        if matches!(factor, ast::TableFactor::UNNEST { .. }) {
            self.syntax(&["unnest"]);
        }
        for column in alias.iter().flat_map(|a| &a.columns) {
            if let Some(data_type) = &column.data_type {
                self.types.insert(type_name(data_type));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Prepare { data_types, .. } => {
                self.types.extend(data_types.iter().map(type_name));
            }
            Statement::Copy {
                source: ast::CopySource::Table { table_name, .. },
                ..
            } => {
                self.relations.insert(folded(table_name));
            }
            _ => {}
        }
        let returning = match statement {
            Statement::Insert(insert) => insert.returning.as_ref(),
            Statement::Update(update) => update.returning.as_ref(),
            Statement::Delete(delete) => delete.returning.as_ref(),
            _ => None,
        };
        for item in returning.into_iter().flatten() {
            self.select_item(item);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                self.columns.insert(vec![ident_name(ident)]);
            }
            Expr::CompoundIdentifier(idents) => {
                self.columns.insert(idents.iter().map(ident_name).collect());
            }
            // `t.f[1]`: PostgreSQL's ColumnRef is `t.f`, the subscript its
            // indirection.
            Expr::CompoundFieldAccess { root, access_chain } => {
                if let Some(parts) = super::lineage::dotted_column(root, access_chain) {
                    self.columns.insert(parts);
                }
            }
            Expr::Wildcard(_) => {
                self.columns.insert(vec!["*".to_owned()]);
            }
            Expr::QualifiedWildcard(name, _) => {
                let mut parts = folded(name);
                parts.push("*".to_owned());
                self.columns.insert(parts);
            }
            Expr::Function(function) => {
                self.functions.insert(folded(&function.name));
                // `row_to_json(t.*)`: a star that is not an expression.
                if let ast::FunctionArguments::List(list) = &function.args {
                    for arg in &list.args {
                        let (ast::FunctionArg::Unnamed(arg)
                        | ast::FunctionArg::Named { arg, .. }
                        | ast::FunctionArg::ExprNamed { arg, .. }) = arg;
                        match arg {
                            ast::FunctionArgExpr::QualifiedWildcard(name) => {
                                let mut parts = folded(name);
                                parts.push("*".to_owned());
                                self.columns.insert(parts);
                            }
                            ast::FunctionArgExpr::Wildcard
                            | ast::FunctionArgExpr::WildcardWithOptions(_) => {
                                self.columns.insert(vec!["*".to_owned()]);
                            }
                            ast::FunctionArgExpr::Expr(_) => {}
                        }
                    }
                }
            }
            // Calls sqlparser models as syntax of their own.
            Expr::Convert { .. } => self.syntax(&["convert"]),
            Expr::Extract { .. } => self.syntax(&["extract", "date_part"]),
            Expr::Ceil { .. } => self.syntax(&["ceil", "ceiling"]),
            Expr::Floor { .. } => self.syntax(&["floor"]),
            Expr::Position { .. } => self.syntax(&["position", "strpos"]),
            Expr::Substring { .. } => self.syntax(&["substring", "substr"]),
            Expr::Trim { .. } => self.syntax(&["trim", "btrim", "ltrim", "rtrim"]),
            Expr::Overlay { .. } => self.syntax(&["overlay"]),
            Expr::IsNormalized { .. } => self.syntax(&["is_normalized"]),
            Expr::AtTimeZone { .. } => self.syntax(&["timezone"]),
            Expr::Cast { data_type, .. } => {
                self.types.insert(type_name(data_type));
            }
            Expr::TypedString(typed) => {
                self.types.insert(type_name(&typed.data_type));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Mentions {
    /// `TABLE t`, alone or as a branch of UNION/INTERSECT/EXCEPT: no
    /// ObjectName, so not a relation to the visitor; PostgreSQL reads it
    /// as `SELECT * FROM t`.
    fn table_statements(&mut self, body: &ast::SetExpr) {
        match body {
            ast::SetExpr::Table(table) => {
                let parts: Vec<String> = [&table.schema_name, &table.table_name]
                    .into_iter()
                    .flatten()
                    .map(ident_name)
                    .collect();
                self.idents.extend(parts.iter().cloned());
                self.relations.insert(parts);
                self.columns.insert(vec!["*".to_owned()]);
            }
            ast::SetExpr::SetOperation { left, right, .. } => {
                self.table_statements(left);
                self.table_statements(right);
            }
            _ => {}
        }
    }

    fn syntax(&mut self, names: &[&str]) {
        for name in names {
            self.functions.insert(vec![(*name).to_owned()]);
        }
    }

    fn select_item(&mut self, item: &ast::SelectItem) {
        match item {
            ast::SelectItem::Wildcard(_) => {
                self.columns.insert(vec!["*".to_owned()]);
            }
            ast::SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                _,
            ) => {
                let mut parts = folded(name);
                parts.push("*".to_owned());
                self.columns.insert(parts);
            }
            _ => {}
        }
    }
}

/// Statements whose rows or writes the lineage walker follows: their
/// relations and columns must match exactly, not only by name.
fn is_data_statement(statement: &Statement) -> bool {
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Copy { .. }
        | Statement::Declare { .. } => true,
        Statement::Prepare { statement, .. } | Statement::Explain { statement, .. } => {
            is_data_statement(statement)
        }
        _ => false,
    }
}

/// The first thing PostgreSQL's tree mentions that sqlparser's does not,
/// described for the error message; `None` when they agree.
pub fn disagreement(statement: &Statement, pg: &References) -> Option<String> {
    let mut sp = Mentions::default();
    let _ = statement.visit(&mut sp);
    let data = is_data_statement(statement);
    let named = |parts: &[String]| parts.iter().all(|p| p == "*" || sp.idents.contains(p));
    for relation in &pg.relations {
        let known = if data {
            // `db.schema.t` is `schema.t` for the server when db is current;
            // compare what both trees spell.
            sp.relations.contains(relation)
        } else {
            named(relation)
        };
        if !known {
            return Some(format!("relation {}", relation.join(".")));
        }
    }
    // In a range partition bound PostgreSQL's grammar reads MINVALUE and
    // MAXVALUE as column references and turns them into the bounds; a real
    // column reference there is an error ("cannot use column reference in
    // partition bound expression").
    let partition_bound = pg.kinds.contains("PartitionBoundSpec");
    for column in &pg.columns {
        if partition_bound
            && matches!(column.as_slice(), [name] if name == "minvalue" || name == "maxvalue")
        {
            continue;
        }
        let known = if data {
            sp.columns.contains(column)
        } else {
            named(column)
        };
        if !known {
            return Some(format!("column reference {}", column.join(".")));
        }
    }
    for function in &pg.functions {
        let syntax = matches!(function.as_slice(), [schema, name]
            if schema == "pg_catalog" && SYNTAX_FUNCTIONS.contains(&name.as_str()));
        if syntax {
            continue;
        }
        if !(sp.functions.contains(function) || !data && named(function)) {
            return Some(format!("function {}", function.join(".")));
        }
    }
    if data {
        for parts in &pg.types {
            // SQL-standard spellings (`int`, `varchar(10)`, `timestamp`)
            // are pg_catalog names the grammar supplies; only superusers
            // can put a type there.
            if parts.first().is_some_and(|s| s == "pg_catalog") {
                continue;
            }
            let name = parts.join(".");
            if !sp.types.contains(&name) && !named(parts) {
                return Some(format!("type {name}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::pg_tree::{self, LexSettings};
    use super::*;

    fn check(sql: &str) -> Option<String> {
        let parsed = super::super::parse_postgres(sql).unwrap();
        let pg = pg_tree::parse(sql, LexSettings::default(), 100).unwrap();
        assert_eq!(parsed.len(), pg.len());
        parsed
            .iter()
            .zip(&pg)
            .find_map(|(s, p)| disagreement(s, &p.references))
    }

    #[test]
    fn ordinary_statements_agree() {
        for sql in [
            "SELECT c.id, upper(c.full_name), t.* FROM public.customers c JOIN cards t ON t.cid = c.id WHERE c.id = $1",
            "SELECT * FROM customers ORDER BY 1",
            "SELECT count(*), extract(year FROM now()), trim(both ' ' from x), now() AT TIME ZONE 'UTC' FROM t",
            "SELECT x::text, y::int, z::varchar(10), cast(w AS numeric(5,2)), '1'::regclass FROM t",
            "INSERT INTO t (a, b) VALUES (1, DEFAULT) RETURNING *",
            "UPDATE t SET a = a + 1 WHERE b IN (SELECT b FROM u) RETURNING t.a",
            "DELETE FROM t USING u WHERE t.id = u.id",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "CREATE TABLE n (a int, b text CHECK (length(b) < 10))",
            "CREATE INDEX ON t (lower(a))",
            "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (MINVALUE, 1) TO (MAXVALUE, MAXVALUE)",
            "SELECT 1, 2 UNION ALL TABLE int8_tbl",
            "SELECT * INTO TABLE ramp FROM ONLY road WHERE name ~ '.*Ramp'",
            "SELECT substring(a from 2 for 3), position('x' in a), overlay(a placing 'x' from 2) FROM t",
            "SELECT coalesce(a, b), nullif(a, b), greatest(a, b), current_user, current_date FROM t",
            "SELECT a FROM t WHERE a LIKE 'x%' AND b IS DISTINCT FROM c",
            "SELECT (t).a, t.a FROM t",
            "SELECT g, row_to_json(t.*) FROM generate_series(1, 3) g, t",
            "SELECT * FROM json_to_recordset('[]') AS x(a text, b int)",
            "SELECT a FROM t FOR UPDATE OF t",
            "COPY t TO STDOUT",
            "COPY (SELECT a FROM t) TO STDOUT",
            "PREPARE p(text) AS SELECT $1",
            "SELECT substring(a, 1, 2), ceil(x), floor(y), date '2020-01-01' FROM t",
            "SELECT 1 FROM t WHERE a::date > now()::date AND b::bool AND c::text[] IS NULL",
            "DECLARE c CURSOR FOR SELECT * FROM t",
            "EXPLAIN SELECT * FROM t",
            "GRANT SELECT ON t TO PUBLIC",
            "ALTER TABLE t ADD COLUMN z text DEFAULT lower('X')",
            "INSERT INTO t AS x (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a + x.a",
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a",
            "SELECT array(select quote_literal(x) from unnest(tags) as t(x)) FROM e",
        ] {
            assert_eq!(check(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_name_sqlparser_does_not_see_is_a_disagreement() {
        // sqlparser reads the escaped name literally; the server decodes it.
        let sql = "SELECT U&\"\\0069d_number\" FROM customers";
        if let Ok(parsed) = super::super::parse_postgres(sql) {
            let pg = pg_tree::parse(sql, LexSettings::default(), 100).unwrap();
            assert!(disagreement(&parsed[0], &pg[0].references).is_some());
        }
        // A cast to a type of another schema is not the built-in type.
        let sql = "SELECT id_number::public.varchar FROM customers";
        assert_eq!(check(sql), None);
    }
}
