//! Replication sessions (`replication=true` or `database` in the startup
//! message) of roles with nothing masked: relayed byte for byte, since they
//! speak a protocol of their own after startup (replication commands,
//! CopyBoth streams of WAL or decoded changes). `net` refuses them for
//! masked roles before they get here; nothing here parses or changes a byte.

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::{Phase, SessionEnd, SessionIo};
use crate::observe::Metrics;

/// Copies both directions until either side closes, or until pgveil's drain
/// timeout (a replication stream is never idle, so it is not closed earlier;
/// without message boundaries no error can be injected, so it just closes).
pub async fn relay(
    io: SessionIo,
    metrics: &Metrics,
    mut phase: watch::Receiver<Phase>,
) -> SessionEnd {
    let SessionIo {
        mut client,
        mut server,
        cancel_key: _cancel_key,
        client_buf,
        ..
    } = io;
    let to_server = metrics.bytes.with_label_values(&["client_to_server"]);
    let to_client = metrics.bytes.with_label_values(&["server_to_client"]);
    if !client_buf.is_empty() {
        if server.write_all(&client_buf).await.is_err() {
            let _ = client.shutdown().await;
            return SessionEnd::UpstreamClosed;
        }
        to_server.inc_by(client_buf.len() as u64);
    }
    let closing = async {
        loop {
            if *phase.borrow_and_update() == Phase::Closing || phase.changed().await.is_err() {
                return;
            }
        }
    };
    let end = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut server) => match copied {
            Ok((up, down)) => {
                to_server.inc_by(up);
                to_client.inc_by(down);
                SessionEnd::ClientClosed
            }
            Err(_) => SessionEnd::UpstreamClosed,
        },
        _ = closing => SessionEnd::Shutdown,
    };
    let _ = client.shutdown().await;
    let _ = server.shutdown().await;
    end
}
