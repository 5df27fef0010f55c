//! session: the per-connection relay after authentication.
//!
//! Owns message order: it frames every message in both directions, forwards
//! the bytes they arrived in, and is the only place that knows whether the
//! session is idle, in a transaction, or waiting on the server. It never
//! buffers a whole result set: each read is framed and forwarded at once, and
//! writes are batched per read (one write per burst of messages).

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::debug;

use crate::config::Settings;
use crate::net::cancel::CancelKey;
use crate::net::codec::{self, ProxyError};
use crate::net::stream::Stream;
use crate::observe::Metrics;

/// Backend messages may be as large as PostgreSQL allows (1 GiB).
const MAX_BACKEND_MESSAGE: usize = 1 << 30;
/// Read buffer size hint for each direction.
const READ_CHUNK: usize = 16 * 1024;

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
}

impl Conversation {
    fn new() -> Self {
        Conversation {
            tx_status: b'I',
            awaiting_ready: 0,
            unsynced: false,
        }
    }

    fn client_sent(&mut self, ty: u8) {
        match ty {
            b'Q' | b'S' | b'F' => {
                self.awaiting_ready += 1;
                if ty == b'S' {
                    self.unsynced = false;
                }
            }
            _ => self.unsynced = true,
        }
    }

    fn server_ready(&mut self, status: u8) {
        self.tx_status = status;
        self.awaiting_ready = self.awaiting_ready.saturating_sub(1);
    }

    /// Idle outside any transaction: safe to close for drain or idle timeout.
    fn is_idle(&self) -> bool {
        self.tx_status == b'I' && self.awaiting_ready == 0 && !self.unsynced
    }
}

/// Relays messages until either side ends the session.
pub async fn relay(
    io: SessionIo,
    settings: &Settings,
    metrics: &Metrics,
    mut phase: watch::Receiver<Phase>,
) -> SessionEnd {
    let SessionIo {
        mut client,
        mut server,
        cancel_key: _cancel_key,
        client_buf: mut cbuf,
        ..
    } = io;
    let mut sbuf = BytesMut::with_capacity(READ_CHUNK);
    cbuf.reserve(READ_CHUNK);
    let mut state = Conversation::new();
    let mut upstream_sent_fatal = false;
    let limit = settings.max_message_size;
    let to_server = metrics.bytes.with_label_values(&["client_to_server"]);
    let to_client = metrics.bytes.with_label_values(&["server_to_client"]);

    // Bytes that arrived with the last authentication message.
    let mut pending_client = !cbuf.is_empty();
    loop {
        if pending_client {
            pending_client = false;
            match frame_client(&mut cbuf, limit, &mut state) {
                Ok((out, terminated)) => {
                    if !out.is_empty() {
                        to_server.inc_by(out.len() as u64);
                        if server.write_all(&out).await.is_err() {
                            return upstream_gone(&mut client, upstream_sent_fatal).await;
                        }
                    }
                    if terminated {
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
        let idle_deadline = match (settings.idle_timeout, state.is_idle()) {
            (Some(t), true) => Some(tokio::time::Instant::now() + t),
            _ => None,
        };
        tokio::select! {
            read = client.read_buf(&mut cbuf) => {
                match read {
                    Ok(0) | Err(_) => {
                        // Client vanished without Terminate: end the backend too.
                        let _ = server.shutdown().await;
                        return SessionEnd::ClientClosed;
                    }
                    Ok(_) => pending_client = true,
                }
            }
            read = server.read_buf(&mut sbuf) => {
                match read {
                    Ok(0) | Err(_) => return upstream_gone(&mut client, upstream_sent_fatal).await,
                    Ok(_) => {}
                }
                match frame_server(&mut sbuf, &mut state, &mut upstream_sent_fatal) {
                    Ok(out) => {
                        if !out.is_empty() {
                            to_client.inc_by(out.len() as u64);
                            if client.write_all(&out).await.is_err() {
                                let _ = server.shutdown().await;
                                return SessionEnd::ClientClosed;
                            }
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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
    let mut terminated = false;
    loop {
        match codec::typed_frame_len(&cbuf[end..], limit) {
            Ok(Some(len)) if cbuf.len() - end >= len => {
                let ty = cbuf[end];
                end += len;
                if ty == b'X' {
                    terminated = true;
                    break;
                }
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
    Ok((cbuf.split_to(end), terminated))
}

/// Splits every complete server message off `sbuf`, tracking ReadyForQuery
/// and FATAL errors.
fn frame_server(
    sbuf: &mut BytesMut,
    state: &mut Conversation,
    sent_fatal: &mut bool,
) -> Result<BytesMut, codec::FrameError> {
    let mut end = 0;
    loop {
        match codec::typed_frame_len(&sbuf[end..], MAX_BACKEND_MESSAGE)? {
            Some(len) if sbuf.len() - end >= len => {
                let msg = &sbuf[end..end + len];
                match msg[0] {
                    b'Z' if len == 6 => state.server_ready(msg[5]),
                    b'E' => {
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
                sbuf.reserve(len - (sbuf.len() - end));
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
