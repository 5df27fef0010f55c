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
// returns every row in the column's order), not an equi-join; nor is a
// join of the column with itself across rows an equality lookup.

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
        // Since round 9 a join of the column with itself across rows is
        // refused too: a merge join returns every stored value in the
        // column's order (tests/adversarial8.rs).
        "SELECT c.id FROM customers c JOIN customers d ON c.id_number = d.id_number",
    ] {
        s.refused(sql).await;
    }
    for sql in ["SELECT id FROM customers WHERE id_number = '440301199001011234'"] {
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
// A write of a value into a column the server compares with the values
// stored in other rows (a unique index, primary key or exclusion
// constraint on it, a foreign key from it) answers "is this value stored":
// the unique violation, `ON CONFLICT DO NOTHING`'s row count, `DO UPDATE …
// RETURNING`, the foreign-key violation. Deleting a referenced row asks
// the same of the referencing column. pgveil reads the keys from the
// catalog and judges such a write as `column = value`: allowed where the
// role may compare the column with constants, refused where it may not.

#[tokio::test]
async fn writes_into_unique_protected_columns_are_equality_lookups() {
    // Keys made after pgveil has read the catalog: the owner makes them
    // directly, then DDL through pgveil makes every session's catalog
    // learn them (the keys are read whole on every catalog read).
    let proxy = setup();
    let owner = as_role("prober").await;
    owner.exec("SELECT 1").await;
    cluster()
        .psql_super_db(
            "bank",
            "CREATE TABLE kyc_documents (doc text, id_number varchar(18) REFERENCES customers (id_number));
             CREATE TABLE card_registry (card_no text PRIMARY KEY);
             CREATE TABLE cards_archive () INHERITS (cards);
             ALTER TABLE cards_archive ADD FOREIGN KEY (card_no) REFERENCES card_registry;
             CREATE TABLE customers_archive () INHERITS (customers);
             CREATE UNIQUE INDEX ON customers_archive (lower(mobile));
             CREATE UNIQUE INDEX ON customers_archive (branch, id_number);
             ALTER TABLE customers_archive ADD CONSTRAINT archive_income
               CHECK (full_name <> 'closed' OR annual_income < 100000);
             CREATE UNIQUE INDEX archive_id_prefix ON customers_archive (left(id_number, 6));
             ALTER TABLE cards_archive ADD CONSTRAINT archive_cvv CHECK (cvv <> '000') NOT VALID;
             ALTER TABLE cards_archive ADD COLUMN card_tail text
               GENERATED ALWAYS AS (right(card_no, 4)) STORED;
             CREATE UNIQUE INDEX ON cards_archive (card_tail);
             GRANT ALL ON kyc_documents, card_registry, cards_archive, customers_archive TO PUBLIC;",
        )
        .unwrap();
    owner.exec("CREATE TABLE keys_read_again (a int)").await;
    let _ = proxy;
    for role in ["dev", "trainee"] {
        let s = as_role(role).await;
        for sql in [
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X')",
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') \
             ON CONFLICT DO NOTHING",
            "INSERT INTO customers (full_name, id_number) VALUES ('x', '11010519491231002X') \
             ON CONFLICT (id_number) DO UPDATE SET branch = customers.branch RETURNING id",
            "UPDATE customers SET id_number = '11010519491231002X' WHERE id = 2",
            // A foreign key looks the value up in customers.id_number.
            "INSERT INTO kyc_documents VALUES ('passport', '11010519491231002X')",
            // A unique expression index on an inheritance child, whose
            // mobile column carries customers' rules.
            "INSERT INTO customers_archive (full_name, id_number, mobile) \
             VALUES ('x', '1', '13987654321')",
            // Deleting a referenced row looks its key up in the protected
            // referencing column.
            "DELETE FROM card_registry WHERE card_no = '6222021234567890128'",
            // Changing one column of a unique (branch, id_number) compares
            // the row's stored id_number with other rows' of that branch.
            "UPDATE customers_archive SET branch = 'Hangzhou' WHERE id = 1",
            // The CHECK reads the row's stored annual_income.
            "UPDATE customers_archive SET full_name = 'closed' WHERE id = 1",
            // An UPDATE of the parent reaches the children's rows and keys.
            "UPDATE customers SET branch = 'Ningbo' WHERE id = 2",
            // A CHECK added NOT VALID is tested on every row an UPDATE
            // writes, whichever column changes.
            "UPDATE cards SET status = 'x' WHERE id = 1",
        ] {
            s.refused(sql).await;
        }
        // Writes no key compares with stored protected values still work.
        s.exec("BEGIN").await;
        for sql in [
            "INSERT INTO cards (customer_id, status) VALUES (1, 'new')",
            "INSERT INTO card_registry VALUES ('6222021234567890128')",
            "INSERT INTO cards_archive (customer_id, status) VALUES (1, 'new')",
            "UPDATE kyc_documents SET doc = 'seen' WHERE doc = 'none'",
            "UPDATE customers_archive SET id = 5 WHERE id = 1",
        ] {
            works(&s, sql).await;
        }
        s.exec("ROLLBACK").await;
        s.finish();
    }
    // A key over a function of id_number is no equality lookup: the call
    // centre may not probe prefixes through it, nor card number tails
    // through a unique generated column computed from card_no.
    let s = as_role("agent").await;
    s.refused(
        "INSERT INTO customers_archive (full_name, id_number) VALUES ('x', '110105194912310021')",
    )
    .await;
    s.refused("INSERT INTO cards_archive (customer_id, card_no) VALUES (1, '4111111111110128')")
        .await;
    s.finish();
    // A key dropped is forgotten at the next catalog read.
    cluster()
        .psql_super_db(
            "bank",
            "DROP INDEX customers_archive_lower_idx; DROP INDEX archive_id_prefix",
        )
        .unwrap();
    owner.exec("CREATE TABLE keys_read_once_more (a int)").await;
    let s = as_role("agent").await;
    s.exec("BEGIN").await;
    works(
        &s,
        "INSERT INTO customers_archive (full_name, id_number, mobile) VALUES ('x', '1', '13987654321')",
    )
    .await;
    s.exec("ROLLBACK").await;
    s.finish();
    // A unique index made through pgveil counts from the next statement
    // (CREATE INDEX makes pgveil read the catalog).
    let s = as_role("dev").await;
    s.exec("BEGIN").await;
    works(&s, "UPDATE customers_archive SET mobile = '1' WHERE id = 1").await;
    s.exec("ROLLBACK").await;
    cluster()
        .psql_super_db("bank", "ALTER TABLE customers_archive OWNER TO prober")
        .unwrap();
    owner
        .exec("CREATE UNIQUE INDEX archive_mobile ON customers_archive (mobile)")
        .await;
    s.refused("UPDATE customers_archive SET mobile = '1' WHERE id = 1")
        .await;
    s.finish();
    // NULLS NOT DISTINCT: the annual_income an INSERT leaves out is NULL,
    // which conflicts with a stored NULL (an IS NULL test).
    owner
        .exec(
            "CREATE UNIQUE INDEX archive_branch_income ON customers_archive (branch, annual_income) \
             NULLS NOT DISTINCT",
        )
        .await;
    owner
        .exec(
            "CREATE VIEW archive_v AS SELECT full_name AS n, id_number AS i, branch AS b \
             FROM customers_archive; GRANT ALL ON archive_v TO PUBLIC",
        )
        .await;
    let s = as_role("agent").await;
    s.refused(
        "INSERT INTO customers_archive (full_name, id_number, branch) VALUES ('x', '1', 'Ningbo')",
    )
    .await;
    // The same through a view that renames the columns.
    s.refused("INSERT INTO archive_v (n, i, b) VALUES ('x', '1', 'Ningbo')")
        .await;
    s.finish();
    // The call centre may look id_number up by value: one constant a row;
    // an upsert's EXCLUDED.id_number is the value its INSERT looked up.
    let s = as_role("agent").await;
    s.exec("BEGIN").await;
    for sql in [
        "INSERT INTO customers (full_name, id_number) VALUES ('x', '110105200001010000')",
        "INSERT INTO cards (customer_id, card_no) VALUES (1, '4111111111111112') \
         ON CONFLICT (card_no) DO UPDATE SET card_no = EXCLUDED.card_no, \
         status = EXCLUDED.status",
        "INSERT INTO kyc_documents VALUES ('passport', '11010519491231002X')",
    ] {
        works(&s, sql).await;
    }
    s.exec("ROLLBACK").await;
    // Changing a stored id_number looks the old one up in
    // kyc_documents.id_number, which no rule protects: a join with a
    // column under another protection (tests/adversarial6.rs). An upsert
    // that sets it to the value it conflicted on changes nothing, but
    // pgveil does not tell that apart: refused too.
    for sql in [
        "UPDATE customers SET id_number = '110105200001010001' WHERE id = 2",
        "INSERT INTO customers (full_name, id_number) VALUES ('y', '110105200001010002') \
         ON CONFLICT (id_number) DO UPDATE SET id_number = EXCLUDED.id_number",
    ] {
        s.refused(sql).await;
    }
    // A computed value is a generated candidate, refused as in WHERE.
    s.refused(
        "INSERT INTO customers (full_name, id_number) \
         SELECT 'x', '1101051949123100' || g FROM generate_series(10, 99) g",
    )
    .await;
    s.finish();
}

/// The same lookups dressed up: a data-modifying CTE, SQL PREPARE, casts,
/// comments, a second statement, a join or MERGE source of constants,
/// JSON, and an updatable view the attacker makes. Each must be refused,
/// on both protocols (`refused`).
#[tokio::test]
async fn key_lookups_are_refused_however_the_write_is_spelled() {
    let s = as_role("dev").await;
    s.exec("CREATE VIEW dev_customer_ids AS SELECT full_name, id_number FROM customers")
        .await;
    for sql in [
        "WITH i AS (INSERT INTO customers (full_name, id_number) \
         VALUES ('x', '11010519491231002X') ON CONFLICT DO NOTHING RETURNING id) \
         SELECT count(*) FROM i",
        "INSERT /* c */ INTO customers (full_name, id_number) \
         VALUES ('x', '11010519491231002X'::varchar(18)) ON CONFLICT DO NOTHING",
        "UPDATE customers c SET id_number = v.x FROM (VALUES ('11010519491231002X')) v(x) \
         WHERE c.id = 2",
        "MERGE INTO customers c USING (VALUES ('11010519491231002X')) v(x) ON false \
         WHEN NOT MATCHED THEN INSERT (full_name, id_number) VALUES ('x', v.x)",
        "INSERT INTO customers (full_name, id_number) SELECT full_name, id_number \
         FROM json_populate_record(NULL::customers, \
         '{\"full_name\": \"x\", \"id_number\": \"11010519491231002X\"}')",
        "INSERT INTO dev_customer_ids VALUES ('x', '11010519491231002X')",
        "PREPARE probe(text) AS INSERT INTO customers (full_name, id_number) VALUES ('x', $1)",
    ] {
        s.refused(sql).await;
    }
    // Behind another statement in one Query (the extended protocol takes
    // one statement a Parse; the server refuses the pair itself).
    let sql = "SELECT 1; INSERT INTO customers (full_name, id_number) \
               VALUES ('x', CAST('11010519491231002X' AS text))";
    let (ok, text) = s.attack(sql).await;
    if ok || !text.contains("42501") {
        s.leaks
            .lock()
            .unwrap()
            .push(format!("NOT REFUSED (simple): `{sql}` -> {text}"));
    }
    let _ = s.c.simple_query("ROLLBACK").await;
    s.finish();
}
