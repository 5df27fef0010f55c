//! Red-team round 8: what a role with `filter: equality` learns from the
//! order of rows, and what a keyed mask gives away when the statement
//! chooses the values it masks.
//!
//! - Grouping (GROUP BY, DISTINCT, DISTINCT ON, PARTITION BY, UNION and
//!   the other de-duplicating set operations) compares values for
//!   equality, but PostgreSQL may carry it out by sorting, and the rows
//!   then come back in the order of the clear values. With rows of chosen
//!   values among them (a `UNION ALL` of constants) the order places each
//!   stored value between two known ones, and a few statements per
//!   character recover it. Such uses are general uses, refused to
//!   equality roles.
//! - A value that is the protected column or something else (`UNION ALL`
//!   with constants or generated candidates) compares the column with that
//!   something else when grouped: never an equality use.
//! - A keyed mask (`hash`) applied to an output that may carry constants
//!   turns pgveil into a token oracle: the token of each candidate, matched
//!   with the stored value's token, gives the value. So does a write of
//!   chosen values into the column, read back as tokens.
//!
//! Through tokio-postgres on both protocols, as `agent` (call_center:
//! `filter: equality` on id_number and card_no) and `ana` (analyst:
//! id_number as a keyed hash token, `filter: equality`).

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db(
                "bank",
                "CREATE ROLE ana LOGIN PASSWORD 'role-pw' IN ROLE analyst;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// Constants just below and above the fixture's ID number: sorted among
/// the stored values, they bracket it.
const PROBES: &str = "SELECT -1, '11010519491231001' UNION ALL SELECT -2, '11010519491231003'";

#[tokio::test]
async fn grouping_a_protected_column_is_refused_to_equality_roles() {
    let s = as_role("agent").await;
    for sql in [
        // The round's exploit: DISTINCT ON always sorts.
        format!(
            "SELECT DISTINCT ON (x, id) id, x FROM (SELECT id, id_number x FROM customers \
             UNION ALL {PROBES}) s"
        ),
        "SELECT DISTINCT ON (id_number) id FROM customers".into(),
        "SELECT DISTINCT id_number, id FROM customers".into(),
        "SELECT id FROM (SELECT DISTINCT id_number, id FROM customers) s".into(),
        "SELECT id_number, count(*) FROM customers GROUP BY id_number".into(),
        "SELECT min(id) FROM customers GROUP BY ROLLUP (id_number)".into(),
        "SELECT min(id) FROM customers GROUP BY GROUPING SETS ((id_number), ())".into(),
        "SELECT min(id) FROM customers GROUP BY 1 + 0, id_number".into(),
        "SELECT id, row_number() OVER (PARTITION BY id_number) FROM customers".into(),
        "SELECT id FROM customers ORDER BY rank() OVER (PARTITION BY id_number ORDER BY id)"
            .into(),
        format!(
            "SELECT id, x FROM (SELECT id, id_number x FROM customers) c UNION SELECT * FROM ({PROBES}) p"
        ),
        "SELECT card_no FROM cards INTERSECT SELECT '6222021234567890128'".into(),
        "SELECT card_no, id FROM cards EXCEPT SELECT '1', 1".into(),
        // Generated candidates grouped with the stored values.
        "SELECT max(g) FROM (SELECT id_number x, NULL::int g FROM customers UNION ALL \
         SELECT '1101051949123100' || lpad(g::text, 2, '0'), g FROM generate_series(0, 99) g) s \
         GROUP BY x HAVING count(*) > 1"
            .into(),
        "SELECT count(DISTINCT x) FROM (SELECT id_number x FROM customers UNION ALL \
         SELECT '11010519491231002X') s"
            .into(),
        "SELECT count(DISTINCT x) FROM (SELECT id_number x FROM customers UNION ALL \
         SELECT '1101051949123100' || lpad(g::text, 2, '0') FROM generate_series(0, 99) g) s"
            .into(),
        "SELECT nullif(x, 'a') IS NULL FROM (SELECT id_number x FROM customers UNION ALL \
         SELECT 'b') s"
            .into(),
        "SELECT c.id FROM customers c JOIN (SELECT id_number x FROM customers UNION ALL \
         SELECT '11010519491231002X') s ON c.id_number = s.x"
            .into(),
        // Round 9: a merge join of the column with itself returns the rows
        // in the order of the clear values, probe rows the role inserted
        // among them.
        "SELECT a.id FROM customers a JOIN customers b ON a.id_number = b.id_number".into(),
        "SELECT id FROM customers WHERE id_number IN (SELECT id_number FROM customers)".into(),
        "SELECT a.id FROM customers a WHERE EXISTS (SELECT 1 FROM customers b \
         WHERE b.id_number = a.id_number AND b.id <> a.id)"
            .into(),
        "SELECT a.id FROM customers a JOIN customers b USING (id_number)".into(),
    ] {
        s.refused(&sql).await;
    }
    // What the rule is for still works: lookups by constants, counting
    // distinct values.
    for sql in [
        format!("SELECT id, id_number FROM customers WHERE id_number = '{ID_NUMBER}'"),
        "SELECT count(DISTINCT id_number) FROM customers".into(),
        "SELECT coalesce(id_number, '') FROM customers".into(),
        "SELECT DISTINCT branch FROM customers".into(),
        "SELECT branch, count(*) FROM customers GROUP BY branch".into(),
    ] {
        let (ok, text) = s.attack(&sql).await;
        assert!(ok, "{sql}: {text}");
    }
    s.finish();
}

#[tokio::test]
async fn keyed_tokens_of_chosen_values_are_refused() {
    let s = as_role("ana").await;
    for sql in [
        // The round's exploit: the token of every candidate, next to it.
        "SELECT g, x FROM (SELECT NULL::int g, id_number x FROM customers WHERE false UNION ALL \
         SELECT g, '1101051949123100' || lpad(g::text, 2, '0') FROM generate_series(0, 99) g) s",
        "SELECT id_number FROM customers UNION ALL SELECT '11010519491231002X'",
        "SELECT x FROM (SELECT id_number x FROM customers UNION ALL VALUES ('1'), ('2')) s",
        "WITH c AS (SELECT id_number FROM customers UNION ALL SELECT full_name FROM customers) \
         SELECT * FROM c",
        "SELECT coalesce(id_number, '11010519491231002X') FROM customers",
        "SELECT CASE WHEN id > 0 THEN id_number ELSE '11010519491231002X' END FROM customers",
        "SELECT coalesce(NULL::varchar, id_number) FROM customers",
        // Stored first, then read back as tokens.
        "INSERT INTO customers (full_name, id_number) VALUES ('x', '110105194912310010') \
         RETURNING id",
        "INSERT INTO customers (full_name, id_number) SELECT 'x', '1101051949123100' || \
         lpad(g::text, 2, '0') FROM generate_series(0, 99) g",
        "UPDATE customers SET id_number = '110105194912310010' WHERE id = 2",
        "WITH w AS (INSERT INTO customers (full_name, id_number) VALUES ('x', '1') RETURNING id) \
         SELECT id FROM w",
        "MERGE INTO customers c USING (SELECT 2 AS id) s ON c.id = s.id \
         WHEN MATCHED THEN UPDATE SET id_number = '1'",
        "COPY customers (full_name, id_number) FROM STDIN",
    ] {
        s.refused(sql).await;
    }
    // The column itself is still shown as its token.
    let rows =
        s.c.query("SELECT id, id_number FROM customers ORDER BY id", &[])
            .await
            .expect("plain read of a hashed column");
    let token: String = rows[0].get(1);
    assert_eq!(token.len(), 16, "{token}");
    assert_ne!(token, ID_NUMBER);
    s.finish();
}

// ---------------------------------------------------------------------------
// A prepared statement bound after DDL of the same pipeline: the server
// plans it again against the new schema (a view in place of the table it
// was parsed over), so the plan pgveil made at Parse no longer holds.

/// Everything the server answers up to the `n`th ReadyForQuery.
fn answers(raw: &mut Raw, n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n).flat_map(|_| raw.read_until_ready()).collect()
}

/// No protected value and no row at all in `msgs`, a refusal among them,
/// and the session still answers.
fn refused_without_values(raw: &mut Raw, what: &str, msgs: &[(u8, Vec<u8>)]) {
    assert_raw_no_secret(what, msgs);
    let text = String::from_utf8_lossy(&raw_bytes(msgs)).into_owned();
    assert!(
        !msgs.iter().any(|(t, _)| *t == b'D'),
        "{what}: rows came back: {text}"
    );
    assert!(
        msgs.iter().any(|(t, _)| *t == b'E') && text.contains("uncommitted-ddl"),
        "{what}: not refused: {text}"
    );
    let after = raw.query("SELECT 1");
    assert!(
        after.iter().any(|(t, _)| *t == b'D'),
        "{what}: the session stopped answering: {after:?}"
    );
}

const VIEW: &str = "CREATE TEMP VIEW t AS SELECT id_number::text AS v, cvv::text AS w \
     FROM customers JOIN cards ON cards.customer_id = customers.id";

fn run_unnamed(sql: &str) -> Vec<u8> {
    [
        Raw::parse("", sql),
        Raw::bind("", "", 0),
        Raw::execute("", 0),
    ]
    .concat()
}

#[test]
fn a_statement_bound_after_ddl_of_its_pipeline_is_refused() {
    let proxy = setup();
    // Parsed in the same pipeline as the DDL, and in an earlier round trip.
    for (name, separate) in [("s1", false), ("s2", true)] {
        let mut raw = Raw::connect(proxy, common::DAVE_TRUST);
        raw.query("CREATE TEMP TABLE t (v text, w text)");
        let parse = Raw::parse(name, "SELECT v, w FROM t");
        if separate {
            raw.send(&[parse.clone(), Raw::sync()].concat());
            answers(&mut raw, 1);
        }
        raw.send(
            &[
                if separate { Vec::new() } else { parse },
                run_unnamed("DROP TABLE t"),
                run_unnamed(VIEW),
                Raw::bind("", name, 0),
                Raw::execute("", 0),
                Raw::sync(),
            ]
            .concat(),
        );
        let msgs = answers(&mut raw, 1);
        refused_without_values(
            &mut raw,
            &format!("{name} (separate Parse: {separate})"),
            &msgs,
        );
    }
    // The DDL in a segment of its own, the Bind written behind it at once.
    let mut raw = Raw::connect(proxy, common::DAVE_TRUST);
    raw.query("CREATE TEMP TABLE t (v text, w text)");
    raw.send(&[Raw::parse("s3", "SELECT v, w FROM t"), Raw::sync()].concat());
    answers(&mut raw, 1);
    raw.send(
        &[
            run_unnamed("DROP TABLE t"),
            run_unnamed(VIEW),
            Raw::sync(),
            Raw::bind("", "s3", 0),
            Raw::execute("", 0),
            Raw::sync(),
        ]
        .concat(),
    );
    let msgs = answers(&mut raw, 2);
    refused_without_values(&mut raw, "DDL in its own segment", &msgs);
    // SQL PREPARE, then EXECUTE through the protocol after the DDL.
    let mut raw = Raw::connect(proxy, common::DAVE_TRUST);
    raw.query("CREATE TEMP TABLE t (v text, w text)");
    raw.query("PREPARE p AS SELECT v, w FROM t");
    raw.send(
        &[
            run_unnamed("DROP TABLE t"),
            run_unnamed(VIEW),
            run_unnamed("EXECUTE p"),
            Raw::sync(),
        ]
        .concat(),
    );
    let msgs = answers(&mut raw, 1);
    refused_without_values(&mut raw, "SQL EXECUTE after DDL", &msgs);
    // In a later round trip the statement is planned again, and refused
    // for the CVV it now reads.
    raw.send(
        &[
            Raw::parse("s4", "SELECT v FROM t"),
            Raw::bind("", "s4", 0),
            Raw::execute("", 0),
            Raw::sync(),
        ]
        .concat(),
    );
    let msgs = answers(&mut raw, 1);
    assert_raw_no_secret("later round trip", &msgs);
}

// ---------------------------------------------------------------------------
// Round 11: session state that changes what a name stands for without DDL
// pgveil reads: DISCARD ALL / DISCARD TEMP drop the session's temporary
// relations (and DISCARD ALL resets search_path), and a search_path change
// makes the server plan a prepared statement again.

#[tokio::test]
async fn discard_forgets_the_temporary_relations_it_drops() {
    for (discard, path) in [("DISCARD ALL", "pg_temp"), ("DISCARD TEMP", "public")] {
        let s = as_role("dev").await;
        s.exec("SET search_path = pg_temp").await;
        s.exec("CREATE TEMP TABLE customers (id int, id_number text, mobile text)")
            .await;
        s.exec(&format!("SET search_path = {path}")).await;
        s.exec(discard).await;
        s.refused("SELECT id, id_number || '' AS i, mobile || '' AS m FROM customers")
            .await;
        s.finish();
    }
}

#[tokio::test]
async fn a_prepared_statement_is_planned_again_under_a_new_search_path() {
    let s = as_role("dev").await;
    s.exec("SET search_path = pg_temp").await;
    s.exec("CREATE TEMP TABLE customers (id int, full_name text, mobile text)")
        .await;
    s.exec("PREPARE p AS SELECT id, full_name || '' AS a, mobile || '' AS b FROM customers")
        .await;
    s.exec("SET search_path = public, pg_temp").await;
    s.refused("EXECUTE p").await;
    s.finish();
    // Through the protocol: in a later round trip, and in one pipeline.
    let proxy = setup();
    for pipelined in [false, true] {
        let mut raw = Raw::connect(proxy, common::DAVE_TRUST);
        raw.query("SET search_path = pg_temp");
        raw.query("CREATE TEMP TABLE customers (id int, full_name text, mobile text)");
        raw.send(
            &[
                Raw::parse(
                    "s",
                    "SELECT id, full_name || '' AS a, mobile || '' AS b FROM customers",
                ),
                Raw::sync(),
            ]
            .concat(),
        );
        answers(&mut raw, 1);
        let set = "SET search_path = public, pg_temp";
        let msgs = if pipelined {
            raw.send(
                &[
                    run_unnamed(set),
                    Raw::bind("", "s", 0),
                    Raw::execute("", 0),
                    Raw::sync(),
                ]
                .concat(),
            );
            answers(&mut raw, 1)
        } else {
            raw.query(set);
            raw.send(&[Raw::bind("", "s", 0), Raw::execute("", 0), Raw::sync()].concat());
            answers(&mut raw, 1)
        };
        assert_raw_no_secret(&format!("pipelined: {pipelined}"), &msgs);
        assert!(
            !msgs.iter().any(|(t, _)| *t == b'D'),
            "pipelined: {pipelined}: rows came back: {msgs:?}"
        );
    }
}
