//! Probing pgveil as an attacker would: sessions that collect everything a
//! client can read (rows, errors, notices, notifications) and a raw protocol
//! client, with checks that no raw value of the bank fixture gets through.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use super::bank::{PASSWORD, SECRETS};
use super::Proxy;

/// A client whose notices and notifications are kept for inspection.
pub struct Session {
    pub c: tokio_postgres::Client,
    async_msgs: Arc<Mutex<Vec<String>>>,
    /// Leaks seen so far: reported all at once by `finish`.
    pub leaks: Mutex<Vec<String>>,
}

impl Session {
    /// Connects through `proxy` as `role` of the fixture.
    pub async fn connect(proxy: &Proxy, role: &str) -> Session {
        let conn_str = proxy.conn_str(role, PASSWORD, "bank");
        let (c, mut conn) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        let async_msgs = Arc::new(Mutex::new(Vec::new()));
        let sink = async_msgs.clone();
        tokio::spawn(async move {
            let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = stream.next().await {
                let text = match m {
                    AsyncMessage::Notice(n) => format!(
                        "NOTICE {} {} {} {} {} {} {} {} {} {}",
                        n.code().code(),
                        n.message(),
                        n.detail().unwrap_or_default(),
                        n.hint().unwrap_or_default(),
                        n.where_().unwrap_or_default(),
                        n.schema().unwrap_or_default(),
                        n.table().unwrap_or_default(),
                        n.column().unwrap_or_default(),
                        n.datatype().unwrap_or_default(),
                        n.constraint().unwrap_or_default(),
                    ),
                    AsyncMessage::Notification(n) => {
                        format!("NOTIFY {} {}", n.channel(), n.payload())
                    }
                    _ => String::new(),
                };
                sink.lock().unwrap().push(text);
            }
        });
        Session {
            c,
            async_msgs,
            leaks: Mutex::new(Vec::new()),
        }
    }

    pub fn drain_async(&self) -> String {
        std::mem::take(&mut *self.async_msgs.lock().unwrap()).join("\n")
    }

    /// Everything the client could read from a simple query: rows, command
    /// tags, error fields, notices.
    pub async fn visible(&self, sql: &str) -> (bool, String) {
        let res = self.c.simple_query(sql).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let notices = self.drain_async();
        let (ok, text) = match res {
            Ok(msgs) => (true, simple_text(&msgs)),
            Err(e) => (false, error_text(&e)),
        };
        (ok, format!("{text}\n{notices}"))
    }

    /// Runs `sql` and records a leak if anything visible carries a secret.
    pub async fn attack(&self, sql: &str) -> (bool, String) {
        let (ok, text) = self.visible(sql).await;
        self.check(sql, &text);
        (ok, text)
    }

    /// Runs `sql` through the simple and the extended protocol: both must
    /// be refused by pgveil itself (42501 naming pgveil, not the server's
    /// own refusal), and nothing visible may carry a raw value. Each
    /// attempt is rolled back so the next one starts clean.
    pub async fn refused(&self, sql: &str) {
        let (ok, text) = self.attack(sql).await;
        if ok || !text.contains("42501") || !text.contains("pgveil") {
            self.leaks
                .lock()
                .unwrap()
                .push(format!("NOT REFUSED (simple): `{sql}` -> {text}"));
        }
        let _ = self.c.simple_query("ROLLBACK").await;
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
        let _ = self.c.simple_query("ROLLBACK").await;
    }

    /// Runs `sql` through the simple protocol and, when `extended`, the
    /// extended one too, each in a transaction rolled back after it, and
    /// records a false block for each that fails.
    pub async fn works_rolled_back(&self, sql: &str, extended: bool) {
        self.exec("BEGIN").await;
        let (ok, text) = self.attack(sql).await;
        if !ok {
            self.leaks
                .lock()
                .unwrap()
                .push(format!("FALSE BLOCK (simple): `{sql}` -> {text}"));
        }
        let _ = self.c.simple_query("ROLLBACK").await;
        if !extended {
            return;
        }
        self.exec("BEGIN").await;
        if let Err(e) = self.c.query(sql, &[]).await {
            self.leaks.lock().unwrap().push(format!(
                "FALSE BLOCK (extended): `{sql}` -> {}",
                error_text(&e)
            ));
        }
        let _ = self.c.simple_query("ROLLBACK").await;
    }

    pub fn check(&self, what: &str, text: &str) {
        if let Some(leak) = find_secret(what, text) {
            self.leaks.lock().unwrap().push(leak);
        }
    }

    /// Fails the test with every leak recorded.
    pub fn finish(&self) {
        let leaks = self.leaks.lock().unwrap();
        assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    }

    pub async fn exec(&self, sql: &str) {
        self.c
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    }
}

pub fn simple_text(msgs: &[SimpleQueryMessage]) -> String {
    let mut out = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::Row(r) => {
                for i in 0..r.len() {
                    out.push(r.get(i).unwrap_or("NULL").to_string());
                }
            }
            SimpleQueryMessage::CommandComplete(n) => out.push(format!("[rows {n}]")),
            _ => {}
        }
    }
    out.join("|")
}

pub fn error_text(e: &tokio_postgres::Error) -> String {
    let db = e.as_db_error();
    // Every field a client library exposes, object names included (PL/pgSQL
    // can set those to any text with RAISE … USING COLUMN = …).
    format!(
        "ERROR {} {} {} {} {} {} {} {} {} {} {} {}",
        e,
        db.map(|d| d.code().code()).unwrap_or_default(),
        db.map(|d| d.message()).unwrap_or_default(),
        db.and_then(|d| d.detail()).unwrap_or_default(),
        db.and_then(|d| d.hint()).unwrap_or_default(),
        db.and_then(|d| d.where_()).unwrap_or_default(),
        db.and_then(|d| d.schema()).unwrap_or_default(),
        db.and_then(|d| d.table()).unwrap_or_default(),
        db.and_then(|d| d.column()).unwrap_or_default(),
        db.and_then(|d| d.datatype()).unwrap_or_default(),
        db.and_then(|d| d.constraint()).unwrap_or_default(),
        db.and_then(|d| d.position())
            .map(|p| format!("{p:?}"))
            .unwrap_or_default(),
    )
}

pub fn find_secret(what: &str, text: &str) -> Option<String> {
    SECRETS
        .iter()
        .find(|secret| text.contains(*secret))
        .map(|secret| format!("LEAK of {secret} through `{what}`: {text}"))
}

pub fn assert_no_secret(what: &str, text: &str) {
    if let Some(leak) = find_secret(what, text) {
        panic!("{leak}");
    }
}

// ---------------------------------------------------------------------------
// Raw protocol client (trust-authenticated role `dave_trust`, which no rule
// names and so gets every default mask, like `dev`).

pub struct Raw {
    s: TcpStream,
}

pub fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

impl Raw {
    pub fn connect(proxy: &Proxy, user: &str) -> Raw {
        Raw::connect_db(proxy, user, "bank").0
    }

    /// A trust-authenticated session on `db`, with the messages of its
    /// startup (BackendKeyData, ParameterStatus …).
    pub fn connect_db(proxy: &Proxy, user: &str, db: &str) -> (Raw, Vec<(u8, Vec<u8>)>) {
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", db)] {
            body.extend(cstr(k));
            body.extend(cstr(v));
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        s.write_all(&startup).unwrap();
        let mut raw = Raw { s };
        let out = raw.read_until_ready();
        assert!(
            !out.iter().any(|(t, _)| *t == b'E'),
            "startup failed: {out:?}"
        );
        (raw, out)
    }

    /// The PID of the BackendKeyData among startup messages.
    pub fn key_pid(startup: &[(u8, Vec<u8>)]) -> i32 {
        let (_, body) = startup
            .iter()
            .find(|(t, _)| *t == b'K')
            .expect("BackendKeyData");
        i32::from_be_bytes([body[0], body[1], body[2], body[3]])
    }

    /// The first column of the first DataRow, as text.
    pub fn first_value(msgs: &[(u8, Vec<u8>)]) -> Option<String> {
        let (_, body) = msgs.iter().find(|(t, _)| *t == b'D')?;
        let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
        let len = usize::try_from(len).ok()?;
        Some(String::from_utf8_lossy(body.get(6..6 + len)?).into_owned())
    }

    /// The sender PID of the first NotificationResponse.
    pub fn notification_pid(msgs: &[(u8, Vec<u8>)]) -> Option<i32> {
        let (_, body) = msgs.iter().find(|(t, _)| *t == b'A')?;
        Some(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn read_msg(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        self.s.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.s.read_exact(&mut body).unwrap();
        (head[0], body)
    }

    pub fn read_until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let (t, b) = self.read_msg();
            let done = t == b'Z';
            out.push((t, b));
            if done {
                return out;
            }
        }
    }

    pub fn query(&mut self, sql: &str) -> Vec<(u8, Vec<u8>)> {
        self.send(&msg(b'Q', &cstr(sql)));
        self.read_until_ready()
    }

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = cstr(name);
        b.extend(cstr(sql));
        b.extend(0i16.to_be_bytes());
        msg(b'P', &b)
    }

    pub fn bind(portal: &str, stmt: &str, result_format: i16) -> Vec<u8> {
        let mut b = cstr(portal);
        b.extend(cstr(stmt));
        b.extend(0i16.to_be_bytes());
        b.extend(0i16.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(result_format.to_be_bytes());
        msg(b'B', &b)
    }

    pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut b = cstr(portal);
        b.extend(max_rows.to_be_bytes());
        msg(b'E', &b)
    }

    pub fn describe(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        b.extend(cstr(name));
        msg(b'D', &b)
    }

    pub fn close(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        b.extend(cstr(name));
        msg(b'C', &b)
    }

    pub fn sync() -> Vec<u8> {
        msg(b'S', &[])
    }
}

pub fn raw_bytes(msgs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut all = Vec::new();
    for (t, b) in msgs {
        all.push(*t);
        all.extend_from_slice(b);
    }
    all
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub fn assert_raw_no_secret(what: &str, msgs: &[(u8, Vec<u8>)]) {
    let all = raw_bytes(msgs);
    for secret in SECRETS {
        assert!(
            !contains(&all, secret.as_bytes()),
            "LEAK of {secret} through {what}: {}",
            String::from_utf8_lossy(&all)
        );
    }
}
