//! Red-team round 7: what a prepared statement or portal name stands for
//! across the segments of one pipeline. After an error the server skips
//! every message up to the next Sync, so a Parse, Bind or Close in that
//! stretch changes nothing; a Parse of a name in use fails and leaves the
//! old statement. pgveil, reading the client's messages ahead of the
//! server's answers, must not take a name for what a message of an earlier
//! segment made it before the server has said whether that message ran:
//! a statement refused or masked on the server would otherwise run under a
//! harmless decoy's plan and return clear values.
//!
//! The same for cursors and portals (one namespace on the server) and for
//! the settings that decide how the server reads text: a SET of
//! standard_conforming_strings or client_encoding is in effect for the
//! next statement of a pipeline before the server reports it.
//!
//! An error shows back the names the client wrote (`relation "t" does
//! not exist`), never a value. And every form that runs `=` by name
//! (USING, NATURAL, IN (SELECT …), NULLIF) resolves it: a user-defined `=`
//! on the search_path would otherwise see every stored value.
//!
//! Raw protocol messages (the drivers do not send these sequences), each
//! pipeline written at once as an attacker would, as `dave_trust` (every
//! default mask; cvv denied).

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::*;
use common::Proxy;

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        bank::start_proxy(bank::POLICIES)
    })
}

/// Computed from protected columns: refused for dave_trust, and in clear
/// on the server if it ever ran.
const REFUSED: &str =
    "SELECT customers.id, id_number || '' AS v, cvv || '' AS w FROM customers JOIN cards ON cards.customer_id = customers.id ORDER BY 1";
/// A harmless statement of another shape.
const DECOY: &str = "SELECT 1 AS id, 'x' AS v, 'y' AS w";

fn all(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Bind the statement to the unnamed portal, describe and run it, Sync.
fn run(statement: &str) -> Vec<u8> {
    all(&[
        Raw::bind("", statement, 0),
        Raw::describe(b'P', ""),
        Raw::execute("", 0),
        Raw::sync(),
    ])
}

/// Everything the server answers up to the `n`th ReadyForQuery.
fn answers(raw: &mut Raw, n: usize) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend(raw.read_until_ready());
    }
    out
}

/// The text values of a DataRow.
fn fields(row: &[u8]) -> Vec<String> {
    let count = u16::from_be_bytes([row[0], row[1]]);
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]]);
        at += 4;
        if let Ok(len) = usize::try_from(len) {
            out.push(String::from_utf8_lossy(&row[at..at + len]).into_owned());
            at += len;
        }
    }
    out
}

/// No value of the fixture's protected columns in `msgs`, and the session
/// still answers.
fn no_clear_values(raw: &mut Raw, what: &str, msgs: &[(u8, Vec<u8>)]) {
    let text = String::from_utf8_lossy(&raw_bytes(msgs)).into_owned();
    assert_no_secret(what, &text);
    for (_, row) in msgs.iter().filter(|(t, _)| *t == b'D') {
        for field in fields(row) {
            // The fixture's CVVs, as a number of their own in the value.
            let cvv = field
                .split(|c: char| !c.is_ascii_digit())
                .any(|run| run == "987" || run == "123");
            assert!(!cvv, "{what}: a value holds a CVV: {field} in {text}");
        }
    }
    let after = raw.query("SELECT 1");
    assert!(
        after.iter().any(|(t, _)| *t == b'D'),
        "{what}: the session stopped answering: {after:?}"
    );
}

#[test]
fn an_unnamed_parse_skipped_after_a_refusal_does_not_replace_the_statement() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    // pgveil refuses the Execute; the server skips the decoy's Parse.
    raw.send(&all(&[
        Raw::parse("", REFUSED),
        Raw::bind("", "", 0),
        Raw::execute("", 0),
        Raw::parse("", DECOY),
        Raw::sync(),
        run(""),
    ]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(&mut raw, "refusal, then a skipped decoy", &msgs);
    assert!(
        msgs.iter().filter(|(t, _)| *t == b'E').count() >= 1,
        "the refused statement must be refused: {msgs:?}"
    );
}

#[test]
fn an_unnamed_parse_skipped_after_a_server_error_does_not_replace_the_statement() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    raw.send(&all(&[
        Raw::parse("", REFUSED),
        Raw::sync(),
        // Fails on the server: the decoy's Parse after it is skipped.
        Raw::parse("x1", "SELECT * FROM no_such_table_xyz"),
        Raw::parse("", DECOY),
        Raw::sync(),
        run(""),
    ]));
    let msgs = answers(&mut raw, 3);
    no_clear_values(&mut raw, "server error, then a skipped decoy", &msgs);
    // The decoy that did run is answered as itself.
    raw.send(&all(&[
        Raw::parse("", DECOY),
        Raw::bind("", "", 0),
        Raw::execute("", 0),
        Raw::sync(),
    ]));
    let msgs = raw.read_until_ready();
    assert_eq!(Raw::first_value(&msgs).as_deref(), Some("1"), "{msgs:?}");
}

#[test]
fn a_named_statement_closed_and_parsed_again_in_a_skipped_segment_keeps_its_plan() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    raw.send(&all(&[Raw::parse("s", REFUSED), Raw::sync()]));
    let parsed = raw.read_until_ready();
    assert!(parsed.iter().any(|(t, _)| *t == b'1'), "{parsed:?}");
    raw.send(&all(&[
        Raw::parse("x1", "SELECT * FROM no_such_table_xyz"),
        Raw::close(b'S', "s"),
        Raw::parse("s", DECOY),
        Raw::sync(),
        run("s"),
    ]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(&mut raw, "named statement, skipped Close and Parse", &msgs);
    // Parsing a name in use fails on the server and leaves the old one.
    raw.send(&all(&[Raw::parse("s", DECOY), Raw::sync(), run("s")]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(&mut raw, "named statement parsed again while in use", &msgs);
    // Closed for real, the name takes a new statement.
    raw.send(&all(&[
        Raw::close(b'S', "s"),
        Raw::parse("s", DECOY),
        Raw::sync(),
        Raw::bind("", "s", 0),
        Raw::execute("", 0),
        Raw::sync(),
    ]));
    let msgs = answers(&mut raw, 2);
    assert_eq!(Raw::first_value(&msgs).as_deref(), Some("1"), "{msgs:?}");
}

#[test]
fn a_portal_bound_again_in_a_failed_segment_keeps_its_plan() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    // A masked portal, suspended after one row, in a transaction; a
    // savepoint rolled back after a failed Bind of the same name keeps it.
    raw.query("BEGIN");
    raw.send(&all(&[
        // Masked by lineage: a scalar subquery's column names no table.
        Raw::parse(
            "m",
            "SELECT (SELECT id_number) AS v, (SELECT mobile) AS w FROM customers ORDER BY id",
        ),
        Raw::bind("p", "m", 0),
        Raw::execute("p", 1),
        Raw::sync(),
    ]));
    let first = raw.read_until_ready();
    raw.query("SAVEPOINT a");
    raw.send(&all(&[
        Raw::parse("d", DECOY),
        // Fails on the server: portal "p" exists.
        Raw::bind("p", "d", 0),
        Raw::sync(),
        msg(b'Q', &cstr("ROLLBACK TO SAVEPOINT a")),
        Raw::execute("p", 0),
        Raw::sync(),
    ]));
    let msgs = answers(&mut raw, 3);
    let mut seen = first;
    seen.extend(msgs);
    no_clear_values(&mut raw, "portal bound again in a failed segment", &seen);
    raw.query("ROLLBACK");
}

#[test]
fn pipelines_that_use_a_statement_of_an_earlier_segment_still_run() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    let masked = Raw::first_value(&raw.query("SELECT id_number FROM customers WHERE id = 1"));
    // Statements parsed in one segment and bound in the next, written at
    // once (psycopg's pipeline mode does this): pgveil waits for the first
    // segment's answers and runs the rest as sent.
    raw.send(&all(&[
        Raw::parse("a", "SELECT id_number FROM customers WHERE id = 1"),
        Raw::parse("", "SELECT count(*) FROM customers"),
        Raw::sync(),
        Raw::bind("", "a", 0),
        Raw::execute("", 0),
        Raw::sync(),
        Raw::bind("", "", 0),
        Raw::execute("", 0),
        Raw::sync(),
    ]));
    let msgs = answers(&mut raw, 3);
    let text = String::from_utf8_lossy(&raw_bytes(&msgs)).into_owned();
    assert_no_secret("pipelined statements", &text);
    assert!(!msgs.iter().any(|(t, _)| *t == b'E'), "{text}");
    let values: Vec<_> = msgs
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|m| Raw::first_value(std::slice::from_ref(m)).unwrap_or_default())
        .collect();
    assert_eq!(values.len(), 2, "{text}");
    assert_eq!(Some(&values[0]), masked.as_ref(), "{values:?}");
    assert_eq!(values[1], "2");
}

/// The fields of an ErrorResponse or NoticeResponse, by type.
fn error_fields(msgs: &[(u8, Vec<u8>)]) -> Vec<(u8, String)> {
    let Some((_, body)) = msgs.iter().find(|(t, _)| *t == b'E' || *t == b'N') else {
        return Vec::new();
    };
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

#[test]
fn errors_show_the_names_the_client_wrote_and_no_value() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    let fields = error_fields(&raw.query("SELECT * FROM __dne__"));
    assert!(
        fields.contains(&(b'M', "relation \"__dne__\" does not exist".into())),
        "{fields:?}"
    );
    assert!(fields.contains(&(b'P', "15".into())), "{fields:?}");
    let fields = error_fields(&raw.query("DROP TABLE IF EXISTS \"No Such\""));
    assert!(
        fields.contains(&(b'M', "table \"No Such\" does not exist, skipping".into())),
        "{fields:?}"
    );
    // A refusal's hint says what the role's rule allows.
    let fields = error_fields(&raw.query("SELECT id FROM customers WHERE id_number = '1'"));
    let hint = fields
        .iter()
        .find(|(t, _)| *t == b'H')
        .map(|(_, h)| h.clone());
    assert!(
        hint.as_deref()
            .is_some_and(|h| h.contains("may not filter")),
        "{fields:?}"
    );
    // A literal is not a name: the server's value stays hidden.
    let fields = error_fields(&raw.query(&format!("SELECT '{}'::int", bank::ID_NUMBER)));
    let message = fields
        .iter()
        .find(|(t, _)| *t == b'M')
        .map(|(_, m)| m.clone());
    assert_eq!(
        message.as_deref(),
        Some("value \"***\" is out of range for type ***"),
        "{fields:?}"
    );
}

/// A cursor is a portal: a protocol portal's plan does not outlive its
/// transaction, and a cursor and a portal of one name replace each other.
#[test]
fn cursors_and_portals_share_one_namespace() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    // A harmless portal "p", gone with its implicit transaction; then a
    // cursor "p" over masked columns, executed through the protocol.
    raw.send(&all(&[
        Raw::parse("s1", "SELECT 'aaa'::text AS a, 'bbb'::text AS b"),
        Raw::bind("p", "s1", 0),
        Raw::describe(b'P', "p"),
        Raw::execute("p", 0),
        Raw::sync(),
    ]));
    raw.read_until_ready();
    raw.query(
        "DECLARE p CURSOR WITH HOLD FOR SELECT full_name, id_number FROM customers ORDER BY id",
    );
    raw.send(&all(&[Raw::execute("p", 3), Raw::sync()]));
    let msgs = raw.read_until_ready();
    no_clear_values(&mut raw, "cursor executed as a stale portal", &msgs);
    assert!(
        msgs.iter().any(|(t, _)| *t == b'D'),
        "the cursor's rows: {msgs:?}"
    );
    raw.query("CLOSE p");
    // A cursor closed as a portal and bound again: FETCH reads the portal.
    raw.query("BEGIN");
    raw.query("DECLARE d CURSOR FOR SELECT 'a'::text AS x");
    raw.send(&all(&[
        Raw::close(b'P', "d"),
        Raw::parse(
            "s2",
            "SELECT (SELECT id_number FROM customers ORDER BY id LIMIT 1) AS x",
        ),
        Raw::bind("d", "s2", 0),
        Raw::sync(),
    ]));
    raw.read_until_ready();
    let msgs = raw.query("FETCH ALL FROM d");
    no_clear_values(&mut raw, "portal fetched as a stale cursor", &msgs);
    raw.query("ROLLBACK");
}

#[test]
fn sql_execute_of_a_name_an_unanswered_segment_parses_is_refused() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    raw.send(&all(&[Raw::parse("x", REFUSED), Raw::sync()]));
    raw.read_until_ready();
    raw.send(&all(&[
        Raw::parse("", "SELECT * FROM no_such_table_q"),
        Raw::close(b'S', "x"),
        Raw::parse("x", DECOY),
        Raw::sync(),
        msg(b'Q', &cstr("EXECUTE x")),
    ]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(&mut raw, "SQL EXECUTE after a skipped decoy", &msgs);
}

/// A change of how the server reads text takes effect before the server
/// reports it: the statements after it are read under the new setting.
#[test]
fn statements_after_a_change_of_how_text_is_read_are_read_as_the_server_reads_them() {
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    let trick = "SELECT 'a\\', ' || (SELECT cvv FROM cards ORDER BY id LIMIT 1) || ' AS x --'";
    // Run one statement at a time (the DDL makes pgveil step through them).
    let msgs = raw.query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS t1 (a int); SET standard_conforming_strings = off; {trick}"
    ));
    no_clear_values(
        &mut raw,
        "stepwise, after SET standard_conforming_strings",
        &msgs,
    );
    raw.query("SET standard_conforming_strings = on");
    // A pipeline.
    raw.send(&all(&[
        Raw::parse("", "SET standard_conforming_strings = off"),
        Raw::bind("", "", 0),
        Raw::execute("", 0),
        Raw::parse("", trick),
        run(""),
    ]));
    let msgs = raw.read_until_ready();
    no_clear_values(
        &mut raw,
        "pipeline, after SET standard_conforming_strings",
        &msgs,
    );
    raw.query("SET standard_conforming_strings = on");
    // Two simple Queries in one write.
    raw.send(&all(&[
        msg(b'Q', &cstr("SET standard_conforming_strings = off")),
        msg(b'Q', &cstr(trick)),
    ]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(
        &mut raw,
        "two Queries, after SET standard_conforming_strings",
        &msgs,
    );
    raw.query("SET standard_conforming_strings = on");
    // client_encoding: in SJIS, 0x95 0x5c is one character, so the string
    // ends where a UTF-8 reading sees an escaped quote.
    let mut sjis =
        b"SELECT E'\x95\\' AS a, (SELECT cvv FROM cards ORDER BY id LIMIT 1) AS b --'".to_vec();
    sjis.push(0);
    let mut parse = vec![0u8];
    parse.extend(sjis);
    parse.extend(0i16.to_be_bytes());
    raw.send(&all(&[
        msg(b'Q', &cstr("SET client_encoding = 'SJIS'")),
        msg(b'P', &parse),
        run(""),
    ]));
    let msgs = answers(&mut raw, 2);
    raw.query("SET client_encoding = 'UTF8'");
    no_clear_values(&mut raw, "pipeline, after SET client_encoding", &msgs);
}

/// Red-team round 3: a user-defined `=` runs wherever PostgreSQL resolves
/// `=` by name, USING and NATURAL joins, `IN (SELECT …)` and NULLIF
/// included; and an operator cannot be made over a function that only the
/// same query string creates.
#[tokio::test]
async fn every_form_that_runs_an_equality_operator_resolves_it() {
    let proxy = setup();
    let s = Session::connect(proxy, "agent").await;
    // Made in one string, where pgveil's catalog lacks the new function.
    let (ok, text) = s
        .visible(
            "CREATE TABLE loot7 (v text); \
             CREATE FUNCTION f7(varchar, varchar) RETURNS bool LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO loot7 VALUES ($1); RETURN $1::text = $2::text; END $$; \
             CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, \
               FUNCTION = f7, HASHES = 1)",
        )
        .await;
    let made = common::cluster()
        .psql_super_db(
            "bank",
            "SELECT count(*) FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode \
             WHERE p.proname = 'f7'",
        )
        .unwrap_or_default();
    let _ = common::cluster().psql_super_db(
        "bank",
        "DROP OPERATOR IF EXISTS public.= (varchar, varchar); \
         DROP FUNCTION IF EXISTS f7(varchar, varchar); DROP TABLE IF EXISTS loot7",
    );
    assert!(
        !ok && text.contains("42501") && made.trim().ends_with('0'),
        "CREATE OPERATOR over a function made in the same string: {text} / {made}"
    );
    // An `=` another role planted in a schema on the search_path.
    common::cluster()
        .psql_super_db(
            "bank",
            "CREATE SCHEMA IF NOT EXISTS plant; GRANT USAGE ON SCHEMA plant TO PUBLIC; \
             CREATE OR REPLACE FUNCTION plant.eq(varchar, varchar) RETURNS bool \
               LANGUAGE sql AS 'SELECT $1::text = $2::text'; \
             DROP OPERATOR IF EXISTS plant.= (varchar, varchar); \
             CREATE OPERATOR plant.= (LEFTARG = varchar, RIGHTARG = varchar, \
               FUNCTION = plant.eq, HASHES = 1)",
        )
        .unwrap();
    // DDL through pgveil makes it read the catalog again (the operator was
    // made directly).
    s.exec("CREATE TABLE IF NOT EXISTS refresh7 (a int)").await;
    s.exec("SET search_path = public, plant").await;
    for sql in [
        // Resolved before this change too.
        "SELECT count(*) FROM customers a JOIN customers b ON a.id_number = b.id_number",
        "SELECT count(*) FROM customers WHERE id_number IN (SELECT id_number FROM customers)",
        "SELECT count(*) FROM customers WHERE id_number NOT IN (SELECT id_number FROM customers)",
        "SELECT count(*) FROM customers a JOIN customers b USING (id_number)",
        "SELECT count(*) FROM (SELECT id, id_number FROM customers) a \
         NATURAL JOIN (SELECT id, id_number FROM customers) b",
        "SELECT count(*) FROM customers WHERE NULLIF(id_number, '1') IS NULL",
        // The same behind a cast, a comment, an outer join, a set operation.
        "SELECT count(*) FROM customers WHERE (id_number)::varchar IN \
         (SELECT id_number /* c */ FROM customers)",
        "SELECT count(*) FROM customers a LEFT JOIN customers b USING (id_number)",
        "SELECT count(*) FROM customers a FULL JOIN \
         (SELECT id_number FROM customers UNION SELECT '1') b USING (id_number)",
        "SELECT count(*) FROM customers WHERE id_number IN \
         (SELECT id_number FROM customers UNION ALL SELECT '1'::varchar)",
    ] {
        s.refused(sql).await;
    }
    // Columns of other types join as before.
    let (ok, text) = s
        .visible("SELECT count(*) FROM customers JOIN cards USING (id)")
        .await;
    assert!(ok, "{text}");
    let _ = common::cluster().psql_super_db(
        "bank",
        "DROP SCHEMA plant CASCADE; DROP TABLE IF EXISTS refresh7",
    );
    s.finish();
}
