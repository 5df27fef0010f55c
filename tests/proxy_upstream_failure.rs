//! The database dies under pgveil: clients get a proper error, pgveil keeps
//! serving. Its own binary, so its cluster restart disturbs no other test.

mod common;

use std::time::Duration;

use common::{cluster, connect, Proxy, ALICE};

#[tokio::test]
async fn upstream_killed_mid_query_then_pgveil_serves_new_sessions() {
    let c = cluster();
    let p = Proxy::start(&["--connect-timeout", "2"]);
    let conn = p.conn_str(ALICE.0, ALICE.1, "app");
    let victim = connect(&conn).await.unwrap();
    let idle = connect(&conn).await.unwrap();
    let running = tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Kill the server without a clean shutdown, mid-query.
    let started = std::time::Instant::now();
    c.pg_ctl(&["-m", "immediate", "stop"]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the client was left hanging")
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    // The client learns the connection is gone (an error, never a hang).
    assert!(
        err.is_closed() || err.as_db_error().is_some() || err.to_string().contains("closed"),
        "{err}"
    );

    // The idle session is told as well.
    assert!(idle.simple_query("SELECT 1").await.is_err());

    // While the database is down, a new client gets a clear FATAL error.
    let err = connect(&conn).await.err().unwrap();
    let db = err
        .as_db_error()
        .expect("a PostgreSQL error, not a dropped socket");
    assert_eq!(db.code().code(), "08006");
    assert!(
        db.message().contains("cannot reach the database"),
        "{}",
        db.message()
    );

    // Once it is back, pgveil serves again without a restart.
    c.pg_ctl(&["-w", "start"]).unwrap();
    let fresh = connect(&conn).await.unwrap();
    let r = fresh.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    assert!(p
        .metrics()
        .contains("pgveil_upstream_connect_failures_total 1"));
}
