//! The relay's half of a stepwise Query (see `guard::steps`): sends each
//! statement as its own step of one pipeline, relays the answers to the
//! client as the answers of its simple Query, and between two steps reads
//! what the earlier ones changed (search_path, the transaction's schema)
//! inside the pipeline's transaction, so the next step is planned against
//! it. Any error ends the steps; the Sync then ends the transaction as the
//! end of a simple Query would (rolled back after an error). A client that
//! goes away meanwhile ends the session at once, as between statements.
//!
//! The same relaying of answers also lets a pipeline wait (see
//! `Guard::waits_for_answers`): a message that uses a statement or portal
//! an earlier segment makes or closes goes on only once the server has
//! answered those segments.

use bytes::BytesMut;
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;

use super::runtime::MaskingRuntime;
use super::{
    close_both, contained, frame_server, probe_search_path_pipelined, publish, upstream_gone,
    Conversation, Masking, SessionEnd, Via, READ_CHUNK,
};
use crate::net::cancel::CancelKey;
use crate::net::codec::{self, ProxyError};
use crate::net::stream::Stream;
use crate::observe::meter::{FrameCount, SessionMeter};

/// What of the relay a stepwise Query uses.
pub(super) struct Link<'a> {
    pub client: &'a mut Stream,
    /// What the client sends while the steps run (its next messages) is
    /// read into this buffer, up to `CLIENT_READ_AHEAD`: reading is how a
    /// client that went away is noticed.
    pub cbuf: &'a mut BytesMut,
    pub server: &'a mut Stream,
    pub sbuf: &'a mut BytesMut,
    pub state: &'a mut Conversation,
    pub upstream_sent_fatal: &'a mut bool,
    pub meter: &'a mut SessionMeter,
    pub cancel: &'a CancelKey,
    pub to_server: &'a IntCounter,
    pub to_client: &'a IntCounter,
}

/// The most of the client's next messages read while a step runs; beyond
/// it the client waits (and its going away is noticed once the step ends).
const CLIENT_READ_AHEAD: usize = 1 << 20;

/// Answers to the steps' own messages that a client of a simple Query
/// does not expect.
fn step_only(ty: u8) -> bool {
    matches!(ty, b'1' | b'2' | b'3' | b'n')
}

/// Runs `pieces`, the statements of the client's Query, one step each, and
/// ends the pipeline. `Err`: the session is over.
pub(super) async fn run(
    pieces: Vec<String>,
    masking: &mut Masking,
    rt: &MaskingRuntime,
    link: &mut Link<'_>,
) -> Result<(), SessionEnd> {
    let outcome = run_steps(&pieces, masking, rt, link).await;
    link.cancel.release();
    outcome?;
    let mut out = BytesMut::new();
    if let Some(g) = masking.guard.as_mut() {
        let abort = g.is_withholding();
        g.end_steps(abort, &mut out);
    }
    send_server(link, &out).await?;
    relay_answers(masking, rt, link, Until::Quiet)
        .await
        .map(|_| ())
}

/// Relays the server's answers until it has answered every Sync the
/// client sent before a message that uses a statement or portal those
/// segments make or close (see `Guard::waits_for_answers`); the relay then
/// hands that message to the guard again.
pub(super) async fn await_earlier_segments(
    masking: &mut Masking,
    rt: &MaskingRuntime,
    link: &mut Link<'_>,
) -> Result<(), SessionEnd> {
    // What was sent runs meanwhile: a cancel is meant for it.
    link.cancel.release();
    link.cancel.set_busy(true);
    relay_answers(masking, rt, link, Until::Segments)
        .await
        .map(|_| ())
}

/// When `relay_answers` stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// A step is answered (or withheld); answers to the step's own
    /// messages are not the client's.
    Step,
    /// The end of the steps is answered, likewise.
    Quiet,
    /// No Sync of the client's is unanswered; every answer is the client's.
    Segments,
}

async fn run_steps(
    pieces: &[String],
    masking: &mut Masking,
    rt: &MaskingRuntime,
    link: &mut Link<'_>,
) -> Result<(), SessionEnd> {
    for (i, sql) in pieces.iter().enumerate() {
        link.cancel.hold();
        let mut early = BytesMut::new();
        let failed = if i > 0 {
            prepare_step(masking, rt, link, &mut early).await?
        } else {
            None
        };
        let early = match masking.guard_early(&early) {
            Ok(early) => early,
            Err(err) => return Err(close(link, err, SessionEnd::InternalError).await),
        };
        send_client(link, &early).await?;
        let Some(g) = masking.guard.as_mut() else {
            return Ok(());
        };
        if let Some(error) = failed {
            // pgveil's own read failed and aborted the transaction: the
            // client learns it from the server's error (scrubbed).
            let mut out = BytesMut::new();
            if let Err(err) = contained(|| g.server_message(&error, &mut out)) {
                return Err(close(link, err, SessionEnd::InternalError).await);
            }
            send_client(link, &out).await?;
            return Ok(());
        }
        let mut out = BytesMut::new();
        if let Err(err) = contained(|| g.step(sql, &mut out)) {
            return Err(close(link, err, SessionEnd::InternalError).await);
        }
        publish(link.meter, &mut g.observed).await;
        send_server(link, &out).await?;
        link.cancel.release();
        link.cancel.set_busy(true);
        let error = relay_answers(masking, rt, link, Until::Step).await?;
        let Some(g) = masking.guard.as_mut() else {
            return Ok(());
        };
        g.step_done();
        if error || g.is_withholding() {
            return Ok(());
        }
    }
    Ok(())
}

/// Before a step: reads what the earlier steps changed and the next one
/// depends on. `Some(error)`: the server failed pgveil's read (the
/// pipeline's transaction is aborted).
async fn prepare_step(
    masking: &mut Masking,
    rt: &MaskingRuntime,
    link: &mut Link<'_>,
    early: &mut BytesMut,
) -> Result<Option<BytesMut>, SessionEnd> {
    let path_pending = masking
        .guard
        .as_ref()
        .is_some_and(|g| g.search_path_pending());
    if path_pending {
        match probe_search_path_pipelined(link.server, link.sbuf, &masking.user, early).await {
            Ok(Ok(reading)) => {
                if let Some(g) = masking.guard.as_mut() {
                    // Inside a transaction: the server may still undo it.
                    reading.apply(g, false);
                }
            }
            Ok(Err(error)) => return Ok(Some(error)),
            Err(m) => {
                let err = ProxyError::fatal("08006", m);
                return Err(close(link, err, SessionEnd::UpstreamClosed).await);
            }
        }
    }
    let overlay_due = masking.guard.as_ref().is_some_and(|g| g.overlay_due());
    if overlay_due {
        match masking
            .read_transaction_catalog(rt, link.server, link.sbuf, early, Via::Pipeline)
            .await
        {
            Ok(failed) => return Ok(failed),
            Err(err) => return Err(close(link, err, SessionEnd::PolicyUnavailable).await),
        }
    }
    Ok(None)
}

/// Relays the server's answers through the guard until it expects no more
/// (or, for a step, withholds them: the guard then drops everything up to
/// the ReadyForQuery; or, `Until::Segments`, until it awaits no Sync);
/// true when one was an error.
async fn relay_answers(
    masking: &mut Masking,
    rt: &MaskingRuntime,
    link: &mut Link<'_>,
    until: Until,
) -> Result<bool, SessionEnd> {
    let mut error = false;
    let mut framed = FrameCount::default();
    loop {
        let Some(g) = masking.guard.as_mut() else {
            return Ok(error);
        };
        let done = match until {
            Until::Step => g.is_quiet() || g.is_withholding(),
            Until::Quiet => g.is_quiet(),
            Until::Segments => !g.awaits_earlier_segments(),
        };
        if done {
            return Ok(error);
        }
        link.state.plain_indexes = !g.may_make_key();
        let frames =
            match frame_server(link.sbuf, link.state, link.upstream_sent_fatal, &mut framed) {
                Ok(f) => f,
                Err(e) => {
                    let err = ProxyError::fatal(
                        "08P01",
                        format!("invalid message from the database: {e}"),
                    );
                    return Err(close(link, err, SessionEnd::ProtocolViolation).await);
                }
            };
        if frames.is_empty() {
            // A client that goes away during a long step ends the session
            // as it does between statements: the server's connection is
            // closed with it, not kept until the steps are done.
            let read_ahead = link.cbuf.len() < CLIENT_READ_AHEAD;
            tokio::select! {
                read = link.server.read_chunk(link.sbuf, READ_CHUNK) => match read {
                    Ok(0) | Err(_) => {
                        return Err(upstream_gone(link.client, *link.upstream_sent_fatal).await)
                    }
                    Ok(_) => continue,
                },
                read = link.client.read_chunk(link.cbuf, READ_CHUNK), if read_ahead => match read {
                    Ok(0) | Err(_) => {
                        let _ = link.server.shutdown().await;
                        return Err(SessionEnd::ClientClosed);
                    }
                    // Kept for after the steps, as if it had arrived then.
                    Ok(_) => continue,
                },
            }
        }
        if std::mem::take(&mut link.state.schema_committed) {
            rt.invalidate_catalog(&masking.database, false);
        }
        let mut out = BytesMut::with_capacity(frames.len() + 64);
        let guarded = contained(|| {
            let mut answer = BytesMut::new();
            for msg in codec::frames(&frames) {
                error |= msg[0] == b'E';
                answer.clear();
                g.server_message(msg, &mut answer);
                for m in codec::frames(&answer) {
                    if until == Until::Segments || !step_only(m[0]) {
                        out.extend_from_slice(m);
                    }
                }
            }
        });
        if let Err(err) = guarded {
            return Err(close(link, err, SessionEnd::InternalError).await);
        }
        if !g.to_server.is_empty() {
            let released = g.to_server.split();
            send_server(link, &released).await?;
        }
        if g.effects.catalog_stale {
            rt.invalidate_catalog(&masking.database, false);
        }
        publish(link.meter, &mut g.observed).await;
        send_client(link, &out).await?;
    }
}

async fn send_server(link: &mut Link<'_>, bytes: &[u8]) -> Result<(), SessionEnd> {
    if bytes.is_empty() {
        return Ok(());
    }
    link.to_server.inc_by(bytes.len() as u64);
    if link.server.write_all(bytes).await.is_err() {
        return Err(upstream_gone(link.client, *link.upstream_sent_fatal).await);
    }
    Ok(())
}

async fn send_client(link: &mut Link<'_>, bytes: &[u8]) -> Result<(), SessionEnd> {
    if bytes.is_empty() {
        return Ok(());
    }
    link.to_client.inc_by(bytes.len() as u64);
    if link.client.write_all(bytes).await.is_err() {
        let _ = link.server.shutdown().await;
        return Err(SessionEnd::ClientClosed);
    }
    Ok(())
}

async fn close(link: &mut Link<'_>, err: ProxyError, end: SessionEnd) -> SessionEnd {
    close_both(link.client, link.server, err).await;
    end
}
