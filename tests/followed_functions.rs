//! User-defined functions pgveil can see into (SQL and PL/pgSQL, read with
//! PostgreSQL's own parsers): a masked role may call one the policy does
//! not list when nothing its body reaches, through the relations it names,
//! the views they are, their inheritance children and foreign keys, and
//! the functions it calls, is protected from that role, and no protected
//! value is passed to it. Dynamic SQL, cursors and code pgveil cannot read
//! still need `functions.allow`. Through tokio-postgres on both protocols.

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
                "CREATE ROLE prober LOGIN PASSWORD 'role-pw';
                 CREATE TABLE tokens (id serial PRIMARY KEY, card_no text REFERENCES cards (card_no));
                 CREATE TABLE notes (id serial PRIMARY KEY, body text UNIQUE);
                 GRANT ALL ON tokens, notes TO PUBLIC;
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
                 CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1';
                 CREATE FUNCTION note_count(b text) RETURNS bigint LANGUAGE plpgsql AS $$
                   BEGIN RETURN (SELECT count(*) FROM notes WHERE body = b); END $$;
                 CREATE FUNCTION keep_note(b text) RETURNS int LANGUAGE plpgsql AS $$
                   DECLARE n int; BEGIN INSERT INTO notes (body) VALUES (b) RETURNING id INTO n;
                   RETURN n; END $$;
                 CREATE FUNCTION twice(i int) RETURNS int LANGUAGE plpgsql AS $$
                   BEGIN RETURN add_one(add_one(i)); END $$;
                 CREATE FUNCTION find_or_create(OUT response notes, OUT caught text)
                   RETURNS record LANGUAGE plpgsql AS $$
                   BEGIN INSERT INTO notes (body) VALUES ('first') RETURNING * INTO response;
                   EXCEPTION WHEN unique_violation THEN
                     GET STACKED DIAGNOSTICS caught = PG_EXCEPTION_DETAIL; END $$;
                 CREATE FUNCTION peek(i int) RETURNS text LANGUAGE plpgsql AS $$
                   DECLARE r text; BEGIN SELECT id_number INTO r FROM customers WHERE id = i;
                   RETURN r; END $$;
                 CREATE FUNCTION peek_view(i int) RETURNS text LANGUAGE sql AS
                   'SELECT mobile FROM customer_contacts WHERE id = i';
                 CREATE FUNCTION peek_twice(i int) RETURNS text LANGUAGE sql AS 'SELECT peek(i)';
                 CREATE FUNCTION cvv_check(c text) RETURNS bool LANGUAGE sql AS
                   'SELECT EXISTS (SELECT 1 FROM cards WHERE cvv = c)';
                 CREATE FUNCTION add_token(t text) RETURNS void LANGUAGE sql AS
                   'INSERT INTO tokens (card_no) VALUES (t)';
                 CREATE FUNCTION dyn(q text) RETURNS int LANGUAGE plpgsql AS $$
                   DECLARE n int; BEGIN EXECUTE q INTO n; RETURN n; END $$;
                 CREATE FUNCTION read_cursor(c refcursor) RETURNS text LANGUAGE plpgsql AS $$
                   DECLARE r text; BEGIN FETCH c INTO r; RETURN r; END $$;
                 CREATE FUNCTION stats() RETURNS bigint LANGUAGE sql AS
                   'SELECT count(*) FROM pg_stats WHERE tablename = ''customers''';
                 CREATE FUNCTION pathed() RETURNS bigint LANGUAGE sql SET search_path = public AS
                   'SELECT count(*) FROM notes';
                 CREATE FUNCTION hid(i int) RETURNS text LANGUAGE plpgsql AS $$
                   DECLARE r record := ROW((SELECT c.id_number FROM customers c WHERE c.id = i));
                   BEGIN RETURN r.f1; END $$;
                 CREATE FUNCTION typed(i int) RETURNS int LANGUAGE plpgsql AS $$
                   DECLARE n notes.id%TYPE := i; BEGIN RETURN n; END $$;
                 CREATE SCHEMA ovs; GRANT USAGE ON SCHEMA ovs TO PUBLIC;
                 CREATE FUNCTION ovs.ov(t text) RETURNS text LANGUAGE sql AS 'SELECT t';
                 CREATE FUNCTION public.ov(i int) RETURNS text LANGUAGE sql AS
                   'SELECT id_number FROM customers WHERE id = i';
                 CREATE FUNCTION backslash() RETURNS text LANGUAGE sql AS
                   $f$SELECT '\\' -- ' || (SELECT string_agg(id_number, ',') FROM customers)
                   $f$;
                 CREATE FUNCTION activity() RETURNS text LANGUAGE sql AS
                   'SELECT string_agg(query, '';'') FROM pg_stat_activity';
                 CREATE FUNCTION public.card_hint(t text) RETURNS text LANGUAGE sql AS 'SELECT t';
                 CREATE SCHEMA other; GRANT USAGE ON SCHEMA other TO PUBLIC;
                 CREATE FUNCTION other.card_hint(i int) RETURNS text LANGUAGE sql AS
                   'SELECT id_number FROM customers WHERE id = i';",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// Runs `sql` in a transaction rolled back after it and expects it to work.
async fn works(s: &Session, sql: &str) {
    s.works_rolled_back(sql, true).await;
}

#[tokio::test]
async fn functions_that_reach_nothing_protected_run_for_masked_roles() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT add_one(1)",
        "SELECT add_one(id) FROM customers",
        "SELECT note_count('x')",
        "SELECT keep_note('hello')",
        "SELECT twice(40)",
        "SELECT (f.response).id, f.caught FROM find_or_create() f",
        "SELECT * FROM find_or_create()",
        "SELECT typed(7)",
    ] {
        works(&s, sql).await;
    }
    // Made through pgveil by the role itself, then called.
    s.exec("CREATE FUNCTION mine(i int) RETURNS int LANGUAGE sql AS 'SELECT i * 2'")
        .await;
    works(&s, "SELECT mine(21)").await;
    // Sequelize's findOrCreate: a temporary function made, called and
    // dropped in one simple query.
    let (ok, text) = s
        .attack(
            "CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response notes, \
             OUT sequelize_caught_exception text) RETURNS RECORD AS $func_1$ BEGIN \
             INSERT INTO notes (body) VALUES ('seq') RETURNING * INTO response; \
             EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS \
             sequelize_caught_exception = PG_EXCEPTION_DETAIL; END $func_1$ LANGUAGE plpgsql; \
             SELECT (testfunc.response).id, testfunc.sequelize_caught_exception \
             FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();",
        )
        .await;
    assert!(ok, "findOrCreate: {text}");
    s.finish();
}

#[tokio::test]
async fn functions_that_reach_protected_data_still_need_the_policy() {
    let s = as_role("dev").await;
    for sql in [
        // They read protected columns: directly, through a view, through
        // another function.
        "SELECT peek(1)",
        "SELECT peek_view(1)",
        "SELECT peek_twice(1)",
        "SELECT cvv_check('987')",
        // A foreign key into cards.card_no makes the insert a lookup.
        "SELECT add_token('6222021234567890128')",
        // Dynamic SQL, a cursor of the caller, statistics of protected columns.
        "SELECT dyn('SELECT count(*) FROM customers')",
        "SELECT stats()",
        // Its own search_path decides what its names are.
        "SELECT pathed()",
        // A record variable's default, which libpg_query's tree leaves out.
        "SELECT hid(1)",
        // Other sessions' statement texts.
        "SELECT activity()",
        // Run later: a cursor or prepared statement runs the body it has
        // by then, and PostgreSQL compiles a replaced body again.
        "DECLARE c CURSOR WITH HOLD FOR SELECT add_one(i) FROM generate_series(1, 3) i",
        "PREPARE p AS SELECT add_one(1)",
        // Attached where others run it later, with whatever body it has.
        "CREATE TEMP TABLE later (id int, v int DEFAULT add_one(1))",
        "CREATE TEMP VIEW later_v AS SELECT add_one(1) AS v",
        // A protected value passed to a function it may store.
        "SELECT keep_note(mobile) FROM customers",
        "SELECT count(keep_note(id_number)) FROM customers",
    ] {
        s.refused(sql).await;
    }
    // A backslash in a plain string: read as pgveil reads it while
    // standard_conforming_strings is on, otherwise with it off.
    s.works_rolled_back("SELECT backslash()", true).await;
    s.exec("SET standard_conforming_strings = off").await;
    s.refused("SELECT backslash()").await;
    s.exec("RESET standard_conforming_strings").await;
    // PostgreSQL picks the overload by argument types across the path:
    // ov(id) runs public.ov(int) although ovs.ov(text) comes first.
    s.exec("SET search_path = ovs, public").await;
    s.refused("SELECT ov(id) FROM generate_series(1, 3) id")
        .await;
    // The policy lists public.card_hint(text); PostgreSQL runs
    // other.card_hint(int) for an integer, listed or not.
    s.exec("SET search_path = public, other").await;
    s.refused("SELECT card_hint(1)").await;
    s.exec("RESET search_path").await;
    // The caller's cursor on protected rows, read inside a function.
    s.exec("BEGIN").await;
    s.exec("DECLARE c CURSOR FOR SELECT id_number FROM customers")
        .await;
    let (ok, text) = s.attack("SELECT read_cursor('c')").await;
    assert!(!ok && text.contains("42501"), "read_cursor: {text}");
    s.exec("ROLLBACK").await;
    s.finish();
    // A role that sees every column peek reaches in clear may call it; a
    // role that sees mobile in clear may pass it on.
    let auditor = as_role("auditor").await;
    for sql in [
        "SELECT peek(1)",
        "BEGIN; SELECT keep_note(mobile) FROM customers WHERE id = 1; ROLLBACK",
    ] {
        if let Err(e) = auditor.c.simple_query(sql).await {
            panic!("auditor: `{sql}` -> {}", error_text(&e));
        }
    }
}

#[tokio::test]
async fn ddl_waits_for_a_suspended_portal_that_calls_a_followed_function() {
    let mut s = as_role("dev").await;
    s.exec("CREATE FUNCTION dev_fn(i int) RETURNS int LANGUAGE sql AS 'SELECT i'")
        .await;
    let tx = s.c.transaction().await.unwrap();
    let statement = tx
        .prepare("SELECT dev_fn(i) FROM generate_series(1, 3) i")
        .await
        .unwrap();
    let portal = tx.bind(&statement, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    // Replacing the body now would change what the rest of the portal runs.
    let replaced = tx
        .batch_execute(
            "CREATE OR REPLACE FUNCTION dev_fn(i int) RETURNS int LANGUAGE sql \
             AS 'SELECT i + 100'",
        )
        .await;
    let text = match replaced {
        Ok(()) => "succeeded".to_owned(),
        Err(e) => error_text(&e),
    };
    assert!(
        text.contains("42501") && text.contains("user-defined-function"),
        "DDL with a suspended portal open: {text}"
    );
    drop(tx);
    // After the transaction (its ROLLBACK answered) the same DDL passes.
    s.exec("SELECT 1").await;
    s.exec("CREATE OR REPLACE FUNCTION dev_fn(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1'")
        .await;
}

#[tokio::test]
async fn a_body_replaced_earlier_in_the_same_query_string_is_the_one_judged() {
    let s = as_role("dev").await;
    s.exec("CREATE FUNCTION dev_swap(i int) RETURNS text LANGUAGE sql AS 'SELECT i::text'")
        .await;
    s.works_rolled_back("SELECT dev_swap(1)", true).await;
    // The replacement and the call in one string, then in one transaction.
    let swap = "CREATE OR REPLACE FUNCTION dev_swap(i int) RETURNS text LANGUAGE sql AS \
                'SELECT id_number FROM customers WHERE id = i'";
    let (ok, text) = s.attack(&format!("{swap}; SELECT dev_swap(1)")).await;
    assert!(!ok && text.contains("42501"), "one string: {text}");
    s.exec("BEGIN").await;
    s.exec(swap).await;
    let (ok, text) = s.attack("SELECT /* same call */ dev_swap(1)").await;
    assert!(!ok && text.contains("42501"), "one transaction: {text}");
    s.exec("ROLLBACK").await;
    s.finish();
}
