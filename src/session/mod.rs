//! session: the per-connection relay after authentication.
//!
//! Owns message order: it frames every message in both directions, forwards
//! the bytes they arrived in, and is the only place that knows whether the
//! session is idle, in a transaction, or waiting on the server. It never
//! buffers a whole result set: each read is framed and forwarded at once, and
//! writes are batched per read (one write per burst of messages).

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::debug;

pub mod copy_text;
pub mod datarow;
pub mod guard;
pub mod replication;
pub mod runtime;
mod steps;
pub mod wire;

use crate::analyze::policy_view::PolicyView;
use crate::analyze::SessionContext;
use crate::config::Settings;
use crate::net::cancel::CancelKey;
use crate::net::codec::{self, ProxyError};
use crate::net::stream::{give_back, Stream};
use crate::observe::audit::{next_session_id, AuditLog, Event, SessionIdentity};
use crate::observe::meter::{FrameCount, SessionMeter};
use crate::observe::Metrics;
use guard::{Guard, PlanInputs};
use runtime::MaskingRuntime;
use std::sync::Arc;

/// Backend messages may be as large as PostgreSQL allows (1 GiB).
const MAX_BACKEND_MESSAGE: usize = 1 << 30;
/// Read buffer size hint for each direction at the start of a statement.
const READ_CHUNK: usize = 16 * 1024;
/// What the hint grows to while a direction has more queued than one read
/// takes (a bulk result): fewer reads, writes and wake-ups per byte.
const MAX_READ_CHUNK: usize = 128 * 1024;

/// The next read's size hint: doubled while reads come back more than half
/// full (the socket had a backlog), up to `MAX_READ_CHUNK`.
fn next_chunk(chunk: usize, read: usize) -> usize {
    if read > chunk / 2 {
        (chunk * 2).min(MAX_READ_CHUNK)
    } else {
        chunk
    }
}

/// Lifecycle of the process, broadcast to every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Shutting down: a session closes as soon as it is idle.
    Draining,
    /// Drain timeout reached: every session closes now.
    Closing,
}

/// An authenticated connection pair, handed over by `net`.
pub struct SessionIo {
    pub client: Stream,
    pub server: Stream,
    pub cancel_key: CancelKey,
    /// Client bytes read during authentication but not yet forwarded.
    pub client_buf: BytesMut,
    /// The authenticated login role (startup `user`); rules match on it.
    pub user: String,
    pub database: String,
    /// `application_name` of the startup message, for the audit trail.
    pub application: String,
    /// The client's address, for the audit trail.
    pub client_addr: String,
    /// A replication session (the startup's `replication` parameter).
    pub replication: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    ClientTerminated,
    ClientClosed,
    UpstreamClosed,
    ProtocolViolation,
    IdleTimeout,
    Shutdown,
    PolicyUnavailable,
    /// A bug in pgveil (a panic) ended this session; the others go on.
    InternalError,
}

impl SessionEnd {
    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::ClientTerminated => "client_terminated",
            SessionEnd::ClientClosed => "client_closed",
            SessionEnd::UpstreamClosed => "upstream_closed",
            SessionEnd::ProtocolViolation => "protocol_violation",
            SessionEnd::IdleTimeout => "idle_timeout",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::PolicyUnavailable => "policy_unavailable",
            SessionEnd::InternalError => "internal_error",
        }
    }
}

/// Where the conversation stands, from the messages seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conversation {
    /// Status byte of the last ReadyForQuery ('I', 'T' or 'E').
    tx_status: u8,
    /// Query, Sync and FunctionCall messages whose ReadyForQuery is pending.
    awaiting_ready: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Syncs counted since the client's last Execute.
    syncs_since_execute: u32,
    /// The last statement came in a simple Query (not an Execute).
    simple: bool,
    /// The server is reading COPY data: it ignores the client's Syncs.
    copy_in: bool,
    /// Schema DDL completed in the current transaction (by any session,
    /// guarded or not): the shared catalog is stale once it ends.
    schema_changed: bool,
    /// That transaction ended: the relay drops the shared catalog.
    schema_committed: bool,
    /// The guard saw no statement in flight that could make a unique index
    /// (see `Guard::may_make_key`): a CREATE INDEX changes no key, and so
    /// nothing a catalog holds.
    plain_indexes: bool,
}

impl Conversation {
    fn new() -> Self {
        Conversation {
            tx_status: b'I',
            awaiting_ready: 0,
            unsynced: false,
            syncs_since_execute: 0,
            simple: false,
            copy_in: false,
            schema_changed: false,
            schema_committed: false,
            plain_indexes: false,
        }
    }

    fn client_sent(&mut self, ty: u8) {
        match ty {
            b'S' if self.copy_in => {}
            b'Q' | b'S' | b'F' => {
                self.awaiting_ready += 1;
                self.simple = ty == b'Q';
                if ty == b'S' {
                    self.unsynced = false;
                    self.syncs_since_execute += 1;
                }
            }
            b'E' => {
                self.unsynced = true;
                self.syncs_since_execute = 0;
            }
            // Extended-protocol messages; COPY data and Flush are not.
            b'P' | b'B' | b'D' | b'C' => self.unsynced = true,
            b'c' | b'f' => self.copy_in = false,
            _ => {}
        }
    }

    /// CopyInResponse: a Sync sent after the COPY's Execute is read in
    /// copy-in mode and answered by nothing. (If the COPY then fails before
    /// the server read it, one ReadyForQuery more arrives than counted; the
    /// count saturates at zero, so the session still goes idle.)
    fn server_copy_in(&mut self) {
        if !self.simple {
            self.awaiting_ready = self.awaiting_ready.saturating_sub(self.syncs_since_execute);
            self.syncs_since_execute = 0;
        }
        self.copy_in = true;
    }

    fn server_ready(&mut self, status: u8) {
        self.tx_status = status;
        if status == b'I' && self.schema_changed {
            self.schema_changed = false;
            self.schema_committed = true;
        }
        self.awaiting_ready = self.awaiting_ready.saturating_sub(1);
    }

    /// No response pending and the transaction (if any) usable: a guard can
    /// take over the conversation here.
    fn is_between_statements(&self) -> bool {
        self.awaiting_ready == 0 && !self.unsynced && self.tx_status != b'E'
    }

    /// Idle outside any transaction: safe to close for drain or idle timeout.
    fn is_idle(&self) -> bool {
        self.tx_status == b'I' && self.awaiting_ready == 0 && !self.unsynced
    }
}

/// Relays messages until either side ends the session. With a masking
/// runtime, a session whose role has anything masked or denied goes through
/// a [`guard::Guard`]; other sessions forward bytes untouched. Either way
/// its result sets are counted, and its start and end (and, when guarded,
/// its statements touching protected columns) go to the audit trail.
pub async fn relay(
    io: SessionIo,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    phase: watch::Receiver<Phase>,
    runtime: Option<&MaskingRuntime>,
    audit: Option<&AuditLog>,
) -> SessionEnd {
    // The matched policy roles label the session from its first record on.
    let policy_roles = match runtime {
        Some(rt) => rt
            .role_view(&io.user, &io.database)
            .await
            .map(|(_, view)| view.matched_roles().to_vec())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let identity = SessionIdentity {
        session: next_session_id(),
        client: io.client_addr.clone(),
        role: io.user.clone(),
        policy_roles,
        database: io.database.clone(),
        application: io.application.clone(),
    };
    let mut meter = SessionMeter::new(metrics.clone(), identity, audit.cloned());
    if let Some(log) = audit {
        log.send(meter.record(Event::SessionStart)).await;
    }
    let database = io.database.clone();
    if let Some(rt) = runtime {
        rt.session_started(&database);
    }
    let end = relay_messages(io, settings, metrics, phase, runtime, &mut meter).await;
    if let Some(rt) = runtime {
        rt.session_ended(&database);
    }
    if let Some(log) = audit {
        let mut r = meter.record(Event::SessionEnd);
        r.end_reason = Some(end.label());
        r.statements = Some(meter.statements);
        log.send(r).await;
    }
    end
}

async fn relay_messages(
    io: SessionIo,
    settings: &Settings,
    metrics: &Metrics,
    mut phase: watch::Receiver<Phase>,
    runtime: Option<&MaskingRuntime>,
    meter: &mut SessionMeter,
) -> SessionEnd {
    if io.replication {
        return replication::relay(io, metrics, phase).await;
    }
    let SessionIo {
        mut client,
        mut server,
        cancel_key,
        client_buf: mut cbuf,
        user,
        database,
        ..
    } = io;
    let mut framed = FrameCount::default();
    let overhead_in = metrics
        .statement_overhead
        .with_label_values(&["client_to_server"]);
    let overhead_out = metrics
        .statement_overhead
        .with_label_values(&["server_to_client"]);
    let mut sbuf = BytesMut::new();
    // What a guard writes for the client, kept across reads of one result:
    // a fresh buffer per read of a bulk result costs page faults.
    let mut guarded_out = BytesMut::new();
    let (mut cchunk, mut schunk) = (READ_CHUNK, READ_CHUNK);
    let mut state = Conversation::new();
    let mut upstream_sent_fatal = false;
    let limit = settings.max_message_size;
    let to_server = metrics.bytes.with_label_values(&["client_to_server"]);
    let to_client = metrics.bytes.with_label_values(&["server_to_client"]);
    let mut masking = Masking {
        guard: None,
        policy_version: None,
        user,
        database,
        base_generation: None,
        temp_relations: Vec::new(),
        overlay: None,
        audited: meter.audit().is_some(),
    };

    // Bytes that arrived with the last authentication message.
    let mut pending_client = !cbuf.is_empty();
    loop {
        if pending_client {
            pending_client = false;
            // A cancel for what these bytes hold waits until it is sent;
            // COPY data holds no statement (a Ctrl-C of `\copy` goes at once).
            let copying = masking.guard.as_ref().is_some_and(|g| g.copying_in());
            if runtime.is_some() && !copying {
                cancel_key.hold();
            }
            if let Some(rt) = runtime {
                let mut early = BytesMut::new();
                let prepared = masking
                    .prepare(rt, &cbuf, &state, &mut server, &mut sbuf, &mut early)
                    .await;
                let early = match masking.guard_early(&early) {
                    Ok(early) => early,
                    Err(err) => {
                        close_both(&mut client, &mut server, err).await;
                        return SessionEnd::InternalError;
                    }
                };
                if let Err(err) = prepared {
                    let _ = client.write_all(&early).await;
                    close_both(&mut client, &mut server, err).await;
                    return SessionEnd::PolicyUnavailable;
                }
                if !early.is_empty() && client.write_all(&early).await.is_err() {
                    let _ = server.shutdown().await;
                    return SessionEnd::ClientClosed;
                }
            }
            let started = std::time::Instant::now();
            let before = state;
            match frame_client(&mut cbuf, limit, &mut state) {
                Ok((mut frames, mut terminated)) => {
                    // A Query to run one statement at a time, and where the
                    // messages after it start.
                    let mut stepwise = None;
                    // Where the messages start that wait for the server's
                    // answers to the pipeline's earlier segments.
                    let mut wait_at = None;
                    let out = match masking.guard.as_mut() {
                        Some(g) => {
                            let mut out = BytesMut::with_capacity(frames.len() + 64);
                            let guarded = contained(|| {
                                let mut consumed = 0;
                                for msg in codec::frames(&frames) {
                                    if g.waits_for_answers(msg) {
                                        wait_at = Some(consumed);
                                        break;
                                    }
                                    consumed += msg.len();
                                    if msg[0] != b'X' {
                                        g.client_message(msg, &mut out);
                                    }
                                    if let Some(pieces) = g.take_stepwise() {
                                        stepwise = Some((pieces, consumed));
                                        break;
                                    }
                                }
                                g.end_of_batch();
                            });
                            if let Err(err) = guarded {
                                close_both(&mut client, &mut server, err).await;
                                return SessionEnd::InternalError;
                            }
                            out
                        }
                        None => std::mem::take(&mut frames),
                    };
                    let resume = stepwise.as_ref().map(|(_, consumed)| *consumed).or(wait_at);
                    if let Some(consumed) = resume {
                        // The messages after that Query (or from the one that
                        // waits) go back to the buffer: they are prepared and
                        // planned once it has run, as if they had arrived then.
                        let mut rest = BytesMut::from(&frames[consumed..]);
                        if std::mem::take(&mut terminated) {
                            rest.extend_from_slice(&[b'X', 0, 0, 0, 4]);
                        }
                        rest.extend_from_slice(&cbuf);
                        cbuf = rest;
                        state = before;
                        for msg in codec::frames(&frames[..consumed]) {
                            state.client_sent(msg[0]);
                        }
                        pending_client = true;
                    }
                    overhead_in.observe(started.elapsed().as_secs_f64());
                    if let Some(g) = masking.guard.as_mut() {
                        // Blocked statements: recorded before anything moves on.
                        publish(meter, &mut g.observed).await;
                    }
                    if !out.is_empty() {
                        to_server.inc_by(out.len() as u64);
                        // A server that stops reading is running what came
                        // before (a pipeline behind a lock): a held cancel
                        // is meant for that, and goes now rather than after
                        // the server has read everything.
                        let write = server.write_all(&out);
                        tokio::pin!(write);
                        // The write is polled first: when it completes at
                        // once (the usual case) no timer is armed.
                        let written = tokio::select! {
                            biased;
                            written = &mut write => written,
                            _ = tokio::time::sleep(WRITE_STALL) => {
                                cancel_key.release();
                                write.await
                            }
                        };
                        if written.is_err() {
                            return upstream_gone(&mut client, upstream_sent_fatal).await;
                        }
                    }
                    let waits = wait_at.is_some();
                    if let (true, Some(rt)) = (stepwise.is_some() || waits, runtime) {
                        let mut link = steps::Link {
                            client: &mut client,
                            cbuf: &mut cbuf,
                            server: &mut server,
                            sbuf: &mut sbuf,
                            state: &mut state,
                            upstream_sent_fatal: &mut upstream_sent_fatal,
                            meter,
                            cancel: &cancel_key,
                            to_server: &to_server,
                            to_client: &to_client,
                        };
                        let ran = match stepwise {
                            Some((pieces, _)) => {
                                steps::run(pieces, &mut masking, rt, &mut link).await
                            }
                            None => {
                                steps::await_earlier_segments(&mut masking, rt, &mut link).await
                            }
                        };
                        if let Err(end) = ran {
                            return end;
                        }
                        continue;
                    }
                    let copying = masking.guard.as_ref().is_some_and(|g| g.copying_in());
                    if cbuf.is_empty() || copying {
                        // Nothing of the client's waits here any more (part
                        // of a message does: a cancel still waits for it,
                        // unless it is COPY data).
                        cancel_key.release();
                    }
                    if terminated {
                        let _ = server.write_all(&[b'X', 0, 0, 0, 4]).await;
                        let _ = server.shutdown().await;
                        let _ = client.shutdown().await;
                        return SessionEnd::ClientTerminated;
                    }
                }
                Err(err) => {
                    close_both(&mut client, &mut server, err).await;
                    return SessionEnd::ProtocolViolation;
                }
            }
        }
        // Between statements (in a transaction or not) a session holds no
        // read buffers: most of many thousand pooled connections sit idle,
        // and read_chunk gives a buffer its room again once its socket has
        // something to read (a released buffer serves the next read on the
        // same worker thread: `give_back`).
        if state.awaiting_ready == 0 && !state.unsynced {
            give_back(&mut cbuf);
            give_back(&mut sbuf);
            guarded_out.clear();
            give_back(&mut guarded_out);
            (cchunk, schunk) = (READ_CHUNK, READ_CHUNK);
        }
        // A cancel request for a session with nothing in flight waits a
        // moment for the statement it is meant for (net::cancel).
        cancel_key.set_busy(state.awaiting_ready > 0 || state.unsynced);
        let idle_deadline = match (settings.idle_timeout, state.is_idle()) {
            (Some(t), true) => Some(tokio::time::Instant::now() + t),
            _ => None,
        };
        tokio::select! {
            read = client.read_chunk(&mut cbuf, cchunk) => {
                match read {
                    Ok(0) | Err(_) => {
                        // Client vanished without Terminate: end the backend too.
                        let _ = server.shutdown().await;
                        return SessionEnd::ClientClosed;
                    }
                    Ok(n) => {
                        pending_client = true;
                        cchunk = next_chunk(cchunk, n);
                    }
                }
            }
            read = server.read_chunk(&mut sbuf, schunk) => {
                match read {
                    Ok(0) | Err(_) => return upstream_gone(&mut client, upstream_sent_fatal).await,
                    Ok(n) => schunk = next_chunk(schunk, n),
                }
                let started = std::time::Instant::now();
                state.plain_indexes = masking.guard.as_ref().is_some_and(|g| !g.may_make_key());
                match frame_server(&mut sbuf, &mut state, &mut upstream_sent_fatal, &mut framed) {
                    Ok(frames) => {
                        // Schema DDL of any session through pgveil, guarded
                        // or not (an administrator replacing a view): masked
                        // sessions must not plan against the old catalog.
                        if std::mem::take(&mut state.schema_committed) {
                            if let Some(rt) = runtime {
                                rt.invalidate_catalog(&masking.database, false);
                            }
                        }
                        let reuse_out = masking.guard.is_some();
                        let out = match masking.guard.as_mut() {
                            Some(g) => {
                                let mut out = std::mem::take(&mut guarded_out);
                                out.clear();
                                out.reserve(frames.len() + 64);
                                let guarded = contained(|| {
                                    for msg in codec::frames(&frames) {
                                        g.server_message(msg, &mut out);
                                    }
                                });
                                if let Err(err) = guarded {
                                    close_both(&mut client, &mut server, err).await;
                                    return SessionEnd::InternalError;
                                }
                                // Client messages that waited for this answer.
                                if !g.to_server.is_empty() {
                                    let released = g.to_server.split();
                                    to_server.inc_by(released.len() as u64);
                                    if server.write_all(&released).await.is_err() {
                                        return upstream_gone(&mut client, upstream_sent_fatal).await;
                                    }
                                }
                                // Committed DDL: drop the shared catalog now,
                                // before the client (or anyone) reads again.
                                if g.effects.catalog_stale {
                                    if let Some(rt) = runtime {
                                        rt.invalidate_catalog(&masking.database, false);
                                    }
                                }
                                out
                            }
                            None => {
                                meter.add_framed(&mut framed);
                                frames
                            }
                        };
                        overhead_out.observe(started.elapsed().as_secs_f64());
                        if let Some(g) = masking.guard.as_mut() {
                            // With --audit-on-full block the client gets the
                            // rows only once their record is queued.
                            publish(meter, &mut g.observed).await;
                        }
                        if !out.is_empty() {
                            to_client.inc_by(out.len() as u64);
                            if client.write_all(&out).await.is_err() {
                                let _ = server.shutdown().await;
                                return SessionEnd::ClientClosed;
                            }
                        }
                        if reuse_out {
                            guarded_out = out;
                        }
                    }
                    Err(e) => {
                        let err = ProxyError::fatal("08P01", format!("invalid message from the database: {e}"));
                        close_both(&mut client, &mut server, err).await;
                        return SessionEnd::ProtocolViolation;
                    }
                }
            }
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closing };
                if now == Phase::Closing || (now == Phase::Draining && state.is_idle()) {
                    close_both(&mut client, &mut server, shutdown_error()).await;
                    return SessionEnd::Shutdown;
                }
            }
            _ = sleep_until(idle_deadline) => {
                let err = ProxyError::fatal("57P05", "terminating connection due to idle-session timeout (pgveil idle_timeout)");
                close_both(&mut client, &mut server, err).await;
                return SessionEnd::IdleTimeout;
            }
        }
        // A busy session that becomes idle while draining closes now.
        if state.is_idle() && *phase.borrow() != Phase::Running && !pending_client {
            close_both(&mut client, &mut server, shutdown_error()).await;
            return SessionEnd::Shutdown;
        }
    }
}

/// Publishes what a guard observed since the last batch: metrics now,
/// audit records into the queue (waiting for room with `--audit-on-full
/// block`).
async fn publish(meter: &mut SessionMeter, observed: &mut crate::observe::meter::Observations) {
    if observed.events.is_empty()
        && observed.analyses.is_empty()
        && observed.rowdescription_overrides == 0
        && observed.notifications_redacted == 0
    {
        return;
    }
    let records = meter.drain(observed);
    if let Some(log) = meter.audit() {
        for r in records {
            log.send(r).await;
        }
    }
}

/// The masking side of one session: whether it is guarded, and under which
/// policy version.
struct Masking {
    guard: Option<Guard>,
    policy_version: Option<u64>,
    user: String,
    database: String,
    /// Generation of the shared catalog the guard's catalog is built on.
    base_generation: Option<u64>,
    /// This session's temporary relations, read over its own connection.
    temp_relations: Vec<crate::analyze::catalog::Relation>,
    /// The open transaction's catalog as last read over this session's
    /// connection (without temporary relations), and the generation of the
    /// shared catalog it builds on: the next read adds only what the
    /// transaction changed since.
    overlay: Option<(Arc<crate::analyze::Catalog>, u64)>,
    /// An audit trail is written: roles that see protected columns in
    /// clear are guarded too, so their reads are recorded.
    audited: bool,
}

impl Masking {
    /// Messages the server sent while pgveil ran its own queries:
    /// notices, notifications and parameter changes belong to the client
    /// and pass the guard like any other (scrubbed, redacted, followed);
    /// anything else answered pgveil's own queries and is dropped.
    fn guard_early(&mut self, early: &[u8]) -> Result<BytesMut, ProxyError> {
        let mut out = BytesMut::new();
        let mut guard = self.guard.as_mut();
        contained(|| {
            for msg in codec::frames(early) {
                if !matches!(msg[0], b'N' | b'A' | b'S') {
                    continue;
                }
                match guard.as_mut() {
                    Some(g) => g.server_message(msg, &mut out),
                    // A session relayed as is gets them as is.
                    None => out.extend_from_slice(msg),
                }
            }
        })?;
        Ok(out)
    }

    /// Brings the guard up to date before a batch of client messages: starts
    /// it when the role is restricted, follows policy reloads and DDL, and
    /// refreshes the catalog when a statement names something it lacks.
    async fn prepare(
        &mut self,
        rt: &MaskingRuntime,
        cbuf: &[u8],
        state: &Conversation,
        server: &mut Stream,
        sbuf: &mut BytesMut,
        early: &mut BytesMut,
    ) -> Result<(), ProxyError> {
        let version = rt.store.current().version();
        // The session's search_path may have been changed or undone on the
        // server.
        let unsure = self.guard.as_ref().is_some_and(|g| g.search_path_unsure());
        if unsure && state.is_between_statements() {
            let reading = probe_search_path(server, sbuf, &self.user, early)
                .await
                .map_err(|m| ProxyError::fatal("08006", m))?;
            if let Some(g) = &mut self.guard {
                reading.apply(g, state.tx_status == b'I');
            }
        }
        // This session's own transaction holds uncommitted DDL: read what
        // changed over its own connection (which sees it), on top of the
        // shared catalog as last read. The shared catalog itself is not
        // refreshed until the transaction ends: its connection cannot see
        // the change, and could wait on this transaction's locks.
        if self
            .guard
            .as_ref()
            .is_some_and(|g| g.holds_uncommitted_ddl())
        {
            let due = self.guard.as_ref().is_some_and(|g| g.overlay_due());
            if due && state.is_between_statements() && state.tx_status == b'T' {
                self.read_transaction_catalog(rt, server, sbuf, early, Via::Query)
                    .await?;
            }
            return Ok(());
        }
        self.overlay = None;
        let mut catalog_stale = self.guard.as_ref().is_some_and(|g| g.effects.catalog_stale);
        if catalog_stale {
            rt.invalidate_catalog(&self.database, false);
        }
        // Another session's DDL (or the TTL) replaced the shared catalog.
        if self.guard.is_some() {
            let shared = rt.catalogs.get(&self.database).map(|c| c.generation());
            if shared.is_none() || shared != self.base_generation {
                catalog_stale = true;
            }
        }
        if self.policy_version != Some(version) || catalog_stale || rt.memberships.is_stale() {
            self.refresh(rt, state, server, sbuf, early).await?;
        }
        // After this session's own DDL, its temporary relations are read
        // over its own connection (pgveil's catalog connection cannot see
        // them), between statements.
        let own_ddl = self.guard.as_ref().is_some_and(|g| g.effects.own_ddl);
        if own_ddl && state.is_between_statements() {
            // With none known and none possibly made, there is nothing to
            // read (see `Effects::temp_mentioned`).
            let maybe_temp = !self.temp_relations.is_empty()
                || self
                    .guard
                    .as_ref()
                    .is_some_and(|g| g.effects.temp_mentioned);
            if maybe_temp {
                self.temp_relations = probe_temp_relations(server, sbuf, early)
                    .await
                    .map_err(|m| ProxyError::fatal("08006", m))?;
            }
            let shared = rt
                .catalog(&self.database)
                .await
                .map_err(policy_unavailable)?;
            self.install_catalog(shared);
            if let Some(g) = &mut self.guard {
                g.effects.own_ddl = false;
                if maybe_temp {
                    g.effects.temp_mentioned = false;
                }
            }
        }
        // A statement naming a relation the catalog lacks (created since it
        // was read): read the catalog again, at most once a second.
        if let Some(g) = &mut self.guard {
            if g.needs_fresh_catalog(cbuf) && rt.invalidate_catalog(&self.database, true) {
                let shared = rt
                    .catalog(&self.database)
                    .await
                    .map_err(policy_unavailable)?;
                self.install_catalog(shared);
            }
        }
        Ok(())
    }

    /// Reads the catalog as this session's open transaction sees it (its own
    /// DDL included): the changes since the shared catalog's snapshot, read
    /// over the session's connection, plus its temporary relations. When
    /// that cannot be done the guard keeps refusing statements.
    ///
    /// Read `Via::Pipeline` (between the steps of a stepwise Query), a
    /// failed read aborts the pipeline's transaction: the server's error is
    /// returned, for the client.
    async fn read_transaction_catalog(
        &mut self,
        rt: &MaskingRuntime,
        server: &mut Stream,
        sbuf: &mut BytesMut,
        early: &mut BytesMut,
        via: Via,
    ) -> Result<Option<BytesMut>, ProxyError> {
        let Some(base) = rt.catalogs.last(&self.database) else {
            return Ok(None);
        };
        let Some(read) = base.changes_query() else {
            return Ok(None);
        };
        let read = read.without_keys();
        // Rows changed since the shared catalog's snapshot, less those of
        // this transaction the last read here already applied.
        let builds_on_last = self
            .guard
            .as_ref()
            .is_some_and(|g| g.overlay_builds_on_last());
        let (start, read) = match &self.overlay {
            Some((last, generation)) if builds_on_last && *generation == base.generation() => {
                (Arc::clone(last), read.after(last))
            }
            _ => (Arc::clone(&base), read),
        };
        // The changes and the temporary relations in one round trip.
        let statements = qualified_names(&[read.sql(), TEMP_RELATIONS.to_string()]);
        let (results, error) = internal_statements(server, sbuf, early, &statements, via)
            .await
            .map_err(|m| ProxyError::fatal("08006", m))?;
        if error.is_some() {
            return Ok(error.filter(|_| via == Via::Pipeline));
        }
        let [_, rows, temp, _] = results.as_slice() else {
            return Ok(None);
        };
        let rows: Vec<Vec<Option<String>>> = rows
            .iter()
            .filter_map(|msg| {
                wire::data_row(msg).map(|values| {
                    values
                        .iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect()
                })
            })
            .collect();
        let overlay = match start.apply(&read, rows.iter().map(|r| r.as_slice())) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading the transaction's catalog changes failed");
                return Ok(None);
            }
        };
        self.temp_relations = temp_relations(temp);
        let base_generation = self.base_generation;
        let overlay = Arc::new(overlay);
        self.overlay = Some((Arc::clone(&overlay), base.generation()));
        self.install_catalog(overlay);
        // The shared catalog this builds on is still the one to follow.
        self.base_generation = base_generation;
        if let Some(g) = &mut self.guard {
            g.overlay_read();
        }
        Ok(None)
    }

    /// Gives the guard the shared catalog plus this session's temporary
    /// relations.
    fn install_catalog(&mut self, shared: std::sync::Arc<crate::analyze::Catalog>) {
        self.base_generation = Some(shared.generation());
        let Some(g) = &mut self.guard else { return };
        let catalog = if self.temp_relations.is_empty() {
            shared
        } else {
            std::sync::Arc::new(shared.with_session_relations(&self.temp_relations))
        };
        g.set_temp_schema(!self.temp_relations.is_empty());
        let mut inputs = g.inputs().clone();
        inputs.catalog = catalog;
        g.update_inputs(inputs);
    }

    /// Re-reads the role's view (and the catalog) and starts the guard when
    /// the role is restricted.
    async fn refresh(
        &mut self,
        rt: &MaskingRuntime,
        state: &Conversation,
        server: &mut Stream,
        sbuf: &mut BytesMut,
        early: &mut BytesMut,
    ) -> Result<(), ProxyError> {
        let (set, view) = rt
            .role_view(&self.user, &self.database)
            .await
            .map_err(policy_unavailable)?;
        self.policy_version = Some(set.version());
        let restricted = view.is_restricted();
        let observed = self.audited && set.protected_columns().next().is_some();
        match &mut self.guard {
            Some(g) => {
                // An observed (audited) session that becomes masked: what it
                // created while unrestricted was never checked.
                if restricted && !g.inputs().view.is_restricted() {
                    if !state.is_between_statements() {
                        self.policy_version = None;
                        return Err(ProxyError::fatal(
                            "42501",
                            "the masking policy changed for this role while a statement was in flight",
                        )
                        .with_hint("Reconnect; the new policy applies to the new session."));
                    }
                    let names = probe_shadowing_temp_types(server, sbuf, early)
                        .await
                        .map_err(|m| ProxyError::fatal("08006", m))?;
                    if !names.is_empty() {
                        self.policy_version = None;
                        return Err(shadowed_types(&names));
                    }
                }
                let shared = rt
                    .catalog(&self.database)
                    .await
                    .map_err(policy_unavailable)?;
                g.update_inputs(PlanInputs {
                    analyzer: rt.analyzer.clone(),
                    catalog: shared.clone(),
                    policy: set,
                    view,
                });
                g.effects.catalog_stale = false;
                self.install_catalog(shared);
            }
            None if (restricted || observed) && state.is_between_statements() => {
                let catalog = rt
                    .catalog(&self.database)
                    .await
                    .map_err(policy_unavailable)?;
                let (search_path, settings) = probe_session(server, sbuf, early)
                    .await
                    .map_err(|m| ProxyError::fatal("08006", m))?;
                if restricted && !settings.shadowing_temp_types.is_empty() {
                    self.policy_version = None;
                    return Err(shadowed_types(&settings.shadowing_temp_types));
                }
                self.base_generation = Some(catalog.generation());
                tracing::debug!(?search_path, "masking session");
                self.guard = Some(Guard::new(
                    self.user.clone(),
                    PlanInputs {
                        analyzer: rt.analyzer.clone(),
                        catalog,
                        policy: set,
                        view,
                    },
                    SessionContext {
                        database: self.database.clone(),
                        search_path,
                        lexing: Default::default(),
                    },
                ));
                if let Some(g) = &mut self.guard {
                    g.record_fingerprints(self.audited);
                    // Set before the guard saw them: at startup (options,
                    // ALTER ROLE … SET) or earlier in this session.
                    g.set_client_encoding(settings.client_encoding.as_bytes());
                    g.set_standard_conforming_strings(
                        settings.standard_conforming_strings.as_bytes(),
                    );
                }
            }
            None if restricted => {
                // Became restricted mid-transaction: this batch must not pass
                // unguarded, and the guard cannot join a conversation halfway.
                self.policy_version = None;
                return Err(ProxyError::fatal(
                    "42501",
                    "the masking policy changed for this role while a statement was in flight",
                )
                .with_hint("Reconnect; the new policy applies to the new session."));
            }
            None => {}
        }
        Ok(())
    }
}

/// The FATAL error of a session pgveil cannot guard: it is closed rather
/// than served unmasked.
fn policy_unavailable(e: runtime::RuntimeError) -> ProxyError {
    tracing::error!(error = %e, "cannot enforce the policy");
    ProxyError::fatal("42501", format!("pgveil cannot enforce the masking policy: {e}"))
        .with_hint("The session was closed rather than served unmasked; retry, or ask the DBA to check pgveil's catalog connection.")
}

/// Runs one query of pgveil's own on the session's connection, between the
/// client's statements: the DataRows it returned, and whether the server
/// reported an error. Notices and notifications meanwhile go to the client.
async fn internal_query(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
    sql: &str,
) -> Result<(Vec<BytesMut>, bool), String> {
    let (results, failed) = internal_queries(server, sbuf, early, sql).await?;
    Ok((results.into_iter().flatten().collect(), failed))
}

/// `internal_query` of a string of statements: the DataRows of each
/// statement that completed, in order.
async fn internal_queries(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
    sql: &str,
) -> Result<(Vec<Vec<BytesMut>>, bool), String> {
    let (results, error) =
        internal_statements(server, sbuf, early, &[sql.to_string()], Via::Query).await?;
    Ok((results, error.is_some()))
}

/// How pgveil's own queries reach the server between the client's
/// statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// One simple Query (outside a transaction block, its own transaction).
    Query,
    /// Inside the open pipeline of a stepwise Query (see `steps`): each
    /// statement parsed, bound and executed unnamed, then a Flush; no Sync,
    /// so they run in the pipeline's transaction and it stays open.
    Pipeline,
}

/// `internal_queries` of separate statements, sent `via`: the DataRows of
/// each statement that completed, and the server's ErrorResponse if one
/// failed (in a pipeline, that aborts its transaction).
async fn internal_statements(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
    statements: &[String],
    via: Via,
) -> Result<(Vec<Vec<BytesMut>>, Option<BytesMut>), String> {
    let mut q = BytesMut::new();
    match via {
        Via::Query => wire::encode_query(&mut q, &statements.join("; ")),
        Via::Pipeline => {
            for sql in statements {
                wire::encode_parse(&mut q, b"", sql);
                wire::encode_bind_no_params(&mut q, b"", b"");
                wire::encode_execute(&mut q, b"");
            }
            wire::encode_flush(&mut q);
        }
    }
    server
        .write_all(&q)
        .await
        .map_err(|e| format!("the database connection failed: {e}"))?;
    let (mut results, mut rows, mut error) = (Vec::new(), Vec::new(), None);
    loop {
        let msg = match crate::net::read_typed(server, sbuf, MAX_BACKEND_MESSAGE).await {
            Ok(Some(m)) => m,
            _ => return Err("the database closed the connection".into()),
        };
        match msg[0] {
            b'D' => rows.push(msg),
            b'Z' => return Ok((results, error)),
            b'E' => {
                error.get_or_insert(msg);
                // After an error the server skips the rest of a pipeline
                // up to a Sync: nothing more comes.
                if via == Via::Pipeline {
                    return Ok((results, error));
                }
            }
            b'C' | b'I' => {
                results.push(std::mem::take(&mut rows));
                if via == Via::Pipeline && results.len() == statements.len() {
                    return Ok((results, error));
                }
            }
            b'T' | b'1' | b'2' | b'n' => {}
            _ => early.extend_from_slice(&msg),
        }
    }
}

/// Asks the server for the session's search_path inside a stepwise Query's
/// pipeline. `Err(Some(error))`: the server failed it (the pipeline's
/// transaction is aborted).
async fn probe_search_path_pipelined(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    user: &str,
    early: &mut BytesMut,
) -> Result<Result<Reading, BytesMut>, String> {
    let statements = [SEARCH_PATH_AND_ROLE.to_string()];
    let (results, error) =
        internal_statements(server, sbuf, early, &statements, Via::Pipeline).await?;
    if let Some(e) = error {
        return Ok(Err(e));
    }
    let rows = results.last().map(Vec::as_slice).unwrap_or_default();
    Ok(Ok(search_path_of(rows, user)))
}

/// The session's search_path and the role `"$user"` in it stands for, which
/// SET ROLE and SET SESSION AUTHORIZATION change.
/// Also the settings that decide how the server reads a statement's text:
/// a SET of them takes effect before the server reports it (ParameterStatus
/// comes with the next ReadyForQuery), so a change is read here too.
const SEARCH_PATH_AND_ROLE: &str =
    "SELECT pg_catalog.current_setting('search_path'), current_user, \
     pg_catalog.current_setting('standard_conforming_strings'), \
     pg_catalog.current_setting('client_encoding')";

/// What `SEARCH_PATH_AND_ROLE` read: the search_path, `"$user"` expanded
/// (with the login role if the row lacks the current one), and the
/// settings that decide how text is read, when the row has them.
struct Reading {
    search_path: Vec<String>,
    standard_conforming_strings: Option<String>,
    client_encoding: Option<String>,
}

impl Reading {
    /// Gives the guard what was read.
    fn apply(self, g: &mut Guard, outside_transaction: bool) {
        g.set_search_path(self.search_path, outside_transaction);
        if let Some(v) = self.standard_conforming_strings {
            g.set_standard_conforming_strings(v.as_bytes());
        }
        if let Some(v) = self.client_encoding {
            g.set_client_encoding(v.as_bytes());
        }
    }
}

fn search_path_of(rows: &[BytesMut], user: &str) -> Reading {
    let field = |i: usize| {
        rows.last().and_then(|msg| {
            wire::data_row(msg).and_then(|v| {
                v.get(i)
                    .copied()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
        })
    };
    let current = field(1).unwrap_or_else(|| user.to_owned());
    Reading {
        search_path: split_search_path(&field(0).unwrap_or_default(), &current),
        standard_conforming_strings: field(2),
        client_encoding: field(3),
    }
}

/// Asks the server for the session's search_path (it is not reported in
/// ParameterStatus), before the client's first statement is analysed.
/// `"$user"` stands for the current role, which SET ROLE and SET SESSION
/// AUTHORIZATION change: it is read in the same round trip.
async fn probe_search_path(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    user: &str,
    early: &mut BytesMut,
) -> Result<Reading, String> {
    let (rows, _) = internal_query(server, sbuf, early, SEARCH_PATH_AND_ROLE).await?;
    Ok(search_path_of(&rows, user))
}

/// The settings a guard needs when it starts: what the session was given
/// before pgveil watched its ParameterStatus messages.
struct SessionSettings {
    client_encoding: String,
    standard_conforming_strings: String,
    /// Temporary types with a built-in type's name (see `TEMP_TYPE_NAMES`).
    shadowing_temp_types: Vec<String>,
}

/// The names of the session's temporary types, space-separated. The server
/// finds a type in pg_temp before pg_catalog's, so a temporary `varchar`
/// domain would run its CHECK on every value cast to varchar. A masked
/// session refuses to create one; a session that became masked (policy
/// reload) may hold one from before, and cannot be guarded.
const TEMP_TYPE_NAMES: &str = "pg_catalog.array_to_string(ARRAY(SELECT t.typname \
     FROM pg_catalog.pg_type t WHERE t.typnamespace = pg_catalog.pg_my_temp_schema()), ' ')";

/// The built-in type names among `TEMP_TYPE_NAMES`' answer. A name with a
/// space in it may count as one it merely contains, which fails closed.
fn shadowing(names: &str) -> Vec<String> {
    names
        .split(' ')
        .filter(|n| crate::analyze::builtins::is_builtin_type(n))
        .map(str::to_owned)
        .collect()
}

/// Asks the server for the session's temporary types with built-in names.
async fn probe_shadowing_temp_types(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
) -> Result<Vec<String>, String> {
    let (rows, failed) =
        internal_query(server, sbuf, early, &format!("SELECT {TEMP_TYPE_NAMES}")).await?;
    let names = rows.last().and_then(|msg| {
        wire::data_row(msg).and_then(|v| {
            v.first()
                .copied()
                .flatten()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
    });
    match names {
        Some(names) if !failed => Ok(shadowing(&names)),
        _ => Err("pgveil could not read the session's temporary types".into()),
    }
}

/// The FATAL error of a session that became masked while it held temporary
/// types named like built-in ones.
fn shadowed_types(names: &[String]) -> ProxyError {
    ProxyError::fatal(
        "42501",
        format!(
            "this session became subject to a masking policy while it holds temporary types \
             named like built-in types ({}), which pgveil cannot guard",
            names.join(", ")
        ),
    )
    .with_hint("Reconnect; a new session has no temporary types.")
}

/// Asks the server for the session's search_path and lexing settings in
/// one round trip, when a guard starts.
async fn probe_session(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
) -> Result<(Vec<String>, SessionSettings), String> {
    let (rows, failed) = internal_query(
        server,
        sbuf,
        early,
        &format!(
            "SELECT pg_catalog.current_setting('search_path'), \
         pg_catalog.current_setting('client_encoding'), \
         pg_catalog.current_setting('standard_conforming_strings'), \
         current_user, {TEMP_TYPE_NAMES}"
        ),
    )
    .await?;
    let values: Option<Vec<String>> = rows.last().and_then(|msg| {
        let fields = wire::data_row(msg)?;
        fields
            .iter()
            .map(|f| f.map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect()
    });
    match values.as_deref() {
        Some([path, encoding, standard, current, temp_types]) if !failed => Ok((
            split_search_path(path, current),
            SessionSettings {
                client_encoding: encoding.clone(),
                standard_conforming_strings: standard.clone(),
                shadowing_temp_types: shadowing(temp_types),
            },
        )),
        _ => Err("pgveil could not read the session's settings (search_path, client_encoding, standard_conforming_strings)".into()),
    }
}

/// The relations of the session's temporary schema, with their columns and
/// view definitions, read over the session's own connection.
const TEMP_RELATIONS: &str = "SELECT c.oid, c.relname, c.relkind, a.attname, a.attnum, a.atttypid, t.typname, \
    CASE WHEN c.relkind IN ('v','m') THEN pg_catalog.pg_get_viewdef(c.oid) END \
    FROM pg_catalog.pg_class c \
    LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
    LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
    WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind IN ('r','p','v','m','S') \
    ORDER BY c.oid, a.attnum";

/// `sql` run with search_path set to pg_catalog alone, then set back:
/// pg_get_viewdef leaves out the schema of every relation the search_path
/// shows, and pgveil resolves a view's text against the view's own schema
/// first, where a relation of the same name may stand (a view in `app`
/// over `public.customers` next to a table `app.customers`). Set locally,
/// the value also reverts by itself at the end of the transaction (or of
/// this query string outside one). The first and last statements return
/// no rows; search_path is not reported to the client. JIT is off
/// meanwhile, the same way: compiling a catalog read costs far more than
/// running it.
fn with_qualified_names(sql: &str) -> String {
    qualified_names(&[sql.to_string()]).join("; ")
}

/// `with_qualified_names` as separate statements.
fn qualified_names(statements: &[String]) -> Vec<String> {
    let mut all = Vec::with_capacity(statements.len() + 2);
    all.push(
        "SELECT FROM pg_catalog.set_config('pgveil.search_path', pg_catalog.current_setting('search_path'), true) s, \
           LATERAL pg_catalog.set_config('pgveil.jit', pg_catalog.current_setting('jit'), s IS NOT NULL) j, \
           LATERAL pg_catalog.set_config('search_path', 'pg_catalog', j IS NOT NULL) t, \
           LATERAL pg_catalog.set_config('jit', 'off', t IS NOT NULL) u WHERE u IS NULL"
            .to_string(),
    );
    all.extend(statements.iter().cloned());
    all.push(
        "SELECT FROM pg_catalog.set_config('search_path', pg_catalog.current_setting('pgveil.search_path'), true) s, \
           LATERAL pg_catalog.set_config('jit', pg_catalog.current_setting('pgveil.jit'), s IS NOT NULL) j \
          WHERE j IS NULL"
            .to_string(),
    );
    all
}

/// How long a write to the server may block before pgveil takes it that
/// the server is busy with the client's earlier messages (see the relay).
const WRITE_STALL: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads the session's temporary relations (see `TEMP_RELATIONS`).
async fn probe_temp_relations(
    server: &mut Stream,
    sbuf: &mut BytesMut,
    early: &mut BytesMut,
) -> Result<Vec<crate::analyze::catalog::Relation>, String> {
    let (results, failed) =
        internal_queries(server, sbuf, early, &with_qualified_names(TEMP_RELATIONS)).await?;
    match results.as_slice() {
        [_, rows, _] if !failed => Ok(temp_relations(rows)),
        // Unknown temporary relations stay unknown: statements naming them
        // are refused, which fails closed.
        _ => Ok(Vec::new()),
    }
}

/// The relations in the DataRows of `TEMP_RELATIONS`; none when a row is
/// not one (statements naming them are then refused, which fails closed).
fn temp_relations(rows: &[BytesMut]) -> Vec<crate::analyze::catalog::Relation> {
    use crate::analyze::catalog::{CatalogColumn, Relation, RelationKind};
    let mut relations: Vec<Relation> = Vec::new();
    for msg in rows {
        let Some(v) = wire::data_row(msg) else {
            return Vec::new();
        };
        let text = |i: usize| -> Option<String> {
            v.get(i)
                .copied()
                .flatten()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let (Some(oid), Some(name), Some(kind)) = (
            text(0).and_then(|s| s.parse::<u32>().ok()),
            text(1),
            text(2),
        ) else {
            return Vec::new();
        };
        // A table of zero columns (`CREATE TEMP TABLE t ()`) has one row
        // with no column.
        let column = match (
            text(3),
            text(4).and_then(|s| s.parse::<i16>().ok()),
            text(5).and_then(|s| s.parse::<u32>().ok()),
            text(6),
        ) {
            (Some(name), Some(attnum), Some(type_oid), Some(type_name)) => Some(CatalogColumn {
                name,
                attnum,
                type_oid,
                type_name,
                // Not read for temporary relations: a type change of one
                // of their columns is judged as if it had none.
                type_modifier: -1,
            }),
            (None, None, None, None) => None,
            _ => return Vec::new(),
        };
        match relations.last_mut() {
            Some(r) if r.oid == oid => r.columns.extend(column),
            _ => {
                let kind = match kind.as_str() {
                    "v" => RelationKind::View,
                    "m" => RelationKind::MaterializedView,
                    "p" => RelationKind::PartitionedTable,
                    "S" => RelationKind::Sequence,
                    _ => RelationKind::Table,
                };
                let columns = column.into_iter().collect();
                relations.push(Relation::temporary(oid, name, kind, columns, text(7)));
            }
        }
    }
    relations
}

/// `"$user", public` -> [user, public].
fn split_search_path(value: &str, user: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let unquoted = s
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map(|s| s.replace("\"\"", "\""));
            match unquoted {
                Some(u) if u == "$user" => user.to_string(),
                Some(u) => u,
                None if s == "$user" => user.to_string(),
                None => s.to_ascii_lowercase(),
            }
        })
        .collect()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs the guard's synchronous work so that a panic in it (a bug) ends
/// only this session, with a FATAL error the client can read and a log line.
/// The guard is not used again after a panic.
fn contained(work: impl FnOnce()) -> Result<(), ProxyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        tracing::error!(panic = %panic_text(panic.as_ref()), "internal error: session closed");
        ProxyError::fatal("XX000", "pgveil internal error: the session is closed")
            .with_detail("The error was logged; other sessions are not affected.")
    })
}

/// The message of a panic payload.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn shutdown_error() -> ProxyError {
    ProxyError::fatal(
        "57P01",
        "terminating connection due to administrator command",
    )
    .with_detail("pgveil is shutting down.")
}

/// Splits every complete client message off `cbuf`. Returns the bytes to
/// forward and whether the client sent Terminate.
fn frame_client(
    cbuf: &mut BytesMut,
    limit: usize,
    state: &mut Conversation,
) -> Result<(BytesMut, bool), ProxyError> {
    let mut end = 0;
    loop {
        match codec::typed_frame_len(&cbuf[end..], limit) {
            Ok(Some(len)) if cbuf.len() - end >= len => {
                let ty = cbuf[end];
                if ty == b'X' {
                    // Terminate is sent by the relay itself; drop it here.
                    let forward = cbuf.split_to(end);
                    let _ = cbuf.split_to(len);
                    return Ok((forward, true));
                }
                end += len;
                state.client_sent(ty);
            }
            Ok(Some(len)) => {
                cbuf.reserve(len - (cbuf.len() - end));
                break;
            }
            Ok(None) => break,
            Err(e) => {
                return Err(
                    ProxyError::fatal("08P01", format!("invalid frontend message: {e}")).with_hint(
                        "Raise pgveil's max_message_size if this message is legitimate.",
                    ),
                )
            }
        }
    }
    Ok((cbuf.split_to(end), false))
}

/// Splits every complete server message off `sbuf`, tracking ReadyForQuery
/// and FATAL errors.
fn frame_server(
    sbuf: &mut BytesMut,
    state: &mut Conversation,
    sent_fatal: &mut bool,
    count: &mut FrameCount,
) -> Result<BytesMut, codec::FrameError> {
    let mut end = 0;
    loop {
        match codec::typed_frame_len(&sbuf[end..], MAX_BACKEND_MESSAGE)? {
            Some(len) if sbuf.len() - end >= len => {
                let msg = &sbuf[end..end + len];
                count.server_message(msg);
                match msg[0] {
                    b'Z' if len == 6 => state.server_ready(msg[5]),
                    b'G' => state.server_copy_in(),
                    b'C' => {
                        state.copy_in = false;
                        let tag = wire::command_tag(msg);
                        let plain_index =
                            crate::analyze::catalog::is_plain_index(tag, !state.plain_indexes);
                        if crate::analyze::catalog::command_changes_catalog(tag) && !plain_index {
                            state.schema_changed = true;
                        }
                    }
                    b'E' => {
                        state.copy_in = false;
                        let (_, severity) = codec::error_fields(msg);
                        if matches!(severity.as_deref(), Some("FATAL") | Some("PANIC")) {
                            *sent_fatal = true;
                        }
                    }
                    _ => {}
                }
                end += len;
            }
            Some(len) => {
                // Room for a message larger than a read, at once. Smaller
                // ones are left to read_chunk: reserving here, before the
                // finished messages are split off, would grow the buffer
                // by all of them at the end of nearly every full read.
                let missing = len - (sbuf.len() - end);
                if missing > MAX_READ_CHUNK {
                    sbuf.reserve(missing);
                }
                break;
            }
            None => break,
        }
    }
    Ok(sbuf.split_to(end))
}

async fn close_both(client: &mut Stream, server: &mut Stream, err: ProxyError) {
    debug!(code = err.code, message = %err.message, "closing session");
    let _ = client.write_all(&err.to_bytes()).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
    // Terminate tells the backend to end cleanly rather than log an EOF.
    let _ = server.write_all(&[b'X', 0, 0, 0, 4]).await;
    let _ = server.shutdown().await;
}

/// The upstream closed: forward nothing more, tell the client unless the
/// server already sent its own FATAL.
async fn upstream_gone(client: &mut Stream, upstream_sent_fatal: bool) -> SessionEnd {
    if !upstream_sent_fatal {
        let err = ProxyError::fatal(
            "08006",
            "server closed the connection unexpectedly",
        )
        .with_detail("The database connection behind pgveil ended, probably because the server terminated abnormally.");
        let _ = client.write_all(&err.to_bytes()).await;
    }
    let _ = client.flush().await;
    let _ = client.shutdown().await;
    SessionEnd::UpstreamClosed
}
