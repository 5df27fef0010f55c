//! observe: Prometheus metrics and the HTTP endpoint that serves them.
//! Owns no connection state; other rooms only increment what is here.

use std::sync::Arc;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The process-wide metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub connections_total: IntCounter,
    pub connections_active: IntGauge,
    pub connections_rejected: IntCounterVec,
    pub sessions_ended: IntCounterVec,
    pub cancel_requests: IntCounterVec,
    pub bytes: IntCounterVec,
    pub upstream_connect_failures: IntCounter,
    pub statements_blocked: IntCounter,
    pub masked_values: IntCounter,
    pub results_masked: IntCounter,
    pub results_withheld: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    // Registering a freshly named metric only fails on a duplicate name,
    // which is a programming error caught by the unit test below.
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let connections_active =
            IntGauge::new("pgveil_connections_active", "Client sessions open now")
                .unwrap_or_else(|e| panic!("metric: {e}"));
        let _ = registry.register(Box::new(connections_active.clone()));
        Arc::new(Metrics {
            connections_total: counter(
                &registry,
                "pgveil_connections_total",
                "Client connections accepted",
            ),
            connections_active,
            connections_rejected: counter_vec(
                &registry,
                "pgveil_connections_rejected_total",
                "Client connections refused before a session started, by reason",
                &["reason"],
            ),
            sessions_ended: counter_vec(
                &registry,
                "pgveil_sessions_ended_total",
                "Sessions ended, by how they ended",
                &["reason"],
            ),
            cancel_requests: counter_vec(
                &registry,
                "pgveil_cancel_requests_total",
                "Cancel requests received, by outcome",
                &["outcome"],
            ),
            bytes: counter_vec(
                &registry,
                "pgveil_bytes_total",
                "Bytes relayed, by direction",
                &["direction"],
            ),
            upstream_connect_failures: counter(
                &registry,
                "pgveil_upstream_connect_failures_total",
                "Failed attempts to open an upstream connection",
            ),
            statements_blocked: counter(
                &registry,
                "pgveil_statements_blocked_total",
                "Statements rejected with 42501 because the policy forbids them",
            ),
            masked_values: counter(
                &registry,
                "pgveil_masked_values_total",
                "Column values masked in result rows",
            ),
            results_masked: counter(
                &registry,
                "pgveil_results_masked_total",
                "Result sets in which at least one column was masked",
            ),
            results_withheld: counter(
                &registry,
                "pgveil_results_withheld_total",
                "Results replaced by an error because a value could not be masked safely",
            ),
            registry,
        })
    }

    /// The text exposition format Prometheus scrapes.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Serves `GET /metrics` and `GET /healthz` until the task is dropped.
pub async fn serve_http(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read until the end of the request head; bodies are not expected.
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = req.split(|&b| b == b'\r').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split(' ');
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => (
                    "200 OK",
                    TextEncoder::new().format_type().to_string(),
                    metrics.render(),
                ),
                ("GET", "/healthz") => ("200 OK", "text/plain".into(), b"ok\n".to_vec()),
                _ => (
                    "404 Not Found",
                    "text/plain".into(),
                    b"not found\n".to_vec(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_metrics_register_and_render() {
        let m = Metrics::new();
        m.connections_total.inc();
        m.bytes.with_label_values(&["client_to_server"]).inc_by(5);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("pgveil_connections_total 1"), "{text}");
        assert!(text.contains("pgveil_bytes_total{direction=\"client_to_server\"} 5"));
    }
}
