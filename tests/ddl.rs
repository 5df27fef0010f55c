//! Schema changes through pgveil as a masked role: DDL inside transactions
//! (migrations), the incremental catalog refresh, statement kinds that change
//! the schema without moving data, and server-side code definitions.

mod common;

use common::{cluster, connect, SUPERUSER, SUPERUSER_PASSWORD};
use pgveil::analyze::Catalog;

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
        .iter()
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
        .iter()
        .map(|f| format!("{} {}.{} {} {}", f.oid, f.schema, f.name, f.language, f.kind))
        .collect();
    (c.schemas().to_vec(), relations, functions)
}

/// Refreshing only what changed since the last read gives the same catalog
/// as reading it whole, for every kind of change a migration makes.
#[tokio::test]
async fn incremental_refresh_matches_a_full_read() {
    cluster().psql_super("CREATE DATABASE refresh").unwrap();
    let client = connect(&direct("refresh")).await.unwrap();
    let steps: &[&str] = &[
        "CREATE TABLE t1 (id int PRIMARY KEY, a text, b text)",
        "CREATE VIEW v1 AS SELECT id, a FROM t1",
        "CREATE VIEW v2 AS SELECT a FROM v1",
        "ALTER TABLE t1 ADD COLUMN c int",
        "ALTER TABLE t1 RENAME COLUMN a TO a2",
        "ALTER TABLE t1 ALTER COLUMN b TYPE varchar(20)",
        "ALTER TABLE t1 DROP COLUMN c",
        "ALTER TABLE t1 RENAME TO t1_old",
        "CREATE TABLE t1 (id int, secret text)",
        "CREATE SCHEMA s2",
        "CREATE TABLE s2.p (id int, k text) PARTITION BY LIST (k)",
        "CREATE TABLE s2.p_a PARTITION OF s2.p FOR VALUES IN ('a')",
        "ALTER SCHEMA s2 RENAME TO s3",
        "CREATE FUNCTION f1(int) RETURNS int LANGUAGE sql AS 'SELECT $1'",
        "CREATE OR REPLACE FUNCTION f1(int) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT $1 + 1'",
        "CREATE TYPE mood AS ENUM ('a', 'b')",
        "CREATE TABLE t2 (m mood)",
        "ALTER TYPE mood RENAME TO mood2",
        "CREATE SEQUENCE sq",
        "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t1",
        "DROP VIEW v2",
        "CREATE OR REPLACE VIEW v1 AS SELECT id, a2 AS a, b FROM t1_old",
        "DROP FUNCTION f1(int)",
        "DROP SCHEMA s3 CASCADE",
        "BEGIN; CREATE TABLE t3 (x int); ALTER TABLE t3 ADD COLUMN y text; COMMIT",
        "BEGIN; CREATE TABLE t4 (x int); ROLLBACK",
        "DROP TABLE t1_old CASCADE",
    ];
    let mut catalog = Catalog::load(&client).await.unwrap();
    for step in steps {
        client.batch_execute(step).await.unwrap();
        let t = std::time::Instant::now();
        let incremental = catalog.refreshed(&client).await.unwrap();
        let ti = t.elapsed();
        let t = std::time::Instant::now();
        let full = Catalog::load(&client).await.unwrap();
        eprintln!("refresh {ti:?} full {:?}", t.elapsed());
        let (a, b) = (summary(&incremental), summary(&full));
        assert_eq!(a.0, b.0, "schemas after `{step}`");
        let missing: Vec<_> = b.1.iter().filter(|r| !a.1.contains(r)).collect();
        let extra: Vec<_> = a.1.iter().filter(|r| !b.1.contains(r)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "relations after `{step}`: missing {missing:#?}, stale {extra:#?}"
        );
        assert_eq!(a.2, b.2, "functions after `{step}`");
        catalog = incremental;
    }
}

#[test]
#[ignore]
fn print_sql() {
    println!("{}", pgveil::analyze::catalog::CatalogRead::since("1000:1000:").unwrap().sql());
}
