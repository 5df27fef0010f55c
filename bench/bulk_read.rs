//! Client side of `bench/bulk.sh`: reads one whole result the way a bulk
//! reader would and prints the best wall time of several runs.
//!
//!   bulk_read <conninfo> <mode> <sql> [repeats]
//!
//! Modes: `copy` (`COPY (sql) TO STDOUT`, text format), `text` (simple
//! protocol, text rows streamed), `binary` (extended protocol, every result
//! column in binary). Rows are counted and their bytes summed, never kept,
//! so the client's own cost is the same for every target.

use std::time::{Duration, Instant};

use futures::{pin_mut, TryStreamExt};
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, conninfo, mode, sql, rest @ ..] = args.as_slice() else {
        return Err("usage: bulk_read <conninfo> <copy|text|binary> <sql> [repeats]".into());
    };
    let repeats: usize = rest.first().map_or(Ok(3), |r| r.parse())?;
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(connection);
    let mut best = Duration::MAX;
    let (mut rows, mut bytes) = (0u64, 0u64);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        (rows, bytes) = (0, 0);
        match mode.as_str() {
            "copy" => {
                let stream = client.copy_out(&format!("COPY ({sql}) TO STDOUT")).await?;
                pin_mut!(stream);
                while let Some(chunk) = stream.try_next().await? {
                    rows += 1;
                    bytes += chunk.len() as u64;
                }
            }
            "text" => {
                let stream = client.simple_query_raw(sql).await?;
                pin_mut!(stream);
                while let Some(msg) = stream.try_next().await? {
                    if let SimpleQueryMessage::Row(row) = msg {
                        rows += 1;
                        for i in 0..row.len() {
                            bytes += row.get(i).map_or(0, str::len) as u64;
                        }
                    }
                }
            }
            "binary" => {
                let stream = client
                    .query_raw(sql.as_str(), std::iter::empty::<i32>())
                    .await?;
                pin_mut!(stream);
                while let Some(row) = stream.try_next().await? {
                    rows += 1;
                    for i in 0..row.len() {
                        let raw: Option<RawValue> = row.try_get(i)?;
                        bytes += raw.map_or(0, |r| r.0 as u64);
                    }
                }
            }
            other => return Err(format!("unknown mode {other}").into()),
        }
        best = best.min(start.elapsed());
    }
    println!("{:.4} {rows} {bytes}", best.as_secs_f64());
    Ok(())
}

/// Any column's binary value, kept only as its length.
struct RawValue(usize);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw.len()))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
