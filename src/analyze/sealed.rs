//! Functions pgveil can see into. A SQL or PL/pgSQL function's definition
//! (`pg_get_functiondef`) is read with PostgreSQL's own parsers, and this
//! file lists what its body reaches: the relations, functions, types and
//! operator names it names, and whether it runs anything pgveil does not
//! follow (dynamic SQL, its caller's cursors, utility statements). The
//! plan admits a call of a user-defined function the policy does not list
//! when what it reaches holds no protected value and leads to none (see
//! `plan::sealed_function`); this file only reads, and judges nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::builtins::{self, BuiltinCategory};
use super::catalog::{Catalog, CatalogFunction, Relation};
use super::lineage::{Walker, SENSITIVE_SYSTEM_RELATIONS};
use super::pg_tree::{self, LexSettings};
use super::policy_view::QualifiedColumn;

/// What one function's definition names, as PostgreSQL reads it.
#[derive(Debug, Default)]
pub struct BodyReach {
    /// `[schema.]relation` of every relation a statement names.
    pub relations: BTreeSet<Vec<String>>,
    /// `[schema.]name` of every function called (defaults included).
    pub functions: BTreeSet<Vec<String>>,
    /// Every type named (parameters, variables, casts).
    pub types: BTreeSet<Vec<String>>,
    /// String nodes: constants, and the names of operators used.
    pub strings: BTreeSet<String>,
    /// Names of WITH queries (a relation name may be one of them).
    pub cte_names: BTreeSet<String>,
    /// Every identifier in the body as PostgreSQL's scanner reads it
    /// (quoted ones unquoted, others folded): a backstop for names the
    /// PL/pgSQL tree does not show (libpg_query leaves out a record
    /// variable's default), each checked as a relation and as a function.
    pub words: BTreeSet<String>,
    /// Why pgveil cannot follow the body, when it cannot.
    pub opaque: Option<String>,
    /// A backslash stands in a plain `'…'` string: with
    /// `standard_conforming_strings` off the server reads the body
    /// otherwise than pgveil did (see `SealedCall::plain_backslash`).
    pub plain_backslash: bool,
}

/// Statements a body may run: they read and write rows of the relations
/// they name and call the functions they name, nothing else.
const STATEMENT_KINDS: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
    "CallStmt",
];

/// PL/pgSQL statements whose SQL is static text in the tree. Not here:
/// EXECUTE and FOR … IN EXECUTE (dynamic SQL), OPEN / FETCH / MOVE /
/// CLOSE and FOR over a cursor (a cursor may be the caller's, opened on
/// protected rows).
const PLPGSQL_STATEMENTS: &[&str] = &[
    "PLpgSQL_stmt_block",
    "PLpgSQL_stmt_assign",
    "PLpgSQL_stmt_if",
    "PLpgSQL_stmt_case",
    "PLpgSQL_stmt_loop",
    "PLpgSQL_stmt_while",
    "PLpgSQL_stmt_fori",
    "PLpgSQL_stmt_fors",
    "PLpgSQL_stmt_foreach_a",
    "PLpgSQL_stmt_exit",
    "PLpgSQL_stmt_return",
    "PLpgSQL_stmt_return_next",
    "PLpgSQL_stmt_return_query",
    "PLpgSQL_stmt_raise",
    "PLpgSQL_stmt_assert",
    "PLpgSQL_stmt_execsql",
    "PLpgSQL_stmt_perform",
    "PLpgSQL_stmt_getdiag",
    "PLpgSQL_stmt_call",
    "PLpgSQL_stmt_commit",
    "PLpgSQL_stmt_rollback",
];

/// What a call of a user function may read or write, followed through its
/// body and the user functions that calls, as the calling session runs it.
/// Policy-independent: the plan judges it for the role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SealedCall {
    /// Why pgveil cannot follow the function itself: it then runs only
    /// when the policy lists it under `functions.allow`.
    pub opaque: Option<String>,
    /// Every column whose values its statements may read or write: the
    /// columns of each relation it names (a view's: what the view reads),
    /// of their inheritance children, and those their foreign keys link.
    pub columns: BTreeSet<QualifiedColumn>,
    /// Every relation it names, for table rules.
    pub relations: BTreeSet<(String, String)>,
    /// User functions it (or a view it reads) calls that pgveil cannot
    /// follow, and why: each must be listed under `functions.allow`.
    pub unfollowed: BTreeMap<(String, String), String>,
    /// A body it follows has a backslash in a plain string, which pgveil
    /// read as `standard_conforming_strings = on` does: a session with it
    /// off may not call it (the guard knows the session's setting).
    pub plain_backslash: bool,
}

/// How deep calls of user functions are followed.
const MAX_CALL_DEPTH: usize = 8;

/// Relations whose rows are other sessions' statement texts, which can
/// quote protected values.
const QUERY_TEXT_RELATIONS: &[&str] = &["pg_stat_activity"];

/// Follows `function` as the session with `search_path` would call it.
fn follow_call(
    catalog: &Catalog,
    search_path: &[String],
    function: &CatalogFunction,
) -> SealedCall {
    let mut follower = Follower {
        catalog,
        search_path,
        call: SealedCall::default(),
        seen: BTreeSet::new(),
    };
    if let Err(why) = follower.follow(function, 0) {
        follower.call.opaque = Some(why);
    }
    follower.call
}

/// Follows every overload of one function name in one schema (the call's
/// arguments pick one), as the session with `search_path` would call it:
/// what any of them reaches.
pub fn follow_overloads<'c>(
    catalog: &'c Catalog,
    search_path: &[String],
    overloads: impl Iterator<Item = &'c CatalogFunction>,
) -> SealedCall {
    let mut call = SealedCall::default();
    for overload in overloads {
        let one = follow_call(catalog, search_path, overload);
        call.opaque = call.opaque.or(one.opaque);
        call.columns.extend(one.columns);
        call.relations.extend(one.relations);
        call.unfollowed.extend(one.unfollowed);
        call.plain_backslash |= one.plain_backslash;
    }
    call
}

/// The relations `[schema.]name` may name: in the schema given, or in any
/// schema (PostgreSQL resolves a body's names with the search_path of the
/// call, which pgveil does not pin).
fn relations_named<'c>(catalog: &'c Catalog, parts: &[String]) -> Vec<&'c Relation> {
    match parts {
        [name] => catalog.relations().filter(|r| &r.name == name).collect(),
        [.., schema, name] => catalog.relation(schema, name).into_iter().collect(),
        [] => Vec::new(),
    }
}

/// One walk through a function and what it calls.
struct Follower<'c> {
    catalog: &'c Catalog,
    search_path: &'c [String],
    call: SealedCall,
    /// Functions (by oid) already followed: a recursive call is followed once.
    seen: BTreeSet<u32>,
}

impl Follower<'_> {
    fn follow(&mut self, function: &CatalogFunction, depth: usize) -> Result<(), String> {
        if !self.seen.insert(function.oid) {
            return Ok(());
        }
        if depth > MAX_CALL_DEPTH {
            return Err("it calls user-defined functions nested too deeply".into());
        }
        let Some(reach) = function.reach() else {
            return Err(format!("it is written in {}", function.language));
        };
        if let Some(why) = &reach.opaque {
            return Err(why.clone());
        }
        self.call.plain_backslash |= reach.plain_backslash;
        for parts in &reach.types {
            self.inert_type(parts)?;
        }
        for name in &reach.strings {
            if self.catalog.operators_named(name).next().is_some() {
                return Err(format!("it may use user-defined operator {name}"));
            }
        }
        for parts in &reach.relations {
            let found = relations_named(self.catalog, parts);
            if found.is_empty() {
                if parts.len() == 1 && reach.cte_names.contains(&parts[0]) {
                    continue;
                }
                return Err(format!(
                    "it names {}, which pgveil does not know",
                    parts.join(".")
                ));
            }
            for relation in found {
                self.read_relation(relation, depth)?;
            }
        }
        // Every word of the body, as a relation and as a function of any
        // schema: names the trees do not show still count.
        for word in &reach.words {
            for relation in relations_named(self.catalog, std::slice::from_ref(word)) {
                self.read_relation(relation, depth)?;
            }
            self.calls(self.catalog.functions_named(word).collect(), word, depth)?;
        }
        for parts in &reach.functions {
            let (schema, name) = match parts.as_slice() {
                [name] => (None, name),
                [.., schema, name] => (Some(schema), name),
                [] => continue,
            };
            let found: Vec<&CatalogFunction> = self
                .catalog
                .functions_named(name)
                .filter(|f| schema.is_none_or(|s| &f.schema == s))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "it calls {}, which pgveil does not know",
                    parts.join(".")
                ));
            }
            self.calls(found, name, depth)?;
        }
        Ok(())
    }

    /// Calls of the functions a name may run. A built-in must be of the
    /// kinds pgveil admits anywhere (not SQL text, server files or
    /// internals), and not `set_config`, which changes the search_path
    /// pgveil follows. A user function is followed in turn; one pgveil
    /// cannot follow is left for the policy to allow.
    fn calls(
        &mut self,
        functions: Vec<&CatalogFunction>,
        name: &str,
        depth: usize,
    ) -> Result<(), String> {
        for callee in functions {
            if callee.is_builtin() {
                let category = builtins::category(&callee.schema, name, None);
                let admitted = !matches!(
                    category,
                    None | Some(BuiltinCategory::Sql)
                        | Some(BuiltinCategory::Server)
                        | Some(BuiltinCategory::Internal)
                );
                if !admitted || name == "set_config" {
                    return Err(format!("it calls {}.{name}()", callee.schema));
                }
            } else if let Err(why) = self.follow(callee, depth + 1) {
                self.call
                    .unfollowed
                    .insert((callee.schema.clone(), callee.name.clone()), why);
            }
        }
        Ok(())
    }

    /// Adds what reading or writing `relation` reaches.
    fn read_relation(&mut self, relation: &Relation, depth: usize) -> Result<(), String> {
        if relation.is_system() {
            let name = relation.name.as_str();
            if SENSITIVE_SYSTEM_RELATIONS.contains(&name) || QUERY_TEXT_RELATIONS.contains(&name) {
                return Err(format!(
                    "it reads {}.{}, which exposes raw column values",
                    relation.schema, relation.name
                ));
            }
            return Ok(());
        }
        let catalog = self.catalog;
        let mut related = vec![relation];
        related.extend(catalog.descendants(&relation.schema, &relation.name));
        for r in related {
            self.call
                .relations
                .insert((r.schema.clone(), r.name.clone()));
            let mut walker = Walker::new(catalog, self.search_path);
            for column in walker.relation_columns(r) {
                self.call.columns.extend(column.sources.into_keys());
            }
            if let Some(hazard) = walker.effects.hazards.iter().next() {
                return Err(hazard.detail.clone());
            }
            for (schema, name) in &walker.effects.user_functions {
                let called = catalog
                    .functions_named(name)
                    .filter(|f| &f.schema == schema)
                    .collect();
                self.calls(called, name, depth)?;
            }
            for link in r
                .keys
                .references
                .iter()
                .chain(&r.keys.referenced_by)
                .flatten()
            {
                let (schema, table, column) = &link.other;
                self.call.columns.insert(QualifiedColumn {
                    schema: schema.clone(),
                    table: table.clone(),
                    column: column.clone(),
                });
            }
        }
        Ok(())
    }

    /// A type whose input and checks run no code pgveil cannot see: a
    /// built-in one as the session resolves it (pgveil refuses objects that
    /// would take a built-in type's name before pg_catalog), the row type
    /// of a relation whose columns are all of built-in types, or
    /// `relation.column%TYPE` of such a column.
    fn inert_type(&self, parts: &[String]) -> Result<(), String> {
        let pg_catalog_first = self
            .search_path
            .iter()
            .position(|s| s == "pg_catalog")
            .is_none_or(|i| i == 0);
        let builtin = match parts {
            [schema, name] if schema == "pg_catalog" => builtins::is_builtin_type(name),
            [name] => pg_catalog_first && builtins::is_builtin_type(name),
            _ => false,
        };
        let rows = relations_named(self.catalog, parts);
        let row_type = !rows.is_empty()
            && rows.iter().all(|r| {
                r.columns
                    .iter()
                    .all(|c| c.type_oid < FIRST_NORMAL_OBJECT_ID)
            });
        let column_type = match parts {
            [relation @ .., column] if !relation.is_empty() => {
                let owners = relations_named(self.catalog, relation);
                !owners.is_empty()
                    && owners.iter().all(|r| {
                        r.columns
                            .iter()
                            .find(|c| &c.name == column)
                            .is_some_and(|c| c.type_oid < FIRST_NORMAL_OBJECT_ID)
                    })
            }
            _ => false,
        };
        if builtin || row_type || column_type {
            Ok(())
        } else {
            Err(format!(
                "it uses type {}, which may run code",
                parts.join(".")
            ))
        }
    }
}

/// PostgreSQL's first OID of objects not created by initdb.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Reads `definition`, a `CREATE FUNCTION` of `language`.
pub fn reach(definition: &str, language: &str) -> BodyReach {
    let mut reach = BodyReach::default();
    // The statement itself: parameter and result types, defaults.
    reach.add_sql(definition, true);
    if reach.opaque.is_some() {
        return reach;
    }
    let Some(body) = body_text(definition) else {
        reach.opaque("its body is not a string pgveil reads (SQL-standard bodies are not)");
        return reach;
    };
    // With standard_conforming_strings off the server reads a backslash
    // in a plain string differently from pgveil: noted for the session.
    reach.plain_backslash = body.contains('\\') && !backslashes_read_alike(&body);
    match scan_words(&body) {
        Some(words) => reach.words = words,
        None => {
            reach.opaque("PostgreSQL's scanner rejects its body");
            return reach;
        }
    }
    match language {
        "sql" => reach.add_sql(&body, false),
        "plpgsql" => {
            let text = definition.to_owned();
            match pg_tree::on_postgres_stack(move || pg_query::parse_plpgsql(&text).ok()) {
                Some(Some(tree)) => reach.add_plpgsql(&tree),
                _ => reach.opaque("PostgreSQL's PL/pgSQL parser rejects it"),
            }
        }
        other => reach.opaque(&format!("it is written in {other}")),
    }
    reach
}

/// True when every backslash of `text` stands where both settings of
/// `standard_conforming_strings` read it alike: in an `E'…'` or
/// dollar-quoted string, a comment or a quoted identifier. The two
/// readings of a text agree up to its first backslash in a plain `'…'`
/// string, so with none they agree throughout.
fn backslashes_read_alike(text: &str) -> bool {
    use pg_query::protobuf::Token;
    let owned = text.to_owned();
    let Some(Some(tokens)) = pg_tree::on_postgres_stack(move || pg_query::scan_tokens(&owned).ok())
    else {
        return false;
    };
    let mut covered = vec![false; text.len()];
    for t in &tokens {
        let (Ok(start), Ok(end)) = (usize::try_from(t.start), usize::try_from(t.end)) else {
            return false;
        };
        let Some(piece) = text.get(start..end) else {
            return false;
        };
        let alike = if t.token == Token::Sconst as i32 {
            piece.starts_with(['E', 'e', '$'])
        } else {
            t.token == Token::SqlComment as i32
                || t.token == Token::CComment as i32
                || (t.token == Token::Ident as i32 && piece.starts_with('"'))
        };
        if alike {
            covered[start..end].iter_mut().for_each(|c| *c = true);
        }
    }
    text.bytes()
        .zip(covered)
        .all(|(b, covered)| b != b'\\' || covered)
}

/// Every identifier of `text` as PostgreSQL's scanner reads it, keywords
/// that may name objects included (None: the scanner rejects the text).
fn scan_words(text: &str) -> Option<BTreeSet<String>> {
    use pg_query::protobuf::{KeywordKind, Token};
    if text.trim().is_empty() {
        return Some(BTreeSet::new());
    }
    let owned = text.to_owned();
    let tokens = pg_tree::on_postgres_stack(move || pg_query::scan_tokens(&owned).ok())??;
    let mut words = BTreeSet::new();
    for t in &tokens {
        let piece = text.get(usize::try_from(t.start).ok()?..usize::try_from(t.end).ok()?)?;
        let ident = t.token == Token::Ident as i32;
        let name_keyword = t.keyword_kind != KeywordKind::NoKeyword as i32
            && t.keyword_kind != KeywordKind::ReservedKeyword as i32;
        if ident && piece.starts_with('"') {
            words.insert(piece.trim_matches('"').replace("\"\"", "\""));
        } else if ident || name_keyword {
            words.insert(piece.to_ascii_lowercase());
        }
    }
    Some(words)
}

/// The body string of a function's `AS '…'` (None for a SQL-standard
/// body, `BEGIN ATOMIC … END` or `RETURN …`, and anything unexpected).
fn body_text(definition: &str) -> Option<String> {
    use pg_query::NodeEnum as N;
    let text = definition.to_owned();
    pg_tree::on_postgres_stack(move || {
        let parsed = pg_query::parse(&text, pg_query::ParserOptions::DEFAULT).ok()?;
        let [raw] = parsed.protobuf.stmts.as_slice() else {
            return None;
        };
        let Some(N::CreateFunctionStmt(f)) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            return None;
        };
        if f.sql_body.is_some() {
            return None;
        }
        f.options.iter().find_map(|o| match o.node.as_ref() {
            Some(N::DefElem(d)) if d.defname == "as" => {
                match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                    Some(N::List(l)) => match l.items.as_slice() {
                        [item] => match item.node.as_ref() {
                            Some(N::String(s)) => Some(s.sval.clone()),
                            _ => None,
                        },
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        })
    })
    .flatten()
}

impl BodyReach {
    fn opaque(&mut self, why: &str) {
        if self.opaque.is_none() {
            self.opaque = Some(why.to_owned());
        }
    }

    /// Adds what the statements of `sql` name; `create`: it is the
    /// `CREATE FUNCTION` itself, whose body string is read apart.
    fn add_sql(&mut self, sql: &str, create: bool) {
        let statements = match pg_tree::parse(sql, LexSettings::default(), 0) {
            Ok(statements) => statements,
            Err(_) => return self.opaque("PostgreSQL's parser rejects a statement of it"),
        };
        for statement in statements {
            let allowed = if create {
                // `SET search_path …` on the function changes how its body
                // resolves names.
                statement.kind == "CreateFunctionStmt"
                    && !statement.references.kinds.contains("VariableSetStmt")
            } else {
                STATEMENT_KINDS.contains(&statement.kind)
            };
            if !allowed {
                return self.opaque(&if create {
                    "it sets its own search_path or other settings".to_owned()
                } else {
                    format!("it runs a {}", statement.kind)
                });
            }
            let r = statement.references;
            self.relations.extend(r.relations);
            self.functions.extend(r.functions);
            self.types.extend(r.types);
            self.strings.extend(r.strings);
            self.cte_names.extend(r.cte_names);
        }
    }

    /// Walks libpg_query's PL/pgSQL tree: every statement must be of a
    /// kind in `PLPGSQL_STATEMENTS`; every embedded query or expression is
    /// read as SQL; every variable's type is named.
    fn add_plpgsql(&mut self, node: &Value) {
        match node {
            Value::Array(items) => items.iter().for_each(|i| self.add_plpgsql(i)),
            Value::Object(map) => {
                for (key, value) in map {
                    if key.starts_with("PLpgSQL_stmt_")
                        && !PLPGSQL_STATEMENTS.contains(&key.as_str())
                    {
                        return self.opaque(&format!(
                            "it runs {} (dynamic SQL or a cursor)",
                            key.trim_start_matches("PLpgSQL_stmt_")
                        ));
                    }
                    match key.as_str() {
                        // RETURN QUERY EXECUTE.
                        "dynquery" => return self.opaque("it runs dynamic SQL"),
                        "PLpgSQL_expr" => {
                            let query = value.get("query").and_then(Value::as_str);
                            let mode = value.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
                            match query {
                                Some(query) => self.add_expression(query, mode),
                                None => self.opaque("an expression without text"),
                            }
                        }
                        "PLpgSQL_type" => {
                            if let Some(name) = value.get("typname").and_then(Value::as_str) {
                                let name = name.to_lowercase();
                                let name = name
                                    .trim_end_matches("%rowtype")
                                    .trim_end_matches("%type")
                                    .trim_end_matches("[]");
                                self.types.insert(
                                    name.split('.')
                                        .map(|p| p.trim_matches('"').to_owned())
                                        .collect(),
                                );
                            }
                        }
                        _ => self.add_plpgsql(value),
                    }
                }
            }
            _ => {}
        }
    }

    /// One PL/pgSQL expression, by libpg_query's parse mode: 0 a whole
    /// statement, 2 an expression, 3–5 an assignment `target := value`
    /// (both sides read: a subscript may hold a query).
    fn add_expression(&mut self, query: &str, mode: i64) {
        match mode {
            0 => self.add_sql(query, false),
            2 => self.add_sql(&format!("SELECT {query}"), false),
            3..=5 => {
                let split = query
                    .find(":=")
                    .map(|i| (i, 2))
                    .or_else(|| query.find('=').map(|i| (i, 1)));
                match split {
                    Some((i, n)) => {
                        self.add_sql(&format!("SELECT {}", &query[..i]), false);
                        self.add_sql(&format!("SELECT {}", &query[i + n..]), false);
                    }
                    None => self.opaque("an assignment pgveil does not read"),
                }
            }
            _ => self.opaque("an expression pgveil does not read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plpgsql(body: &str) -> BodyReach {
        reach(
            &format!(
                "CREATE OR REPLACE FUNCTION public.f(a integer, OUT r customers) RETURNS record \
                 LANGUAGE plpgsql AS $function${body}$function$"
            ),
            "plpgsql",
        )
    }

    #[test]
    fn plpgsql_bodies_name_what_they_reach() {
        let r = plpgsql(
            "DECLARE x int := (SELECT count(*) FROM t1); c text; \
             BEGIN x := x + (SELECT max(id) FROM t2); \
             INSERT INTO t3 VALUES (a) RETURNING * INTO r; \
             IF x > g(1) THEN RAISE NOTICE '%', h(x); END IF; \
             FOR c IN SELECT name FROM t4 LOOP PERFORM k(c); END LOOP; \
             RETURN; \
             EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS c = PG_EXCEPTION_DETAIL; END",
        );
        assert_eq!(r.opaque, None);
        for t in ["t1", "t2", "t3", "t4"] {
            assert!(r.relations.contains(&vec![t.to_owned()]), "{t}: {r:?}");
        }
        for f in ["g", "h", "k", "count", "max"] {
            assert!(
                r.functions
                    .iter()
                    .any(|n| n.last().map(String::as_str) == Some(f)),
                "{f}: {r:?}"
            );
        }
        assert!(r.types.contains(&vec!["customers".to_owned()]), "{r:?}");
    }

    #[test]
    fn dynamic_sql_and_cursors_are_opaque() {
        for body in [
            "BEGIN EXECUTE 'SELECT 1'; RETURN; END",
            "DECLARE q record; BEGIN FOR q IN EXECUTE 'SELECT 1' LOOP END LOOP; RETURN; END",
            "BEGIN RETURN QUERY EXECUTE 'SELECT 1'; END",
            "DECLARE c refcursor; v int; BEGIN OPEN c FOR SELECT 1; FETCH c INTO v; RETURN; END",
            "BEGIN SET search_path = evil; RETURN; END",
            "BEGIN CREATE TEMP TABLE x AS SELECT 1; RETURN; END",
            "BEGIN GRANT compliance TO CURRENT_USER; RETURN; END",
        ] {
            let r = plpgsql(body);
            assert!(r.opaque.is_some(), "{body}: {r:?}");
        }
    }

    #[test]
    fn backslashes_only_in_plain_strings_depend_on_the_setting() {
        for body in [
            "BEGIN RAISE NOTICE E'a\\nb'; RETURN; END",
            "BEGIN RAISE NOTICE $x$a\\b$x$; RETURN; END -- c:\\dir",
            "BEGIN /* \\ */ RETURN; END",
        ] {
            assert_eq!(plpgsql(body).opaque, None, "{body}");
        }
        for body in [
            "BEGIN RAISE NOTICE E'a\\nb'; RETURN; END",
            "BEGIN RAISE NOTICE $x$a\\b$x$; RETURN; END -- c:\\dir",
        ] {
            assert!(!plpgsql(body).plain_backslash, "{body}");
        }
        for body in [
            "BEGIN RAISE NOTICE 'a\\'; RETURN; END",
            "BEGIN RAISE NOTICE '\\' -- ' || (SELECT 1); RETURN; END",
        ] {
            assert!(plpgsql(body).plain_backslash, "{body}");
        }
    }

    #[test]
    fn sql_bodies_are_read_and_utility_statements_are_opaque() {
        let r = reach(
            "CREATE OR REPLACE FUNCTION public.f(a integer DEFAULT d()) RETURNS integer \
             LANGUAGE sql AS $function$SELECT a + (SELECT count(*) FROM t1)$function$",
            "sql",
        );
        assert_eq!(r.opaque, None);
        assert!(r.relations.contains(&vec!["t1".to_owned()]));
        assert!(r
            .functions
            .iter()
            .any(|n| n.last().map(String::as_str) == Some("d")));
        let r = reach(
            "CREATE OR REPLACE FUNCTION public.f() RETURNS void LANGUAGE sql \
             AS $function$EXECUTE p$function$",
            "sql",
        );
        assert!(r.opaque.is_some());
        let r = reach(
            "CREATE OR REPLACE FUNCTION public.f() RETURNS void LANGUAGE c AS 'x', 'y'",
            "c",
        );
        assert!(r.opaque.is_some());
    }
}
