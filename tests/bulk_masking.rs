//! Masked bulk reads through pgveil, as bench/bulk.sh runs them: thousands
//! of rows of `big`, six of eight columns masked, read with the simple
//! protocol (text), the extended protocol (binary) and `COPY … TO STDOUT`.
//! The client must receive exactly what a view computing the same masks in
//! SQL returns on a direct connection: every row, every byte. And the cold
//! path before the rows: a new statement is analysed once per message.

mod common;

use std::sync::OnceLock;

use common::{cluster, connect, Proxy, SUPERUSER_PASSWORD};
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::SimpleQueryMessage;

const READER: &str = "bulk_reader";
const PASSWORD: &str = "reader-pw";

const SCHEMA: &str = "
CREATE TABLE big (
  id bigint PRIMARY KEY, name text, id_number text, phone text, email text,
  income numeric(12,2), birth date, branch text);
INSERT INTO big
SELECT i,
  CASE WHEN i % 97 = 0 THEN 'Li Na' ELSE
    (ARRAY['王','李','张','刘','陈'])[1 + i % 5] || (ARRAY['伟','芳','娜','敏'])[1 + (i / 5) % 4]
    || CASE WHEN i % 3 = 0 THEN '' ELSE '明' END END,
  lpad((110000 + i % 600000)::text, 6, '0') || to_char(date '1950-01-01' + (i % 20000), 'YYYYMMDD')
    || lpad((i % 1000)::text, 3, '0') || (ARRAY['0','1','2','X'])[1 + i % 4],
  CASE WHEN i % 11 = 0 THEN NULL ELSE '1' || (ARRAY['3','5','8'])[1 + i % 3]
    || lpad((i * 7919 % 1000000000)::text, 9, '0') END,
  CASE WHEN i % 7 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,
  CASE WHEN i % 13 = 0 THEN -(i * 3701 % 100000000)::numeric / 100
       ELSE (i * 3701 % 100000000)::numeric / 100 END,
  date '1950-01-01' + (i % 20000),
  'branch-' || (i % 200)
FROM generate_series(1, 3000) i;
-- The same masks computed in the database, as in-database masking does.
CREATE VIEW big_masked AS SELECT id,
  left(name, 1) || repeat('*', char_length(name) - 1) AS name,
  left(id_number, 6) || repeat('*', char_length(id_number) - 10) || right(id_number, 4) AS id_number,
  left(phone, 3) || '****' || right(phone, 4) AS phone,
  left(email, 1) || repeat('*', strpos(email, '@') - 2) || substr(email, strpos(email, '@')) AS email,
  (floor(income / 10000) * 10000)::numeric(12,2) AS income,
  date_trunc('year', birth)::date AS birth,
  branch
FROM big WHERE id % 97 <> 0;
";

const POLICY: &str = "version: 1
columns:
  public.big.name:
    mask: cn_name
  public.big.id_number:
    mask: cn_id_card
  public.big.phone:
    mask: cn_mobile
  public.big.email:
    mask: email
  public.big.income:
    mask: { fn: bucket, width: 10000 }
  public.big.birth:
    mask: { fn: date_trunc, unit: year }
";

struct Fixture {
    proxy: Proxy,
    policies: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let c = cluster();
        c.psql_super("CREATE DATABASE bulk").unwrap();
        c.psql_super_db("bulk", SCHEMA).unwrap();
        c.psql_super_db(
            "bulk",
            &format!(
                "CREATE ROLE {READER} LOGIN PASSWORD '{PASSWORD}';
                 GRANT SELECT ON big, big_masked TO {READER};"
            ),
        )
        .unwrap();
        let policies = tempfile::tempdir().unwrap();
        std::fs::write(policies.path().join("big.yaml"), POLICY).unwrap();
        let dir = policies.path().to_str().unwrap().to_string();
        let proxy = Proxy::start_with_env(
            &["--policies", &dir, "--catalog-user", "postgres"],
            &[("PGVEIL_CATALOG_PASSWORD", SUPERUSER_PASSWORD)],
        );
        Fixture { proxy, policies }
    })
}

async fn through_pgveil() -> tokio_postgres::Client {
    let conn = fixture().proxy.conn_str(READER, PASSWORD, "bulk");
    connect(&conn).await.unwrap()
}

async fn direct() -> tokio_postgres::Client {
    fixture();
    let c = cluster();
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres password={SUPERUSER_PASSWORD} dbname=bulk",
        c.port
    );
    connect(&conn).await.unwrap()
}

/// The rows whose names have no separator: the view's SQL mirrors cn_name
/// only for those (`Li Na`, every 97th row, is checked on its own below).
const MASKED: &str = "SELECT * FROM big WHERE id % 97 <> 0 ORDER BY id";
const VIEW: &str = "SELECT * FROM big_masked ORDER BY id";

async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for m in client.simple_query(sql).await.unwrap() {
        if let SimpleQueryMessage::Row(r) = m {
            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    rows
}

/// Any value as the raw bytes of its binary format.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn binary_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<Vec<u8>>>> {
    let stream = client
        .query_raw(sql, std::iter::empty::<i32>())
        .await
        .unwrap();
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await.unwrap() {
        rows.push(
            (0..row.len())
                .map(|i| row.get::<_, Option<Raw>>(i).map(|r| r.0))
                .collect(),
        );
    }
    rows
}

async fn copy_bytes(client: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let stream = client
        .copy_out(&format!("COPY ({sql}) TO STDOUT"))
        .await
        .unwrap();
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

#[tokio::test]
async fn text_rows_equal_the_in_database_masks() {
    let masked = text_rows(&through_pgveil().await, MASKED).await;
    let expected = text_rows(&direct().await, VIEW).await;
    assert!(masked.len() > 2900, "{} rows", masked.len());
    assert_eq!(masked.len(), expected.len());
    for (got, want) in masked.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    // Spot-check the masks a user sees, NULLs included.
    let row7 = masked
        .iter()
        .find(|r| r[0].as_deref() == Some("7"))
        .unwrap();
    assert_eq!(row7[4], None, "NULL email stays NULL");
    assert!(row7[2].as_deref().unwrap().contains("********"));
}

#[tokio::test]
async fn binary_rows_equal_the_in_database_masks() {
    let masked = binary_rows(&through_pgveil().await, MASKED).await;
    let expected = binary_rows(&direct().await, VIEW).await;
    assert!(masked.len() > 2900, "{} rows", masked.len());
    assert_eq!(masked.len(), expected.len());
    for (got, want) in masked.iter().zip(&expected) {
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn copy_rows_equal_the_in_database_masks() {
    let masked = copy_bytes(&through_pgveil().await, MASKED).await;
    let expected = copy_bytes(&direct().await, VIEW).await;
    assert_eq!(masked.iter().filter(|b| **b == b'\n').count(), 2970);
    assert_eq!(
        String::from_utf8_lossy(&masked),
        String::from_utf8_lossy(&expected)
    );
}

#[tokio::test]
async fn names_with_separators_keep_them() {
    let client = through_pgveil().await;
    let sql = "SELECT name FROM big WHERE id = 97";
    let text = text_rows(&client, sql).await;
    assert_eq!(text, vec![vec![Some("L* **".to_string())]]);
    let binary = binary_rows(&client, sql).await;
    assert_eq!(binary, vec![vec![Some(b"L* **".to_vec())]]);
}

/// `pgveil_analysis_duration_seconds_count` by `cache` label (hit, miss).
fn analyses_counted(proxy: &Proxy) -> (u64, u64) {
    let text = proxy.metrics();
    let count = |label: &str| {
        let series = format!("pgveil_analysis_duration_seconds_count{{cache=\"{label}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    (count("hit"), count("miss"))
}

/// A statement seen for the first time is analysed once for its message
/// (the look-up that checks the catalog is the one planning uses) and
/// counted as a cache miss; the same shape again is a cache hit.
#[tokio::test]
async fn a_new_statement_is_analysed_once_and_counted_as_a_miss() {
    // A proxy of its own: its metrics count this test's statements alone.
    let dir = fixture().policies.path().to_str().unwrap().to_string();
    let proxy = Proxy::start_with_env(
        &["--policies", &dir, "--catalog-user", "postgres"],
        &[("PGVEIL_CATALOG_PASSWORD", SUPERUSER_PASSWORD)],
    );
    let client = connect(&proxy.conn_str(READER, PASSWORD, "bulk"))
        .await
        .unwrap();
    assert_eq!(analyses_counted(&proxy), (0, 0));
    let first = text_rows(&client, "SELECT id, phone FROM big WHERE id = 5").await;
    assert_eq!(
        first,
        vec![vec![Some("5".into()), Some("180****9595".into())]]
    );
    assert_eq!(analyses_counted(&proxy), (0, 1), "one miss, no hit");
    // Another literal, same shape: served by the cache.
    text_rows(&client, "SELECT id, phone FROM big WHERE id = 6").await;
    assert_eq!(analyses_counted(&proxy), (1, 1));
    // Extended protocol: the Parse is the new statement; Bind re-plans nothing.
    let sql = "SELECT email FROM big WHERE id = $1";
    let rows = client.query(sql, &[&8i64]).await.unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "u****@example.com");
    assert_eq!(analyses_counted(&proxy), (1, 2));
}

/// Messages larger than one read (128 KiB) arrive whole through a masked
/// session, with masked rows before and after them in the same session.
#[tokio::test]
async fn messages_larger_than_a_read_arrive_whole() {
    let client = through_pgveil().await;
    let before = text_rows(&client, "SELECT phone FROM big WHERE id = 1").await;
    let big = text_rows(
        &client,
        "SELECT repeat('x', 3000000) UNION ALL SELECT repeat('y', 200000) UNION ALL SELECT 'z'",
    )
    .await;
    let lens: Vec<usize> = big
        .iter()
        .map(|r| r[0].as_deref().unwrap_or_default().len())
        .collect();
    assert_eq!(lens, vec![3_000_000, 200_000, 1]);
    assert!(big[0][0].as_deref().unwrap().bytes().all(|b| b == b'x'));
    let copied = copy_bytes(&client, "SELECT repeat('w', 1000000)").await;
    assert_eq!(copied.len(), 1_000_001);
    let after = text_rows(&client, "SELECT phone FROM big WHERE id = 1").await;
    assert_eq!(before, after);
    assert!(after[0][0].as_deref().unwrap().contains("****"));
}
