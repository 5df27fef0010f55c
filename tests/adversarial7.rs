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
//! An error shows back the names the client wrote (`relation "t" does
//! not exist`), never a value.
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
            assert!(
                !field.contains("987") && !field.contains("123"),
                "{what}: a value holds a CVV: {field} in {text}"
            );
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
        Raw::bind("", "", 0),
        Raw::describe(b'P', ""),
        Raw::execute("", 0),
        Raw::sync(),
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
        Raw::bind("", "", 0),
        Raw::describe(b'P', ""),
        Raw::execute("", 0),
        Raw::sync(),
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
        Raw::bind("", "s", 0),
        Raw::describe(b'P', ""),
        Raw::execute("", 0),
        Raw::sync(),
    ]));
    let msgs = answers(&mut raw, 2);
    no_clear_values(&mut raw, "named statement, skipped Close and Parse", &msgs);
    // Parsing a name in use fails on the server and leaves the old one.
    raw.send(&all(&[
        Raw::parse("s", DECOY),
        Raw::sync(),
        Raw::bind("", "s", 0),
        Raw::describe(b'P', ""),
        Raw::execute("", 0),
        Raw::sync(),
    ]));
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
