//! Client side of `bench/connections.sh`: opens many idle sessions.
//!
//!   idle_conns <host:port> <user> <dbname> <count> <hold-seconds> [sql]
//!
//! Each session is a plain protocol-3 startup with trust authentication,
//! read up to ReadyForQuery, runs `sql` once if given (so a proxy sets up
//! whatever a session that has been used holds), then is left idle. Prints `ready N` once all are
//! up (or as many as succeeded, with the first error), holds them, then
//! sends Terminate on each and exits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (addr, user, db, count, hold, sql) = match args.as_slice() {
        [_, a, u, d, c, h] => (a, u, d, c, h, None),
        [_, a, u, d, c, h, q] => (a, u, d, c, h, Some(q.as_str())),
        _ => {
            return Err(
                "usage: idle_conns <host:port> <user> <dbname> <count> <hold-seconds> [sql]".into(),
            )
        }
    };
    let count: usize = count.parse()?;
    let hold = Duration::from_secs(hold.parse()?);
    let mut sessions = Vec::with_capacity(count);
    let mut first_error = None;
    // Opened in waves so the listen backlog never overflows.
    for wave in (0..count).collect::<Vec<_>>().chunks(100) {
        let opens = wave.iter().map(|_| open(addr, user, db, sql));
        for r in futures::future::join_all(opens).await {
            match r {
                Ok(s) => sessions.push(s),
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    println!("ready {}", sessions.len());
    if let Some(e) = first_error {
        println!("first error: {e}");
    }
    tokio::time::sleep(hold).await;
    for s in &mut sessions {
        let _ = s.write_all(&[b'X', 0, 0, 0, 4]).await;
    }
    Ok(())
}

async fn open(addr: &str, user: &str, db: &str, sql: Option<&str>) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).await?;
    until_ready(&mut s).await?;
    if let Some(sql) = sql {
        let mut q = vec![b'Q'];
        q.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        q.extend_from_slice(sql.as_bytes());
        q.push(0);
        s.write_all(&q).await?;
        until_ready(&mut s).await?;
    }
    Ok(s)
}

/// Reads messages up to ReadyForQuery; an ErrorResponse is an error.
async fn until_ready(s: &mut TcpStream) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let mut rest = vec![0u8; (len as usize).saturating_sub(4)];
        s.read_exact(&mut rest).await?;
        match head[0] {
            b'Z' => return Ok(()),
            b'E' => {
                let text = String::from_utf8_lossy(&rest).replace('\0', " ");
                return Err(std::io::Error::other(text));
            }
            b'R' if rest.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err(std::io::Error::other("server asked for a password"));
            }
            _ => {}
        }
    }
}
