//! Metrics and the audit trail after a known workload: clear, masked and
//! blocked statements by two roles, over the simple and the extended
//! protocol, with COPY and a cursor. The scrape is checked series by series
//! (exact deltas) and by `promtool check metrics`; the audit file record by
//! record, for literal values, and by `pgveil audit verify` / `report`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cluster, connect, Proxy, SUPERUSER_PASSWORD};
use futures::StreamExt;
use serde_json::Value;

const PASSWORD: &str = "shop-pw";
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/observe");
/// Values of the fixture: none may appear in an audit file.
const ROW_VALUES: [&str; 9] = [
    "110101199003070011",
    "110101199003070022",
    "110101199003070033",
    "13800138001",
    "13800138002",
    "6222020000000000011",
    "6222020000000000022",
    "Yang Wei",
    "cvv-771",
];
/// Literals of the workload's statements: none may appear either.
const STATEMENT_LITERALS: [&str; 2] = ["Secret Branch Zeta", "110101199003070022"];

fn create_schema() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let c = cluster();
        c.psql_super("CREATE DATABASE shop").unwrap();
        c.psql_super_db(
            "shop",
            &format!(
                "CREATE TABLE customers (id int PRIMARY KEY, name text, id_number text,
                   mobile text, branch text);
                 CREATE TABLE cards (id int PRIMARY KEY, customer_id int, card_no text, cvv text);
                 INSERT INTO customers VALUES
                   (1, 'Yang Wei', '110101199003070011', '13800138001', 'North'),
                   (2, 'Li Na', '110101199003070022', '13800138002', 'North'),
                   (3, 'Wang Fang', '110101199003070033', '13800138003', 'South'),
                   (4, 'Zhao Lei', '110101199003070044', '13800138004', 'South'),
                   (5, 'Chen Jie', '110101199003070055', '13800138005', 'East');
                 INSERT INTO cards VALUES
                   (1, 1, '6222020000000000011', 'cvv-771'),
                   (2, 1, '6222020000000000022', 'cvv-772'),
                   (3, 2, '6222020000000000033', 'cvv-773');
                 CREATE ROLE compliance NOLOGIN; CREATE ROLE call_center NOLOGIN;
                 CREATE ROLE officer LOGIN PASSWORD '{PASSWORD}' IN ROLE compliance;
                 CREATE ROLE agent LOGIN PASSWORD '{PASSWORD}' IN ROLE call_center;
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC;"
            ),
        )
        .unwrap();
    });
}

fn start_proxy(extra: &[&str]) -> Proxy {
    create_schema();
    let mut args = vec!["--policies", POLICIES, "--catalog-user", "postgres"];
    args.extend_from_slice(extra);
    Proxy::start_with_env(&args, &[("PGVEIL_CATALOG_PASSWORD", SUPERUSER_PASSWORD)])
}

async fn as_role(proxy: &Proxy, role: &str) -> tokio_postgres::Client {
    let conn = format!(
        "{} application_name=observe-test",
        proxy.conn_str(role, PASSWORD, "shop")
    );
    connect(&conn)
        .await
        .unwrap_or_else(|e| panic!("{role}: {e}"))
}

fn rows(msgs: &[tokio_postgres::SimpleQueryMessage]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count()
}

async fn copy_rows(c: &tokio_postgres::Client, sql: &str) -> usize {
    let stream = c.copy_out(sql).await.unwrap();
    futures::pin_mut!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

const AGENT_MASKED: &str =
    "SELECT id, id_number, mobile FROM customers WHERE id <= 3 AND branch <> 'Secret Branch Zeta' ORDER BY id";
const AGENT_CARDS: &str = "SELECT card_no FROM cards WHERE customer_id = $1 ORDER BY id";
const AGENT_CVV: &str = "SELECT cvv FROM cards";
const AGENT_LIKE: &str = "SELECT id FROM customers WHERE mobile LIKE $1";
const AGENT_COPY: &str = "COPY (SELECT id, id_number FROM customers ORDER BY id) TO STDOUT";
const AGENT_DECLARE: &str = "DECLARE c CURSOR FOR SELECT id, mobile FROM customers ORDER BY id";
const OFFICER_JOIN: &str =
    "SELECT id_number, card_no FROM customers JOIN cards ON cards.customer_id = customers.id";
const OFFICER_LOOKUP: &str = "SELECT mobile FROM customers WHERE id_number = '110101199003070022'";
const OFFICER_COPY: &str = "COPY customers TO STDOUT";

/// The agent's part: clear, masked (simple, extended, COPY, cursor) and
/// blocked (simple, extended) statements.
async fn agent_workload(proxy: &Proxy) {
    let c = as_role(proxy, "agent").await;
    let clear = c
        .simple_query("SELECT id, name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows(&clear), 5);
    assert_eq!(rows(&c.simple_query(AGENT_MASKED).await.unwrap()), 3);
    assert_eq!(c.query(AGENT_CARDS, &[&1i32]).await.unwrap().len(), 2);
    let e = c.simple_query(AGENT_CVV).await.unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "{e}"
    );
    let e = c.query(AGENT_LIKE, &[&"%1380%"]).await.unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "{e}"
    );
    assert_eq!(copy_rows(&c, AGENT_COPY).await, 5);
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query(AGENT_DECLARE).await.unwrap();
    assert_eq!(rows(&c.simple_query("FETCH 2 FROM c").await.unwrap()), 2);
    assert_eq!(rows(&c.simple_query("FETCH 10 FROM c").await.unwrap()), 3);
    c.simple_query("COMMIT").await.unwrap();
}

/// The officer's part: clear reads of protected columns, simple, extended
/// and COPY.
async fn officer_workload(proxy: &Proxy) {
    let c = as_role(proxy, "officer").await;
    assert_eq!(rows(&c.simple_query(OFFICER_JOIN).await.unwrap()), 3);
    assert_eq!(c.query(OFFICER_LOOKUP, &[]).await.unwrap().len(), 1);
    assert_eq!(copy_rows(&c, OFFICER_COPY).await, 5);
}

/// Every sample of the scrape: (name, sorted labels) -> value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

fn parse_scrape(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (head, Vec::new()),
        };
        out.insert((name.to_string(), labels), value);
    }
    out
}

fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("label");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => {
                    let (_, c) = chars.next().expect("escape");
                    value.push(if c == 'n' { '\n' } else { c });
                }
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    labels.sort();
    labels
}

fn key(name: &str, labels: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    (name.to_string(), l)
}

/// The families the workload must move exactly as expected.
const COUNTED: [&str; 5] = [
    "pgveil_result_sets_total",
    "pgveil_rows_total",
    "pgveil_cells_masked_total",
    "pgveil_protected_rows_read_total",
    "pgveil_statements_blocked_total",
];

fn deltas(before: &Samples, after: &Samples) -> Samples {
    after
        .iter()
        .filter(|((name, _), _)| COUNTED.contains(&name.as_str()))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write scrape");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The body of the scrape without the HTTP head.
fn scrape(proxy: &Proxy) -> String {
    let text = proxy.metrics();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text)
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Records of the audit file, once `n` session_end records are there.
/// Async: the dropped clients' connection tasks must run to say goodbye.
async fn wait_for_session_ends(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect();
        let ends = records
            .iter()
            .filter(|r| r["event"] == "session_end")
            .count();
        if ends >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "only {ends} session_end records after 20 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pgveil(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgveil"))
        .args(args)
        .output()
        .expect("run pgveil");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn fp(sql: &str) -> String {
    pgveil::observe::fingerprint::fingerprint(sql).text
}

/// A statement record, reduced to what the workload determines.
fn summary(r: &Value) -> String {
    let columns: Vec<String> = r["columns"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}:{}:{}:{}{}",
                        c["column"].as_str().unwrap_or("?"),
                        c["decision"].as_str().unwrap_or("?"),
                        c["mask"].as_str().unwrap_or("-"),
                        c["outputs"],
                        if c["filter"] == true { ":filter" } else { "" }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{} {} {} rows={} rule={} [{}] {}",
        r["event"].as_str().unwrap_or("?"),
        r["outcome"].as_str().unwrap_or("-"),
        r["protocol"].as_str().unwrap_or("-"),
        r["rows"],
        r["rule"].as_str().unwrap_or("-"),
        columns.join(" "),
        r["fingerprint"].as_str().unwrap_or("-"),
    )
}

#[tokio::test]
async fn known_workload_gives_exact_metrics_and_audit_records() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let proxy = start_proxy(&["--audit-log", audit.to_str().unwrap()]);
    let ready = http_get(proxy.metrics_port, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let before = parse_scrape(&scrape(&proxy));

    agent_workload(&proxy).await;
    wait_for_session_ends(&audit, 1).await;
    officer_workload(&proxy).await;
    let records = wait_for_session_ends(&audit, 2).await;

    let text = scrape(&proxy);
    promtool_accepts(&text);
    let after = parse_scrape(&text);
    let (rs, rw) = ("pgveil_result_sets_total", "pgveil_rows_total");
    let cells = "pgveil_cells_masked_total";
    let read = "pgveil_protected_rows_read_total";
    let id = "public.customers.id_number";
    let mobile = "public.customers.mobile";
    let card = "public.cards.card_no";
    let expected: Samples = [
        // agent: 1 clear SELECT of 5 rows; masked: SELECT (3 rows),
        // extended SELECT (2), COPY (5), FETCH 2 and FETCH 10 (2 + 3).
        (
            key(
                rs,
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("outcome", "clear"),
                ],
            ),
            1.0,
        ),
        (
            key(
                rw,
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("outcome", "clear"),
                ],
            ),
            5.0,
        ),
        (
            key(
                rs,
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("outcome", "masked"),
                ],
            ),
            5.0,
        ),
        (
            key(
                rw,
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("outcome", "masked"),
                ],
            ),
            15.0,
        ),
        (
            key(
                rs,
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("outcome", "blocked"),
                ],
            ),
            2.0,
        ),
        // officer: JOIN (3 rows), extended lookup (1), COPY (5), all clear.
        (
            key(
                rs,
                &[
                    ("database", "shop"),
                    ("role", "officer"),
                    ("outcome", "clear"),
                ],
            ),
            3.0,
        ),
        (
            key(
                rw,
                &[
                    ("database", "shop"),
                    ("role", "officer"),
                    ("outcome", "clear"),
                ],
            ),
            9.0,
        ),
        (
            key(cells, &[("column", id), ("mask", "keep"), ("class", "C3")]),
            8.0,
        ),
        (
            key(
                cells,
                &[("column", mobile), ("mask", "cn_mobile"), ("class", "C2")],
            ),
            8.0,
        ),
        (
            key(
                cells,
                &[("column", card), ("mask", "bank_card"), ("class", "PCI")],
            ),
            2.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "agent"),
                    ("column", id),
                    ("class", "C3"),
                    ("decision", "masked"),
                ],
            ),
            8.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "agent"),
                    ("column", mobile),
                    ("class", "C2"),
                    ("decision", "masked"),
                ],
            ),
            8.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "agent"),
                    ("column", card),
                    ("class", "PCI"),
                    ("decision", "masked"),
                ],
            ),
            2.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "officer"),
                    ("column", id),
                    ("class", "C3"),
                    ("decision", "clear"),
                ],
            ),
            8.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "officer"),
                    ("column", mobile),
                    ("class", "C2"),
                    ("decision", "clear"),
                ],
            ),
            6.0,
        ),
        (
            key(
                read,
                &[
                    ("role", "officer"),
                    ("column", card),
                    ("class", "PCI"),
                    ("decision", "clear"),
                ],
            ),
            3.0,
        ),
        (
            key(
                "pgveil_statements_blocked_total",
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("rule", "public.cards.cvv default"),
                ],
            ),
            1.0,
        ),
        (
            key(
                "pgveil_statements_blocked_total",
                &[
                    ("database", "shop"),
                    ("role", "agent"),
                    ("rule", "public.customers.mobile default"),
                ],
            ),
            1.0,
        ),
    ]
    .into_iter()
    .collect();
    let got = deltas(&before, &after);
    let show = |s: &Samples| {
        s.iter()
            .map(|((n, l), v)| format!("{n}{l:?} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(show(&got), show(&expected));
    let value = |name: &str, labels: &[(&str, &str)]| after.get(&key(name, labels)).copied();
    assert_eq!(
        value("pgveil_rowdescription_overrides_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value("pgveil_audit_records_total", &[("outcome", "dropped")]),
        Some(0.0)
    );
    assert_eq!(
        value("pgveil_audit_records_total", &[("outcome", "written")]),
        Some(records.len() as f64)
    );
    assert!(text.contains("pgveil_policy_info{sha256=\""), "{text}");
    assert!(
        text.contains("pgveil_analysis_duration_seconds_count{cache=\"hit\"}"),
        "{text}"
    );

    // The audit file: exactly these records, per session in order.
    let raw = std::fs::read_to_string(&audit).unwrap();
    for secret in ROW_VALUES.iter().chain(&STATEMENT_LITERALS) {
        assert!(!raw.contains(secret), "{secret} in the audit file:\n{raw}");
    }
    let mut sessions: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &records {
        let role = r["role"].as_str().unwrap().to_string();
        sessions.entry(role).or_default().push(r);
    }
    let agent: Vec<String> = sessions["agent"].iter().map(|r| summary(r)).collect();
    let officer: Vec<String> = sessions["officer"].iter().map(|r| summary(r)).collect();
    let (idn, mob, crd) = (id, mobile, card);
    assert_eq!(
        agent,
        vec![
            "session_start - - rows=null rule=- [] -".to_string(),
            format!("statement masked simple rows=3 rule=- [{idn}:masked:keep:1 {mob}:masked:cn_mobile:1] {}", fp(AGENT_MASKED)),
            format!("statement masked extended rows=2 rule=- [{crd}:masked:bank_card:1] {}", fp(AGENT_CARDS)),
            format!("statement blocked simple rows=0 rule=public.cards.cvv default [public.cards.cvv:denied:-:1] {}", fp(AGENT_CVV)),
            format!("statement blocked extended rows=0 rule=public.customers.mobile default [{mob}:masked:cn_mobile:0:filter] {}", fp(AGENT_LIKE)),
            format!("statement masked extended rows=5 rule=- [{idn}:masked:keep:1] {}", fp(AGENT_COPY)),
            format!("statement masked simple rows=0 rule=- [{mob}:masked:cn_mobile:1] {}", fp(AGENT_DECLARE)),
            format!("statement masked simple rows=2 rule=- [{mob}:masked:cn_mobile:1] {}", fp(AGENT_DECLARE)),
            format!("statement masked simple rows=3 rule=- [{mob}:masked:cn_mobile:1] {}", fp(AGENT_DECLARE)),
            "session_end - - rows=null rule=- [] -".to_string(),
        ]
    );
    assert_eq!(
        officer,
        vec![
            "session_start - - rows=null rule=- [] -".to_string(),
            format!("statement clear simple rows=3 rule=- [{crd}:clear:-:1 {idn}:clear:-:1] {}", fp(OFFICER_JOIN)),
            format!("statement clear extended rows=1 rule=- [{idn}:clear:-:0:filter {mob}:clear:-:1] {}", fp(OFFICER_LOOKUP)),
            format!("statement clear extended rows=5 rule=- [{idn}:clear:-:1 {mob}:clear:-:1] {}", fp(OFFICER_COPY)),
            "session_end - - rows=null rule=- [] -".to_string(),
        ]
    );
    let start = sessions["agent"][0];
    assert_eq!(start["application"], "observe-test");
    assert_eq!(start["policy_roles"], serde_json::json!(["call_center"]));
    assert!(start["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(sessions["officer"][4]["statements"], 3);
    assert_eq!(sessions["officer"][4]["end_reason"], "client_terminated");

    // The chain verifies, and breaks at the right record when edited.
    let audit_str = audit.to_str().unwrap();
    let (ok, out) = pgveil(&["audit", "verify", audit_str]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} records", records.len())), "{out}");
    let lines: Vec<&str> = raw.lines().collect();
    let tampered = dir.path().join("tampered.log");
    let check = |lines: Vec<String>, expect: &str| {
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let (ok, out) = pgveil(&["audit", "verify", tampered.to_str().unwrap()]);
        assert!(!ok, "tampering not detected ({expect}):\n{out}");
        assert!(out.contains(expect), "expected `{expect}` in:\n{out}");
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let mut edited = owned();
    edited[3] = edited[3].replacen("\"rows\":", "\"rows\":1", 1);
    check(edited, "record 4 (");
    let mut removed = owned();
    removed.remove(5);
    check(removed, "record 6 is missing");
    let mut inserted = owned();
    inserted.insert(7, lines[2].to_string());
    check(inserted, "line 8) is out of sequence");

    // Who read what.
    let (ok, out) = pgveil(&["audit", "report", audit_str]);
    assert!(ok, "{out}");
    let table: Vec<String> = out
        .lines()
        .map(|l| {
            let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT[\d:.]+Z").unwrap();
            time.replace_all(l, "T").trim_end().to_string()
        })
        .collect();
    let expected_table = "\
Protected columns read
ROLE     COLUMN                      CLASS  DECISION  STATEMENTS  ROWS  SESSIONS  FIRST                        LAST
agent    public.cards.card_no        PCI    masked    1           2     1         T  T
agent    public.customers.id_number  C3     masked    2           8     1         T  T
agent    public.customers.mobile     C2     masked    4           8     1         T  T
officer  public.cards.card_no        PCI    clear     1           3     1         T  T
officer  public.customers.id_number  C3     clear     2           8     1         T  T
officer  public.customers.mobile     C2     clear     2           6     1         T  T

Blocked statements
ROLE   RULE                             STATEMENTS  FIRST                        LAST
agent  public.cards.cvv default         1           T  T
agent  public.customers.mobile default  1           T  T";
    assert_eq!(table.join("\n"), expected_table, "{out}");
    let (ok, json) = pgveil(&[
        "audit",
        "report",
        audit_str,
        "--role",
        "compliance",
        "--column",
        "mobile",
        "--json",
    ]);
    assert!(ok, "{json}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let reads = report["reads"].as_array().unwrap();
    assert_eq!(reads.len(), 1, "{json}");
    assert_eq!(reads[0]["role"], "officer");
    assert_eq!(reads[0]["rows"], 6);
    assert_eq!(reads[0]["decision"], "clear");
    let (ok, none) = pgveil(&[
        "audit",
        "report",
        audit_str,
        "--until",
        "2000-01-01",
        "--json",
    ]);
    assert!(ok, "{none}");
    assert!(none.contains("\"reads\": []"), "{none}");
}

/// Without an audit trail, unrestricted sessions are relayed without a
/// guard: their result sets and rows are still counted, while framing.
#[tokio::test]
async fn unguarded_sessions_are_counted_while_framing() {
    let proxy = start_proxy(&[]);
    let before = parse_scrape(&scrape(&proxy));
    officer_workload(&proxy).await;
    let c = as_role(&proxy, "officer").await;
    // A SELECT of no rows is a result set too; an INSERT is not.
    assert_eq!(
        c.query("SELECT id FROM customers WHERE id < 0", &[])
            .await
            .unwrap()
            .len(),
        0
    );
    c.simple_query("CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let text = scrape(&proxy);
    promtool_accepts(&text);
    let got = deltas(&before, &parse_scrape(&text));
    let expected: Samples = [
        (
            key(
                "pgveil_result_sets_total",
                &[
                    ("database", "shop"),
                    ("role", "officer"),
                    ("outcome", "clear"),
                ],
            ),
            4.0,
        ),
        (
            key(
                "pgveil_rows_total",
                &[
                    ("database", "shop"),
                    ("role", "officer"),
                    ("outcome", "clear"),
                ],
            ),
            9.0,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}

/// `--metrics-role-label rule` labels series by the policy role matched.
#[tokio::test]
async fn role_label_can_be_the_policy_role() {
    let proxy = start_proxy(&["--metrics-role-label", "rule"]);
    let c = as_role(&proxy, "agent").await;
    c.simple_query(AGENT_MASKED).await.unwrap();
    let text = scrape(&proxy);
    assert!(
        text.contains(
            "pgveil_result_sets_total{database=\"shop\",outcome=\"masked\",role=\"call_center\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("role=\"agent\""), "{text}");
}

/// Rotation keeps one chain; removing a record at a file boundary or a
/// whole middle file is named.
#[tokio::test]
async fn audit_chain_spans_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let proxy = start_proxy(&[
        "--audit-log",
        audit.to_str().unwrap(),
        "--audit-max-size",
        "4096",
    ]);
    {
        let c = as_role(&proxy, "agent").await;
        for _ in 0..40 {
            c.simple_query(AGENT_MASKED).await.unwrap();
        }
    }
    wait_for_session_ends(&audit, 1).await;
    drop(proxy);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "no rotation: {files:?}");
    let args = |files: &[PathBuf]| {
        let mut a = vec!["audit".to_string(), "verify".to_string()];
        a.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
        a
    };
    let run = |files: &[PathBuf]| {
        let a = args(files);
        pgveil(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, out) = run(&files);
    assert!(ok, "{out}");
    assert!(out.contains("42 records"), "{out}");
    // First line of the second rotated file removed: named across the boundary.
    let second = files[2].clone();
    let text = std::fs::read_to_string(&second).unwrap();
    let first_seq: u64 = serde_json::from_str::<Value>(text.lines().next().unwrap()).unwrap()
        ["seq"]
        .as_u64()
        .unwrap();
    let rest: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&second, rest.join("\n") + "\n").unwrap();
    let (ok, out) = run(&files);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("record {first_seq} is missing")),
        "{out}"
    );
    // A whole middle file gone.
    std::fs::write(&second, text).unwrap();
    let without: Vec<PathBuf> = files.iter().filter(|f| **f != second).cloned().collect();
    let (ok, out) = run(&without);
    assert!(!ok, "{out}");
    assert!(out.contains("missing between"), "{out}");
}

/// What an operator tailing the audit file sees: the record of a statement
/// arrives while the session and the proxy are still running (the writer
/// does not hold records in its buffer until it fills or the proxy stops).
#[tokio::test]
async fn a_statement_record_reaches_the_file_while_the_session_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let proxy = start_proxy(&["--audit-log", audit.to_str().unwrap()]);
    let c = as_role(&proxy, "agent").await;
    assert_eq!(rows(&c.simple_query(AGENT_MASKED).await.unwrap()), 3);
    let want = fp(AGENT_MASKED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|r| r["event"] == "statement" && r["fingerprint"] == want.as_str());
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no record of the statement in the file while the session is open:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The session is still usable: nothing above needed it to end.
    assert_eq!(rows(&c.simple_query(AGENT_MASKED).await.unwrap()), 3);
}

/// A named pipe to a log shipper that stops reading, as the audit target:
/// the test holds the read end and decides when the writer may go on.
struct StalledReader {
    fifo: PathBuf,
    file: std::fs::File,
}

impl StalledReader {
    fn new(dir: &Path) -> StalledReader {
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = dir.join("audit.pipe");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // Non-blocking open of the read end: pgveil's open for writing then
        // finds a reader and does not wait.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        // The smallest pipe: the writer stalls after a few records.
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an open descriptor.
        unsafe {
            libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
        }
        StalledReader { fifo, file }
    }

    /// Starts reading; the thread returns everything once pgveil closes the
    /// pipe at exit.
    fn resume(self) -> std::thread::JoinHandle<String> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut file = self.file;
        // SAFETY: fcntl on an open descriptor; clears O_NONBLOCK.
        unsafe {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0);
        }
        std::thread::spawn(move || {
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            text
        })
    }
}

/// Runs `n` masked statements in one agent session, counting those done.
fn run_statements(
    proxy: &Proxy,
    n: usize,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let conn = proxy.conn_str("agent", PASSWORD, "shop");
    let counter = done.clone();
    let task = tokio::spawn(async move {
        let c = connect(&conn).await.unwrap();
        for _ in 0..n {
            assert_eq!(rows(&c.simple_query(AGENT_MASKED).await.unwrap()), 3);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (done, task)
}

/// Stops pgveil as an orchestrator does and waits for it to exit.
fn stop(proxy: &mut Proxy) {
    proxy.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "pgveil did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn audit_records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

const STATEMENTS: usize = 1000;

/// `--audit-on-full block`: when the audit reader stalls, statements wait
/// rather than run unaudited, and every one of them is in the trail once it
/// reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_audit_reader_makes_statements_wait_with_on_full_block() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StalledReader::new(dir.path());
    let mut proxy = start_proxy(&[
        "--audit-log",
        reader.fifo.to_str().unwrap(),
        "--audit-on-full",
        "block",
        "--audit-queue",
        "4",
    ]);
    let (done, task) = run_statements(&proxy, STATEMENTS);
    // Progress stops short of the end: the session waits for the writer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (usize::MAX, Instant::now());
    loop {
        let now = done.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            now < STATEMENTS,
            "all statements ran while the audit was stalled"
        );
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(Instant::now() < deadline, "progress never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = scrape(&proxy);
    assert!(
        metrics.contains("pgveil_audit_records_total{outcome=\"dropped\"} 0"),
        "{metrics}"
    );
    let output = reader.resume();
    task.await.unwrap();
    // The session's end record is queued before pgveil's shutdown completes.
    stop(&mut proxy);
    let text = output.join().unwrap();
    let records = audit_records(&text);
    let statements = records.iter().filter(|r| r["event"] == "statement").count();
    assert_eq!(statements, STATEMENTS);
    assert!(!records.iter().any(|r| r["event"] == "records_dropped"));
    let copy = dir.path().join("audit.log");
    std::fs::write(&copy, &text).unwrap();
    let (ok, out) = pgveil(&["audit", "verify", copy.to_str().unwrap()]);
    assert!(ok, "{out}");
}

/// `--audit-on-full drop`: statements go on while the audit reader stalls;
/// the lost records are counted in a metric, logged, and marked in the
/// chain where they are missing, so the trail itself shows the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_audit_reader_loses_only_counted_records_with_on_full_drop() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StalledReader::new(dir.path());
    let mut proxy = start_proxy(&[
        "--audit-log",
        reader.fifo.to_str().unwrap(),
        "--audit-on-full",
        "drop",
        "--audit-queue",
        "4",
    ]);
    let (done, task) = run_statements(&proxy, STATEMENTS);
    task.await.unwrap();
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), STATEMENTS);
    let samples = parse_scrape(&scrape(&proxy));
    let dropped = samples[&key("pgveil_audit_records_total", &[("outcome", "dropped")])];
    assert!(dropped > 0.0, "nothing dropped while the reader stalled");
    let output = reader.resume();
    stop(&mut proxy);
    let text = output.join().unwrap();
    let records = audit_records(&text);
    let gaps: u64 = records
        .iter()
        .filter(|r| r["event"] == "records_dropped")
        .map(|r| r["dropped"].as_u64().unwrap())
        .sum();
    let kept = records
        .iter()
        .filter(|r| r["event"] != "records_dropped")
        .count() as u64;
    // session_start + statements + session_end, each written or counted.
    assert_eq!(kept + gaps, STATEMENTS as u64 + 2, "{text}");
    assert!(
        gaps as f64 >= dropped,
        "metric {dropped}, in the file {gaps}"
    );
    assert!(
        proxy.log_text().contains("audit records dropped"),
        "{}",
        proxy.log_text()
    );
    let copy = dir.path().join("audit.log");
    std::fs::write(&copy, &text).unwrap();
    let (ok, out) = pgveil(&["audit", "verify", copy.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = pgveil(&["audit", "report", copy.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("WARNING: {gaps} audit record(s) were dropped")),
        "{out}"
    );
}
