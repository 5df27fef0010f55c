//! Red-team round 5: server messages that carry a value PostgreSQL does
//! not quote, values the server computes without returning them (what
//! `count()` counts, a subquery's unread columns, unnest's array length,
//! ntile and hypothetical ranks), and a column compared with itself, which
//! PostgreSQL plans as IS NOT NULL. Written as an attacker would, through
//! tokio-postgres on both protocols: every attempt must be refused by
//! pgveil (42501) or answered without a raw value. Each test reports all
//! its failures at once.

mod common;

use std::sync::OnceLock;

use common::bank;
use common::probe::*;
use common::{cluster, Proxy};

fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db("bank", "CREATE ROLE prober LOGIN PASSWORD 'role-pw';")
            .unwrap();
        bank::start_proxy(bank::POLICIES)
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// Runs `sql` (simple protocol) and expects it to work.
async fn works(s: &Session, sql: &str) -> String {
    let (ok, text) = s.attack(sql).await;
    if !ok {
        s.leaks
            .lock()
            .unwrap()
            .push(format!("FALSE BLOCK: `{sql}` -> {text}"));
    }
    text
}

// ---------------------------------------------------------------------------
// A message shows a masked role only PostgreSQL's fixed words: some
// messages carry the value unquoted, and some as hex bytes.

#[tokio::test]
async fn server_messages_show_only_postgres_fixed_words() {
    // `prober` may filter freely, so its computations reach the server.
    let s = as_role("prober").await;
    for sql in [
        "SELECT count(*) FROM customers WHERE pg_catalog.normalize('a', full_name) > ''",
        "SELECT count(*) FROM customers WHERE pg_catalog.is_normalized('a', full_name)",
        "SELECT count(*) FROM customers WHERE pg_catalog.normalize('a', mobile) > ''",
    ] {
        let (ok, text) = s.attack(sql).await;
        if ok || !text.contains("invalid normalization form: ***") {
            s.leaks
                .lock()
                .unwrap()
                .push(format!("UNEXPECTED: `{sql}` -> {text}"));
        }
        let _ = s.c.simple_query("ROLLBACK").await;
        // The same through the extended protocol.
        match s.c.query(sql, &[]).await {
            Ok(_) => s
                .leaks
                .lock()
                .unwrap()
                .push(format!("UNEXPECTED (extended): `{sql}` succeeded")),
            Err(e) => s.check(&format!("{sql} (extended)"), &error_text(&e)),
        }
    }
    // Quoted values and object names are starred as before; messages
    // without values stay readable.
    let (_, text) = s
        .attack("SELECT count(*) FROM customers WHERE full_name::int > 0")
        .await;
    assert!(
        text.contains("invalid input syntax for type ***: \"***\""),
        "{text}"
    );
    let (_, text) = s
        .attack("SELECT count(*) FROM customers WHERE 1 / (id - id) > 0")
        .await;
    assert!(text.contains("division by zero"), "{text}");
    let (_, text) = s.attack("SELEC 1").await;
    assert!(text.contains("syntax error at or near \"***\""), "{text}");
    s.finish();
}

// ---------------------------------------------------------------------------
// Values the server computes without returning them: whether that fails,
// or how many rows it makes, is a question about the value.

#[tokio::test]
async fn unreturned_computations_are_uses() {
    let s = as_role("dev").await;
    s.exec(
        "CREATE TEMP VIEW volatile_view AS
           SELECT 1 / (ascii(mobile) - 49) + (random() * 0)::int AS x, id FROM customers",
    )
    .await;
    for sql in [
        // count() returns a count, but computes its argument first.
        "SELECT count(1 / (substr(mobile, 3, 1)::int - 9)) FROM customers WHERE id = 1",
        "SELECT count(mobile::int) FROM customers",
        "SELECT count(*) FROM customers GROUP BY id HAVING count(1 / (ascii(mobile) - 49)) > 0",
        "SELECT count(x) FROM (SELECT 1 / (ascii(mobile) - 49) AS x FROM customers) s",
        "VALUES ((SELECT count(1 / (ascii(mobile) - 49)) FROM customers))",
        "SELECT count(pg_catalog.normalize('a', full_name)) FROM customers",
        // A query that calls a volatile function keeps (and computes) the
        // columns nobody reads: subqueries, LATERAL, CTEs (also NOT
        // MATERIALIZED), views.
        "SELECT count(*) FROM (SELECT 1 / (ascii(mobile) - 49) + (random() * 0)::int AS x FROM customers) s",
        "SELECT count(*) FROM (SELECT id, clock_timestamp(), 1 / (ascii(mobile) - 49) FROM customers) s",
        "SELECT count(*) FROM customers c JOIN LATERAL (SELECT c.mobile::int + (random() * 0)::int AS m) s ON true",
        "WITH s AS NOT MATERIALIZED (SELECT 1 / (ascii(mobile) - 49) + (random() * 0)::int AS x, id FROM customers) SELECT count(*) FROM s",
        "SELECT count(*) FROM volatile_view",
        "SELECT count(*) FROM (SELECT id, 1 / (ascii(mobile) - 49) AS x FROM customers UNION SELECT 1, 1) s",
        // An EXISTS subquery's select list is computed unless PostgreSQL
        // can simplify it away (not with OFFSET or UNION ALL).
        "SELECT id FROM customers WHERE EXISTS (SELECT 1 / (ascii(mobile) - 49) FROM customers OFFSET 0)",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 / (ascii(c.mobile) - 49) OFFSET 0)",
        "SELECT id FROM customers WHERE EXISTS (SELECT 1 / (ascii(mobile) - 49) FROM customers UNION ALL SELECT 1)",
        // unnest makes as many rows as the array has elements.
        "SELECT (SELECT count(*) FROM unnest(string_to_array(mobile, NULL))) FROM customers",
        "SELECT count(*) FROM customers c, unnest(regexp_split_to_array(c.mobile, '')) u WHERE c.id = 1",
        "SELECT array_length(ARRAY(SELECT unnest(string_to_array(c.mobile, '9'))), 1) FROM customers c",
        // ntile(n) counts to n; rank(x) WITHIN GROUP says where x ranks.
        "SELECT (SELECT max(n) FROM (SELECT ntile(ascii(c.mobile)) OVER () AS n FROM generate_series(1, 100)) s) FROM customers c",
        "SELECT (SELECT rank(ascii(c.mobile)) WITHIN GROUP (ORDER BY g) FROM generate_series(1, 100) g) FROM customers c",
        "SELECT (SELECT dense_rank(ascii(c.mobile)) WITHIN GROUP (ORDER BY g) FROM generate_series(1, 100) g) FROM customers c",
    ] {
        s.refused(sql).await;
    }
    // Counting rows or a column's values computes nothing of them, and
    // PostgreSQL drops a subquery's unread columns unless it is volatile.
    for sql in [
        "SELECT x FROM (SELECT upper(mobile) AS u, id AS x FROM customers) s",
        "SELECT count(id) FROM (SELECT 1 / (ascii(mobile) - 49) AS x, id FROM customers) s",
        "SELECT count(mobile) FROM customers",
        "SELECT count(*) FROM (SELECT id, mobile FROM customers) s",
        "SELECT s.id FROM (SELECT id, mobile, full_name FROM customers) s",
        "SELECT count(*) FROM customers, unnest(ARRAY[mobile]) u",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM cards k WHERE k.customer_id = c.id OFFSET 0)",
        "SELECT row_number() OVER (ORDER BY id), rank() OVER (ORDER BY id) FROM customers",
    ] {
        works(&s, sql).await;
    }
    s.finish();
    // A role that reads the column in clear may compute with it unreturned.
    let agent = as_role("agent").await;
    for sql in [
        "SELECT count(upper(full_name)) FROM customers",
        "SELECT count(*) FROM (SELECT upper(full_name) AS n FROM customers) s",
    ] {
        works(&agent, sql).await;
    }
    agent.finish();
}

// ---------------------------------------------------------------------------
// `t.c = t.c` is `t.c IS NOT NULL` to PostgreSQL's planner (an index scan
// returns every row in the column's order), not an equi-join.

#[tokio::test]
async fn a_column_compared_with_itself_is_not_an_equi_join() {
    let s = as_role("agent").await;
    s.exec("SET enable_seqscan = off").await;
    for sql in [
        "SELECT id FROM customers WHERE id_number = id_number",
        "SELECT id FROM customers c WHERE c.id_number = c.id_number",
        "SELECT id FROM customers WHERE (id_number)::text = id_number::text",
        "SELECT id FROM customers WHERE id_number IN ('1', id_number)",
        "SELECT c.id FROM customers c JOIN customers d ON c.id = d.id AND c.id_number = c.id_number",
    ] {
        s.refused(sql).await;
    }
    for sql in [
        "SELECT c.id FROM customers c JOIN customers d ON c.id_number = d.id_number",
        "SELECT id FROM customers WHERE id_number = '440301199001011234'",
    ] {
        works(&s, sql).await;
    }
    s.finish();
}

// ---------------------------------------------------------------------------
// False block: FETCH without FROM/IN (`FETCH c`, `FETCH NEXT c`, `FETCH 5
// c`), valid PostgreSQL that sqlparser does not read, was refused as an
// unanalysable statement. Its rows are the cursor's, masked as declared.

#[tokio::test]
async fn fetch_without_from_reads_the_cursor_masked() {
    let s = as_role("dev").await;
    s.exec("BEGIN; DECLARE c SCROLL CURSOR FOR SELECT mobile FROM customers ORDER BY id")
        .await;
    for sql in [
        "FETCH c",
        "FETCH NEXT c",
        "FETCH 1 c",
        "FETCH ABSOLUTE 1 c",
        "FETCH ALL c",
    ] {
        s.exec("MOVE ABSOLUTE 0 c").await;
        let text = works(&s, sql).await;
        if !text.contains("139****4321") && !text.contains("138****0000") {
            s.leaks
                .lock()
                .unwrap()
                .push(format!("NOT MASKED AS DECLARED: `{sql}` -> {text}"));
        }
    }
    s.exec("ROLLBACK").await;
    // A cursor over a computed value stays refused, however FETCH is spelled.
    s.exec("BEGIN").await;
    let (ok, _) = s
        .attack("DECLARE d CURSOR FOR SELECT upper(mobile) FROM customers")
        .await;
    assert!(!ok, "DECLARE of a computed protected value must be refused");
    s.exec("ROLLBACK").await;
    s.finish();
}

// ---------------------------------------------------------------------------
// OPEN (not fixed): a write of a caller-supplied value into a protected
// column under a unique index, primary key or exclusion constraint (or
// referenced by a foreign key) is compared by the server with every stored
// value: the unique violation, `ON CONFLICT DO NOTHING`'s row count and
// `DO UPDATE … RETURNING` answer "which row holds this value" for roles
// whose rule does not allow filtering by the column, or denies it. pgveil's
// catalog does not know which columns are keys; the fix is to judge such a
// write as `column = constant` (an equality use, one candidate per row).

#[tokio::test]
#[ignore = "open leak: writes into unique protected columns are equality lookups (see comment)"]
async fn writes_into_unique_protected_columns_are_equality_lookups() {
    for role in ["dev", "trainee"] {
        let s = as_role(role).await;
        for sql in [
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X')",
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') \
             ON CONFLICT DO NOTHING",
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') \
             ON CONFLICT (id_number) DO UPDATE SET branch = customers.branch RETURNING id",
            "UPDATE customers SET id_number = '11010519491231002X' WHERE id = 2",
        ] {
            s.refused(sql).await;
        }
        s.finish();
    }
}
