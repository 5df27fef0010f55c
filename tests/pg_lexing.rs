//! pgveil reads statement text as PostgreSQL does: the analysis cache is
//! keyed by the server's own tokens (a `--` comment ends at `\r`), and
//! unquoted names fold A–Z only. Through the proxy, with real clients.

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // A view of protected values named `Év` next to a harmless table
        // `év`: PostgreSQL reads unquoted Év as "Év".
        cluster()
            .psql_super_db(
                "bank",
                "CREATE VIEW \"Év\" AS SELECT id_number AS v FROM customers;
                 CREATE TABLE \"év\" (v text); INSERT INTO \"év\" VALUES ('harmless');
                 GRANT ALL ON \"Év\", \"év\" TO PUBLIC;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

#[tokio::test]
async fn a_comment_ended_by_carriage_return_does_not_reuse_a_cached_plan() {
    let s = Session::connect(setup(), "agent").await;
    for cached in ["SELECT 1", "SELECT 1 ", "select 1"] {
        let (ok, _) = s.visible(cached).await;
        assert!(ok);
        for trick in [
            "SELECT 1 --\r, id_number FROM customers",
            "SELECT 1 --x\r, id_number, mobile FROM customers",
            "SELECT 1 --\r\n, id_number FROM customers",
            "SELECT 1 /* a /* nested */ b */ , id_number FROM customers",
        ] {
            s.attack(trick).await;
        }
    }
    // The same tricks through the extended protocol (Parse with the text).
    for trick in ["SELECT 1 --\r, id_number FROM customers"] {
        if let Ok(rows) = s.c.query(trick, &[]).await {
            for row in rows {
                let v: Option<String> = row.get(1);
                s.check(trick, &v.unwrap_or_default());
            }
        }
    }
    s.finish();
}

#[tokio::test]
async fn unquoted_non_ascii_names_are_not_lower_cased() {
    let s = Session::connect(setup(), "agent").await;
    for sql in [
        "SELECT * FROM Év",
        "SELECT v FROM Év",
        "SELECT v FROM public.Év",
        "SELECT x.v FROM Év x",
        "SELECT v FROM \"Év\"",
    ] {
        let (_, text) = s.attack(sql).await;
        assert!(
            !text.contains("harmless"),
            "{sql} read the wrong relation: {text}"
        );
    }
    // The lower-case table is still readable under its own name.
    let (ok, text) = s.visible("SELECT v FROM év").await;
    assert!(ok && text.contains("harmless"), "{text}");
    s.finish();
}
