//! Which operator a masked role's statement runs, decided by PostgreSQL's
//! own rules: an extension's operators (hstore's `||`, citext's `=`) are
//! candidates only for operands that can reach their types, so drivers'
//! everyday statements over built-in types pass once an extension is
//! installed, while an operator that PostgreSQL may pick (an operand of
//! the extension's type, an implicit cast into a user type) is still
//! judged as the user-defined function it runs. Also: `SET role` in the
//! forms drivers send.

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db(
                "bank",
                "CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION ltree;
                 CREATE TABLE public.notes (id int, c citext, h hstore);
                 INSERT INTO public.notes VALUES (1, 'Abc', 'a=>1');
                 GRANT ALL ON public.notes TO PUBLIC;
                 -- A user type an int4 reaches by an implicit cast, with a
                 -- `||` over it that keeps and echoes its operands: listed
                 -- on the search_path, it is a candidate for `'a' || 1`.
                 CREATE SCHEMA lure; GRANT USAGE ON SCHEMA lure TO PUBLIC;
                 CREATE TABLE lure.loot (v text); GRANT ALL ON lure.loot TO PUBLIC;
                 CREATE TYPE lure.span AS RANGE (subtype = int4);
                 CREATE FUNCTION lure.span_of(int4) RETURNS lure.span LANGUAGE sql IMMUTABLE
                   AS $f$ SELECT lure.span($1, $1, '[]') $f$;
                 CREATE CAST (int4 AS lure.span) WITH FUNCTION lure.span_of(int4) AS IMPLICIT;
                 CREATE FUNCTION lure.cat(lure.span, lure.span) RETURNS text LANGUAGE plpgsql AS $f$
                 BEGIN INSERT INTO lure.loot VALUES ($1::text); RAISE NOTICE '%', $1;
                   RETURN $1::text || $2::text; END $f$;
                 CREATE OPERATOR lure.|| (LEFTARG = lure.span, RIGHTARG = lure.span,
                   FUNCTION = lure.cat);",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

/// The first column of the first row of a simple query, or the error.
async fn first_value(s: &Session, sql: &str) -> Result<String, String> {
    match s.c.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_owned())
                }
                _ => None,
            })
            .unwrap_or_default()),
        Err(e) => Err(error_text(&e)),
    }
}

#[tokio::test]
async fn builtin_typed_operands_never_reach_an_extensions_operators() {
    let s = Session::connect(setup(), "dev").await;
    let mut failures = Vec::new();
    // PostgreSQL picks pg_catalog's operators here: no implicit cast leads
    // from int4 or text to hstore or citext, nor from an integer to text
    // (ltree's `ltree || text` and `text || ltree`).
    for (sql, want) in [
        ("SELECT 'a' || 1", "a1"),
        ("SELECT 'a' || 'b'", "ab"),
        ("SELECT NULL || 'b' IS NULL", "t"),
        (
            "SELECT string_agg('the value for ' || s.i, ',') FROM generate_series(0, 2) AS s(i)",
            "the value for 0,the value for 1,the value for 2",
        ),
        (
            "SELECT i FROM generate_series(1, 5) AS i WHERE i = '3'",
            "3",
        ),
        (
            "SELECT n FROM generate_series(7, 9) WITH ORDINALITY AS g(x, n) WHERE n = '2'",
            "2",
        ),
        ("SELECT 'x' || length('abc')", "x3"),
        (
            "SELECT 'x' || n FROM generate_series(7, 9) WITH ORDINALITY AS g(v, n) LIMIT 1",
            "x1",
        ),
        ("SELECT 'x' || coalesce(NULL, 3)", "x3"),
        ("SELECT 'v' || coalesce(NULL, 2)", "v2"),
        (
            "SELECT 'n' || CASE WHEN id > 0 THEN id END FROM notes",
            "n1",
        ),
        // A subquery's or CTE's column is of its expression's type
        // (asyncpg's type introspection compares them so).
        (
            "SELECT 1 FROM (SELECT 'x'::text AS o) ti WHERE ti.o = 'x'",
            "1",
        ),
        (
            "WITH x AS (SELECT 'x'::text AS o) SELECT 1 FROM x WHERE o = 'x'",
            "1",
        ),
        (
            "SELECT 1 FROM (SELECT typtype FROM pg_type) t WHERE t.typtype = 'b' LIMIT 1",
            "1",
        ),
        (
            "SELECT o FROM (SELECT 'x'::text AS o UNION ALL SELECT 'y'::varchar) q WHERE o = 'y'",
            "y",
        ),
        (
            "SELECT 1 FROM (SELECT oid FROM pg_type) ti WHERE ti.oid = any('{25}'::oid[])",
            "1",
        ),
        ("SELECT 1 FROM notes WHERE c = any('{Abc}'::text[])", "1"),
    ] {
        match first_value(&s, sql).await {
            Ok(got) if got == want => {}
            other => failures.push(format!("`{sql}`: want {want}, got {other:?}")),
        }
    }
    // The same through the extended protocol, with an untyped parameter.
    match s
        .c
        .query(
            "SELECT i FROM generate_series(1, 5) AS i WHERE i = $1",
            &[&3i32],
        )
        .await
    {
        Ok(rows) if rows.len() == 1 && rows[0].get::<_, i32>(0) == 3 => {}
        other => failures.push(format!(
            "parameter compared with generate_series: {other:?}"
        )),
    }
    match s
        .c
        .query(
            "SELECT ti.oid FROM (SELECT oid FROM pg_type) ti WHERE ti.oid = any($1::oid[])",
            &[&vec![25u32]],
        )
        .await
    {
        Ok(rows) if rows.len() == 1 => {}
        other => failures.push(format!("oid[] parameter over a subquery: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn operators_postgresql_may_pick_from_an_extension_or_a_cast_are_judged() {
    let s = Session::connect(setup(), "dev").await;
    let mut failures = Vec::new();
    let mut refused = |sql: &str, text: Result<String, String>, function: &str| {
        let ok = text.as_ref().is_err_and(|t| {
            t.contains("42501") && t.contains("user-defined-function") && t.contains(function)
        });
        if !ok {
            failures.push(format!("`{sql}` not refused for {function}: {text:?}"));
        }
    };
    // Operands of the extension's types: its operators are PostgreSQL's pick.
    for (sql, function) in [
        ("SELECT id FROM notes WHERE c = 'abc'", "citext_eq"),
        // (A valid hstore literal: pgveil asks the server to parse a refused
        // statement first, and hstore's input rejects 'a'.)
        ("SELECT 'b=>2' || h FROM notes", "hs_concat"),
        ("SELECT h || h FROM notes", "hs_concat"),
        ("SELECT 'a.b'::ltree || 'c'", "function public."),
        // A column of unknown type (a view's, a subquery's) may be either.
        (
            "SELECT x || 'b=>2' FROM (SELECT h AS x FROM notes) q",
            "hs_concat",
        ),
        (
            "SELECT 1 FROM (SELECT c AS x FROM notes) q WHERE x = 'abc'",
            "citext_eq",
        ),
        (
            "SELECT 1 FROM (SELECT 'x'::text AS o UNION ALL SELECT c FROM notes) q WHERE o = 'abc'",
            "citext_eq",
        ),
        (
            "WITH w AS (SELECT c AS o FROM notes) SELECT 1 FROM w WHERE o = any('{abc}')",
            "citext_eq",
        ),
        ("SELECT 1 WHERE 'abc' = any('{abc}'::citext[])", "citext_eq"),
    ] {
        refused(sql, first_value(&s, sql).await, function);
    }
    // An implicit cast from int4 into a user type makes that type's `||` a
    // candidate for an int4 operand, once its schema is on the path.
    s.exec("SET search_path = public, lure").await;
    for sql in [
        "SELECT 'a' || 1",
        "SELECT 'the value for ' || s.i FROM generate_series(0, 2) AS s(i)",
        "SELECT 'x' || id FROM customers",
    ] {
        refused(sql, first_value(&s, sql).await, "lure.cat");
    }
    s.exec("RESET search_path").await;
    assert_eq!(first_value(&s, "SELECT 'a' || 1").await, Ok("a1".into()));
    // Nothing reached the lure.
    let loot = cluster()
        .psql_super_db("bank", "SELECT count(*) FROM lure.loot")
        .unwrap();
    assert_eq!(loot.trim(), "0", "lure.cat ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.finish();
}

/// The forms of SET ROLE drivers and poolers send (sqlparser reads some of
/// them, PostgreSQL's parser all): each passes, and the rules of the login
/// role still apply after it.
#[tokio::test]
async fn set_role_in_every_form_passes_and_masks_stay() {
    let s = Session::connect(setup(), "dev").await;
    for sql in [
        "SET role TO 'dev'",
        "SET role = dev",
        "SET ROLE dev",
        "SET SESSION ROLE dev",
        "SET role TO DEFAULT",
        "SET ROLE NONE",
        "RESET ROLE",
        "RESET role",
        "BEGIN; SET LOCAL role TO 'dev'; COMMIT",
    ] {
        let (ok, text) = s.visible(sql).await;
        assert!(ok, "`{sql}` refused: {text}");
        s.exec("SET role TO 'dev'").await;
        let (ok, text) = s.attack("SELECT mobile FROM customers").await;
        assert!(ok, "after `{sql}`: {text}");
        s.exec("RESET ROLE").await;
    }
    s.finish();
}
