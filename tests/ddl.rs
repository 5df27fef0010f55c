//! Schema changes through pgveil as a masked role: DDL inside transactions
//! (migrations), the incremental catalog refresh, statement kinds that change
//! the schema without moving data, and server-side code definitions.

mod common;

use std::sync::OnceLock;

use common::bank::{self, ID_NUMBER, MOBILE};
use common::probe::Session;
use common::{cluster, connect, Proxy, SUPERUSER, SUPERUSER_PASSWORD};
use pgveil::analyze::Catalog;

/// The bank fixture behind pgveil with tests/fixtures/ddl: the bank policy
/// plus columns of tables that do not exist yet, and one allowed function.
fn setup() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        bank::create("");
        cluster()
            .psql_super_db(
                "bank",
                "CREATE FUNCTION safe_len(text) RETURNS int LANGUAGE sql AS 'SELECT length($1)';
                 CREATE FUNCTION not_allowed(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
                 CREATE FUNCTION trig() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
                 CREATE PROCEDURE sc_proc() LANGUAGE sql AS 'SELECT 1';
                 GRANT CREATE ON DATABASE bank TO dev;",
            )
            .unwrap();
        bank::start_proxy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ddl"))
    })
}

/// `dev` is masked on every protected column of the bank policy.
async fn dev() -> Session {
    Session::connect(setup(), "dev").await
}

/// Runs `sql`, expecting success; returns what the client saw.
async fn ok(s: &Session, sql: &str) -> String {
    let (ok, text) = s.visible(sql).await;
    assert!(ok, "`{sql}` failed through pgveil: {text}");
    s.check(sql, &text);
    text
}

/// Runs `sql`, expecting pgveil's refusal naming `rule`.
async fn refused(s: &Session, sql: &str, rule: &str) -> String {
    let (ok, text) = s.visible(sql).await;
    assert!(!ok, "`{sql}` passed: {text}");
    assert!(
        text.contains("42501") && text.contains(&format!("[rule: {rule}]")),
        "`{sql}` refused, but not by rule {rule}: {text}"
    );
    text
}

fn direct(db: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={SUPERUSER} password={SUPERUSER_PASSWORD} dbname={db}",
        cluster().port
    )
}

/// What a catalog says, in a form two catalogs can be compared by.
fn summary(c: &Catalog) -> (Vec<String>, Vec<String>, Vec<String>) {
    let relations = c
        .relations()
        .map(|r| {
            let cols: Vec<String> = r
                .columns
                .iter()
                .map(|c| format!("{}:{}:{}", c.attnum, c.name, c.type_name))
                .collect();
            format!(
                "{} {}.{} {:?} [{}] {:?} {:?}",
                r.oid,
                r.schema,
                r.name,
                r.kind,
                cols.join(","),
                r.definition,
                r.parents
            )
        })
        .collect();
    let functions = c
        .functions()
        .map(|f| {
            format!(
                "{} {}.{} {} {}",
                f.oid, f.schema, f.name, f.language, f.kind
            )
        })
        .collect();
    (c.schemas().to_vec(), relations, functions)
}

/// Refreshing only what changed since the last read gives the same catalog
/// as reading it whole, for every kind of change a migration makes: read
/// after DDL (the user's objects, `ReadScope::User`) and read once per TTL
/// (every object, `ReadScope::All`), each as a simple query and prepared.
#[tokio::test]
async fn incremental_refresh_matches_a_full_read() {
    use pgveil::analyze::catalog::{CatalogRead, ReadScope};
    cluster().psql_super("CREATE DATABASE refresh").unwrap();
    let client = connect(&direct("refresh")).await.unwrap();
    // (DDL, changes only a built-in object: only a read of every object
    // sees it).
    let steps: &[(&str, bool)] = &[
        ("CREATE TABLE t1 (id int PRIMARY KEY, a text, b text)", false),
        ("CREATE VIEW v1 AS SELECT id, a FROM t1", false),
        ("CREATE VIEW v2 AS SELECT a FROM v1", false),
        ("ALTER TABLE t1 ADD COLUMN c int", false),
        ("ALTER TABLE t1 RENAME COLUMN a TO a2", false),
        ("ALTER TABLE t1 ALTER COLUMN b TYPE varchar(20)", false),
        ("ALTER TABLE t1 ALTER COLUMN b TYPE varchar(30)", false),
        ("ALTER TABLE t1 DROP COLUMN c", false),
        ("ALTER TABLE t1 RENAME TO t1_old", false),
        ("CREATE TABLE t1 (id int, secret text)", false),
        ("CREATE SCHEMA s2", false),
        ("CREATE TABLE s2.p (id int, k text) PARTITION BY LIST (k)", false),
        ("CREATE TABLE s2.p_a PARTITION OF s2.p FOR VALUES IN ('a')", false),
        ("ALTER SCHEMA s2 RENAME TO s3", false),
        ("ALTER TABLE s3.p DETACH PARTITION s3.p_a", false),
        ("CREATE FUNCTION f1(int) RETURNS int LANGUAGE sql AS 'SELECT $1'", false),
        ("CREATE OR REPLACE FUNCTION f1(int) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT $1 + 1'", false),
        ("CREATE VIEW vf AS SELECT f1(id) AS x FROM t1", false),
        ("ALTER FUNCTION f1(int) RENAME TO f1_renamed", false),
        ("CREATE TYPE mood AS ENUM ('a', 'b')", false),
        ("CREATE TABLE t2 (m mood)", false),
        ("ALTER TYPE mood RENAME TO mood2", false),
        ("CREATE DOMAIN dm AS text; CREATE TABLE t6 (d dm, arr mood2[])", false),
        ("ALTER DOMAIN dm RENAME TO dm2", false),
        ("ALTER TYPE mood2 RENAME TO mood3", false),
        ("CREATE TYPE pair AS (a mood3, b int); CREATE VIEW vp AS SELECT NULL::pair AS p", false),
        ("ALTER TYPE pair RENAME TO pair2", false),
        ("CREATE SEQUENCE sq", false),
        ("CREATE MATERIALIZED VIEW mv AS SELECT id FROM t1", false),
        ("DROP VIEW v2", false),
        ("CREATE OR REPLACE VIEW v1 AS SELECT id, a2 AS a, b FROM t1_old", false),
        ("ALTER VIEW v1 RENAME TO v1_renamed", false),
        ("ALTER TABLE t2 SET SCHEMA s3", false),
        // A view in an earlier schema of the path shadows a table, then
        // goes: the table must show through again.
        ("CREATE SCHEMA early; CREATE VIEW early.t1 AS SELECT 1 AS id", false),
        ("DROP VIEW early.t1", false),
        ("CREATE TABLE par (id int, a text)", false),
        ("CREATE TABLE chi (b text) INHERITS (par)", false),
        ("ALTER TABLE par RENAME TO par2", false),
        ("ALTER TABLE chi NO INHERIT par2", false),
        // `public` was made by initdb (oid below the user range) and may
        // be renamed by the database owner.
        ("ALTER SCHEMA public RENAME TO public_old", false),
        ("ALTER SCHEMA public_old RENAME TO public", false),
        ("DROP FUNCTION f1_renamed(int) CASCADE", false),
        ("DROP SCHEMA s3 CASCADE", false),
        ("BEGIN; CREATE TABLE t3 (x int); ALTER TABLE t3 ADD COLUMN y text; COMMIT", false),
        ("BEGIN; CREATE TABLE t4 (x int); ROLLBACK", false),
        ("DROP TABLE t1_old CASCADE", false),
        // A superuser changing what ships with PostgreSQL.
        ("ALTER VIEW information_schema.tables RENAME TO tables_renamed", true),
        ("ALTER FUNCTION pg_catalog.lower(text) RENAME TO lower_renamed", true),
    ];
    let mut catalog = Catalog::load(&client).await.unwrap();
    let user = client
        .prepare(&CatalogRead::parameterised_sql(ReadScope::User))
        .await
        .unwrap();
    let all = client
        .prepare(&CatalogRead::parameterised_sql(ReadScope::All))
        .await
        .unwrap();
    let compare = |a: &Catalog, b: &Catalog, what: &str| {
        let (a, b) = (summary(a), summary(b));
        assert_eq!(a.0, b.0, "schemas {what}");
        let missing: Vec<_> = b.1.iter().filter(|r| !a.1.contains(r)).collect();
        let extra: Vec<_> = a.1.iter().filter(|r| !b.1.contains(r)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "relations {what}: missing {missing:#?}, stale {extra:#?}"
        );
        assert_eq!(a.2, b.2, "functions {what}");
    };
    for (step, built_in) in steps {
        client.batch_execute(step).await.unwrap();
        let full = Catalog::load(&client).await.unwrap();
        let user_read = catalog.changes_query().unwrap();
        assert_eq!(user_read.scope(), ReadScope::User);
        let all_read = catalog.all_changes_query().unwrap();
        assert_eq!(all_read.scope(), ReadScope::All);
        let by_user = catalog.refreshed(&client).await.unwrap();
        let by_all = catalog
            .refreshed_by(&client, &all_read, None)
            .await
            .unwrap();
        compare(
            &by_all,
            &full,
            &format!("after `{step}`, every object read"),
        );
        let prepared = catalog
            .refreshed_by(&client, &all_read, Some(&all))
            .await
            .unwrap();
        compare(
            &prepared,
            &full,
            &format!("after `{step}`, every object read, prepared"),
        );
        if !built_in {
            compare(&by_user, &full, &format!("after `{step}`"));
            let prepared = catalog
                .refreshed_by(&client, &user_read, Some(&user))
                .await
                .unwrap();
            compare(&prepared, &full, &format!("after `{step}`, prepared"));
        } else {
            // Left to the read of every object, within the catalog TTL.
            assert_ne!(summary(&by_user), summary(&full), "after `{step}`");
        }
        // A read of the user's objects keeps the snapshot a read of every
        // object starts from; a read of every object moves it.
        let since_all = by_all.all_read_age();
        let before = catalog.all_read_age();
        assert!(by_user.all_read_age() >= before);
        assert!(since_all < before);
        catalog = if *built_in { by_all } else { by_user };
    }
}

/// Inside a transaction, each read of its changes builds on the last one
/// (only rows it wrote since are read again) and still equals a whole read
/// made in the transaction, also after a savepoint is rolled back (the
/// session then reads from the shared catalog again, as here).
#[tokio::test]
async fn reads_inside_a_transaction_build_on_the_last_one() {
    cluster().psql_super("CREATE DATABASE txread").unwrap();
    let client = connect(&direct("txread")).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE base_t (id int, a text); CREATE VIEW base_v AS SELECT a FROM base_t",
        )
        .await
        .unwrap();
    let shared = Catalog::load(&client).await.unwrap();
    let read_in_tx = |last: &Catalog, rebase: bool| {
        let read = shared.changes_query().unwrap();
        if rebase {
            read
        } else {
            read.after(last)
        }
    };
    // Another session, committing while the transaction is open.
    let other = connect(&direct("txread")).await.unwrap();
    async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
        client
            .simple_query(sql)
            .await
            .unwrap()
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }
    client.batch_execute("BEGIN").await.unwrap();
    // (DDL, read from the shared catalog again); DDL starting with
    // `other:` is run and committed by the other session.
    let steps: &[(&str, bool)] = &[
        (
            "CREATE TABLE t1 (id int PRIMARY KEY, a text, b text)",
            false,
        ),
        ("CREATE VIEW v1 AS SELECT id, a FROM t1", false),
        ("ALTER TABLE t1 ADD COLUMN c int", false),
        ("ALTER TABLE t1 RENAME COLUMN a TO a2", false),
        ("ALTER TABLE base_t RENAME COLUMN a TO a_old", false),
        ("other: CREATE TABLE foreign_t (id int, f text)", false),
        (
            "other: CREATE VIEW foreign_v AS SELECT f FROM foreign_t",
            false,
        ),
        ("CREATE TABLE t0 (z int)", false),
        // (Not foreign_t: reading foreign_v's text took a lock on it until
        // this transaction ends.)
        ("other: CREATE TABLE foreign_t2 (id int)", false),
        (
            "other: ALTER TABLE foreign_t2 RENAME COLUMN id TO id2",
            false,
        ),
        (
            "CREATE FUNCTION f1(int) RETURNS int LANGUAGE sql AS 'SELECT $1'",
            false,
        ),
        ("SAVEPOINT s", true),
        ("CREATE TABLE t2 (x int)", false),
        ("ALTER TABLE t1 DROP COLUMN c", false),
        ("CREATE TABLE t2b (x int)", false),
        ("ROLLBACK TO SAVEPOINT s", true),
        ("SAVEPOINT s2", true),
        ("CREATE TABLE t5 (x int)", false),
        ("RELEASE SAVEPOINT s2", true),
        ("ALTER TABLE t5 ADD COLUMN y int", false),
        ("other: DROP TABLE foreign_t2", false),
        ("DROP VIEW v1", false),
        (
            "CREATE OR REPLACE VIEW base_v AS SELECT a_old || 'x' AS a FROM base_t",
            false,
        ),
        ("ALTER TABLE t1 RENAME TO t1_new", false),
        ("DROP FUNCTION f1(int)", false),
    ];
    let mut last = Catalog::load(&client).await.unwrap();
    for (step, rebase) in steps {
        match step.strip_prefix("other: ") {
            Some(ddl) => other.batch_execute(ddl).await.unwrap(),
            None => client.batch_execute(step).await.unwrap(),
        }
        let read = read_in_tx(&last, *rebase);
        let start = if *rebase { &shared } else { &last };
        let read_rows = rows(&client, &read.sql()).await;
        let next = start
            .apply(&read, read_rows.iter().map(|r| r.as_slice()))
            .unwrap();
        let relation_rows = |rows: &[Vec<Option<String>>]| {
            rows.iter().filter(|r| r[0].as_deref() == Some("R")).count()
        };
        if step.starts_with("CREATE FUNCTION f1") {
            // Relations this transaction changed before are not read again.
            let whole = rows(&client, &shared.changes_query().unwrap().sql()).await;
            assert!(relation_rows(&whole) >= 2, "{whole:?}");
            assert_eq!(relation_rows(&read_rows), 0, "{read_rows:?}");
        }
        if *step == "CREATE TABLE t0 (z int)" {
            // Nor relations other sessions committed before the last read.
            assert_eq!(relation_rows(&read_rows), 1, "{read_rows:?}");
        }
        let full = Catalog::load(&client).await.unwrap();
        let (a, b) = (summary(&next), summary(&full));
        assert_eq!(a.0, b.0, "schemas after `{step}`");
        let missing: Vec<_> = b.1.iter().filter(|r| !a.1.contains(r)).collect();
        let extra: Vec<_> = a.1.iter().filter(|r| !b.1.contains(r)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "relations after `{step}`: missing {missing:#?}, stale {extra:#?}"
        );
        assert_eq!(a.2, b.2, "functions after `{step}`");
        last = next;
    }
    client.batch_execute("ROLLBACK").await.unwrap();
}

/// Function, aggregate and operator definitions pass; what would run a
/// function pgveil cannot see being called is refused, naming the rule.
#[tokio::test]
async fn server_code_definitions() {
    let s = dev().await;
    ok(
        &s,
        "CREATE FUNCTION sc_double(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
    )
    .await;
    ok(
        &s,
        "CREATE OR REPLACE FUNCTION sc_double(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + $1'",
    )
    .await;
    ok(
        &s,
        "CREATE AGGREGATE sc_sum(int) (sfunc = int4pl, stype = int)",
    )
    .await;
    ok(&s, "ALTER FUNCTION sc_double(int) IMMUTABLE").await;
    // A call runs when pgveil can see into the body and nothing it
    // reaches is protected (tests/followed_functions.rs); one that reads a
    // protected column stays blocked.
    ok(&s, "SELECT sc_double(id) FROM customers").await;
    ok(
        &s,
        "CREATE FUNCTION sc_peek() RETURNS text LANGUAGE sql AS \
         'SELECT id_number FROM customers LIMIT 1'",
    )
    .await;
    refused(&s, "SELECT sc_peek()", "user-defined-function").await;
    refused(
        &s,
        "SELECT sc_sum(id) FROM customers",
        "user-defined-function",
    )
    .await;
    ok(&s, "CALL sc_proc()").await;
    // The allowed function is callable, and cannot be redefined, overloaded
    // or replaced by a rename.
    let text = ok(&s, "SELECT safe_len(branch) FROM customers WHERE id = 1").await;
    assert!(text.contains('8'), "{text}");
    let text = refused(
        &s,
        "CREATE OR REPLACE FUNCTION safe_len(text) RETURNS int LANGUAGE sql AS 'SELECT 0'",
        "allowed-function-definition",
    )
    .await;
    assert!(text.contains("functions.allow"), "{text}");
    refused(
        &s,
        "CREATE FUNCTION public.safe_len(varchar) RETURNS int LANGUAGE sql AS 'SELECT 0'",
        "allowed-function-definition",
    )
    .await;
    refused(
        &s,
        "ALTER FUNCTION sc_double(int) RENAME TO safe_len",
        "allowed-function-definition",
    )
    .await;
    // A user function named like a built-in may win PostgreSQL's overload
    // resolution (varchar argument): the call counts as the user function.
    ok(
        &s,
        "CREATE FUNCTION lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT $1::text'",
    )
    .await;
    // Its body reaches nothing protected, but the value passed to it is.
    refused(
        &s,
        "SELECT lower(id_number) FROM customers",
        "user-defined-function (public.customers.id_number default)",
    )
    .await;
    ok(&s, "DROP FUNCTION lower(varchar)").await;
    ok(&s, "SELECT lower(branch) FROM customers").await;
    // Implicit invocation paths: only built-in or allowed functions.
    for (sql, what) in [
        ("CREATE TABLE sc_t1 (id int, v text DEFAULT not_allowed('x'))", "column default"),
        ("CREATE TABLE sc_t2 (id int, v text CHECK (not_allowed(v) <> ''))", "check"),
        ("CREATE TABLE sc_t3 (v text, w text GENERATED ALWAYS AS (not_allowed(v)) STORED)", "generated column"),
        ("CREATE DOMAIN sc_d AS text CHECK (not_allowed(VALUE) <> '')", "domain"),
        ("CREATE INDEX ON customers (not_allowed(branch))", "index expression"),
        ("CREATE TRIGGER sc_tr BEFORE INSERT ON audit_trail FOR EACH ROW EXECUTE FUNCTION trig()", "trigger"),
        ("CREATE OPERATOR - (RIGHTARG = text, FUNCTION = not_allowed)", "operator"),
        ("ALTER TABLE audit_trail ADD COLUMN sc text DEFAULT not_allowed('x')", "added column default"),
    ] {
        let text = refused(&s, sql, "user-defined-function").await;
        assert!(text.contains("functions.allow") || text.contains("list the function"), "{what}: {text}");
    }
    // Built-in functions on those paths are fine.
    ok(&s, "CREATE TABLE sc_ok (id serial, at timestamptz DEFAULT now(), v text CHECK (length(v) < 10), \
              w int GENERATED ALWAYS AS (length(v)) STORED)").await;
    ok(&s, "CREATE INDEX ON sc_ok (lower(v))").await;
    ok(
        &s,
        "CREATE TABLE sc_allowed (v text, n int DEFAULT safe_len('abc'))",
    )
    .await;
    refused(
        &s,
        "CREATE RULE sc_r AS ON INSERT TO sc_ok DO ALSO NOTIFY sc",
        "server-side-code",
    )
    .await;
    s.finish();
}

/// Statements that change the schema without moving data pass; TRUNCATE is
/// a write; search_path changes are followed; temp views can be replaced.
#[tokio::test]
async fn schema_statements_without_data_flow() {
    let s = dev().await;
    for sql in [
        "CREATE TABLE sk_t (id int, v text)",
        "CREATE DOMAIN sk_d AS int CHECK (VALUE > 0)",
        "DROP DOMAIN sk_d",
        "ALTER TABLE sk_t ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY sk_p ON sk_t USING (id > 0)",
        "DROP POLICY sk_p ON sk_t",
        "CREATE RULE sk_r AS ON UPDATE TO sk_t DO INSTEAD NOTHING",
        "DROP RULE sk_r ON sk_t",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
        "INSERT INTO sk_t VALUES (1, 'a')",
        "TRUNCATE sk_t",
        "TRUNCATE sk_t RESTART IDENTITY CASCADE",
    ] {
        if sql.starts_with("CREATE RULE") {
            // Rules stay refused (their actions run unseen); make one directly.
            cluster()
                .psql_super_db(
                    "bank",
                    "CREATE RULE sk_r AS ON UPDATE TO sk_t DO INSTEAD NOTHING",
                )
                .unwrap();
            continue;
        }
        ok(&s, sql).await;
    }
    let text = ok(&s, "SELECT count(*) FROM sk_t").await;
    assert!(text.contains('0'), "{text}");
    // Operator families need a superuser: the server's answer comes back.
    let (created, text) = s.visible("CREATE OPERATOR FAMILY sk_f USING btree").await;
    assert!(!created && text.contains("must be superuser"), "{text}");
    // CREATE ROLE needs the privilege: the server's own answer comes back.
    let (created, text) = s.visible("CREATE ROLE sk_role").await;
    assert!(
        !created && text.contains("42501") && !text.contains("pgveil"),
        "{text}"
    );
    // A new database is empty (asyncpg's tests create one); a copy of this
    // one (TEMPLATE) would carry its rows elsewhere and stays refused.
    cluster()
        .psql_super_db("bank", "ALTER ROLE dev CREATEDB")
        .unwrap();
    ok(&s, "CREATE DATABASE sk_db").await;
    // A masked session on it makes pgveil read its catalog; once that
    // session ended, pgveil's own connection to it does not keep DROP
    // DATABASE from running (asyncpg's tests drop what they created).
    {
        let proxy = setup();
        let conn_str = proxy.conn_str("dev", common::bank::PASSWORD, "sk_db");
        let c = connect(&conn_str).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    ok(&s, "DROP DATABASE sk_db").await;
    let (created, text) = s.visible("CREATE DATABASE sk_copy TEMPLATE bank").await;
    assert!(!created && text.contains("pgveil"), "{text}");
    cluster()
        .psql_super_db("bank", "ALTER ROLE dev NOCREATEDB")
        .unwrap();
    s.finish();
}

/// A migration in one transaction, as Django, Rails, Alembic and Flyway run
/// them: every statement after the DDL works, and a column the policy
/// protects is masked from the moment the transaction creates it.
#[tokio::test]
async fn migration_in_a_transaction() {
    let s = dev().await;
    ok(&s, "BEGIN").await;
    ok(
        &s,
        "CREATE TABLE mig_accounts (id serial PRIMARY KEY, secret text, note text)",
    )
    .await;
    ok(
        &s,
        &format!("INSERT INTO mig_accounts (secret, note) VALUES ('{MOBILE}', 'first')"),
    )
    .await;
    let text = ok(&s, "SELECT * FROM mig_accounts").await;
    assert!(text.contains("first") && text.contains("****"), "{text}");
    ok(
        &s,
        "ALTER TABLE mig_accounts ADD COLUMN extra int DEFAULT 7",
    )
    .await;
    let text = ok(&s, "SELECT extra, note FROM mig_accounts").await;
    assert!(text.contains('7') && text.contains("first"), "{text}");
    ok(
        &s,
        "CREATE VIEW mig_view AS SELECT id, secret AS s FROM mig_accounts",
    )
    .await;
    let text = ok(&s, "SELECT s FROM mig_view").await;
    assert!(text.contains("****"), "{text}");
    // A savepoint rolled back undoes its DDL for pgveil too.
    ok(&s, "SAVEPOINT a").await;
    ok(&s, "ALTER TABLE mig_accounts RENAME COLUMN note TO note2").await;
    ok(&s, "SELECT note2 FROM mig_accounts").await;
    ok(&s, "ROLLBACK TO SAVEPOINT a").await;
    let text = ok(&s, "SELECT note FROM mig_accounts").await;
    assert!(text.contains("first"), "{text}");
    // Extended protocol (tokio-postgres prepares every statement).
    s.c.execute("ALTER TABLE mig_accounts ADD COLUMN e2 int", &[])
        .await
        .unwrap();
    let rows =
        s.c.query("SELECT secret, e2 FROM mig_accounts", &[])
            .await
            .unwrap();
    let secret: String = rows[0].get(0);
    assert_ne!(secret, MOBILE);
    // DDL and a read of what it changed in one query string: run one
    // statement at a time, the read planned after the DDL ran.
    let text = ok(
        &s,
        "ALTER TABLE mig_accounts ADD COLUMN e3 int; SELECT secret, e3 FROM mig_accounts",
    )
    .await;
    assert!(text.contains("****") && text.contains("[rows 0]"), "{text}");
    ok(&s, "ROLLBACK").await;
    // After ROLLBACK the table is gone for pgveil too.
    let (ran, text) = s.visible("SELECT * FROM mig_accounts").await;
    assert!(!ran, "{text}");
    // The same migration committed; another session sees it masked.
    for sql in [
        "BEGIN",
        "CREATE TABLE mig_accounts (id serial PRIMARY KEY, secret text, note text)",
        &format!("INSERT INTO mig_accounts (secret, note) VALUES ('{ID_NUMBER}', 'kept')"),
        "COMMIT",
    ] {
        ok(&s, sql).await;
    }
    let other = dev().await;
    let text = ok(&other, "SELECT secret, note FROM mig_accounts").await;
    assert!(text.contains("kept") && text.contains("****"), "{text}");
    // A generated column would copy a protected column of a table the
    // policy names before it exists into an unprotected one.
    refused(
        &s,
        "CREATE TABLE mig_gen (secret text, l int GENERATED ALWAYS AS (length(secret)) STORED)",
        "public.mig_gen.secret default",
    )
    .await;
    s.finish();
    other.finish();
}

/// An object swapped inside a transaction is read with its new lineage.
#[tokio::test]
async fn swapped_objects_in_a_transaction_stay_masked() {
    let s = dev().await;
    ok(&s, "CREATE TABLE sw_t (id int, m text)").await;
    ok(&s, "INSERT INTO sw_t VALUES (1, 'plain')").await;
    ok(&s, "BEGIN").await;
    ok(&s, "ALTER TABLE sw_t RENAME TO sw_t_old").await;
    ok(
        &s,
        "CREATE VIEW sw_t AS SELECT id, mobile AS m FROM customers",
    )
    .await;
    let text = ok(&s, "SELECT m FROM sw_t WHERE id = 1").await;
    assert!(text.contains("****"), "{text}");
    ok(&s, "ROLLBACK").await;
    let text = ok(&s, "SELECT m FROM sw_t").await;
    assert!(text.contains("plain"), "{text}");
    s.finish();
}

/// pg_stat_activity and pg_prepared_xacts are readable (drivers' test
/// teardowns, two-phase commit); only the statement texts of pg_stat_activity
/// stay out of reach.
#[tokio::test]
async fn activity_and_prepared_transactions() {
    let s = dev().await;
    let text = ok(
        &s,
        "SELECT pid, state, datname FROM pg_stat_activity WHERE datname = current_database()",
    )
    .await;
    assert!(text.contains("bank"), "{text}");
    ok(&s, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'nobody' AND pid <> pg_backend_pid()").await;
    ok(&s, "SELECT gid, owner FROM pg_prepared_xacts").await;
    ok(&s, "SELECT * FROM pg_prepared_xacts").await;
    for sql in [
        "SELECT * FROM pg_stat_activity",
        "SELECT query FROM pg_stat_activity",
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%1398%'",
        "SELECT row_to_json(a) FROM pg_stat_activity a",
    ] {
        let text = refused(&s, sql, "sensitive-system-catalog").await;
        assert!(
            text.contains("pg_stat_activity.query") || text.contains("pg_stat_activity"),
            "{text}"
        );
    }
    s.finish();
}

/// SET search_path is allowed and followed: pgveil asks the server for the
/// new value before it plans the next statement.
#[tokio::test]
async fn search_path_changes_are_followed() {
    let s = dev().await;
    ok(&s, "CREATE SCHEMA sp_s").await;
    ok(&s, "CREATE TABLE sp_s.customers (id int, mobile text)").await;
    ok(&s, "INSERT INTO sp_s.customers VALUES (1, 'not-protected')").await;
    ok(&s, "SET search_path = sp_s, public").await;
    let text = ok(&s, "SELECT mobile FROM customers WHERE id = 1").await;
    assert!(text.contains("not-protected"), "{text}");
    ok(&s, "SET search_path = public").await;
    let text = ok(&s, "SELECT mobile FROM customers WHERE id = 1").await;
    assert!(text.contains("****"), "{text}");
    // SET LOCAL ends with its transaction.
    ok(&s, "BEGIN").await;
    ok(&s, "SET LOCAL search_path = sp_s").await;
    let text = ok(&s, "SELECT mobile FROM customers WHERE id = 1").await;
    assert!(text.contains("not-protected"), "{text}");
    ok(&s, "COMMIT").await;
    let text = ok(&s, "SELECT mobile FROM customers WHERE id = 1").await;
    assert!(text.contains("****"), "{text}");
    // In the same query string the next statement is planned with the new
    // path, read from the server once the SET ran (one statement at a time).
    let text = ok(
        &s,
        "SET search_path = sp_s, public; SELECT mobile FROM customers WHERE id = 1",
    )
    .await;
    assert!(text.contains("not-protected"), "{text}");
    let text = ok(
        &s,
        "SET search_path = public, sp_s; SELECT mobile FROM customers WHERE id = 1",
    )
    .await;
    assert!(text.contains("****"), "{text}");
    // A path the end of its transaction undoes, in the same string: the
    // statement after COMMIT, ROLLBACK or ROLLBACK TO reads public's
    // customers again. A computed output of its mobile is refused (the
    // RowDescription check alone would not catch it); the column itself
    // is masked.
    let computed = "SELECT mobile || '' AS m FROM customers WHERE id = 1";
    for undo in [
        "BEGIN; SET LOCAL search_path = sp_s; COMMIT; ",
        "BEGIN; SET search_path = sp_s; ROLLBACK; ",
        "BEGIN; SAVEPOINT p; SET search_path = sp_s; ROLLBACK TO p; COMMIT; ",
    ] {
        let (ran, text) = s.visible(&format!("{undo}{computed}")).await;
        assert!(
            !ran && text.contains("42501") && !text.contains(MOBILE),
            "{undo}: {text}"
        );
        ok(&s, "ROLLBACK").await;
        let text = ok(
            &s,
            &format!("{undo}SELECT mobile FROM customers WHERE id = 1"),
        )
        .await;
        assert!(
            text.contains("****") && !text.contains(MOBILE),
            "{undo}: {text}"
        );
    }
    // The same across query strings: SET in an open transaction, then
    // ROLLBACK and a read in one string.
    ok(&s, "BEGIN").await;
    ok(&s, "SET search_path = sp_s").await;
    let (ran, text) = s.visible(&format!("ROLLBACK; {computed}")).await;
    assert!(
        !ran && text.contains("42501") && !text.contains(MOBILE),
        "{text}"
    );
    ok(&s, "RESET search_path").await;
    let text = ok(&s, "SELECT mobile FROM customers WHERE id = 1").await;
    assert!(text.contains("****"), "{text}");
    s.finish();
}

/// An administrator's DDL through pgveil in a session that pgveil does not
/// guard (a role that sees everything in clear) still makes masked sessions
/// read the catalog again: a view replaced to expose a protected column is
/// masked from the next statement on, in autocommit and after COMMIT.
#[tokio::test]
async fn unguarded_ddl_refreshes_masked_sessions() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mobile.yaml"),
        "version: 1\ncolumns:\n  public.customers.mobile:\n    class: C2\n    mask: cn_mobile\n    \
         rules:\n      - roles: [compliance]\n        action: allow\n",
    )
    .unwrap();
    let policies = dir.path().to_string_lossy().into_owned();
    let proxy = bank::start_proxy(&policies);
    // auditor (in compliance) sees everything this policy protects: its
    // session is relayed without analysis.
    let admin = Session::connect(&proxy, "auditor").await;
    let masked = Session::connect(&proxy, "dev").await;
    admin
        .exec("CREATE VIEW ug_v AS SELECT id, branch AS note FROM customers; GRANT SELECT ON ug_v TO dev")
        .await;
    let text = ok(&masked, "SELECT note FROM ug_v WHERE id = 1").await;
    assert!(text.contains("Hangzhou"), "{text}");
    // The new definition copies the protected column through an
    // expression, so no RowDescription origin points at it.
    admin
        .exec("CREATE OR REPLACE VIEW ug_v AS SELECT id, mobile || '' AS note FROM customers")
        .await;
    let (_, text) = masked.attack("SELECT note FROM ug_v WHERE id = 1").await;
    assert!(
        !text.contains(MOBILE) && !text.contains("Hangzhou"),
        "{text}"
    );
    admin
        .exec("CREATE OR REPLACE VIEW ug_v AS SELECT id, branch AS note FROM customers")
        .await;
    let text = ok(&masked, "SELECT note FROM ug_v WHERE id = 1").await;
    assert!(text.contains("Hangzhou"), "{text}");
    admin
        .exec("BEGIN; CREATE OR REPLACE VIEW ug_v AS SELECT id, mobile || '' AS note FROM customers; COMMIT")
        .await;
    let (_, text) = masked.attack("SELECT note FROM ug_v WHERE id = 1").await;
    assert!(
        !text.contains(MOBILE) && !text.contains("Hangzhou"),
        "{text}"
    );
    admin.exec("DROP VIEW ug_v").await;
    masked.finish();
}

/// DDL that changes nothing pgveil's catalog holds (indexes, comments,
/// grants) needs no catalog read, in autocommit or in a transaction, and the
/// statements after it still see every earlier change.
#[tokio::test]
async fn catalog_neutral_ddl_in_a_migration() {
    let s = dev().await;
    for sql in [
        "CREATE TABLE cn_t (id int, v text)",
        "CREATE INDEX ON cn_t (v)",
        "COMMENT ON TABLE cn_t IS 'x'",
        "INSERT INTO cn_t VALUES (1, 'one')",
        "BEGIN",
        "ALTER TABLE cn_t ADD COLUMN w text DEFAULT 'w1'",
        "CREATE INDEX ON cn_t (w)",
        "COMMENT ON COLUMN cn_t.w IS 'y'",
        "GRANT SELECT ON cn_t TO PUBLIC",
        "COMMIT",
    ] {
        ok(&s, sql).await;
    }
    let text = ok(&s, "SELECT v, w FROM cn_t").await;
    assert!(text.contains("one") && text.contains("w1"), "{text}");
    s.finish();
}

/// A masked role's statement that names a missing table, column or
/// function, or is not valid SQL, gets PostgreSQL's own error (ORMs and
/// migration tools branch on its SQLSTATE), never a row.
#[tokio::test]
async fn missing_objects_get_the_servers_error() {
    let s = dev().await;
    for (sql, code) in [
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT mobile, no_such_column FROM customers", "42703"),
        ("SELECT no_such_function(mobile) FROM customers", "42883"),
        (
            "SELECT id FROM customers WHERE no_such_column = mobile",
            "42703",
        ),
        ("SELEC mobile FROM customers", "42601"),
        // psycopg2's copy_to of a missing table; a COPY's Parse resolves
        // nothing, so pgveil probes its table and columns.
        ("COPY no_such_table TO STDOUT", "42P01"),
        ("COPY customers (id, no_such_column) TO STDOUT", "42703"),
    ] {
        let (ran, text) = s.attack(sql).await;
        assert!(
            !ran && text.contains(code) && !text.contains("pgveil"),
            "`{sql}`: {text}"
        );
    }
    // Extended protocol: the server's error comes from the Parse.
    let err =
        s.c.query("SELECT * FROM no_such_table", &[])
            .await
            .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    // In a transaction the error aborts it, as PostgreSQL does.
    ok(&s, "BEGIN").await;
    let (_, text) = s.visible("SELECT * FROM no_such_table").await;
    assert!(text.contains("42P01"), "{text}");
    let (_, text) = s.visible("SELECT 1").await;
    assert!(text.contains("25P02"), "{text}");
    ok(&s, "ROLLBACK").await;
    // Refusals of valid statements are unchanged, and the session goes on.
    refused(
        &s,
        "SELECT id FROM customers ORDER BY mobile",
        "public.customers.mobile default",
    )
    .await;
    let text = ok(&s, "SELECT branch FROM customers WHERE id = 1").await;
    assert!(text.contains("Hangzhou"), "{text}");
    s.finish();
}

/// Schema statements as migration tools and pg_dump send them, run by a
/// masked role in autocommit: several in one query string, identity columns
/// added to an existing column with a named sequence, and identity and
/// sequence changes. None of them moves a value, so none is refused.
#[tokio::test]
async fn ddl_shapes_of_migration_tools_and_pg_dump() {
    let s = dev().await;
    // Several in one query string.
    ok(
        &s,
        "CREATE TABLE sh_a (id int NOT NULL, v text); CREATE TABLE sh_b (w text); \
         CREATE SEQUENCE sh_c",
    )
    .await;
    ok(
        &s,
        "CREATE INDEX sh_a_v ON sh_a (v); COMMENT ON TABLE sh_a IS 'two'",
    )
    .await;
    ok(&s, "INSERT INTO sh_a VALUES (1, 'one')").await;
    // pg_dump's form of an identity column.
    ok(
        &s,
        "ALTER TABLE public.sh_a ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY ( \
         SEQUENCE NAME public.sh_a_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1)",
    )
    .await;
    ok(
        &s,
        "SELECT pg_catalog.setval('public.sh_a_id_seq', 5, true)",
    )
    .await;
    ok(&s, "ALTER TABLE sh_a ALTER COLUMN id RESTART WITH 100").await;
    ok(&s, "ALTER TABLE sh_a ALTER COLUMN id SET INCREMENT BY 2").await;
    ok(&s, "ALTER TABLE sh_a ALTER COLUMN id SET GENERATED ALWAYS").await;
    ok(&s, "ALTER SEQUENCE sh_a_id_seq CACHE 10").await;
    ok(&s, "INSERT INTO sh_a (v) VALUES ('two')").await;
    let text = ok(&s, "SELECT id, v FROM sh_a ORDER BY id").await;
    assert!(text.contains("100") && text.contains("two"), "{text}");
    ok(&s, "CREATE SEQUENCE sh_s START 7 OWNED BY sh_a.v").await;
    ok(&s, "ALTER SEQUENCE sh_s RESTART WITH 9 INCREMENT BY 3").await;
    ok(&s, "ALTER SEQUENCE sh_s OWNED BY NONE").await;
    let text = ok(&s, "SELECT nextval('sh_s'), last_value FROM sh_s").await;
    assert!(text.contains('9'), "{text}");
    ok(&s, "ALTER TABLE sh_a ALTER COLUMN id DROP IDENTITY").await;
    ok(&s, "DROP SEQUENCE sh_s, sh_c; DROP TABLE sh_a, sh_b").await;
    s.finish();
}

/// A view's text names relations as the catalog connection's search_path
/// shows them. A view in another schema over `public.customers` must stay
/// bound to it when a table of the same name appears in the view's own
/// schema, in autocommit and inside a transaction.
#[tokio::test]
async fn view_text_stays_bound_to_the_table_it_reads() {
    setup();
    cluster()
        .psql_super_db("bank", "CREATE SCHEMA vb AUTHORIZATION dev")
        .unwrap();
    let s = dev().await;
    ok(
        &s,
        "CREATE VIEW vb.people AS SELECT id, id_number, mobile FROM public.customers",
    )
    .await;
    ok(
        &s,
        "CREATE TABLE vb.customers (id int, id_number text, mobile text)",
    )
    .await;
    let (_, text) = s.attack("SELECT id_number, mobile FROM vb.people").await;
    assert!(
        !text.contains(ID_NUMBER) && !text.contains(MOBILE),
        "{text}"
    );
    ok(&s, "BEGIN").await;
    ok(
        &s,
        "CREATE VIEW vb.people2 AS SELECT id, id_number, mobile FROM public.customers",
    )
    .await;
    let (_, text) = s.attack("SELECT id_number, mobile FROM vb.people2").await;
    assert!(
        !text.contains(ID_NUMBER) && !text.contains(MOBILE),
        "{text}"
    );
    ok(&s, "ROLLBACK").await;
    s.finish();
}

/// A query string whose later statements read what its earlier DDL
/// created (drivers' tests and migration scripts send them whole): run
/// one statement at a time in one transaction, each planned after the
/// ones before it ran, with the semantics of the string as one Query:
/// results in order, an error ends it and rolls all of it back, explicit
/// BEGIN/COMMIT inside it keep their meaning.
#[tokio::test]
async fn ddl_then_statements_that_read_it_in_one_query_string() {
    let s = dev().await;
    // tokio-postgres' own tests: a temporary table, filled and read.
    let text = ok(
        &s,
        "CREATE TEMPORARY TABLE qs_foo (id SERIAL, name TEXT); \
         INSERT INTO qs_foo (name) VALUES ('steven'), ('joe'); \
         SELECT * FROM qs_foo ORDER BY id",
    )
    .await;
    assert!(
        text.contains("steven") && text.contains("joe") && text.contains("[rows 2]"),
        "{text}"
    );
    // A column the policy protects is masked from the statement after the
    // one that creates it; rows come back in order with every tag.
    let rows =
        s.c.simple_query(&format!(
            "CREATE TABLE mig_gen (id int, secret text, note text); \
             INSERT INTO mig_gen VALUES (1, '{MOBILE}', 'n1'); \
             SELECT secret, note FROM mig_gen; \
             SELECT note FROM mig_gen; \
             DROP TABLE mig_gen"
        ))
        .await
        .unwrap();
    let text = common::probe::simple_text(&rows);
    s.check("stepwise", &text);
    let tags: Vec<u64> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(tags, [0, 1, 1, 1, 0], "{text}");
    assert!(text.contains("****") && text.contains("n1"), "{text}");
    // An error ends the string and rolls back everything before it (it is
    // one transaction), with the server's own error for a missing table.
    let (ran, text) = s
        .visible(
            "CREATE TABLE qs_gone (a int); INSERT INTO qs_gone VALUES (1); \
             SELECT * FROM qs_no_such_table; INSERT INTO qs_gone VALUES (2)",
        )
        .await;
    assert!(
        !ran && text.contains("42P01") && !text.contains("pgveil"),
        "{text}"
    );
    let (ran, text) = s.visible("SELECT * FROM qs_gone").await;
    assert!(!ran && text.contains("42P01"), "{text}");
    // pgveil's refusal of a later statement rolls back the earlier ones too.
    let (ran, text) = s
        .visible(
            "CREATE TABLE qs_gone (a int); \
             SELECT id FROM customers ORDER BY mobile",
        )
        .await;
    assert!(
        !ran && text.contains("42501") && text.contains("pgveil"),
        "{text}"
    );
    let (ran, _) = s.visible("SELECT * FROM qs_gone").await;
    assert!(!ran);
    // Explicit BEGIN inside the string leaves the transaction open, as
    // PostgreSQL does; its DDL is seen by later statements and strings.
    ok(
        &s,
        "BEGIN; CREATE TABLE qs_tx (a int); INSERT INTO qs_tx VALUES (7)",
    )
    .await;
    let text = ok(&s, "SELECT a FROM qs_tx").await;
    assert!(text.contains('7'), "{text}");
    ok(&s, "ROLLBACK").await;
    let (ran, _) = s.visible("SELECT * FROM qs_tx").await;
    assert!(!ran);
    // psycopg2's form: a savepoint and a write in one string, in a
    // transaction that created the table.
    ok(&s, "BEGIN; CREATE TABLE qs_sp (id int, v text)").await;
    ok(&s, "SAVEPOINT x; INSERT INTO qs_sp VALUES (1, 'a')").await;
    ok(
        &s,
        "ROLLBACK TO SAVEPOINT x; INSERT INTO qs_sp VALUES (2, 'b')",
    )
    .await;
    let text = ok(&s, "SELECT id, v FROM qs_sp").await;
    assert!(text.contains('b') && !text.contains('a'), "{text}");
    ok(&s, "ROLLBACK").await;
    // COMMIT inside the string commits what came before it.
    ok(
        &s,
        "BEGIN; CREATE TABLE qs_kept (a int); COMMIT; INSERT INTO qs_kept VALUES (3)",
    )
    .await;
    let text = ok(&s, "SELECT a FROM qs_kept; DROP TABLE qs_kept").await;
    assert!(text.contains('3'), "{text}");
    // SET search_path, then a statement resolved under the new path.
    ok(
        &s,
        "CREATE SCHEMA IF NOT EXISTS qs_app; CREATE TABLE IF NOT EXISTS qs_app.items (x int)",
    )
    .await;
    let text = ok(
        &s,
        "SET search_path TO qs_app, public; INSERT INTO items VALUES (5); SELECT x FROM items",
    )
    .await;
    assert!(text.contains('5'), "{text}");
    ok(&s, "RESET search_path; DROP SCHEMA qs_app CASCADE").await;
    // A statement that runs differently outside a transaction block
    // (VACUUM) keeps the string whole: refused as before.
    let (ran, text) = s
        .visible("CREATE TABLE qs_v (a int); INSERT INTO qs_v VALUES (1); VACUUM qs_v")
        .await;
    assert!(!ran && text.contains("uncommitted-ddl"), "{text}");
    // Through asyncpg-style extended protocol the session goes on as usual.
    let rows = s.c.query("SELECT 1::int AS one", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    s.finish();
}

/// A client that goes away while a step of such a string runs ends its
/// session at once, as between statements: pgveil closes the server's
/// connection too, so a server that checks its clients
/// (client_connection_check_interval) stops the statement, instead of
/// pgveil keeping it until the steps are done.
#[tokio::test]
async fn a_client_gone_during_a_long_step_ends_the_session() {
    let proxy = setup();
    let (client, connection) = tokio_postgres::connect(
        &proxy.conn_str("dev", bank::PASSWORD, "bank"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    client
        .batch_execute("SET client_connection_check_interval = 100")
        .await
        .unwrap();
    let running = tokio::spawn(async move {
        let _ = client
            .simple_query(
                "CREATE TEMP TABLE eof_probe (a int); INSERT INTO eof_probe VALUES (1); \
                 SELECT pg_sleep(31) FROM eof_probe",
            )
            .await;
    });
    let sleeping = "SELECT count(*) FROM pg_stat_activity \
                    WHERE query LIKE '%pg_sleep(31) FROM eof_probe%' AND pid <> pg_backend_pid()";
    let count = || {
        cluster()
            .psql_super_db("bank", sleeping)
            .unwrap()
            .trim()
            .to_owned()
    };
    let started = std::time::Instant::now();
    while count() != "1" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the step never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The client's socket closes without a Terminate.
    connection.abort();
    running.abort();
    let gone = std::time::Instant::now();
    while count() != "0" {
        assert!(
            gone.elapsed() < std::time::Duration::from_secs(10),
            "the server still runs the step of a client that left {:?} ago",
            gone.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
