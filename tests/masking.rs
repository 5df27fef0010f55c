//! The invariant end to end: roles read a retail-bank schema through pgveil
//! with real clients, and protected values reach them only as the policy
//! allows (tests/fixtures/masking/bank.yaml).

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::{cluster, connect, Proxy};
use futures::StreamExt;
use tokio_postgres::SimpleQueryMessage;

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> tokio_postgres::Client {
    connect(&setup().conn_str(role, PASSWORD, "bank"))
        .await
        .unwrap_or_else(|e| panic!("{role}: {e}"))
}

fn values(msgs: &[SimpleQueryMessage]) -> Vec<Option<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string))),
            _ => None,
        })
        .flatten()
        .collect()
}

fn code(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("not a db error: {err}"))
}

/// Everything the client could read from a result or an error.
async fn visible(c: &tokio_postgres::Client, sql: &str) -> (bool, String) {
    match c.simple_query(sql).await {
        Ok(msgs) => (
            true,
            values(&msgs)
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("|"),
        ),
        Err(e) => {
            let db = e.as_db_error();
            (
                false,
                format!(
                    "{} {} {} {}",
                    e,
                    db.map(|d| d.message()).unwrap_or_default(),
                    db.and_then(|d| d.detail()).unwrap_or_default(),
                    db.and_then(|d| d.hint()).unwrap_or_default()
                ),
            )
        }
    }
}

fn assert_no_secret(sql: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "LEAK of {secret} through `{sql}`: {text}"
        );
    }
}

#[tokio::test]
async fn compliance_sees_clear_text_except_denied_columns() {
    let c = as_role("auditor").await;
    let v = values(
        &c.simple_query("SELECT full_name, id_number, mobile FROM customers WHERE id = 1")
            .await
            .unwrap(),
    );
    assert_eq!(
        v,
        vec![
            Some(NAME.to_string()),
            Some(ID_NUMBER.to_string()),
            Some(MOBILE.to_string())
        ]
    );
    let err = c.simple_query("SELECT cvv FROM cards").await.unwrap_err();
    assert_eq!(code(&err), "42501");
}

#[tokio::test]
async fn default_role_gets_masks_in_simple_and_extended_protocol() {
    let c = as_role("dev").await;
    let v = values(
        &c.simple_query(
            "SELECT id, full_name, id_number, mobile, branch FROM customers ORDER BY id",
        )
        .await
        .unwrap(),
    );
    assert_eq!(v[0].as_deref(), Some("1"));
    assert_eq!(
        v[4].as_deref(),
        Some("Hangzhou"),
        "unprotected column changed"
    );
    let masked = format!("{:?}", &v[1..4]);
    assert_no_secret("simple", &masked);
    assert_ne!(v[1].as_deref(), Some(NAME));
    // Extended protocol, binary results (tokio-postgres asks for binary).
    let rows = c
        .query(
            "SELECT full_name, id_number, mobile, id FROM customers WHERE id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    let name: String = rows[0].get(0);
    let id_number: String = rows[0].get(1);
    let mobile: String = rows[0].get(2);
    let id: i32 = rows[0].get(3);
    assert_eq!(id, 1);
    assert_no_secret("extended", &format!("{name} {id_number} {mobile}"));
    assert!(!name.is_empty() && !id_number.is_empty() && !mobile.is_empty());
    // The view over customers carries the same masks.
    let (_, text) = visible(&c, "SELECT * FROM customer_contacts").await;
    assert_no_secret("view", &text);
}

#[tokio::test]
async fn call_center_through_nested_role_may_look_up_by_id_number() {
    let c = as_role("agent").await;
    let rows = c
        .query(
            "SELECT full_name, id_number FROM customers WHERE id_number = $1",
            &[&ID_NUMBER],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // full_name is clear for call_center; id_number keeps its last four.
    assert_eq!(rows[0].get::<_, String>(0), NAME);
    let id: String = rows[0].get(1);
    assert!(id.ends_with("002X"), "{id}");
    assert!(!id.contains(ID_HIDDEN), "{id}");
    // A range predicate is not an equality lookup.
    let err = c
        .simple_query("SELECT id FROM customers WHERE id_number > '1'")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501");
}

#[tokio::test]
async fn denied_columns_and_tables_are_blocked_and_the_session_survives() {
    let c = as_role("trainee").await;
    for sql in [
        "SELECT id_number FROM customers",
        "SELECT * FROM customers",
        "SELECT note FROM audit_trail",
        "SELECT cvv FROM cards",
    ] {
        let err = c.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&err), "42501", "{sql}: {err}");
        let msg = err.as_db_error().unwrap().message().to_string();
        assert!(msg.starts_with("pgveil:"), "{msg}");
    }
    // The same connection keeps working, in the simple and extended protocol.
    let v = values(
        &c.simple_query("SELECT branch FROM customers WHERE id = 2")
            .await
            .unwrap(),
    );
    assert_eq!(v, vec![Some("Shenzhen".to_string())]);
    let err = c
        .query("SELECT id_number FROM customers WHERE id = $1", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42501");
    let n: i64 = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // Inside a transaction the block aborts it like any error would.
    c.batch_execute("BEGIN").await.unwrap();
    assert!(c.simple_query("SELECT cvv FROM cards").await.is_err());
    let err = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&err), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn leak_attempts_are_masked_or_blocked() {
    let c = as_role("dev").await;
    let attempts = [
        "SELECT upper(id_number) FROM customers",
        "SELECT id_number || '' FROM customers",
        "SELECT lower(full_name) || mobile FROM customers",
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT to_jsonb(c.*) FROM customers c",
        "SELECT c::text FROM customers c",
        "SELECT (SELECT id_number FROM customers WHERE id = 1)",
        "WITH x AS (SELECT id_number AS a FROM customers) SELECT a FROM x",
        "SELECT id_number FROM customers UNION ALL SELECT 'x'",
        "SELECT string_agg(id_number, ',') FROM customers",
        "SELECT array_agg(mobile) FROM customers",
        "SELECT json_build_object('m', mobile) FROM customers",
        "SELECT CASE WHEN id > 0 THEN id_number END FROM customers",
        "SELECT coalesce(mobile, '') FROM customers",
        "SELECT substr(id_number, 7, 8) FROM customers",
        "SELECT id_number::bigint FROM customers",
        "SELECT mobile::int8 FROM customers",
        "SELECT id FROM customers WHERE id_number = '11010519491231002X'",
        "SELECT id FROM customers ORDER BY id_number",
        "SELECT set_config('my.v', id_number, false) FROM customers",
        "SELECT query_to_xml('select id_number from customers', true, true, '')",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT id_number FROM customers LIMIT 1); END $$",
        "SELECT pg_notify('ch', id_number) FROM customers",
        "CREATE TEMP TABLE stash AS SELECT id_number FROM customers",
        "SELECT id_number INTO TEMP stash2 FROM customers",
        "INSERT INTO audit_trail (note) SELECT id_number FROM customers",
        "UPDATE customers SET branch = id_number WHERE id = 2 RETURNING branch",
        "UPDATE customers SET branch = branch WHERE id = 1 RETURNING id_number",
        "SELECT cvv FROM cards",
        "SELECT card_no FROM cards",
        "SELECT * FROM cards",
        "SELECT c.card_no, cu.mobile FROM cards c JOIN customers cu ON cu.id = c.customer_id",
        "TABLE customers",
        "SET search_path TO pg_temp, public",
        "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X')",
    ];
    for sql in attempts {
        let (_, text) = visible(&c, sql).await;
        assert_no_secret(sql, &text);
        // Laundered copies stay unreadable too.
        let (_, text) = visible(&c, "SELECT note FROM audit_trail").await;
        assert_no_secret(sql, &text);
        let (_, text) = visible(&c, "SELECT branch FROM customers").await;
        assert_no_secret(sql, &text);
    }
    for sql in ["SELECT * FROM stash", "SELECT * FROM stash2"] {
        let (_, text) = visible(&c, sql).await;
        assert_no_secret(sql, &text);
    }
    // Cursors and SQL-level prepared statements carry the masks.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("DECLARE cur CURSOR FOR SELECT id_number, mobile FROM customers")
        .await
        .unwrap();
    let (ok, text) = visible(&c, "FETCH ALL FROM cur").await;
    assert!(ok, "{text}");
    assert_no_secret("FETCH", &text);
    c.batch_execute("COMMIT").await.unwrap();
    let (_, text) = visible(&c, "PREPARE p AS SELECT id_number FROM customers").await;
    assert_no_secret("PREPARE", &text);
    let (_, text) = visible(&c, "EXECUTE p").await;
    assert_no_secret("EXECUTE", &text);
    // COPY to the client.
    for sql in [
        "COPY customers TO STDOUT",
        "COPY (SELECT id_number FROM customers) TO STDOUT",
    ] {
        let text = match c.copy_out(sql).await {
            Ok(stream) => {
                let chunks: Vec<_> = stream.collect().await;
                chunks
                    .into_iter()
                    .filter_map(Result::ok)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect::<String>()
            }
            Err(e) => e.to_string(),
        };
        assert_no_secret(sql, &text);
    }
}

#[tokio::test]
async fn ordinary_application_statements_pass() {
    // The call centre's role: writing an id_number asks whether it is
    // stored (a unique key), which its rule allows (filter: equality) and
    // dev's does not (tests/adversarial5.rs).
    let c = as_role("agent").await;
    c.batch_execute("BEGIN").await.unwrap();
    let id: i32 = c
        .query_one(
            "INSERT INTO customers (full_name, id_number, mobile, branch) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&"王五", &"330106198001010012", &"13700000000", &"Ningbo"],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE customers SET branch = $1 WHERE id = $2",
        &[&"Wenzhou", &id],
    )
    .await
    .unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM customers WHERE branch = $1",
            &[&"Wenzhou"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    c.execute("DELETE FROM customers WHERE id = $1", &[&id])
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    let rows = c
        .query(
            "SELECT \"c\".\"id\", \"c\".\"branch\" FROM \"public\".\"customers\" AS \"c\" ORDER BY \"c\".\"id\" LIMIT $1 OFFSET $2",
            &[&10i64, &0i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let statuses = c
        .query("SELECT status, count(*) FROM cards GROUP BY status", &[])
        .await
        .unwrap();
    assert_eq!(statuses.len(), 1);
}

#[tokio::test]
async fn metrics_count_blocks_and_masks() {
    let c = as_role("dev").await;
    let _ = c.simple_query("SELECT cvv FROM cards").await;
    c.simple_query("SELECT mobile FROM customers")
        .await
        .unwrap();
    let text = setup().metrics();
    // Summed over every label set of the family.
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .sum()
    };
    assert!(value("pgveil_statements_blocked_total") >= 1.0, "{text}");
    assert!(value("pgveil_cells_masked_total") >= 2.0, "{text}");
    assert!(value("pgveil_policy_version") >= 1.0, "{text}");
}

#[tokio::test]
async fn policy_reload_under_load_drops_nothing_and_applies_to_new_statements() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.yaml");
    let original = std::fs::read_to_string(format!("{}/bank.yaml", bank::POLICIES)).unwrap();
    std::fs::write(&file, &original).unwrap();
    let p = bank::start_proxy(&dir.path().to_string_lossy());
    let conn = p.conn_str("auditor", PASSWORD, "bank");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Workers that have read the clear value under the old policy: the
    // reload waits for all of them, whatever the machine's load.
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let conn = conn.clone();
        let stop = stop.clone();
        let started = started.clone();
        workers.push(tokio::spawn(async move {
            let c = connect(&conn).await.unwrap();
            let stmt = c
                .prepare("SELECT mobile FROM customers WHERE id = $1")
                .await
                .unwrap();
            let (mut ok, mut failed, mut masked) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = if w % 2 == 0 {
                    c.query_one(&stmt, &[&1i32])
                        .await
                        .map(|r| r.get::<_, String>(0))
                } else {
                    c.simple_query("SELECT mobile FROM customers WHERE id = 1")
                        .await
                        .map(|m| values(&m)[0].clone().unwrap_or_default())
                };
                match got {
                    Ok(v) if v == MOBILE => {
                        if ok == 0 {
                            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        ok += 1
                    }
                    Ok(v) => {
                        assert!(!v.contains(MOBILE_HIDDEN), "{v}");
                        masked += 1;
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, masked)
        }));
    }
    for _ in 0..600 {
        if started.load(std::sync::atomic::Ordering::Relaxed) == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // compliance loses clear mobile numbers.
    let tightened = original.replace(
        "      - roles: [compliance]\n        action: allow\n  public.customers.annual_income:",
        "  public.customers.annual_income:",
    );
    assert_ne!(tightened, original);
    std::fs::write(&file, &tightened).unwrap();
    let fresh = connect(&conn).await.unwrap();
    let mut seen_masked = false;
    for _ in 0..100 {
        let v = values(
            &fresh
                .simple_query("SELECT mobile FROM customers WHERE id = 1")
                .await
                .unwrap(),
        );
        if v[0].as_deref() != Some(MOBILE) {
            assert_eq!(v[0].as_deref(), Some("139****4321"));
            seen_masked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen_masked, "the new policy never took effect");
    // A broken edit never takes effect: the tightened policy stays.
    std::fs::write(&file, "version: 1\ncolumns: [oops\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let v = values(
        &fresh
            .simple_query("SELECT mobile FROM customers WHERE id = 1")
            .await
            .unwrap(),
    );
    assert_eq!(v[0].as_deref(), Some("139****4321"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_masked = 0;
    for w in workers {
        let (ok, failed, masked) = w.await.unwrap();
        assert!(
            failed.is_empty(),
            "queries failed during reload: {failed:?}"
        );
        assert!(ok > 0);
        total_masked += masked;
    }
    assert!(
        total_masked > 0,
        "running sessions never saw the new policy"
    );
    let metrics = p.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgveil_policy_reload_failures_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn copy_to_stdout_in_text_format_is_masked_row_by_row() {
    let c = as_role("dev").await;
    let copy = |sql: &'static str| {
        let c = &c;
        async move {
            match c.copy_out(sql).await {
                Ok(stream) => {
                    let chunks: Vec<_> = stream.collect().await;
                    let mut out = Vec::new();
                    for ch in chunks {
                        out.extend_from_slice(&ch.map_err(|e| e.to_string())?);
                    }
                    Ok(String::from_utf8_lossy(&out).into_owned())
                }
                Err(e) => Err(code(&e)),
            }
        }
    };
    assert_eq!(
        copy("COPY (SELECT id, mobile, branch FROM customers ORDER BY id) TO STDOUT").await,
        Ok("1\t139****4321\tHangzhou\n2\t138****0000\tShenzhen\n".to_string())
    );
    let all = copy("COPY customers TO STDOUT WITH (DELIMITER '|')")
        .await
        .unwrap();
    assert_eq!(all.lines().count(), 2);
    assert_no_secret("COPY customers", &all);
    assert!(all.contains("|Hangzhou"), "{all}");
    // Formats pgveil does not rewrite are refused, not passed through.
    assert_eq!(
        copy("COPY customers TO STDOUT WITH (FORMAT csv)").await,
        Err("42501".to_string())
    );
    assert_eq!(
        copy("COPY customers TO STDOUT WITH (FORMAT binary)").await,
        Err("42501".to_string())
    );
    // Unprotected tables copy as they are.
    assert_eq!(
        copy("COPY (SELECT status FROM cards ORDER BY id) TO STDOUT").await,
        Ok("active\nactive\n".to_string())
    );
}

#[tokio::test]
async fn notification_payloads_from_elsewhere_are_scrubbed_for_masked_roles() {
    let p = setup();
    let (c, mut conn) =
        tokio_postgres::connect(&p.conn_str("dev", PASSWORD, "bank"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = m {
            let _ = tx.send(n.payload().to_string());
        }
        futures::future::ready(())
    }));
    c.batch_execute("LISTEN customer_events").await.unwrap();
    // A trigger-like sender outside pgveil's view, straight to the database.
    cluster()
        .psql_super_db(
            "bank",
            &format!("NOTIFY customer_events, 'updated {ID_NUMBER} card {CARD} order 42'"),
        )
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_no_secret("NOTIFY payload", &got);
    assert!(
        got.starts_with("updated ") && got.ends_with(" order 42"),
        "{got}"
    );
}

#[tokio::test]
async fn results_without_a_prior_describe_are_still_checked() {
    // query_typed binds before it describes, so pgveil learns the shape of
    // the portal only by asking the server itself.
    let c = as_role("dev").await;
    let rows = c
        .query_typed(
            "SELECT branch, mobile FROM customers WHERE id = $1",
            &[(&1i32, tokio_postgres::types::Type::INT4)],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "Hangzhou");
    assert_eq!(rows[0].get::<_, String>(1), "139****4321");
    let rows = c
        .query_typed(
            "SELECT count(*) FROM cards WHERE status = $1",
            &[(&"active", tokio_postgres::types::Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);
}

#[test]
fn pg_dump_through_pgveil_writes_a_masked_dump() {
    let p = setup();
    let out = common::client_cmd("pg_dump")
        .arg(format!(
            "host=127.0.0.1 port={} user=dev dbname=bank",
            p.port
        ))
        .args(["-t", "customers", "--no-owner"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dump.contains("CREATE TABLE public.customers"), "{dump}");
    let data: Vec<&str> = dump
        .lines()
        .skip_while(|l| !l.starts_with("COPY public.customers"))
        .skip(1)
        .take_while(|l| *l != "\\.")
        .collect();
    assert!(data.len() >= 2, "{dump}");
    assert!(data.iter().any(|l| l.contains("139****4321")), "{dump}");
    assert_no_secret("pg_dump", &dump);
}

/// A masked role's session carries the backend's real PID too: its
/// notifications and `pg_backend_pid()` name the PID its key names.
#[tokio::test]
async fn masked_roles_see_the_real_backend_pid() {
    use common::probe::Raw;
    let (mut raw, startup) = Raw::connect_db(setup(), common::DAVE_TRUST, "bank");
    let pid = Raw::key_pid(&startup);
    let got = raw.query("SELECT pg_backend_pid()");
    assert_eq!(Raw::first_value(&got), Some(pid.to_string()), "{got:?}");
    raw.query("LISTEN pid_check");
    let got = raw.query("NOTIFY pid_check, 'mine'");
    assert_eq!(Raw::notification_pid(&got), Some(pid), "{got:?}");
}

/// In the extended protocol the server ignores the Sync that follows a
/// COPY FROM STDIN's Execute: pgveil's pairing must follow, or the next
/// statements' results are paired with the wrong requests (rows withheld,
/// pgveil's own RowDescription reaching the client).
#[tokio::test]
async fn copy_from_stdin_in_the_extended_protocol_keeps_the_session_in_step() {
    use futures::SinkExt;
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let c = as_role("dev").await;
    c.batch_execute("CREATE TEMP TABLE landing (id int, note text)")
        .await
        .unwrap();
    let masked_mobile = || async {
        let rows = c
            .query("SELECT id, mobile FROM customers WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        rows[0].get::<_, String>(1)
    };
    let before = masked_mobile().await;
    assert_ne!(before, MOBILE);
    for round in 0..3 {
        // Text format.
        let sink = c
            .copy_in("COPY landing FROM STDIN WITH (FORMAT csv)")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(format!(
            "{round},\"text {round}\"\n1{round},x\n"
        )))
        .await
        .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
        // Binary format.
        let sink = c
            .copy_in("COPY landing (id, note) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::TEXT]);
        futures::pin_mut!(writer);
        writer
            .as_mut()
            .write(&[&(100 + round), &"binary"])
            .await
            .unwrap();
        assert_eq!(writer.finish().await.unwrap(), 1);
        // The same connection goes on: rows masked, counts right.
        assert_eq!(masked_mobile().await, before);
        let n: i64 = c
            .query_one("SELECT count(*) FROM landing", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3 * (round as i64 + 1));
    }
    // A COPY that fails on its data leaves the session usable too.
    let sink = c
        .copy_in("COPY landing FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not a number,x\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(code(&err), "22P02", "{err}");
    assert_eq!(masked_mobile().await, before);
    let (ok, text) = visible(&c, "SELECT count(*) FROM landing").await;
    assert!(ok && text == "9", "{text}");
}

/// COPY FROM STDIN that fails at its Execute, before copy-in mode (no such
/// table), or right after entering it (a view takes no COPY): one
/// ReadyForQuery per exchange, and the session goes on. (tokio-postgres
/// itself loses step after the first case, directly too, hence raw.)
#[tokio::test]
async fn copy_from_stdin_failing_at_its_start_keeps_the_session_in_step() {
    use common::probe::{msg, Raw};
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    for (sql, code) in [
        ("COPY no_such_landing FROM STDIN", "42P01"),
        ("COPY customer_contacts FROM STDIN", "42809"),
    ] {
        let mut buf = Raw::parse("", sql);
        buf.extend(Raw::bind("", "", 0));
        buf.extend(Raw::execute("", 0));
        buf.extend(Raw::sync());
        raw.send(&buf);
        let mut got = Vec::new();
        loop {
            let (t, b) = raw.read_msg();
            got.push((t, b));
            if matches!(t, b'Z' | b'E') {
                break;
            }
        }
        if got.last().map(|(t, _)| *t) == Some(b'E') {
            // A client in copy-in mode ends it, then syncs.
            if got.iter().any(|(t, _)| *t == b'G') {
                raw.send(&msg(b'f', &common::probe::cstr("client gave up")));
                raw.send(&Raw::sync());
            }
            got.extend(raw.read_until_ready());
        }
        let text = String::from_utf8_lossy(&common::probe::raw_bytes(&got)).to_string();
        assert!(text.contains(code), "{sql}: {text}");
        assert_eq!(
            got.iter().filter(|(t, _)| *t == b'Z').count(),
            1,
            "{sql}: {got:?}"
        );
        // The next statement gets its own answer.
        let next = raw.query("SELECT 41 + 1");
        assert_eq!(
            Raw::first_value(&next).as_deref(),
            Some("42"),
            "{sql}: {next:?}"
        );
    }
}

/// SQL EXECUTE and protocol-level Parse share one namespace, as in
/// PostgreSQL: each way round, the statement runs with its own plan, and a
/// name reused across the two never keeps the plan of the statement it
/// replaced.
#[tokio::test]
async fn sql_execute_and_protocol_statements_share_names() {
    use common::probe::Raw;
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    // Parse through the protocol, EXECUTE in SQL.
    let mut buf = Raw::parse("proto_stmt", "SELECT mobile FROM customers WHERE id = 1");
    buf.extend(Raw::sync());
    raw.send(&buf);
    raw.read_until_ready();
    let got = raw.query("EXECUTE proto_stmt");
    let v = Raw::first_value(&got).unwrap_or_else(|| panic!("{got:?}"));
    assert_eq!(v, "139****4321");
    // PREPARE in SQL, Bind through the protocol.
    raw.query("PREPARE sql_stmt AS SELECT mobile FROM customers WHERE id = 1");
    let mut buf = Raw::bind("", "sql_stmt", 0);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    assert_eq!(
        Raw::first_value(&got).as_deref(),
        Some("139****4321"),
        "{got:?}"
    );
    // A harmless protocol statement, deallocated in SQL and its name reused
    // for a protected read: Bind gets the new statement's masks.
    let mut buf = Raw::parse("reused", "SELECT 'harmless'::text");
    buf.extend(Raw::sync());
    raw.send(&buf);
    raw.read_until_ready();
    raw.query("DEALLOCATE reused");
    raw.query("PREPARE reused AS SELECT mobile || '' FROM customers WHERE id = 1");
    let mut buf = Raw::bind("", "reused", 0);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    common::probe::assert_raw_no_secret("reused name", &got);
    assert!(got.iter().any(|(t, _)| *t == b'D' || *t == b'E'), "{got:?}");
}

/// A refusal is raised on the server by a DO block, but it is pgveil's:
/// its source fields say so and no PL/pgSQL CONTEXT is attached.
#[tokio::test]
async fn refusals_say_they_are_pgveils() {
    let c = as_role("dev").await;
    let err = c.simple_query("SELECT cvv FROM cards").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().starts_with("pgveil: "), "{db:?}");
    assert!(db.hint().is_some(), "{db:?}");
    assert_eq!(db.file(), Some("pgveil"), "{db:?}");
    assert_eq!(db.routine(), Some("pgveil_refusal"), "{db:?}");
    assert_eq!(db.where_(), None, "{db:?}");
    // Extended protocol too.
    let err = c.query("SELECT cvv FROM cards", &[]).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(
        (db.code().code(), db.file()),
        ("42501", Some("pgveil")),
        "{db:?}"
    );
    assert_eq!(db.where_(), None, "{db:?}");
}

/// libpq's large-object API goes through fast-path FunctionCall: a masked
/// role may use it (large objects hold no column a policy can name); any
/// other function called by OID stays refused. The OIDs pgveil allows are
/// the server's own.
#[tokio::test]
async fn masked_roles_may_use_the_large_object_api_only() {
    use common::probe::Raw;
    setup();
    // pgveil's table of OIDs is the server's.
    for (oid, name) in pgveil::session::guard::fastpath::LARGE_OBJECT_API {
        let got = cluster()
            .psql_super_db(
                "bank",
                &format!("SELECT proname FROM pg_proc WHERE oid = {oid}"),
            )
            .unwrap();
        assert_eq!(got.trim(), *name, "OID {oid}");
    }
    let lo = cluster()
        .psql_super_db(
            "bank",
            &format!(
                "SELECT lo_from_bytea(0, 'large hello');
                 DO $$ BEGIN EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO {}',
                   (SELECT max(oid) FROM pg_largeobject_metadata)); END $$;",
                common::DAVE_TRUST
            ),
        )
        .unwrap();
    let lo: u32 = lo.trim().parse().unwrap();
    let call = |oid: u32, args: &[Vec<u8>]| {
        let mut b = oid.to_be_bytes().to_vec();
        b.extend(1i16.to_be_bytes());
        b.extend(1i16.to_be_bytes()); // binary arguments
        b.extend((args.len() as i16).to_be_bytes());
        for a in args {
            b.extend((a.len() as i32).to_be_bytes());
            b.extend(a);
        }
        b.extend(1i16.to_be_bytes()); // binary result
        common::probe::msg(b'F', &b)
    };
    let result = |msgs: &[(u8, Vec<u8>)]| {
        msgs.iter()
            .find(|(t, _)| *t == b'V')
            .map(|(_, b)| b[4..].to_vec())
            .unwrap_or_else(|| panic!("{msgs:?}"))
    };
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    raw.query("BEGIN");
    raw.send(&call(
        952,
        &[lo.to_be_bytes().to_vec(), 0x40000i32.to_be_bytes().to_vec()],
    ));
    let fd = result(&raw.read_until_ready());
    raw.send(&call(954, &[fd.clone(), 64i32.to_be_bytes().to_vec()]));
    assert_eq!(result(&raw.read_until_ready()), b"large hello");
    raw.send(&call(953, &[fd]));
    raw.read_until_ready();
    raw.query("COMMIT");
    // lo_export (server files) by OID: refused, the session goes on.
    let export: u32 = cluster()
        .psql_super_db("bank", "SELECT 'lo_export(oid,text)'::regprocedure::oid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    raw.send(&call(
        export,
        &[lo.to_be_bytes().to_vec(), b"/tmp/x".to_vec()],
    ));
    let got = raw.read_until_ready();
    let text = String::from_utf8_lossy(&common::probe::raw_bytes(&got)).to_string();
    assert!(
        text.contains("42501") && text.contains("large-object functions"),
        "{text}"
    );
    assert_eq!(
        Raw::first_value(&raw.query("SELECT 1")).as_deref(),
        Some("1")
    );
}

/// Statement shapes of PostgreSQL's own regression SQL that a masked role
/// must be able to run (tools/regress-compare.sh finds them), each with the
/// masked result it must get.
#[tokio::test]
async fn regression_sql_shapes_run_for_masked_roles() {
    let c = as_role("dev").await;
    let ok = |sql: &'static str| {
        let c = &c;
        async move {
            let (ran, text) = visible(c, sql).await;
            assert!(ran, "`{sql}` was refused: {text}");
            assert_no_secret(sql, &text);
            text
        }
    };
    c.batch_execute("BEGIN").await.unwrap();
    // RETURNING * of a data-modifying CTE lists the target's columns (and
    // those of FROM / USING), carrying their masks.
    let text = ok(
        "WITH x AS (UPDATE customers SET branch = branch WHERE id = 1 RETURNING *) \
                   SELECT id, id_number, branch FROM x",
    )
    .await;
    assert!(
        text.starts_with("1|") && text.ends_with("|Hangzhou"),
        "{text}"
    );
    let text = ok("WITH x AS (DELETE FROM audit_trail RETURNING *) \
                   INSERT INTO audit_trail (note) SELECT note || '!' FROM x RETURNING note")
    .await;
    assert_eq!(text, "opened!");
    let text = ok("DELETE FROM audit_trail USING customers \
                   WHERE customers.id = audit_trail.id RETURNING *")
    .await;
    assert!(
        text.starts_with("2|opened!|2|") && text.ends_with("|Shenzhen"),
        "{text}"
    );
    assert!(!text.contains("440301199001011234"), "{text}");
    // System columns of the target beside a VALUES list or EXCLUDED.
    let text = ok(
        "UPDATE customers c SET branch = v.b FROM (VALUES (1, 'Hangzhou')) v(i, b) \
                   WHERE v.i = c.id RETURNING tableoid::regclass, c.id_number",
    )
    .await;
    assert!(text.starts_with("customers|"), "{text}");
    let text = ok("INSERT INTO cards (id, status) VALUES (1, 'x') \
                   ON CONFLICT (id) DO UPDATE SET status = excluded.status \
                   RETURNING tableoid::regclass, xmax <> 0, card_no")
    .await;
    assert!(text.starts_with("cards|t|"), "{text}");
    c.batch_execute("ROLLBACK").await.unwrap();
    // A window frame offset may be a subquery.
    let text = ok(
        "SELECT id, sum(id) OVER (ORDER BY id ROWS (SELECT count(*) FROM cards) PRECEDING) \
                   FROM customers ORDER BY id",
    )
    .await;
    assert_eq!(text, "1|1|2|3");
    // unnest of records with a column definition list names their fields;
    // a field built from a protected column stays protected.
    let text =
        ok("SELECT q.a, q.b FROM unnest(array[row(1, 'x'::text)]) AS q(a int, b text)").await;
    assert_eq!(text, "1|x");
    let sql = "SELECT q.b FROM customers, unnest(array[row(id, id_number)]) AS q(a int, b varchar)";
    let (ran, text) = visible(&c, sql).await;
    assert_no_secret(sql, &text);
    assert!(!ran && text.contains("pgveil"), "{text}");
}

/// All DataRows of a raw exchange, each as its column values (text).
fn raw_rows(msgs: &[(u8, Vec<u8>)]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            let n = i16::from_be_bytes([body[0], body[1]]) as usize;
            let mut at = 2;
            (0..n)
                .map(|_| {
                    let len =
                        i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
                    at += 4;
                    (len >= 0).then(|| {
                        let v = String::from_utf8_lossy(&body[at..at + len as usize]).to_string();
                        at += len as usize;
                        v
                    })
                })
                .collect()
        })
        .collect()
}

/// One pipeline re-binds the unnamed portal to a statement whose masked
/// column sits elsewhere before the first result's rows arrive: each
/// result is masked with the plan of the Bind it came from, never with the
/// portal's newest one (which would leave the first result's mobile clear).
#[tokio::test]
async fn a_portal_rebound_in_one_pipeline_masks_each_result_with_its_own_plan() {
    use common::probe::{assert_raw_no_secret, Raw};
    let mobile_first = "SELECT mobile, branch FROM customers WHERE id = 1";
    let mobile_last = "SELECT branch, mobile FROM customers WHERE id = 1";
    let expected = vec![
        vec![
            Some("139****4321".to_string()),
            Some("Hangzhou".to_string()),
        ],
        vec![
            Some("Hangzhou".to_string()),
            Some("139****4321".to_string()),
        ],
    ];
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    // Named statements described beforehand: pgveil knows their shapes at
    // Bind.
    let mut buf = Raw::parse("mobile_first", mobile_first);
    buf.extend(Raw::parse("mobile_last", mobile_last));
    buf.extend(Raw::describe(b'S', "mobile_first"));
    buf.extend(Raw::describe(b'S', "mobile_last"));
    buf.extend(Raw::sync());
    raw.send(&buf);
    raw.read_until_ready();
    let mut buf = Raw::bind("", "mobile_first", 0);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::bind("", "mobile_last", 0));
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    assert_raw_no_secret("portal re-bound to a described statement", &got);
    assert_eq!(raw_rows(&got), expected, "{got:?}");
    // The unnamed statement parsed again, never described: pgveil learns
    // each portal's shape by asking the server.
    let mut buf = Raw::parse("", mobile_first);
    buf.extend(Raw::bind("", "", 0));
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::parse("", mobile_last));
    buf.extend(Raw::bind("", "", 0));
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    assert_raw_no_secret("portal re-bound to a new unnamed statement", &got);
    assert_eq!(raw_rows(&got), expected, "{got:?}");
    // Both ways in binary format, where a wrong mask could not even fail
    // on the value's type.
    let mut buf = Raw::bind("", "mobile_first", 1);
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::bind("", "mobile_last", 1));
    buf.extend(Raw::execute("", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    assert_raw_no_secret("binary portal re-bound", &got);
    assert_eq!(raw_rows(&got), expected, "{got:?}");
}

/// MOVE repositions a cursor and returns only a row count (sqlparser cannot
/// parse it): psycopg2's `scroll()` sends `MOVE ABSOLUTE n FROM c` for named
/// cursors and asyncpg's `Cursor.forward()` sends `MOVE FORWARD n "portal"`
/// for a protocol-level portal. Both pass for masked roles, and the rows
/// fetched after them stay masked.
#[tokio::test]
async fn moving_a_cursor_or_portal_passes_and_what_follows_stays_masked() {
    use common::probe::{simple_text, Raw};
    let c = as_role("dev").await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("DECLARE mv SCROLL CURSOR FOR SELECT mobile FROM customers ORDER BY id")
        .await
        .unwrap();
    for (sql, moved) in [
        ("MOVE FORWARD 2 FROM mv", "[rows 2]"),
        ("MOVE ABSOLUTE 0 FROM mv", "[rows 0]"),
        ("move 1 in mv", "[rows 1]"),
    ] {
        let msgs = c
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", common::probe::error_text(&e)));
        assert_eq!(simple_text(&msgs), moved, "{sql}");
    }
    let (_, text) = visible(&c, "FETCH NEXT FROM mv").await;
    assert_eq!(text, "138****0000");
    let (_, text) = visible(&c, "FETCH ABSOLUTE 1 FROM mv").await;
    assert_eq!(text, "139****4321");
    c.batch_execute("COMMIT").await.unwrap();

    // A portal bound through the protocol, moved in SQL, then executed.
    let mut raw = Raw::connect(setup(), common::DAVE_TRUST);
    raw.query("BEGIN");
    let mut buf = Raw::parse("mvs", "SELECT mobile FROM customers ORDER BY id");
    buf.extend(Raw::bind("mvp", "mvs", 0));
    buf.extend(Raw::sync());
    raw.send(&buf);
    raw.read_until_ready();
    let got = raw.query("MOVE FORWARD 1 \"mvp\"");
    assert!(
        got.iter()
            .any(|(t, body)| *t == b'C' && body.starts_with(b"MOVE 1")),
        "{got:?}"
    );
    let mut buf = Raw::execute("mvp", 0);
    buf.extend(Raw::sync());
    raw.send(&buf);
    let got = raw.read_until_ready();
    common::probe::assert_raw_no_secret("portal after MOVE", &got);
    assert_eq!(
        Raw::first_value(&got).as_deref(),
        Some("138****0000"),
        "{got:?}"
    );
}

/// An empty or whitespace-only query (psycopg2's `execute("")`) gets the
/// server's EmptyQueryResponse, in both protocols. pg_query's scanner used
/// to build a slice from a null pointer for text without tokens: undefined
/// behaviour, and an abort of the whole pgveil process in a debug build.
#[tokio::test]
async fn empty_queries_get_the_servers_answer() {
    let c = as_role("dev").await;
    for sql in ["", "  ", "\n\t\r"] {
        let msgs = c
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql:?}: {}", common::probe::error_text(&e)));
        assert!(
            !msgs.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))),
            "{sql:?}"
        );
        c.execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql:?}: {}", common::probe::error_text(&e)));
    }
    let (_, text) = visible(&c, "SELECT mobile FROM customers WHERE id = 1").await;
    assert_eq!(text, "139****4321");
}

/// A cancel request that arrives while pgveil is still analysing the
/// statement it is meant for (here: a long IN list, analysed for a while)
/// is held until the statement reached the server, then sent: the server
/// cancels the statement, as it would have direct. Sent at once, it would
/// reach a backend with nothing to cancel and be lost (tokio-postgres'
/// `cancel_query` test then waits out the whole pg_sleep).
#[tokio::test]
async fn a_cancel_sent_while_pgveil_analyses_the_statement_cancels_it() {
    let c = as_role("dev").await;
    let list: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    let sql = format!(
        "SELECT pg_sleep(60) FROM customers WHERE id IN ({}) LIMIT 1",
        list.join(",")
    );
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    // Long enough for pgveil to have read the statement (its analysis,
    // about 1.5 s in a debug build, has barely begun).
    let cancel = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    };
    let (res, cancelled) = tokio::join!(c.batch_execute(&sql), cancel);
    cancelled.unwrap();
    eprintln!("cancelled after {:?}", started.elapsed());
    let err = res.expect_err("the statement ran to its end");
    assert_eq!(code(&err), "57014", "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "cancelled only after {:?}",
        started.elapsed()
    );
    // The session goes on.
    let (ok, text) = visible(&c, "SELECT 1").await;
    assert!(ok, "{text}");
}

/// A cancel request pgveil reads before the statement it is meant for (the
/// client sent the statement first, but on another connection, which a
/// loaded pgveil may serve first): while the session has nothing in
/// flight the request waits a moment for it, then cancels it. Here the
/// request is sent 150 ms ahead of the statement.
#[tokio::test]
async fn a_cancel_read_before_its_statement_still_cancels_it() {
    use common::probe::{cstr, msg, Raw};
    use std::io::Write;
    let (mut raw, startup) = Raw::connect_db(setup(), common::DAVE_TRUST, "bank");
    let (_, key) = startup
        .iter()
        .find(|(t, _)| *t == b'K')
        .expect("BackendKeyData");
    let mut request = 16i32.to_be_bytes().to_vec();
    request.extend(80877102i32.to_be_bytes());
    request.extend_from_slice(key);
    let mut cancel = std::net::TcpStream::connect(("127.0.0.1", setup().port)).unwrap();
    cancel.write_all(&request).unwrap();
    // A head start for the request, well inside the 500 ms a request for a
    // session with nothing in flight waits (a loaded test run took more
    // than the remaining 350 ms of a 150 ms head start to read the query).
    std::thread::sleep(std::time::Duration::from_millis(30));
    let started = std::time::Instant::now();
    raw.send(&msg(b'Q', &cstr("SELECT pg_sleep(30)")));
    let answer = raw.read_until_ready();
    let text = String::from_utf8_lossy(&common::probe::raw_bytes(&answer)).into_owned();
    assert!(text.contains("57014"), "not cancelled: {text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "cancelled only after {:?}",
        started.elapsed()
    );
    // The session goes on.
    let got = raw.query("SELECT 1");
    assert_eq!(Raw::first_value(&got).as_deref(), Some("1"), "{got:?}");
}

/// `COPY … FROM STDIN WHERE …` (asyncpg's `copy_records_to_table(where=)`)
/// writes the rows the client sends that pass the condition: a write, as
/// without WHERE. sqlparser does not read it; PostgreSQL's tree does.
#[tokio::test]
async fn copy_from_stdin_with_a_where_clause_is_a_write() {
    use futures::SinkExt;
    let c = as_role("dev").await;
    c.batch_execute("CREATE TEMP TABLE copy_where (a text, b int)")
        .await
        .unwrap();
    for sql in [
        "COPY copy_where FROM STDIN WHERE b > 1",
        "COPY copy_where (a, b) FROM STDIN (FORMAT text) WHERE a <> 'skip'",
    ] {
        let sink = c
            .copy_in(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"skip\t1\nkeep\t2\n"))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 1, "{sql}");
    }
    let (ok, text) = visible(&c, "SELECT a, b FROM copy_where").await;
    assert!(ok && text == "keep|2|keep|2", "{text}");
}

/// A `DO` block that only raises constant messages (drivers' tests use
/// them for notices and errors) runs for a masked role, and its SQLSTATE
/// reaches the client; any other DO block stays refused.
#[tokio::test]
async fn do_blocks_that_only_raise_constants_run() {
    let c = as_role("dev").await;
    c.batch_execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$ LANGUAGE plpgsql")
        .await
        .unwrap();
    let err = c
        .batch_execute(
            "DO $$ BEGIN RAISE EXCEPTION 'duplicate statement' USING ERRCODE = '42P05'; END; $$",
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "42P05", "{err}");
    // Its text is the client's own: it arrives as raised, with its CONTEXT.
    let db = err.as_db_error().unwrap();
    assert_eq!(db.message(), "duplicate statement");
    assert!(
        db.where_()
            .unwrap_or_default()
            .contains("inline_code_block"),
        "{db:?}"
    );
    let err = c
        .query("DO $$ BEGIN RAISE EXCEPTION 'abc 123 \"q\"'; END $$", &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().message(), "abc 123 \"q\"");
    // In a query string with other statements, and through Parse/Bind.
    let (ok, text) = visible(
        &c,
        "SELECT 1; DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 2",
    )
    .await;
    assert!(ok && text == "1|2", "{text}");
    c.execute("DO $$ BEGIN RAISE WARNING 'w'; END $$", &[])
        .await
        .unwrap();
    for sql in [
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT mobile FROM customers LIMIT 1); END $$",
        "DO $$ BEGIN RAISE NOTICE 'x' USING DETAIL = (SELECT mobile FROM customers LIMIT 1); END $$",
        "DO $$ BEGIN PERFORM mobile FROM customers; END $$",
    ] {
        let err = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(code(&err), "42501", "{sql}: {err}");
    }
    // Other errors stay scrubbed.
    let err = c
        .batch_execute("SELECT 1; DO $$ BEGIN RAISE NOTICE 'x'; END $$; SELECT 'abc'::int")
        .await
        .unwrap_err();
    assert!(
        !err.as_db_error().unwrap().message().contains("abc"),
        "{err:?}"
    );
}
