//! The audit trail: one JSON line per session start and end and per
//! statement that touched a protected column or was blocked.
//!
//! Sessions hand entries to a bounded queue: the session's identity and the
//! statement's note shared, not copied, so a statement costs its session no
//! more than a few pointer copies. One writer thread encodes them as lines
//! (the same JSON a [`Record`] reads back), numbers them, chains them (each
//! record carries the SHA-256 of the line before it, across rotated files
//! and restarts) and appends them to the file. When the queue
//! is full, `block` makes sessions wait for the writer, `drop` counts and
//! logs the lost record. Records never carry SQL literals or row values:
//! statements appear as fingerprints.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::meter::{ColumnTouch, Outcome, StatementNote};
use super::Metrics;

/// `prev` of the very first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Records waiting for the writer before `--audit-on-full` applies, unless
/// `--audit-queue` says otherwise.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// How long the writer lets records gather after a burst before it looks
/// again: bounds wake-ups at high rates; a quiet queue is flushed at once.
const LINGER: Duration = Duration::from_millis(5);

/// Under continuous load, written records reach the file at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    File(PathBuf),
    Stdout,
}

/// What happens when the writer falls behind and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Statements wait for the writer: nothing runs unaudited.
    Block,
    /// The record is dropped, counted and logged.
    Drop,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub target: AuditTarget,
    /// Size at which the file is rotated.
    pub max_size: u64,
    pub on_full: OnFull,
    /// Records the queue holds before `on_full` applies.
    pub queue: usize,
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    SessionStart,
    Statement,
    SessionEnd,
    /// Records lost to a full queue (`--audit-on-full drop`) since the
    /// previous record: the gap is in the chain itself, not only in metrics.
    RecordsDropped,
}

/// Who a session is, repeated in each of its records so every line stands
/// on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    pub session: String,
    pub client: String,
    pub role: String,
    /// The policy roles the login role matched (itself or by membership).
    pub policy_roles: Vec<String>,
    pub database: String,
    pub application: String,
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain, from 1, continuing across files and restarts.
    pub seq: u64,
    pub time: String,
    pub event: Event,
    pub session: String,
    pub client: String,
    pub role: String,
    pub policy_roles: Vec<String>,
    pub database: String,
    pub application: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnTouch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// session_end: how the session ended and how many statements it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<u64>,
    /// records_dropped: how many records were lost here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Hex SHA-256 of the previous line (without its newline).
    pub prev: String,
}

/// A record as a session hands it over: who and what are shared with the
/// session, and the writer stamps `seq` and `prev` and encodes the line.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub event: Event,
    pub who: Arc<SessionIdentity>,
    /// The statement's fingerprint, protocol and protected columns.
    pub note: Option<Arc<StatementNote>>,
    pub rows: Option<u64>,
    pub outcome: Option<Outcome>,
    pub rule: Option<String>,
    pub end_reason: Option<&'static str>,
    pub statements: Option<u64>,
    pub dropped: Option<u64>,
}

impl Entry {
    pub fn new(event: Event, who: &Arc<SessionIdentity>) -> Entry {
        Entry {
            time: SystemTime::now(),
            event,
            who: Arc::clone(who),
            note: None,
            rows: None,
            outcome: None,
            rule: None,
            end_reason: None,
            statements: None,
            dropped: None,
        }
    }

    /// The record this entry becomes at `seq` after `prev`: what a reader
    /// of the line gets back.
    pub fn to_record(&self, seq: u64, prev: &str) -> Record {
        let fp = self.note.as_ref().and_then(|n| n.fingerprint.as_ref());
        Record {
            seq,
            time: super::clock::rfc3339(self.time),
            event: self.event,
            session: self.who.session.clone(),
            client: self.who.client.clone(),
            role: self.who.role.clone(),
            policy_roles: self.who.policy_roles.clone(),
            database: self.who.database.clone(),
            application: self.who.application.clone(),
            fingerprint: fp.map(|f| f.text.clone()),
            fingerprint_sha256: fp.map(|f| f.hash.clone()),
            protocol: self.note.as_ref().map(|n| protocol(n).to_string()),
            columns: self
                .note
                .as_ref()
                .map(|n| n.columns.clone())
                .unwrap_or_default(),
            rows: self.rows,
            outcome: self.outcome,
            rule: self.rule.clone(),
            end_reason: self.end_reason.map(str::to_string),
            statements: self.statements,
            dropped: self.dropped,
            prev: prev.to_string(),
        }
    }

    /// Appends the line of this entry at `seq` after `prev` (no newline):
    /// byte for byte what `serde_json` makes of [`Entry::to_record`], without
    /// building the record.
    fn encode(
        &self,
        seq: u64,
        prev: &str,
        time: &mut String,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        time.clear();
        super::clock::write_rfc3339(self.time, time);
        let fp = self.note.as_ref().and_then(|n| n.fingerprint.as_ref());
        let line = Line {
            seq,
            time,
            event: self.event,
            session: &self.who.session,
            client: &self.who.client,
            role: &self.who.role,
            policy_roles: &self.who.policy_roles,
            database: &self.who.database,
            application: &self.who.application,
            fingerprint: fp.map(|f| f.text.as_str()),
            fingerprint_sha256: fp.map(|f| f.hash.as_str()),
            protocol: self.note.as_ref().map(|n| protocol(n)),
            columns: self.note.as_ref().map_or(&[], |n| &n.columns),
            rows: self.rows,
            outcome: self.outcome,
            rule: self.rule.as_deref(),
            end_reason: self.end_reason,
            statements: self.statements,
            dropped: self.dropped,
            prev,
        };
        serde_json::to_writer(out, &line)
    }
}

fn protocol(note: &StatementNote) -> &'static str {
    if note.extended {
        "extended"
    } else {
        "simple"
    }
}

/// [`Record`]'s fields, in its order and with its rules, borrowed.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    time: &'a str,
    event: Event,
    session: &'a str,
    client: &'a str,
    role: &'a str,
    policy_roles: &'a [String],
    database: &'a str,
    application: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ColumnTouch]>::is_empty")]
    columns: &'a [ColumnTouch],
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    statements: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
    prev: &'a str,
}

/// Hex SHA-256 of one line.
pub fn line_hash(line: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    write_line_hash(line, &mut hex);
    hex
}

/// [`line_hash`] into a string the caller keeps.
fn write_line_hash(line: &[u8], hex: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    hex.clear();
    for b in Sha256::digest(line) {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// A process-unique session id: a random prefix per process and a counter.
pub fn next_session_id() -> String {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(rand::random::<u32>);
    format!("{prefix:08x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The sending side, cloned into every session.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Entry>,
    on_full: OnFull,
    metrics: Arc<Metrics>,
    last_drop_warning: Arc<AtomicU64>,
    /// Dropped since the writer last recorded a gap; shared with it.
    unrecorded_drops: Arc<AtomicU64>,
}

impl AuditLog {
    /// Queues an entry. With `block` this waits while the queue is full.
    pub async fn send(&self, record: Entry) {
        match self.on_full {
            OnFull::Block => {
                if self.tx.send(record).await.is_err() {
                    self.dropped("the audit writer stopped");
                }
            }
            OnFull::Drop => match self.tx.try_send(record) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.dropped("the audit queue is full"),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.dropped("the audit writer stopped")
                }
            },
        }
    }

    fn dropped(&self, why: &str) {
        self.metrics
            .audit_records
            .with_label_values(&["dropped"])
            .inc();
        self.unrecorded_drops.fetch_add(1, Ordering::Relaxed);
        // One warning per 10 s is enough to be noticed without flooding.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason = why,
                "audit records dropped (see pgveil_audit_records_total{{outcome=\"dropped\"}}); use --audit-on-full block to make statements wait instead"
            );
        }
    }
}

/// Handle to join the writer thread at shutdown.
pub struct AuditWriter {
    thread: std::thread::JoinHandle<()>,
}

impl AuditWriter {
    /// Waits (blocking) until every queued record is written. Call after
    /// every [`AuditLog`] clone is dropped.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Opens the audit target, recovers the chain from what is already there,
/// and starts the writer thread.
pub fn start(
    settings: &AuditSettings,
    metrics: Arc<Metrics>,
) -> io::Result<(AuditLog, AuditWriter)> {
    let mut sink = Sink::open(settings)?;
    // Both series exist from the start, so alerts on them see a zero first.
    for outcome in ["written", "dropped"] {
        metrics.audit_records.with_label_values(&[outcome]);
    }
    let (tx, mut rx) = mpsc::channel::<Entry>(settings.queue.max(1));
    let writer_metrics = metrics.clone();
    let unrecorded_drops = Arc::new(AtomicU64::new(0));
    let drops = unrecorded_drops.clone();
    let thread = std::thread::Builder::new()
        .name("pgveil-audit".into())
        .spawn(move || {
            let m = writer_metrics;
            let written = m.audit_records.with_label_values(&["written"]);
            while let Some(first) = rx.blocking_recv() {
                let mut next = Some(first);
                let mut flushed = Instant::now();
                loop {
                    while let Some(record) = next {
                        // Drops happen only while the queue is full, so the
                        // gap is noted before the records that follow it.
                        sink.note_drops(&drops, &m);
                        sink.append(&record, &m);
                        written.inc();
                        next = rx.try_recv().ok();
                    }
                    m.audit_queue.set(rx.len() as i64);
                    if flushed.elapsed() >= FLUSH_EVERY {
                        sink.flush(&m);
                        flushed = Instant::now();
                    }
                    // Under load, let records queue for a moment instead of
                    // having every session wake this thread for each one.
                    std::thread::sleep(LINGER);
                    match rx.try_recv() {
                        Ok(r) => next = Some(r),
                        Err(_) => break,
                    }
                }
                sink.flush(&m);
            }
            sink.note_drops(&drops, &m);
            sink.flush(&m);
            tracing::info!(
                seq = sink.seq,
                sha256 = %sink.prev,
                "audit log closed; chain head"
            );
        })?;
    Ok((
        AuditLog {
            tx,
            on_full: settings.on_full,
            metrics,
            last_drop_warning: Arc::new(AtomicU64::new(0)),
            unrecorded_drops,
        },
        AuditWriter { thread },
    ))
}

/// The open audit file (or stdout) and the chain state.
struct Sink {
    target: AuditTarget,
    out: BufWriter<Box<dyn Write + Send>>,
    size: u64,
    max_size: u64,
    /// A regular file: rotated by size. A pipe or device is written as is.
    rotatable: bool,
    /// Seq of the last record written.
    seq: u64,
    /// Hash of the last line written.
    prev: String,
    /// Reused for every line: the writer allocates nothing per record.
    line: Vec<u8>,
    time: String,
}

impl Sink {
    fn open(settings: &AuditSettings) -> io::Result<Sink> {
        let mut rotatable = false;
        let (out, size, seq, prev): (Box<dyn Write + Send>, u64, u64, String) =
            match &settings.target {
                AuditTarget::Stdout => (Box::new(io::stdout()), 0, 0, GENESIS.to_string()),
                // A named pipe to a log shipper (or a device): it cannot be
                // read back for the chain head nor renamed to rotate; the
                // chain starts anew and the reader keeps the files.
                AuditTarget::File(path)
                    if std::fs::metadata(path).is_ok_and(|m| !m.file_type().is_file()) =>
                {
                    let file = OpenOptions::new().append(true).open(path)?;
                    (Box::new(file), 0, 0, GENESIS.to_string())
                }
                AuditTarget::File(path) => {
                    rotatable = true;
                    let (seq, prev, needs_newline) = recover_chain(path)?;
                    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
                    if needs_newline {
                        // A line cut short by a crash stays (verify reports
                        // it); the next record starts on its own line.
                        file.write_all(b"\n")?;
                    }
                    let size = file.metadata()?.len();
                    (Box::new(file), size, seq, prev)
                }
            };
        Ok(Sink {
            target: settings.target.clone(),
            out: BufWriter::with_capacity(64 * 1024, out),
            size,
            max_size: settings.max_size,
            rotatable,
            seq,
            prev,
            line: Vec::with_capacity(1024),
            time: String::with_capacity(32),
        })
    }

    fn append(&mut self, entry: &Entry, m: &Metrics) {
        let seq = self.seq + 1;
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        // An entry always encodes; keep the chain intact regardless.
        if entry
            .encode(seq, &self.prev, &mut self.time, &mut line)
            .is_err()
        {
            self.line = line;
            return;
        }
        let mut failures = 0u32;
        loop {
            let result = self
                .out
                .write_all(&line)
                .and_then(|_| self.out.write_all(b"\n"));
            match result {
                Ok(()) => break,
                Err(e) => {
                    m.audit_write_errors.inc();
                    if failures % 60 == 0 {
                        tracing::error!(error = %e, "cannot write the audit log; retrying (sessions wait or records are dropped per --audit-on-full)");
                    }
                    failures += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.seq = seq;
        write_line_hash(&line, &mut self.prev);
        self.size += line.len() as u64 + 1;
        self.line = line;
        if self.rotatable && self.size >= self.max_size {
            self.rotate(m);
        }
    }

    /// Writes a `records_dropped` record if sessions dropped any since the
    /// last one.
    fn note_drops(&mut self, drops: &AtomicU64, m: &Metrics) {
        let n = drops.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let process = Arc::new(SessionIdentity {
            session: String::new(),
            client: String::new(),
            role: String::new(),
            policy_roles: Vec::new(),
            database: String::new(),
            application: String::new(),
        });
        let mut e = Entry::new(Event::RecordsDropped, &process);
        e.dropped = Some(n);
        self.append(&e, m);
    }

    fn flush(&mut self, m: &Metrics) {
        if let Err(e) = self.out.flush() {
            m.audit_write_errors.inc();
            tracing::error!(error = %e, "cannot flush the audit log");
        }
    }

    /// Renames the full file to `PATH.<seq of its last record>` and starts
    /// an empty one; the chain continues into it.
    fn rotate(&mut self, m: &Metrics) {
        let AuditTarget::File(path) = self.target.clone() else {
            return;
        };
        let path = path.as_path();
        self.flush(m);
        let rotated = rotated_name(path, self.seq);
        if let Err(e) = std::fs::rename(path, &rotated) {
            m.audit_write_errors.inc();
            tracing::error!(error = %e, file = %path.display(), "cannot rotate the audit log; it keeps growing");
            return;
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, Box::new(file));
                self.size = 0;
                // Logged elsewhere than the audit file: an anchor for the
                // chain that an editor of the audit files cannot rewrite.
                tracing::info!(file = %rotated.display(), seq = self.seq, sha256 = %self.prev, "audit log rotated; chain head");
            }
            Err(e) => {
                m.audit_write_errors.inc();
                tracing::error!(error = %e, file = %path.display(), "cannot open a new audit log after rotation");
                // Keep writing into the rotated file rather than lose records.
                if let Ok(file) = OpenOptions::new().append(true).open(&rotated) {
                    self.out = BufWriter::with_capacity(64 * 1024, Box::new(file));
                }
            }
        }
    }
}

/// `audit.log` -> `audit.log.000000001234`: names sort in chain order.
pub fn rotated_name(path: &Path, last_seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{last_seq:012}"));
    PathBuf::from(name)
}

/// The newest rotated sibling of `path`, if any.
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name()?.to_string_lossy().into_owned();
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(suffix) = name.strip_prefix(&format!("{base}.")) else {
            continue;
        };
        let Ok(n) = suffix.parse::<u64>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Where the chain stands in an existing file (or, when it is empty or
/// missing, in the newest rotated file): the last seq, the hash of the last
/// line, and whether the file ends mid-line.
fn recover_chain(path: &Path) -> io::Result<(u64, String, bool)> {
    let (tail, cut) = match read_tail(path)? {
        Some(t) => t,
        None => match newest_rotated(path) {
            Some(rotated) => match read_tail(&rotated)? {
                Some((t, _)) => (t, false),
                None => return Ok((0, GENESIS.to_string(), false)),
            },
            None => return Ok((0, GENESIS.to_string(), false)),
        },
    };
    let lines: Vec<&[u8]> = tail
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let Some(last) = lines.last() else {
        return Ok((0, GENESIS.to_string(), cut));
    };
    // The seq of the last line that still parses; a damaged last line is
    // chained over by hash all the same.
    let seq = lines
        .iter()
        .rev()
        .find_map(|l| serde_json::from_slice::<Record>(l).ok())
        .map(|r| r.seq)
        .unwrap_or(0);
    Ok((
        seq + u64::from(cut || serde_json::from_slice::<Record>(last).is_err()),
        line_hash(last),
        cut,
    ))
}

/// The last 1 MiB of a non-empty file, and whether it ends mid-line.
fn read_tail(path: &Path) -> io::Result<Option<(Vec<u8>, bool)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if start > 0 {
        // Drop the partial first line.
        if let Some(i) = tail.iter().position(|&b| b == b'\n') {
            tail.drain(..=i);
        }
    }
    let cut = tail.last() != Some(&b'\n');
    Ok(Some((tail, cut)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::verify::verify_files;

    fn who() -> SessionIdentity {
        SessionIdentity {
            session: next_session_id(),
            client: "127.0.0.1:1".into(),
            role: "alice".into(),
            policy_roles: vec![],
            database: "bank".into(),
            application: String::new(),
        }
    }

    async fn write_records(settings: &AuditSettings, n: usize) {
        let (log, writer) = start(settings, Metrics::new()).unwrap();
        for _ in 0..n {
            log.send(Entry::new(Event::SessionStart, &Arc::new(who())))
                .await;
        }
        drop(log);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .unwrap();
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        f.sort();
        f
    }

    /// The writer's encoder and the reader's type agree byte for byte, so
    /// `verify` and `report` read every line the writer writes.
    #[test]
    fn encoded_lines_are_records_serialised() {
        use crate::observe::fingerprint::fingerprint;
        use crate::observe::meter::Decision;
        let who = Arc::new(SessionIdentity {
            session: "s\"1".into(),
            client: "[::1]:5000".into(),
            role: "Ålice \\ \u{7}".into(),
            policy_roles: vec!["analyst".into(), "teller".into()],
            database: "bank".into(),
            application: "psql\n".into(),
        });
        let note = Arc::new(StatementNote {
            fingerprint: Some(fingerprint("SELECT \"名\" FROM t WHERE a = 'x'")),
            columns: vec![
                ColumnTouch {
                    column: "public.customers.id_number".into(),
                    class: Some("C3".into()),
                    decision: Decision::Masked,
                    mask: Some("cn_id_card".into()),
                    outputs: 2,
                    filter: true,
                },
                ColumnTouch {
                    column: "public.cards.cvv".into(),
                    class: None,
                    decision: Decision::Denied,
                    mask: None,
                    outputs: 0,
                    filter: false,
                },
            ],
            extended: true,
        });
        let mut entries = vec![Entry::new(Event::SessionStart, &who)];
        let mut statement = Entry::new(Event::Statement, &who);
        statement.note = Some(note.clone());
        statement.rows = Some(7);
        statement.outcome = Some(Outcome::Masked);
        entries.push(statement.clone());
        statement.outcome = Some(Outcome::Blocked);
        statement.rule = Some("deny-column".into());
        statement.rows = Some(0);
        entries.push(statement);
        let mut end = Entry::new(Event::SessionEnd, &who);
        end.end_reason = Some("client_terminated");
        end.statements = Some(3);
        entries.push(end);
        let mut gap = Entry::new(Event::RecordsDropped, &who);
        gap.dropped = Some(12);
        entries.push(gap);
        let (mut time, mut line) = (String::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            line.clear();
            e.encode(i as u64 + 1, GENESIS, &mut time, &mut line)
                .unwrap();
            let record = e.to_record(i as u64 + 1, GENESIS);
            assert_eq!(
                String::from_utf8(line.clone()).unwrap(),
                serde_json::to_string(&record).unwrap()
            );
            assert_eq!(serde_json::from_slice::<Record>(&line).unwrap(), record);
        }
    }

    #[test]
    fn line_hash_is_hex_sha256() {
        assert_eq!(
            line_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn chain_survives_rotation_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let settings = AuditSettings {
            target: AuditTarget::File(path.clone()),
            max_size: 4096,
            on_full: OnFull::Block,
            queue: QUEUE_CAPACITY,
        };
        write_records(&settings, 30).await;
        // A restart continues the chain of the files already there.
        write_records(&settings, 30).await;
        let all = files(dir.path());
        assert!(all.len() >= 3, "rotated: {all:?}");
        let v = verify_files(&all).unwrap();
        assert_eq!((v.records, v.first_seq, v.last_seq), (60, 1, 60));
        // Rotated names sort in chain order and end at their last seq.
        let first_rotated = &all[1];
        let text = std::fs::read_to_string(first_rotated).unwrap();
        let last: Record = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(first_rotated
            .to_string_lossy()
            .ends_with(&format!(".{:012}", last.seq)));
        // Removing a whole rotated file from the middle is named.
        let without: Vec<PathBuf> = all.iter().filter(|p| *p != &all[2]).cloned().collect();
        let e = verify_files(&without).unwrap_err().0;
        assert!(e.contains("missing"), "{e}");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_in_drop_mode() {
        let metrics = Metrics::new();
        let (tx, _rx) = mpsc::channel(1);
        let log = AuditLog {
            tx,
            on_full: OnFull::Drop,
            metrics: metrics.clone(),
            last_drop_warning: Arc::new(AtomicU64::new(0)),
            unrecorded_drops: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..3 {
            log.send(Entry::new(Event::SessionStart, &Arc::new(who())))
                .await;
        }
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("pgveil_audit_records_total{outcome=\"dropped\"} 2"),
            "{text}"
        );
    }
}
