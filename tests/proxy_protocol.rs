//! pgveil as a transparent proxy: real clients through pgveil to a real
//! PostgreSQL, asserting what the client sees.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use common::{cluster, connect, Proxy, ALICE, BOB_MD5, CAROL_PLAIN, DAVE_TRUST};
use futures::{FutureExt, StreamExt};
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

/// One pgveil shared by the tests of this file that need no special flags.
fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        cluster();
        Proxy::start(&[])
    })
}

fn alice() -> String {
    proxy().conn_str(ALICE.0, ALICE.1, "app")
}

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_query_multi_statement() {
    let c = connect(&alice()).await.unwrap();
    let msgs = c
        .simple_query("SELECT 1 AS a; SELECT 'x' || 'y', NULL::text; SELECT current_user")
        .await
        .unwrap();
    assert_eq!(
        rows(&msgs),
        vec![
            vec![Some("1".to_string())],
            vec![Some("xy".to_string()), None],
            vec![Some("alice".to_string())]
        ]
    );
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 3);
}

#[tokio::test]
async fn prepared_statements_with_binary_parameters_and_results() {
    let c = connect(&alice()).await.unwrap();
    c.batch_execute(
        "CREATE TEMP TABLE t (id int8 primary key, name text, amount numeric, raw bytea, at timestamptz default now())",
    )
    .await
    .unwrap();
    let insert = c
        .prepare("INSERT INTO t (id, name, raw) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for i in 0..20i64 {
        let raw: Vec<u8> = vec![0, 1, 2, 255, i as u8];
        c.execute(&insert, &[&i, &format!("名字{i}"), &raw])
            .await
            .unwrap();
    }
    let select = c
        .prepare("SELECT id, name, raw FROM t WHERE id >= $1 ORDER BY id")
        .await
        .unwrap();
    let got = c.query(&select, &[&15i64]).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].get::<_, i64>(0), 15);
    assert_eq!(got[0].get::<_, String>(1), "名字15");
    assert_eq!(got[4].get::<_, Vec<u8>>(2), vec![0, 1, 2, 255, 19]);
    // The same named statement reused many times, then closed.
    for i in 0..5i64 {
        let r = c.query(&select, &[&(19 - i)]).await.unwrap();
        assert_eq!(r.len() as i64, i + 1);
        assert_eq!(r[0].get::<_, i64>(0), 19 - i);
    }
    drop(select);
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20);
}

#[tokio::test]
async fn pipelined_queries_arrive_in_order() {
    let c = connect(&alice()).await.unwrap();
    let stmt = c.prepare("SELECT $1::int4 * 2").await.unwrap();
    let futures: Vec<_> = (0..50i32)
        .map(|i| {
            let c = &c;
            let stmt = &stmt;
            async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let results = futures::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32 * 2);
    }
}

#[tokio::test]
async fn error_mid_pipeline_then_the_session_is_usable() {
    let c = connect(&alice()).await.unwrap();
    let ok1 = c.query_one("SELECT 1::int4", &[]);
    let bad = c.query_one("SELECT 1/0", &[]);
    let ok2 = c.query_one("SELECT 2::int4", &[]);
    let (ok1, bad, ok2) = futures::join!(ok1, bad, ok2);
    assert_eq!(ok1.unwrap().get::<_, i32>(0), 1);
    let err = bad.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("22012"),
        "{err}"
    );
    assert_eq!(ok2.unwrap().get::<_, i32>(0), 2);
    // A syntax error in the simple protocol, then a good query.
    let err = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42601"));
    let r = c.query_one("SELECT 'still here'::text", &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), "still here");
}

#[tokio::test]
async fn copy_in_and_out() {
    let c = connect(&alice()).await.unwrap();
    c.batch_execute("CREATE TEMP TABLE c (id int, note text)")
        .await
        .unwrap();
    let sink = c
        .copy_in("COPY c FROM STDIN WITH (FORMAT csv)")
        .await
        .unwrap();
    let mut data = String::new();
    for i in 0..1000 {
        data.push_str(&format!("{i},\"note, {i}\"\n"));
    }
    futures::pin_mut!(sink);
    futures::SinkExt::send(&mut sink, bytes::Bytes::from(data.clone()))
        .await
        .unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 1000);
    let stream = c
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT WITH (FORMAT csv)")
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let mut out = Vec::new();
    for ch in chunks {
        out.extend_from_slice(&ch.unwrap());
    }
    assert_eq!(String::from_utf8(out).unwrap(), data);
    // A failed COPY leaves the session usable.
    let err = c
        .copy_out("COPY no_such_table TO STDOUT")
        .await
        .err()
        .unwrap();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("42P01"));
    assert_eq!(
        c.query_one("SELECT count(*) FROM c", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1000
    );
}

#[tokio::test]
async fn cancel_reaches_the_right_backend() {
    let c = connect(&alice()).await.unwrap();
    let other = connect(&alice()).await.unwrap();
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(30)").await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled_at = std::time::Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, c) = sleeper.await.unwrap();
    let err = r.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{err}"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    // Only that session was cancelled; both remain usable.
    c.simple_query("SELECT 1").await.unwrap();
    other.simple_query("SELECT 1").await.unwrap();
}

/// Drivers match a notification's sender to their own connection and pass
/// the PID to `pg_terminate_backend`: the key carries the backend's real PID.
#[tokio::test]
async fn clients_see_the_real_backend_pid() {
    use common::probe::Raw;
    let (mut raw, startup) = Raw::connect_db(proxy(), DAVE_TRUST, "app");
    let pid = Raw::key_pid(&startup);
    let got = raw.query("SELECT pg_backend_pid()");
    assert_eq!(Raw::first_value(&got), Some(pid.to_string()));
    raw.query("LISTEN pid_check");
    let got = raw.query("NOTIFY pid_check, 'mine'");
    assert_eq!(Raw::notification_pid(&got), Some(pid), "{got:?}");
    // Another session stops exactly this one by that PID.
    let admin = connect(&proxy().conn_str(common::SUPERUSER, common::SUPERUSER_PASSWORD, "app"))
        .await
        .unwrap();
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let (ty, body) = raw.read_msg();
    assert_eq!(ty, b'E');
    assert!(String::from_utf8_lossy(&body).contains("57P01"));
    admin.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn listen_notify_is_delivered() {
    let (listener, mut conn) = tokio_postgres::connect(&alice(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        if let Ok(AsyncMessage::Notification(n)) = m {
            let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
        }
        futures::future::ready(())
    }));
    listener
        .batch_execute("LISTEN pgveil_events")
        .await
        .unwrap();
    let notifier = connect(&alice()).await.unwrap();
    notifier
        .batch_execute("NOTIFY pgveil_events, 'hello through pgveil'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        (
            "pgveil_events".to_string(),
            "hello through pgveil".to_string()
        )
    );
}

#[tokio::test]
async fn notices_and_parameter_status_pass_through() {
    let (c, mut conn) = tokio_postgres::connect(&alice(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        if let Ok(AsyncMessage::Notice(n)) = m {
            let _ = tx.send(n.message().to_string());
        }
        futures::future::ready(())
    }));
    c.batch_execute("DO $$ BEGIN RAISE NOTICE 'notice via pgveil'; END $$")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "notice via pgveil");
}

#[tokio::test]
async fn ten_megabyte_bytea_round_trip() {
    let c = connect(&alice()).await.unwrap();
    let blob: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = c
        .query_one("SELECT $1::bytea, length($1::bytea)", &[&blob])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(1), blob.len() as i32);
    assert!(r.get::<_, Vec<u8>>(0) == blob, "bytea changed in transit");
    // Text format too (hex, 20 MB on the wire).
    let msgs = c
        .simple_query("SELECT md5(repeat('x', 10485760)::bytea), repeat('y', 10485760)")
        .await
        .unwrap();
    let r = rows(&msgs);
    assert_eq!(r[0][1].as_ref().map(String::len), Some(10 * 1024 * 1024));
}

#[tokio::test]
async fn authentication_methods_are_relayed() {
    // scram-sha-256 (alice), md5, cleartext password, trust.
    for (user, pw) in [ALICE, BOB_MD5, CAROL_PLAIN, (DAVE_TRUST, "")] {
        let c = connect(&proxy().conn_str(user, pw, "postgres"))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user);
    }
    for (user, _) in [ALICE, BOB_MD5, CAROL_PLAIN] {
        let err = connect(&proxy().conn_str(user, "wrong", "postgres"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} got in with a wrong password"));
        assert_eq!(
            err.as_db_error().map(|e| e.code().code()),
            Some("28P01"),
            "{user}: {err}"
        );
    }
    // After failed logins pgveil still serves.
    connect(&alice()).await.unwrap();
}

#[tokio::test]
async fn tls_to_pgveil_with_scram() {
    let c = cluster();
    let cert = c.proxy_cert.to_string_lossy().to_string();
    let key = c.proxy_key.to_string_lossy().to_string();
    let p = Proxy::start(&["--tls-cert", &cert, "--tls-key", &key]);
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&c.ca_pem).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let conn_str = format!(
        "{} sslmode=require host=localhost",
        p.conn_str(ALICE.0, ALICE.1, "app")
    );
    let (client, conn) = tokio_postgres::connect(&conn_str, tls).await.unwrap();
    tokio::spawn(conn.map(|_| ()));
    let r = client
        .query_one("SELECT 'over tls'::text", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "over tls");
    // psql with verify-full against pgveil's certificate.
    let out = common::client_cmd("psql")
        .args([
            "-X",
            "-At",
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .arg(format!(
            "host=localhost port={} user=alice dbname=app sslmode=verify-full sslrootcert={}",
            p.port,
            c.ca_pem.display()
        ))
        .env("PGPASSWORD", ALICE.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pgveil to the database is plain by default, so the server sees no TLS.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");
}

#[tokio::test]
async fn upstream_tls_verify_full() {
    let c = cluster();
    let ca = c.ca_pem.to_string_lossy().to_string();
    let p = Proxy::start(&[
        "--upstream-tls",
        "verify-full",
        "--upstream-ca",
        &ca,
        "--upstream-server-name",
        "localhost",
    ]);
    // Plain client, TLS upstream: the database sees an encrypted session.
    let client = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    // A CA that did not sign the server's certificate is refused with a
    // proper error.
    let bad = Proxy::start(&[
        "--upstream-tls",
        "verify-full",
        "--upstream-ca",
        &c.proxy_cert.to_string_lossy(),
        "--upstream-server-name",
        "localhost",
    ]);
    let err = connect(&bad.conn_str(ALICE.0, ALICE.1, "app"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("08006"),
        "{err}"
    );
}

#[test]
fn psql_scripted_with_copy() {
    let p = proxy();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "1,alpha\n2,beta\n3,gamma\n").unwrap();
    let out_csv = dir.path().join("out.csv");
    let script = format!(
        "CREATE TEMP TABLE p (id int, name text);\n\
         \\copy p FROM '{}' WITH (FORMAT csv)\n\
         SELECT string_agg(name, '+' ORDER BY id) FROM p;\n\
         \\copy (SELECT * FROM p ORDER BY id DESC) TO '{}' WITH (FORMAT csv)\n",
        csv.display(),
        out_csv.display()
    );
    let script_file = dir.path().join("script.sql");
    std::fs::write(&script_file, script).unwrap();
    let out = common::client_cmd("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &p.port.to_string(), "-U", ALICE.0, "-d", "app"])
        .arg("-f")
        .arg(&script_file)
        .env("PGPASSWORD", ALICE.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("alpha+beta+gamma"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&out_csv).unwrap(),
        "3,gamma\n2,beta\n1,alpha\n"
    );
    // -c with several statements and a failing one: the error is reported.
    let out = common::client_cmd("psql")
        .args(["-X", "-At", "-h", "127.0.0.1"])
        .args(["-p", &p.port.to_string(), "-U", ALICE.0, "-d", "app"])
        .args(["-c", "SELECT 1; SELECT * FROM missing_table"])
        .env("PGPASSWORD", ALICE.1)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing_table"));
}

fn pgbench(args: &[&str]) -> String {
    let p = proxy();
    let out = common::client_cmd("pgbench")
        .args(["-h", "127.0.0.1", "-p", &p.port.to_string(), "-U", ALICE.0])
        .args(args)
        .arg("app")
        .env("PGPASSWORD", ALICE.1)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?}: {text}");
    text
}

#[test]
fn pgbench_in_every_query_mode() {
    pgbench(&["-i", "-q", "-s", "1"]);
    for mode in ["simple", "extended", "prepared"] {
        let text = pgbench(&["-S", "-M", mode, "-c", "4", "-j", "2", "-t", "200"]);
        assert!(
            text.contains("number of transactions actually processed: 800/800"),
            "{mode}: {text}"
        );
        assert!(
            text.contains("number of failed transactions: 0 (0.000%)"),
            "{mode}: {text}"
        );
    }
    // The default TPC-B-like script writes too.
    let text = pgbench(&["-M", "prepared", "-c", "2", "-t", "50"]);
    assert!(text.contains("number of failed transactions: 0"), "{text}");
}

/// Sends raw bytes and returns what pgveil answers before closing.
fn raw_exchange(bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy().port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn fatal_code(reply: &[u8]) -> Option<String> {
    if reply.first() != Some(&b'E') {
        return None;
    }
    let text = String::from_utf8_lossy(&reply[5..]).to_string();
    assert!(text.contains("FATAL"), "{text}");
    text.split('\0')
        .find_map(|f| f.strip_prefix('C').map(str::to_string))
}

#[tokio::test]
async fn malformed_and_oversized_input_gets_fatal_and_others_carry_on() {
    let bystander = connect(&alice()).await.unwrap();
    // A startup packet of a length PostgreSQL refuses (larger than 10 000
    // bytes, negative) is closed without an answer, as PostgreSQL does.
    let mut big = Vec::new();
    big.extend_from_slice(&20_000i32.to_be_bytes());
    big.extend_from_slice(&196608i32.to_be_bytes());
    big.resize(20_000, b'a');
    assert_eq!(raw_exchange(&big), b"");
    assert_eq!(raw_exchange(&[0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0]), b"");
    // Unknown protocol version.
    assert_eq!(
        fatal_code(&raw_exchange(&[0, 0, 0, 8, 0, 9, 0, 0])).as_deref(),
        Some("08P01")
    );
    // GSSENCRequest is answered 'N', then a normal startup can follow.
    let mut s = TcpStream::connect(("127.0.0.1", proxy().port)).unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]).unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"N");
    // SSLRequest without a configured certificate: 'N'.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    s.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"N");
    drop(s);

    // An authenticated session sends a message above the configured limit.
    let small = Proxy::start(&["--max-message-size", "100000"]);
    let c = connect(&small.conn_str(ALICE.0, ALICE.1, "app"))
        .await
        .unwrap();
    let err = c
        .simple_query(&format!("SELECT '{}'", "z".repeat(200_000)))
        .await
        .unwrap_err();
    let db = err.as_db_error().map(|e| (e.code().code(), e.message()));
    assert!(
        matches!(db, Some(("08P01", m)) if m.contains("exceeds the limit")),
        "{err:?}"
    );
    // Another session on the same pgveil is unaffected.
    let c2 = connect(&small.conn_str(ALICE.0, ALICE.1, "app"))
        .await
        .unwrap();
    c2.simple_query("SELECT 1").await.unwrap();
    bystander.simple_query("SELECT 1").await.unwrap();
}

/// node-postgres' `connect(); end()` sends Terminate before any startup
/// message; other clients just close. PostgreSQL closes without a word.
#[tokio::test]
async fn a_client_leaving_before_its_startup_message_gets_no_error() {
    let rejected = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("pgveil_connections_rejected_total{reason=\"client_closed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = rejected(&proxy().metrics());
    assert_eq!(raw_exchange(b"X\0\0\0\x04"), b"");
    assert_eq!(raw_exchange(b""), b"");
    // After an SSLRequest answered 'N', too.
    let mut s = TcpStream::connect(("127.0.0.1", proxy().port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"N");
    s.write_all(b"X\0\0\0\x04").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(out, b"");
    assert!(rejected(&proxy().metrics()) >= before + 3.0);
    assert!(proxy()
        .log_text()
        .contains("client sent Terminate before its startup message"));
    // pgveil serves the next client as usual.
    connect(&alice())
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

/// psql in replication mode through `proxy`: (success, stdout, stderr).
fn replication_psql(
    proxy: &Proxy,
    user: &str,
    password: &str,
    mode: &str,
    cmd: &str,
) -> (bool, String, String) {
    let out = common::client_cmd("psql")
        .args(["-X", "-At", "-c", cmd])
        .arg(format!(
            "host=127.0.0.1 port={} user={user} dbname=app replication={mode}",
            proxy.port
        ))
        .env("PGPASSWORD", password)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replication sessions of roles with nothing masked are relayed byte for
/// byte: replication commands, and a logical decoding stream (CopyBoth)
/// read with pg_recvlogical.
#[tokio::test]
async fn replication_sessions_are_relayed_for_unmasked_roles() {
    let c = cluster();
    let (su, pw) = (common::SUPERUSER, common::SUPERUSER_PASSWORD);
    for mode in ["database", "true"] {
        let (ok, out, err) = replication_psql(proxy(), su, pw, mode, "IDENTIFY_SYSTEM");
        assert!(ok, "{mode}: {err}");
        let system_id = c
            .psql_super("SELECT system_identifier FROM pg_control_system()")
            .unwrap();
        assert!(
            out.starts_with(&format!("{}|", system_id.trim())),
            "{mode}: {out}"
        );
    }
    // A database of its own: a slot decodes every transaction of its
    // database, and other tests write to `app` meanwhile.
    c.psql_super("CREATE DATABASE repl").unwrap();
    c.psql_super_db(
        "repl",
        "SELECT pg_create_logical_replication_slot('pgveil_relay', 'test_decoding');
         CREATE TABLE repl_relayed (id int, note text);
         INSERT INTO repl_relayed VALUES (1, 'through pgveil');",
    )
    .unwrap();
    // The insert position: with synchronous_commit off (the test cluster)
    // the write position may still lag behind the commit.
    let lsn = c
        .psql_super_db("repl", "SELECT pg_current_wal_insert_lsn()")
        .unwrap();
    let file = c.dir.join("recvlogical.out");
    let out = common::client_cmd("pg_recvlogical")
        .args(["--slot", "pgveil_relay", "--start", "--no-loop", "-f"])
        .arg(&file)
        .args(["--endpos", lsn.trim()])
        .arg("-d")
        .arg(format!(
            "host=127.0.0.1 port={} user={su} dbname=repl",
            proxy().port
        ))
        .env("PGPASSWORD", pw)
        .output()
        .unwrap();
    c.psql_super_db("repl", "SELECT pg_drop_replication_slot('pgveil_relay')")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = std::fs::read_to_string(&file).unwrap();
    assert!(
        decoded.contains(
            "table public.repl_relayed: INSERT: id[integer]:1 note[text]:'through pgveil'"
        ),
        "{decoded}"
    );
}

/// A masked role could read every protected value from a replication
/// stream: refused, saying why, right after the server authenticated it.
/// An unmasked role on the same pgveil still gets its session.
#[tokio::test]
async fn replication_is_refused_for_masked_roles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\ncolumns:\n  public.repl_people.secret:\n    mask: redact\n    rules:\n      - roles: [postgres]\n        action: allow\n",
    )
    .unwrap();
    let guarded = Proxy::start_with_env(
        &[
            "--policies",
            &dir.path().to_string_lossy(),
            "--catalog-user",
            "postgres",
        ],
        &[("PGVEIL_CATALOG_PASSWORD", common::SUPERUSER_PASSWORD)],
    );
    cluster()
        .psql_super(&format!("ALTER ROLE {DAVE_TRUST} REPLICATION"))
        .unwrap();
    for mode in ["database", "true"] {
        let (ok, _, err) = replication_psql(&guarded, DAVE_TRUST, "", mode, "IDENTIFY_SYSTEM");
        assert!(!ok);
        assert!(
            err.contains("FATAL:  pgveil: replication connections are refused"),
            "{err}"
        );
        assert!(err.contains("bypassing every masking rule"), "{err}");
        // Not a word of the server's startup reached the client first.
        assert!(!err.contains("systemid"), "{err}");
        let (ok, _, err) = replication_psql(
            &guarded,
            common::SUPERUSER,
            common::SUPERUSER_PASSWORD,
            mode,
            "IDENTIFY_SYSTEM",
        );
        assert!(ok, "{mode}: {err}");
    }
    // A normal session of the masked role is served as before.
    let out = common::client_cmd("psql")
        .args(["-X", "-At", "-c", "SELECT 1"])
        .arg(format!(
            "host=127.0.0.1 port={} user={DAVE_TRUST} dbname=app",
            guarded.port
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let metrics = guarded.metrics();
    assert!(
        metrics.contains("pgveil_connections_rejected_total{reason=\"replication_masked\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn connection_limit_answers_too_many_clients() {
    let p = Proxy::start(&["--max-connections", "2"]);
    let a = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    let b = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    let err = connect(&p.conn_str(ALICE.0, ALICE.1, "app"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("53300"),
        "{err}"
    );
    drop(a);
    // A slot frees up once a session ends.
    let mut ok = false;
    for _ in 0..50 {
        if connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "slot not released");
    b.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn metrics_count_sessions() {
    let c = connect(&alice()).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    let text = proxy().metrics();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("pgveil_connections_active"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pgveil_connections_total ")
                && l.split(' ').nth(1).and_then(|v| v.parse::<u64>().ok()) >= Some(1)),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_drains_then_closes_with_fatal() {
    let p = Proxy::start(&["--drain-timeout", "3"]);
    let idle = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    let busy = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    let stuck = connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.unwrap();
    stuck.batch_execute("BEGIN").await.unwrap();
    let busy_q = tokio::spawn(async move {
        let r = busy
            .query_one("SELECT pg_sleep(1)::text || 'done'", &[])
            .await;
        (r.map(|r| r.get::<_, String>(0)), busy)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = p;
    p.signal(libc::SIGTERM);
    // The running query finishes and its result arrives.
    let (r, busy) = busy_q.await.unwrap();
    assert_eq!(r.unwrap(), "done");
    // The idle session was closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(idle.simple_query("SELECT 1").await.is_err());
    assert!(busy.simple_query("SELECT 1").await.is_err());
    // New connections are refused.
    assert!(connect(&p.conn_str(ALICE.0, ALICE.1, "app")).await.is_err());
    // The open transaction keeps its session until the drain timeout.
    stuck.simple_query("SELECT 1").await.unwrap();
    let status = tokio::task::spawn_blocking(move || p.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let err = stuck.simple_query("SELECT 1").await.unwrap_err();
    assert!(err.is_closed() || err.as_db_error().is_some(), "{err}");
}

#[tokio::test]
async fn abrupt_disconnects_leak_no_session_or_backend() {
    let p = Proxy::start(&[]);
    let conn = p.conn_str(ALICE.0, ALICE.1, "app");
    let marker = "pgveil_leak_probe";
    let count_backends = || async {
        let admin = connect(&proxy().conn_str(ALICE.0, ALICE.1, "app"))
            .await
            .unwrap();
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&marker],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // Sessions that vanish without Terminate, some of them mid-query (whose
    // backends, as with a direct connection, end when their query does).
    for i in 0..10 {
        let (c, conn_task) = tokio_postgres::connect(
            &format!("{conn} application_name={marker}"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        let handle = tokio::spawn(conn_task);
        if i % 2 == 0 {
            let q = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(1)").await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            q.abort();
        } else {
            c.simple_query("SELECT 1").await.unwrap();
            std::mem::forget(c);
        }
        // Dropping the connection future closes the socket with no Terminate.
        handle.abort();
    }
    // Clients that give up during startup and authentication.
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        let _ = s.write_all(&[0, 0, 0, 40, 0, 3, 0, 0]);
    }
    let mut backends = -1;
    for _ in 0..100 {
        backends = count_backends().await;
        let active = p
            .metrics()
            .lines()
            .find(|l| l.starts_with("pgveil_connections_active "))
            .map(|l| l.ends_with(" 0"))
            .unwrap_or(false);
        if backends == 0 && active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backends, 0, "upstream backends left behind");
    assert!(
        p.metrics().contains("pgveil_connections_active 0"),
        "{}",
        p.metrics()
    );
}

/// After an extended-protocol COPY FROM STDIN (whose first Sync the server
/// ignores), pgveil still sees the session go idle: the idle timeout closes
/// it, as it closes any idle session.
#[tokio::test]
async fn sessions_go_idle_after_copy_from_stdin() {
    use futures::SinkExt;
    let p = Proxy::start(&["--idle-timeout", "1"]);
    let (c, conn) =
        tokio_postgres::connect(&p.conn_str(ALICE.0, ALICE.1, "app"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let closed = tokio::spawn(conn);
    c.batch_execute("CREATE TEMP TABLE idle_copy (id int)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY idle_copy FROM STDIN").await.unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\n2\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    // The connection ends with pgveil's idle-session FATAL (bounded wait).
    let end = tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the session never went idle")
        .unwrap();
    let err = end.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57P05"),
        "{err}"
    );
}
