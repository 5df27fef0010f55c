//! Red-team round 6 and the false blocks ORM applications met (Sequelize,
//! TypeORM and Knex migrations through pgveil as a masked role):
//! - a set operation used as a subquery (UNION ALL with OFFSET or LIMIT, a
//!   CTE over one) computes every column of every branch, read or not, so
//!   whether that fails is an oracle on the values;
//! - deleting a row whose protected key an unprotected column references
//!   looks the key up in that column (a join, as the foreign key's own
//!   check is);
//! - a column type change that keeps every value and cannot fail (same or
//!   longer varchar, text, wider integers) tells nothing of the values;
//! - `EXCLUDED.c` in ON CONFLICT DO UPDATE … WHERE is the value the INSERT
//!   proposed, a constant when the INSERT's is.
//!
//! Through tokio-postgres on both protocols for the refusals; each test
//! reports all its failures at once.

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
            .psql_super_db(
                "bank",
                "CREATE ROLE prober LOGIN PASSWORD 'role-pw';
                 CREATE TABLE card_tokens (id serial PRIMARY KEY,
                   card_no text REFERENCES cards (card_no));
                 INSERT INTO card_tokens (card_no) SELECT card_no FROM cards;
                 GRANT ALL ON card_tokens TO PUBLIC;
                 CREATE TABLE ledger (id int PRIMARY KEY, holder_id varchar(18),
                   phone text, amount int2);
                 INSERT INTO ledger VALUES (1, '11010519491231002X', '13987654321', 5);
                 ALTER TABLE ledger OWNER TO dev;",
            )
            .unwrap();
        bank::start_proxy(ledger_policy())
    })
}

/// The bank fixture's policy plus two protected columns of `ledger`, a
/// table `dev` owns (so it may change its columns' types).
fn ledger_policy() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pgveil-adv6-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            std::path::Path::new(bank::POLICIES).join("bank.yaml"),
            dir.join("bank.yaml"),
        )
        .unwrap();
        std::fs::write(
            dir.join("ledger.yaml"),
            "version: 1\ncolumns:\n  public.ledger.holder_id:\n    mask: cn_id_card\n  \
             public.ledger.phone:\n    mask: cn_mobile\n",
        )
        .unwrap();
        dir.to_string_lossy().into_owned()
    })
}

async fn as_role(role: &str) -> Session {
    Session::connect(setup(), role).await
}

/// Runs `sql` in a transaction rolled back after it and expects it to work.
async fn works(s: &Session, sql: &str) {
    s.works_rolled_back(sql, false).await;
}

#[tokio::test]
async fn unread_columns_of_a_set_operation_are_computed() {
    // cvv is denied to everyone; agent may look id_number up by equality.
    for role in ["dev", "agent"] {
        let s = as_role(role).await;
        for sql in [
            "SELECT count(*) FROM ((SELECT 1 / (ascii(substr(cvv, 1, 1)) - 57) AS x FROM cards \
             WHERE id = 1) UNION ALL (SELECT 2) OFFSET 0) s",
            "SELECT count(*) FROM ((SELECT 1 / (ascii(cvv) - 57) AS x FROM cards) \
             UNION ALL (SELECT 2) LIMIT 5) s",
            "SELECT count(*) FROM ((SELECT 1 / (ascii(id_number) - 49) AS x FROM customers) \
             UNION ALL (SELECT 2) OFFSET 0) s",
            "WITH w AS NOT MATERIALIZED ((SELECT 1 / (ascii(cvv) - 57) AS x FROM cards) \
             UNION ALL (SELECT 2) OFFSET 0) SELECT count(*) FROM w",
            "SELECT count(*) FROM (SELECT length(id_number) FROM customers INTERSECT SELECT 18) s",
            "SELECT count(*) FROM (SELECT id, 1 / (ascii(mobile) - 49) FROM customers \
             EXCEPT SELECT 1, 1) s",
        ] {
            s.refused(sql).await;
        }
        // Copies and unprotected columns compute nothing.
        for sql in [
            "SELECT count(*) FROM ((SELECT id, id_number FROM customers) UNION ALL \
             (SELECT 1, 'x') OFFSET 0) s",
            "SELECT s.id FROM (SELECT id FROM customers UNION ALL SELECT 2 OFFSET 0) s",
        ] {
            works(&s, sql).await;
        }
        s.finish();
    }
}

#[tokio::test]
async fn deleting_a_referenced_protected_key_is_a_join_with_the_referencing_column() {
    // card_tokens.card_no (no rule) references cards.card_no: deleting a
    // card tells whether a token holds its number.
    for role in ["agent", "dev"] {
        let s = as_role(role).await;
        for sql in [
            "DELETE FROM cards WHERE id = 1",
            "UPDATE cards SET card_no = NULL WHERE id = 1",
        ] {
            s.refused(sql).await;
        }
        works(&s, "DELETE FROM card_tokens WHERE id = 1").await;
        s.finish();
    }
    // A role that may filter by card_no freely may delete.
    let prober = as_role("prober").await;
    prober.exec("BEGIN").await;
    prober.exec("DELETE FROM card_tokens").await;
    let (ok, text) = prober.attack("DELETE FROM cards WHERE id = 1").await;
    assert!(ok, "prober may delete a card: {text}");
    prober.exec("ROLLBACK").await;
    prober.finish();
}

#[tokio::test]
async fn type_changes_that_keep_every_value_are_not_uses() {
    let s = as_role("dev").await;
    // What ORMs send on every migration: the same type, or a longer one.
    for sql in [
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE VARCHAR(18)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE varchar(30)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE varchar(32) USING (holder_id::varchar(32))",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE character varying",
        "ALTER TABLE ledger ALTER COLUMN holder_id SET DATA TYPE text",
        "ALTER TABLE ledger ALTER COLUMN phone TYPE text USING phone",
        "ALTER TABLE ledger ALTER COLUMN phone TYPE varchar",
        "ALTER TABLE ledger ALTER COLUMN holder_id DROP NOT NULL, \
         ALTER COLUMN holder_id TYPE varchar(20)",
    ] {
        works(&s, sql).await;
    }
    // Narrowing fails on a value too long; anything computed may fail.
    for sql in [
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE varchar(10)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE varchar(17) USING holder_id::varchar(17)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE varchar(30) USING holder_id::varchar(17)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE text USING upper(holder_id)",
        "ALTER TABLE ledger ALTER COLUMN holder_id TYPE bigint USING holder_id::bigint",
        "ALTER TABLE ledger ALTER COLUMN phone TYPE varchar(20)",
        "ALTER TABLE ledger ALTER COLUMN phone TYPE char(11)",
    ] {
        s.refused(sql).await;
    }
    s.finish();
}

#[tokio::test]
async fn excluded_values_in_an_upsert_condition_are_the_inserted_ones() {
    // agent may look id_number up by equality; dev may not filter by it.
    let upsert = |condition: &str| {
        format!(
            "INSERT INTO customers (id, full_name, id_number) VALUES (1, 'x', '11010519491231002X') \
             ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name WHERE {condition}"
        )
    };
    let agent = as_role("agent").await;
    for condition in [
        "customers.id_number IS DISTINCT FROM EXCLUDED.id_number",
        "(customers.full_name IS DISTINCT FROM EXCLUDED.full_name \
         OR customers.id_number IS DISTINCT FROM EXCLUDED.id_number)",
        "customers.id_number = EXCLUDED.id_number",
    ] {
        works(&agent, &upsert(condition)).await;
    }
    for condition in [
        "customers.id_number IS DISTINCT FROM upper(EXCLUDED.id_number)",
        "customers.id_number > EXCLUDED.id_number",
        // A subquery's own FROM item named `excluded` is not EXCLUDED.
        "EXISTS (SELECT 1 FROM (SELECT upper(id_number) AS id_number FROM customers) excluded \
         WHERE customers.id_number = excluded.id_number)",
    ] {
        agent.refused(&upsert(condition)).await;
    }
    agent.finish();
    let dev = as_role("dev").await;
    dev.refused(&upsert(
        "customers.id_number IS DISTINCT FROM EXCLUDED.id_number",
    ))
    .await;
    dev.finish();
}

#[tokio::test]
async fn a_sql_prepared_statement_is_planned_again_after_the_schema_changes() {
    // PostgreSQL plans a prepared statement again when a view it reads is
    // replaced; pgveil must judge what will run, not what was prepared.
    let s = as_role("dev").await;
    s.exec("CREATE VIEW dev_v AS SELECT id, 'x'::text AS v FROM customers")
        .await;
    s.exec("PREPARE pv AS SELECT v FROM dev_v WHERE id = 1")
        .await;
    let (ok, text) = s.attack("EXECUTE pv").await;
    assert!(ok && text.contains('x'), "before: {text}");
    s.exec("CREATE OR REPLACE VIEW dev_v AS SELECT id, id_number || '' AS v FROM customers")
        .await;
    let (ok, text) = s.attack("EXECUTE pv").await;
    assert!(
        !ok && text.contains("42501"),
        "after the view changed: {text}"
    );
    s.finish();
}
