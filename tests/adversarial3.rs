//! Red-team round 3 (issue 11, semantic side): built-in functions that run
//! SQL or look objects up, casts to domains and to shorter types, equality
//! lookups against generated candidates, and materialized views. Written as
//! an attacker would, through tokio-postgres on both protocols: every
//! attempt must be refused by pgveil (42501) and no raw value may show up in
//! anything the client reads. Each test collects every failure and reports
//! them all at once.

mod common;

use std::sync::OnceLock;

use common::bank::{self, *};
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        // What a careless schema owner might leave behind: a domain that
        // shadows a built-in name and runs a lookup on every value, and a
        // materialized view over protected columns, not yet populated.
        cluster()
            .psql_super_db(
                "bank",
                "CREATE DOMAIN public.varchar AS text CHECK (quote_ident(VALUE)::regclass IS NOT NULL);
                 CREATE DOMAIN public.phone_text AS text CHECK (VALUE::int8 > 0);
                 CREATE SCHEMA attack; GRANT ALL ON SCHEMA attack TO PUBLIC;
                 CREATE DOMAIN attack.d AS text CHECK (length(VALUE) < 3);
                 CREATE TYPE public.pair AS (a text, b text);
                 CREATE MATERIALIZED VIEW public.mv_contacts AS
                   SELECT id, mobile, id_number FROM customers WITH NO DATA;
                 GRANT ALL ON public.mv_contacts TO PUBLIC;",
            )
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

impl Session {
    /// Runs `sql` through the simple and the extended protocol: both must
    /// be refused by pgveil, and nothing visible may carry a raw value.
    async fn refused(&self, sql: &str) {
        let (ok, text) = self.attack(sql).await;
        // pgveil's own refusal, not the server's (pg_read_file would be
        // refused by PostgreSQL too).
        if ok || !text.contains("42501") || !text.contains("pgveil") {
            self.leaks
                .lock()
                .unwrap()
                .push(format!("NOT REFUSED (simple): `{sql}` -> {text}"));
        }
        let extended = self.c.query(sql, &[]).await;
        let text = match &extended {
            Ok(rows) => {
                let mut values = Vec::new();
                for row in rows {
                    for i in 0..row.len() {
                        values.push(
                            row.try_get::<_, Option<String>>(i)
                                .ok()
                                .flatten()
                                .unwrap_or_default(),
                        );
                    }
                }
                values.join("|")
            }
            Err(e) => error_text(e),
        };
        self.check(&format!("{sql} (extended)"), &text);
        let refused = extended
            .as_ref()
            .err()
            .and_then(|e| e.code())
            .is_some_and(|c| c.code() == "42501")
            && text.contains("pgveil");
        if !refused {
            self.leaks
                .lock()
                .unwrap()
                .push(format!("NOT REFUSED (extended): `{sql}` -> {text}"));
        }
        // A refused statement inside a transaction would poison it.
        let _ = self.c.simple_query("ROLLBACK").await;
    }
}

// ---------------------------------------------------------------------------
// Class 1: built-in functions are trusted by category, not by a blocklist.

#[tokio::test]
async fn builtins_that_run_sql_or_look_up_names_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT ts_rewrite('a'::tsquery, $$SELECT 'a'::tsquery, quote_literal(string_agg(id_number||':'||cvv, ' '))::tsquery FROM customers JOIN cards ON cards.customer_id = customers.id$$)",
        "SELECT pg_catalog.ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, quote_literal(mobile)::tsquery FROM customers')",
        "SELECT * FROM ts_stat('SELECT to_tsvector(''simple'', mobile) FROM customers')",
        "SELECT query_to_xml('SELECT mobile FROM customers', true, false, '')",
        "SELECT query_to_xml_and_xmlschema('SELECT id_number FROM customers', true, false, '')",
        "SELECT table_to_xml('customers', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT mobile::regclass FROM customers",
        "SELECT CAST(id_number AS regclass) FROM customers",
        "SELECT 1 FROM customers WHERE to_regclass(mobile) IS NULL",
        "SELECT has_table_privilege(id_number, 'SELECT') FROM customers",
        "SELECT current_setting(mobile) FROM customers",
        "SELECT convert_to('x', mobile) FROM customers",
        "SELECT pg_advisory_lock(hashtext(mobile)) FROM customers",
        "SELECT setval('customers_id_seq', mobile::bigint) FROM customers",
        "SELECT * FROM pg_stat_get_activity(NULL)",
        "SELECT pg_read_file('postgresql.conf')",
        "SELECT textin(mobile::cstring) FROM customers",
        "SELECT lo_from_bytea(0, mobile::bytea) FROM customers",
    ] {
        s.refused(sql).await;
    }
    // Everyday ORM and pg_dump lookups on constants still work.
    for sql in [
        "SELECT 'customers'::regclass::oid > 0",
        "SELECT to_regclass('public.customers') IS NOT NULL",
        "SELECT has_table_privilege('customers', 'SELECT')",
        "SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)",
        "SELECT current_setting('server_version_num')::int >= 150000",
    ] {
        let (ok, text) = s.attack(sql).await;
        assert!(ok, "ordinary lookup refused: {sql}: {text}");
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Class 2: cast targets resolved like PostgreSQL does; a domain is code.

#[tokio::test]
async fn casts_to_domains_and_user_types_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "SELECT id_number::public.varchar FROM customers WHERE id = 1",
        "SELECT mobile::public.varchar FROM customers",
        "SELECT CAST(mobile AS public.varchar) FROM customers",
        "SELECT 1 FROM customers WHERE id_number::public.varchar IS NOT NULL",
        "SELECT mobile::public.phone_text FROM customers",
        "SELECT (mobile || '')::public.phone_text FROM customers",
        "SELECT mobile::attack.d FROM customers",
        "SELECT ARRAY[mobile]::public.varchar[] FROM customers",
        "SELECT ROW(mobile, id_number)::public.pair FROM customers",
        "SELECT count(*) FROM customers GROUP BY mobile::public.varchar",
        "SELECT (SELECT mobile::public.varchar FROM customers LIMIT 1)",
        "WITH c AS (SELECT mobile FROM customers) SELECT mobile::\"public\".\"varchar\" FROM c",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 3: casts that cut a value are computations, not copies.

#[tokio::test]
async fn length_changing_casts_are_not_copies() {
    let s = as_role("agent").await;
    for sql in [
        "SELECT id_number::varchar(10) FROM customers",
        "SELECT id_number::varchar(14) FROM customers",
        "SELECT CAST(id_number AS character varying(12)) FROM customers",
        "SELECT id_number::char(8) FROM customers",
        "SELECT id_number::character(10) FROM customers",
        "SELECT id_number::bpchar(6) FROM customers",
        "SELECT card_no::varchar(12) FROM cards",
        "SELECT card_no::char(16) FROM cards",
        "SELECT mobile::varchar(7) FROM customers",
        "SELECT id_number::name FROM customers",
        "SELECT (id_number::varchar(10))::text FROM customers",
        "SELECT k.id FROM cards k WHERE k.card_no::varchar(7) = '6222021'",
        "SELECT d FROM cards k JOIN generate_series(0, 9) d ON k.card_no::varchar(7) = '622202' || d",
    ] {
        s.refused(sql).await;
    }
    // Casts that keep every byte stay copies and get the column's mask.
    let (ok, text) = s
        .attack("SELECT id_number::text, id_number::varchar, card_no::varchar FROM customers JOIN cards ON cards.customer_id = customers.id WHERE customers.id = 1")
        .await;
    assert!(ok, "{text}");
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 4: `filter: equality` means constants the caller supplies.

#[tokio::test]
async fn equality_against_generated_candidates_is_refused() {
    let s = as_role("agent").await;
    // Candidates that include the real card number 6222021234567890128.
    let gen =
        "SELECT '62220212345678901' || lpad(x::text, 2, '0') AS p, x FROM generate_series(0, 99) x";
    s.exec(&format!("CREATE TEMP TABLE cand AS {gen}")).await;
    for sql in [
        format!("SELECT g.p FROM cards k JOIN ({gen}) g ON k.card_no = g.p"),
        "SELECT g.p FROM cards k JOIN (VALUES ('6222021234567890128'), ('4111')) g(p) ON k.card_no = g.p".into(),
        "SELECT x FROM cards k JOIN unnest(ARRAY['6222021234567890128', '1']) x ON k.card_no = x".into(),
        "SELECT x FROM cards k, generate_series(0, 99) x WHERE k.card_no = '62220212345678901' || lpad(x::text, 2, '0')".into(),
        format!("SELECT count(*) FROM cards WHERE card_no IN (SELECT p FROM ({gen}) g)"),
        format!("SELECT count(*) FROM cards WHERE card_no = ANY (SELECT p FROM ({gen}) g)"),
        format!("SELECT card_no FROM cards INTERSECT SELECT p FROM ({gen}) g"),
        format!("SELECT count(*) FROM (SELECT card_no FROM cards UNION SELECT p FROM ({gen}) g) u"),
        format!("SELECT g.x FROM cards k JOIN (SELECT card_no AS p, -1 AS x FROM cards UNION ALL {gen}) g ON k.card_no = g.p"),
        format!("SELECT g.x FROM cards JOIN (SELECT p AS card_no, x FROM ({gen}) c) g USING (card_no)"),
        "SELECT c.p FROM cards k JOIN cand c ON k.card_no = c.p".into(),
        "SELECT c.x FROM cards k JOIN cand c ON c.p = k.card_no".into(),
        "SELECT max(CASE card_no WHEN '62220212345678901' || '28' THEN 1 END) FROM cards".into(),
        format!(
            "SELECT id FROM cards WHERE card_no IN ({})",
            (0..101)
                .map(|i| format!("'62220212345678901{i:02}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "SELECT id FROM cards WHERE {}",
            (0..101)
                .map(|i| format!("card_no = '62220212345678901{i:02}'"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    ] {
        s.refused(&sql).await;
    }
    // A lookup with the caller's own constants is what the rule is for.
    let (ok, text) = s
        .attack("SELECT id FROM cards WHERE card_no IN ('6222021234567890128', '4111111111111111')")
        .await;
    assert!(ok && text.contains('1'), "{text}");
    let row =
        s.c.query_one(
            "SELECT count(*) FROM customers WHERE id_number = $1",
            &[&ID_NUMBER],
        )
        .await;
    assert!(row.is_ok(), "bind-parameter lookup refused: {row:?}");
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 6: materialized views store derived clear values.

#[tokio::test]
async fn materialized_views_of_protected_values_are_refused() {
    let s = as_role("dev").await;
    for sql in [
        "CREATE MATERIALIZED VIEW m1 AS SELECT mobile || '' AS p FROM customers",
        "CREATE MATERIALIZED VIEW m2 AS SELECT mobile FROM customers",
        "CREATE MATERIALIZED VIEW m3 AS SELECT mobile FROM customers WITH NO DATA",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS m4 (a, b) AS SELECT id, id_number FROM customers",
        "CREATE MATERIALIZED VIEW m5 AS WITH c AS (SELECT upper(id_number) u FROM customers) SELECT u FROM c",
        "CREATE MATERIALIZED VIEW m6 AS SELECT * FROM customer_contacts",
        "CREATE MATERIALIZED VIEW m7 AS SELECT k.card_no, c.full_name FROM cards k JOIN customers c ON c.id = k.customer_id",
        "CREATE MATERIALIZED VIEW attack.m8 AS SELECT (SELECT max(mobile) FROM customers) AS p",
        "CREATE MATERIALIZED VIEW m9 AS SELECT string_agg(id_number, ',') FROM customers",
        "REFRESH MATERIALIZED VIEW mv_contacts",
        "REFRESH MATERIALIZED VIEW public.mv_contacts WITH DATA",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv_contacts",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// Issue 11 item 4 (first step): errors of any SQLSTATE lose quoted values.

#[tokio::test]
async fn errors_of_any_sqlstate_lose_quoted_values() {
    let s = as_role("dev").await;
    // Lookups of constants are allowed, but their errors quote the
    // constant: a masked session gets them without it, whatever the code.
    for sql in [
        format!("SELECT '{MOBILE}'::regclass"),
        format!("SELECT '{ID_NUMBER}'::regtype"),
        format!("SELECT to_regclass('x') FROM customers WHERE id_number = '{ID_NUMBER}' AND 'x{CARD}'::regproc IS NULL"),
    ] {
        let (ok, text) = s.attack(&sql).await;
        assert!(!ok, "{sql}: {text}");
    }
    s.finish();
}
