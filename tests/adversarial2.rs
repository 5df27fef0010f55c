//! Red-team round 2: COPY text masking, guard state tracking (search_path,
//! uncommitted DDL), notification payload scanning and pg_dump. Same fixture
//! as tests/adversarial.rs except that `customers` has a stored generated
//! column (`name_len`) ahead of the protected ones, as real schemas often do.
//! Each test collects every leak and fails once with the full list.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::bank::{self, *};
use common::probe::*;
use common::{Proxy, DAVE_TRUST};
use futures::StreamExt;

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("name_len int GENERATED ALWAYS AS (length(full_name)) STORED,");
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// A raw protocol client of the fixture's pgveil.
fn raw(user: &str) -> Raw {
    Raw::connect(setup(), user)
}

// ---------------------------------------------------------------------------
// Attack families.

impl Session {
    /// COPY through the extended protocol (tokio-postgres `copy_out`): the
    /// rows, or the error. A hang is reported as a failure.
    async fn copy_extended(&self, sql: &str) -> (bool, String) {
        let fut = async {
            match self.c.copy_out(sql).await {
                Ok(stream) => {
                    // Stop at the first error: the stream may repeat it.
                    let mut stream = Box::pin(stream);
                    let mut text = String::new();
                    let mut ok = true;
                    for _ in 0..10_000 {
                        match stream.next().await {
                            Some(Ok(b)) => text.push_str(&String::from_utf8_lossy(&b)),
                            Some(Err(e)) => {
                                ok = false;
                                text.push_str(&error_text(&e));
                                break;
                            }
                            None => break,
                        }
                    }
                    (ok, text)
                }
                Err(e) => (false, error_text(&e)),
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(r) => r,
            Err(_) => {
                self.leaks
                    .lock()
                    .unwrap()
                    .push(format!("HANG: `{sql}` (extended) got no answer in 10s"));
                (false, "HANG".into())
            }
        }
    }

    /// Runs a COPY through both protocols and records leaks. The simple
    /// protocol goes through a raw client (tokio-postgres drops CopyData of
    /// simple queries), as `dave_trust`, who gets the same default masks.
    async fn attack_copy(&self, sql: &str) {
        let (_, text) = self.copy_extended(sql).await;
        self.check(&format!("{sql} (extended)"), &text);
        let (_, text) = raw_simple(sql).await;
        self.check(&format!("{sql} (simple, as dave_trust)"), &text);
    }
}

/// Runs `sql` as one simple Query on a fresh raw connection (role
/// `dave_trust`) and returns everything it got back, lossily as text.
async fn raw_simple(sql: &str) -> (bool, String) {
    raw_simple_seq(&[sql]).await
}

/// Runs each statement as its own simple Query on one raw connection:
/// whether none got an ErrorResponse, and everything received.
async fn raw_simple_seq(sqls: &[&str]) -> (bool, String) {
    let sqls: Vec<String> = sqls.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut r = raw(DAVE_TRUST);
        let mut all = Vec::new();
        let mut ok = true;
        for sql in &sqls {
            let out = r.query(sql);
            ok &= !out.iter().any(|(t, _)| *t == b'E');
            all.extend(raw_bytes(&out));
        }
        (ok, String::from_utf8_lossy(&all).into_owned())
    })
    .await
    .unwrap()
}

/// The NULL string is emitted verbatim by the server and is compared before
/// un-escaping: a NULL string ending in a backslash escapes the delimiter
/// after it, so pgveil's field split is off by one and the protected field
/// lands at an index it does not mask. A NULL string equal to the value
/// passes it through untouched (an equality oracle for filter=deny roles).
#[tokio::test]
async fn copy_null_string_tricks() {
    let s = as_role("dev").await;
    for sql in [
        r"COPY (SELECT NULL::text AS a, mobile FROM customers) TO STDOUT NULL 'z\'",
        r"COPY (SELECT NULL::text AS a, mobile FROM customers) TO STDOUT WITH (NULL 'z\')",
        r"COPY (SELECT NULL::text AS a, id_number, mobile FROM customers) TO STDOUT (FORMAT text, NULL E'\\')",
        r"COPY (SELECT NULL::text AS a, id_number FROM customers) TO STDOUT (DELIMITER '|', NULL '\')",
        "COPY (SELECT mobile FROM customers) TO STDOUT (NULL '13987654321')",
        "COPY (SELECT id_number FROM customers) TO STDOUT NULL '11010519491231002X'",
    ] {
        s.attack_copy(sql).await;
    }
    s.finish();
}

/// `COPY table TO STDOUT` without a column list leaves out generated columns;
/// pgveil's catalog lists them, so every mask index after one is shifted and
/// the protected field right after the generated column (id_number) goes out
/// in clear. The last mask (income bucket) then falls on `branch`; a NULL
/// branch (dev may update it, in a transaction it rolls back) lets the row
/// through.
#[tokio::test]
async fn copy_table_with_generated_column() {
    let s = as_role("dev").await;
    for sql in [
        "COPY customers TO STDOUT",
        "COPY public.customers TO STDOUT WITH (FORMAT text, DELIMITER '|')",
    ] {
        let (ok, text) = s.visible("BEGIN").await;
        assert!(ok, "{text}");
        let (ok, text) = s.visible("UPDATE customers SET branch = NULL").await;
        assert!(ok, "UPDATE branch: {text}");
        let (_, text) = s.copy_extended(sql).await;
        s.check(
            &format!("UPDATE customers SET branch = NULL; {sql} (extended)"),
            &text,
        );
        let _ = s.visible("ROLLBACK").await;
        let (_, text) = raw_simple_seq(&[
            "BEGIN",
            "UPDATE customers SET branch = NULL",
            sql,
            "ROLLBACK",
        ])
        .await;
        s.check(
            &format!("UPDATE customers SET branch = NULL; {sql} (simple)"),
            &text,
        );
        // Without the update: withheld (no leak), but not masked either.
        s.attack_copy(sql).await;
    }
    s.finish();
}

/// A lone COPY is planned without `settle`, so the uncommitted-DDL refusal
/// does not apply: a view dropped and re-created with its columns swapped
/// inside a transaction is still read with the committed lineage.
#[tokio::test]
async fn copy_after_uncommitted_ddl() {
    let s = as_role("dev").await;
    let _ = s.visible("DROP VIEW IF EXISTS swapv").await;
    let (ok, text) = s
        .visible("CREATE VIEW swapv AS SELECT id_number AS a, branch AS b, mobile AS c, full_name AS d FROM customers")
        .await;
    assert!(ok, "setup: {text}");
    for protocol in ["simple", "extended"] {
        let (ok, text) = s.visible("BEGIN").await;
        assert!(ok, "{text}");
        let (ok, text) = s.visible("DROP VIEW swapv").await;
        assert!(ok, "DROP VIEW: {text}");
        let (ok, text) = s
            .visible("CREATE VIEW swapv AS SELECT branch AS a, id_number AS b, 'x'::text AS c, mobile AS d FROM customers")
            .await;
        assert!(ok, "CREATE VIEW: {text}");
        let sql = "COPY (SELECT a, b, c, d FROM swapv) TO STDOUT";
        let text = if protocol == "simple" {
            s.visible(sql).await.1
        } else {
            s.copy_extended(sql).await.1
        };
        s.check(
            &format!("{sql} after uncommitted DROP/CREATE VIEW ({protocol})"),
            &text,
        );
        let _ = s.visible("ROLLBACK").await;
    }
    // Simple protocol, raw client (dave_trust).
    let (_, text) = raw_simple_seq(&[
        "DROP VIEW IF EXISTS swapv_raw",
        "CREATE VIEW swapv_raw AS SELECT id_number AS a, branch AS b FROM customers",
        "BEGIN",
        "DROP VIEW swapv_raw",
        "CREATE VIEW swapv_raw AS SELECT branch AS a, id_number AS b FROM customers",
        "COPY (SELECT a, b FROM swapv_raw) TO STDOUT",
        "ROLLBACK",
    ])
    .await;
    s.check(
        "BEGIN; DROP VIEW swapv_raw; CREATE VIEW swapv_raw (swapped); COPY (SELECT a, b FROM swapv_raw) TO STDOUT (simple)",
        &text,
    );
    s.finish();
}

/// `SET search_path = ''` is now allowed and recorded at once, but a
/// ROLLBACK (or SET LOCAL ending with its transaction) restores the old path
/// on the server while pgveil keeps resolving with an empty one: every
/// unqualified name is refused for the rest of the session (false block),
/// and pgveil resolves unqualified functions in pg_catalog only while the
/// server also sees public (a leak wherever a public overload exists).
#[tokio::test]
async fn search_path_desync_after_rollback() {
    let mut blocked = Vec::new();
    for reset in [
        &["BEGIN", "SET search_path = ''", "ROLLBACK"][..],
        &["BEGIN", "SET LOCAL search_path = ''", "COMMIT"][..],
        &[
            "BEGIN",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "ROLLBACK",
        ][..],
        &["BEGIN", "SELECT 1/0", "SET search_path = ''", "ROLLBACK"][..],
    ] {
        let s = as_role("dev").await;
        for part in reset {
            let _ = s.visible(part).await;
        }
        let (_, path) = s.visible("SHOW search_path").await;
        for sql in [
            "SELECT id, mobile FROM customers",
            "SELECT id FROM customer_contacts",
        ] {
            let (ok, text) = s.attack(sql).await;
            if !ok {
                blocked.push(format!(
                    "`{sql}` after `{}` (server search_path {path:?}): {text}",
                    reset.join("; ")
                ));
            }
        }
        s.finish();
    }
    assert!(
        blocked.is_empty(),
        "FALSE BLOCKS for dev:\n{}",
        blocked.join("\n")
    );
}

/// Payloads of notifications sent by a role allowed clear text, in shapes
/// an application typically uses, reach a masked listener: the detectors
/// see tokens, and `_`, `-`, `.` and letters glue a value to its label.
#[tokio::test]
async fn notification_payload_shapes() {
    let sender = as_role("auditor").await;
    let dev = as_role("dev").await;
    let control = as_role("auditor").await;
    let _ = control.visible("LISTEN rt2").await;
    let (ok, text) = dev.visible("LISTEN rt2").await;
    assert!(ok, "LISTEN: {text}");
    for payload in [
        "mobile_13987654321",
        "cust-13987654321-updated",
        "id:11010519491231002x",
        "tel13987654321",
        "card=6222021234567890128;",
        "13987654321.json",
        "+86-13987654321",
    ] {
        let (ok, text) = sender
            .visible(&format!("SELECT pg_notify('rt2', '{payload}')"))
            .await;
        assert!(ok, "{text}");
    }
    // A trigger-style JSON of the whole row, sent by an allowed session.
    let (ok, text) = sender
        .visible("SELECT pg_notify('rt2', row_to_json(c)::text) FROM customers c WHERE id = 1")
        .await;
    assert!(ok, "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // `visible` returns the notifications received so far.
    let (_, notes) = dev.visible("SELECT 1").await;
    let (_, control_notes) = control.visible("SELECT 1").await;
    assert!(
        control_notes.contains("NOTIFY rt2"),
        "control listener got nothing: {control_notes}"
    );
    for line in notes.lines() {
        dev.check("NOTIFY payload from auditor seen by dev", line);
    }
    dev.finish();
}

/// COPY shapes a masked role legitimately uses must run (masked).
#[tokio::test]
async fn copy_false_blocks() {
    let s = as_role("dev").await;
    let mut blocked = Vec::new();
    for sql in [
        "COPY customers (id, mobile) TO STDOUT",
        "COPY customers (id, branch) TO STDOUT",
        "COPY (SELECT id, mobile FROM customers) TO STDOUT WITH (FORMAT 'text')",
        "COPY (SELECT id, mobile FROM customers) TO STDOUT WITH (FORMAT text, HEADER true)",
        // Known false block, not asserted: `HEADER on` (sqlparser accepts
        // only true/false there), so the statement is refused as
        // unanalysable; `HEADER true` works.
        "COPY (SELECT id, mobile FROM customers) TO STDOUT WITH (HEADER true)",
        "COPY (SELECT id, mobile FROM customers) TO STDOUT WITH (ENCODING 'UTF8')",
        "COPY (SELECT id, mobile FROM customers ORDER BY id) TO STDOUT DELIMITER ','",
        "COPY (SELECT id, mobile FROM customers) TO STDOUT;",
        "COPY (SELECT c.id, c.mobile, k.status FROM customers c JOIN cards k ON k.customer_id = c.id) TO STDOUT",
        "COPY (SELECT id, mobile FROM customers UNION ALL SELECT id, mobile FROM customers) TO STDOUT",
    ] {
        let (ok1, t1) = s.copy_extended(sql).await;
        s.check(sql, &t1);
        let (ok2, t2) = raw_simple(sql).await;
        s.check(sql, &t2);
        if !ok1 || !ok2 {
            blocked.push(format!("{sql}\n  extended: {t1}\n  simple: {t2}"));
        }
    }
    s.finish();
    assert!(
        blocked.is_empty(),
        "FALSE BLOCKS for dev:\n{}",
        blocked.join("\n")
    );
}

/// pg_dump through pgveil as dev: the data section must come out masked.
#[tokio::test]
async fn pg_dump_as_dev_is_masked() {
    let proxy = setup();
    let out = common::client_cmd("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.port.to_string(),
            "-U",
            "dev",
            "-d",
            "bank",
            "-t",
            "customers",
            "-t",
            "customer_contacts",
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("pg_dump");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if let Some(leak) = find_secret("pg_dump -t customers as dev", &stdout) {
        problems.push(leak);
    }
    if !out.status.success() {
        problems.push(format!("FALSE BLOCK: pg_dump failed: {stderr}"));
    }
    // The whole database: cards.cvv is denied to dev, so a refusal there is
    // expected; anything else that fails is reported.
    let out = common::client_cmd("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.port.to_string(),
            "-U",
            "dev",
            "-d",
            "bank",
            "-T",
            "cards",
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("pg_dump");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(leak) = find_secret("pg_dump -T cards as dev", &stdout) {
        problems.push(leak);
    }
    if !out.status.success() {
        problems.push(format!(
            "FALSE BLOCK: pg_dump -T cards failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !stdout.contains("139****4321") && !stdout.contains("139876*4321") {
        problems.push(format!("pg_dump output has no masked mobile: {stdout}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Exploration helper: `ADV_ROLE=dev ADV_SQL='...;;...' cargo test --test
/// adversarial2 explore -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn explore() {
    let role = std::env::var("ADV_ROLE").unwrap_or_else(|_| "dev".into());
    let s = as_role(&role).await;
    for sql in std::env::var("ADV_SQL").unwrap_or_default().split(";;") {
        let (ok, text) = s.visible(sql.trim()).await;
        println!("== {sql}\n   ok={ok} {text}");
    }
    s.finish();
}

/// System column names (ctid, xmin, tableoid …) resolve to nothing before
/// pgveil looks for a real column of that name: subqueries, CTEs, VALUES
/// and function aliases have no system columns, so there the name is an
/// ordinary output column carrying whatever it was bound to.
#[tokio::test]
async fn system_column_names_as_aliases() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT xmin FROM (SELECT mobile AS xmin FROM customers) s",
        "SELECT s.ctid FROM (SELECT id_number AS ctid FROM customers) s",
        "WITH c AS (SELECT mobile AS tableoid FROM customers) SELECT tableoid FROM c",
        "SELECT cmax FROM (SELECT id_number FROM customers) s(cmax)",
        "SELECT xmax FROM customers c, LATERAL (SELECT c.mobile) v(xmax)",
        "SELECT cmin FROM (SELECT card_no AS cmin FROM cards) s",
    ] {
        s.attack(sql).await;
    }
    // Filter uses of a protected column are denied to dev (filter: deny).
    for sql in [
        "SELECT id FROM (SELECT id, mobile AS xmin FROM customers) s ORDER BY xmin",
        "SELECT id FROM (SELECT id, mobile AS xmin FROM customers) s WHERE xmin LIKE '1398765%'",
        "SELECT count(*) FROM (SELECT id_number AS ctid FROM customers) s WHERE ctid > '2'",
    ] {
        let (ok, text) = s.attack(sql).await;
        if ok {
            s.leaks.lock().unwrap().push(format!(
                "FILTER BYPASS (inference on a protected column, filter=deny): `{sql}` ran: {text}"
            ));
        }
    }
    s.attack_copy("COPY (SELECT xmin FROM (SELECT mobile AS xmin FROM customers) s) TO STDOUT")
        .await;
    // trainee: id_number denied in any shape.
    let t = as_role("trainee").await;
    for sql in [
        "SELECT xmin FROM (SELECT id_number AS xmin FROM customers) s",
        "SELECT upper(ctid) FROM (SELECT id_number AS ctid FROM customers) s",
        "SELECT count(*) FROM (SELECT id_number AS ctid FROM customers) s WHERE ctid LIKE '1101%'",
    ] {
        t.attack(sql).await;
    }
    t.attack_copy("COPY (SELECT xmin FROM (SELECT id_number AS xmin FROM customers) s) TO STDOUT")
        .await;
    for l in t.leaks.lock().unwrap().drain(..) {
        s.leaks.lock().unwrap().push(format!("trainee: {l}"));
    }
    // A cursor over such a subquery.
    s.attack(
        "BEGIN; DECLARE sc CURSOR FOR SELECT xmin FROM (SELECT mobile AS xmin FROM customers) s; \
         FETCH ALL FROM sc; COMMIT",
    )
    .await;
    // A view with such a column name (views have no system columns).
    let _ = s.visible("DROP VIEW IF EXISTS sysv").await;
    let (ok, text) = s
        .visible("CREATE VIEW sysv AS SELECT id, id_number AS xmin FROM customers")
        .await;
    if ok {
        s.attack("SELECT xmin FROM sysv").await;
        s.attack("SELECT id, xmin FROM sysv").await;
    } else {
        eprintln!("CREATE VIEW sysv refused: {text}");
    }
    s.finish();
}

/// Row counts that depend on a protected value: set-returning functions in
/// the select list (not FROM), LIMIT/OFFSET/FETCH with a protected
/// expression. The count itself is not computed from any column, so it is
/// not masked: the digits come out as a plain number.
#[tokio::test]
async fn row_counts_from_protected_values() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT count(*) FROM (SELECT generate_series(1, substr(mobile, 4, 4)::int) FROM customers WHERE id = 1) s",
        "SELECT count(*) FROM (SELECT id, generate_series(1, substr(id_number, 7, 8)::int % 100000) FROM customers WHERE id = 1) s",
        "SELECT count(*) FROM (SELECT unnest(array_fill(0, ARRAY[substr(mobile, 4, 4)::int])) FROM customers WHERE id = 1) s",
        "SELECT count(*) FROM (SELECT 1 FROM generate_series(1, 100000) g LIMIT (SELECT substr(mobile, 4, 4)::int FROM customers WHERE id = 1)) s",
        "SELECT count(*) FROM (SELECT 1 FROM generate_series(1, 100000) g OFFSET (SELECT 100000 - substr(mobile, 4, 4)::int FROM customers WHERE id = 1)) s",
        "SELECT count(*) FROM (SELECT 1 FROM generate_series(1, 100000) g FETCH FIRST (SELECT substr(mobile, 4, 4)::int FROM customers WHERE id = 1) ROWS ONLY) s",
        "SELECT count(*) FROM customers c, LATERAL (SELECT 1 FROM generate_series(1, 100000) LIMIT substr(c.mobile, 4, 4)::int) x WHERE c.id = 1",
        "SELECT count(*) FROM customers c CROSS JOIN LATERAL generate_series(1, substr(c.mobile, 4, 4)::int) g WHERE c.id = 1",
        "SELECT count(*) FROM customers c, ROWS FROM (generate_series(1, substr(c.mobile, 4, 4)::int)) g WHERE c.id = 1",
        "SELECT count(*) FROM (SELECT upper(xmin) FROM (SELECT mobile AS xmin FROM customers) a) s",
        "SELECT upper(xmin) FROM (SELECT mobile AS xmin FROM customers) a",
        "SELECT xmin || '' FROM (SELECT id_number AS xmin FROM customers) a",
    ] {
        s.attack(sql).await;
    }
    s.finish();
}

fn bind_with_text_param(portal: &str, stmt: &str, param: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend(0i16.to_be_bytes());
    b.extend(1i16.to_be_bytes());
    b.extend((param.len() as i32).to_be_bytes());
    b.extend(param.as_bytes());
    b.extend(0i16.to_be_bytes());
    msg(b'B', &b)
}

/// Extended-protocol sequences where the server skips messages after an
/// error until Sync: pgveil's injected Describe (for portals executed
/// without one) never gets its answer, and later results must still be
/// masked with their own plans.
#[tokio::test]
async fn extended_protocol_error_recovery() {
    let out = tokio::task::spawn_blocking(|| {
        let mut leaks = Vec::new();
        let mut r = raw(DAVE_TRUST);
        let mut check = |what: &str, msgs: &[(u8, Vec<u8>)]| {
            let all = raw_bytes(msgs);
            for secret in SECRETS {
                if contains(&all, secret.as_bytes()) {
                    leaks.push(format!(
                        "LEAK of {secret} through {what}: {}",
                        String::from_utf8_lossy(&all)
                    ));
                }
            }
        };
        // 1. Bind fails (bad int), Execute without Describe, Sync; then a
        // masked query without Describe.
        let mut seq = Raw::parse("", "SELECT 'x'::text AS a WHERE 1 = $1::int");
        seq.extend(bind_with_text_param("", "", "notanint"));
        seq.extend(Raw::execute("", 0));
        seq.extend(Raw::sync());
        seq.extend(Raw::parse("", "SELECT id_number, mobile FROM customers"));
        seq.extend(Raw::bind("", "", 0));
        seq.extend(Raw::execute("", 0));
        seq.extend(Raw::sync());
        r.send(&seq);
        let mut got = r.read_until_ready();
        got.extend(r.read_until_ready());
        check("bind error then masked portal without Describe", &got);
        // 2. Execute fails at run time mid-pipeline; named statements.
        let mut seq = Raw::parse("s_safe", "SELECT 'x'::text AS a, 1/$1::int AS b");
        seq.extend(Raw::parse(
            "s_mob",
            "SELECT mobile, id_number FROM customers",
        ));
        seq.extend(Raw::sync());
        r.send(&seq);
        let _ = r.read_until_ready();
        let mut seq = bind_with_text_param("p1", "s_safe", "0");
        seq.extend(Raw::execute("p1", 0));
        seq.extend(Raw::bind("p2", "s_mob", 0));
        seq.extend(Raw::execute("p2", 0));
        seq.extend(Raw::sync());
        seq.extend(Raw::bind("p2", "s_mob", 0));
        seq.extend(Raw::execute("p2", 1));
        seq.extend(Raw::execute("p2", 0));
        seq.extend(Raw::sync());
        r.send(&seq);
        let mut got = r.read_until_ready();
        got.extend(r.read_until_ready());
        check("division error then masked named portal", &got);
        // 3. Describe of a statement, then Bind to a different statement
        // with the same portal name, binary results.
        let mut seq = Raw::parse("s_x", "SELECT 'x'::text AS a, 'y'::text AS b");
        seq.extend(Raw::bind("p3", "s_x", 1));
        seq.extend(Raw::describe(b'P', "p3"));
        seq.extend(Raw::close(b'P', "p3"));
        seq.extend(Raw::bind("p3", "s_mob", 1));
        seq.extend(Raw::execute("p3", 0));
        seq.extend(Raw::sync());
        r.send(&seq);
        let got = r.read_until_ready();
        check("portal name reused after Close, binary", &got);
        // 4. Simple COPY right after an extended error inside one batch.
        let mut seq = bind_with_text_param("", "nonexistent", "1");
        seq.extend(Raw::execute("", 0));
        seq.extend(Raw::sync());
        seq.extend(msg(
            b'Q',
            &cstr("COPY (SELECT id, mobile FROM customers) TO STDOUT"),
        ));
        r.send(&seq);
        let mut got = r.read_until_ready();
        got.extend(r.read_until_ready());
        check("COPY after failed bind", &got);
        leaks
    })
    .await
    .unwrap();
    assert!(out.is_empty(), "{}", out.join("\n"));
}

/// FROM functions with unknown output columns are opaque: their columns
/// derive from their arguments and `*` is refused. Whole-row references,
/// composite field selection and row-to-json of such an item must not
/// escape that.
#[tokio::test]
async fn opaque_function_items() {
    let s = as_role("dev").await;
    let t = "(SELECT to_jsonb(c) FROM customers c WHERE id = 1)";
    for sql in [
        format!("SELECT j FROM jsonb_each_text({t}) j"),
        format!("SELECT j::text FROM jsonb_each_text({t}) AS j"),
        format!("SELECT row_to_json(j) FROM jsonb_each_text({t}) j"),
        format!("SELECT to_jsonb(j) FROM jsonb_each({t}) j"),
        format!("SELECT (j).value FROM jsonb_each_text({t}) j"),
        format!("SELECT (j.*)::text FROM jsonb_each_text({t}) j"),
        format!("SELECT j.value FROM jsonb_each_text({t}) j"),
        format!("SELECT value FROM jsonb_each_text({t})"),
        format!("SELECT jsonb_each_text FROM jsonb_each_text({t})"),
        format!("SELECT x FROM jsonb_each_text({t}) x"),
        format!("SELECT r FROM jsonb_to_record({t}) AS r(mobile text, id_number text)"),
        format!("SELECT r.mobile FROM jsonb_to_record({t}) AS r(mobile text)"),
        "SELECT p FROM customers c, LATERAL jsonb_each_text(to_jsonb(c)) p".to_string(),
        "SELECT p FROM customers c, LATERAL json_each_text(row_to_json(c)) AS p".to_string(),
        "SELECT p FROM customers c, LATERAL regexp_matches(c.mobile, '(.*)') p".to_string(),
        "SELECT p FROM customers c, LATERAL string_to_table(c.mobile, 'x') p".to_string(),
        "SELECT p FROM customers c, LATERAL regexp_split_to_table(c.id_number, 'q') p".to_string(),
        "SELECT p FROM customers c, LATERAL pg_options_to_table(ARRAY[c.mobile]) p".to_string(),
    ] {
        s.attack(&sql).await;
        s.attack_copy(&format!("COPY ({sql}) TO STDOUT")).await;
    }
    s.finish();
}
