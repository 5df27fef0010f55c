//! observe: Prometheus metrics, the audit trail, and the HTTP endpoint that
//! serves /metrics, /healthz and /readyz.
//!
//! Owns no connection state. Sessions count what they forward in a
//! [`meter::SessionMeter`] (plain integers, added to the shared metrics once
//! per statement) and hand finished statements to the [`audit`] writer; the
//! label values here never carry SQL text or values.

pub mod audit;
pub mod cli;
pub mod clock;
pub mod fingerprint;
pub mod health;
pub mod meter;
pub mod report;
pub mod verify;

use std::sync::Arc;

use futures::future::BoxFuture;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Which value the `role` label of per-role series carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleLabel {
    /// The login role of the startup message (one series per person where
    /// every person has a login role).
    #[default]
    Login,
    /// The first policy role the login role matched (bounded by the policy);
    /// `unmatched` when it matched none.
    Rule,
    /// No role: the label is empty.
    None,
}

impl std::str::FromStr for RoleLabel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "login" => Ok(RoleLabel::Login),
            "rule" => Ok(RoleLabel::Rule),
            "none" => Ok(RoleLabel::None),
            other => Err(format!("`{other}` is not one of login, rule, none")),
        }
    }
}

/// The process-wide metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub role_label: RoleLabel,
    pub connections_total: IntCounter,
    pub connections_active: IntGauge,
    pub connections_rejected: IntCounterVec,
    pub sessions_ended: IntCounterVec,
    pub cancel_requests: IntCounterVec,
    pub bytes: IntCounterVec,
    pub upstream_connect_failures: IntCounter,
    /// `{database,role,outcome}`: outcome clear, masked, blocked, withheld.
    pub result_sets: IntCounterVec,
    /// `{database,role,outcome}`: rows of those result sets.
    pub rows: IntCounterVec,
    /// `{column,mask,class}`: protected values replaced by their mask.
    pub cells_masked: IntCounterVec,
    /// `{role,column,class,decision}`: rows that carried a protected column.
    pub protected_rows_read: IntCounterVec,
    /// `{database,role,rule}`.
    pub statements_blocked: IntCounterVec,
    /// Statements blocked because pgveil's parser and PostgreSQL's read
    /// them differently (each one a difference to find and fix).
    pub statements_misunderstood: IntCounter,
    /// Notification payloads in which detected values were starred out.
    pub notifications_redacted: IntCounter,
    /// `{cache}`: hit or miss of the analysis cache.
    pub analysis_duration: HistogramVec,
    /// `{direction}`: client_to_server or server_to_client.
    pub statement_overhead: HistogramVec,
    pub rowdescription_overrides: IntCounter,
    /// `{outcome}`: written or dropped.
    pub audit_records: IntCounterVec,
    pub audit_write_errors: IntCounter,
    pub audit_queue: IntGauge,
    pub policy_info: IntGaugeVec,
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

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(g.clone()));
    g
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let _ = registry.register(Box::new(h.clone()));
    h
}

/// 1 µs to ~0.5 s: pgveil's own work per message batch or statement.
fn micro_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-6, 4.0, 10).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Self::with_role_label(RoleLabel::Login)
    }

    pub fn with_role_label(role_label: RoleLabel) -> Arc<Metrics> {
        let r = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "pgveil_build_info",
                "Always 1; the version label is pgveil's",
            ),
            &["version"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let _ = r.register(Box::new(build_info));
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "pgveil_policy_info",
                "1 for the active policy set: its version and the SHA-256 of its files",
            ),
            &["version", "sha256"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let _ = r.register(Box::new(policy_info.clone()));
        Arc::new(Metrics {
            role_label,
            connections_total: counter(
                &r,
                "pgveil_connections_total",
                "Client connections accepted",
            ),
            connections_active: gauge(&r, "pgveil_connections_active", "Client sessions open now"),
            connections_rejected: counter_vec(
                &r,
                "pgveil_connections_rejected_total",
                "Client connections refused before a session started, by reason",
                &["reason"],
            ),
            sessions_ended: counter_vec(
                &r,
                "pgveil_sessions_ended_total",
                "Sessions ended, by how they ended",
                &["reason"],
            ),
            cancel_requests: counter_vec(
                &r,
                "pgveil_cancel_requests_total",
                "Cancel requests received, by outcome",
                &["outcome"],
            ),
            bytes: counter_vec(
                &r,
                "pgveil_bytes_total",
                "Bytes relayed, by direction",
                &["direction"],
            ),
            upstream_connect_failures: counter(
                &r,
                "pgveil_upstream_connect_failures_total",
                "Failed attempts to open an upstream connection",
            ),
            result_sets: counter_vec(
                &r,
                "pgveil_result_sets_total",
                "Result sets forwarded (or refused), by outcome: clear, masked, blocked, withheld",
                &["database", "role", "outcome"],
            ),
            rows: counter_vec(
                &r,
                "pgveil_rows_total",
                "Rows forwarded, by the outcome of their result set",
                &["database", "role", "outcome"],
            ),
            cells_masked: counter_vec(
                &r,
                "pgveil_cells_masked_total",
                "Values of protected columns replaced by their mask, by column, mask and class",
                &["column", "mask", "class"],
            ),
            protected_rows_read: counter_vec(
                &r,
                "pgveil_protected_rows_read_total",
                "Rows that carried a protected column to a role, by decision: clear or masked",
                &["role", "column", "class", "decision"],
            ),
            statements_blocked: counter_vec(
                &r,
                "pgveil_statements_blocked_total",
                "Statements rejected with 42501 because the policy forbids them, by rule",
                &["database", "role", "rule"],
            ),
            statements_misunderstood: counter(
                &r,
                "pgveil_statements_misunderstood_total",
                "Statements blocked because pgveil's parser and PostgreSQL's read them differently",
            ),
            notifications_redacted: counter(
                &r,
                "pgveil_notifications_redacted_total",
                "Notification payloads in which pgveil starred out detected values",
            ),
            analysis_duration: histogram_vec(
                &r,
                "pgveil_analysis_duration_seconds",
                "Time to analyse and plan one client statement, by analysis cache hit or miss",
                &["cache"],
                micro_buckets(),
            ),
            statement_overhead: histogram_vec(
                &r,
                "pgveil_statement_overhead_seconds",
                "Time pgveil spent between reading a batch of messages and forwarding it",
                &["direction"],
                micro_buckets(),
            ),
            rowdescription_overrides: counter(
                &r,
                "pgveil_rowdescription_overrides_total",
                "Masks added because a RowDescription named a protected column the analyzer missed",
            ),
            audit_records: counter_vec(
                &r,
                "pgveil_audit_records_total",
                "Audit records, by outcome: written, or dropped because the queue was full",
                &["outcome"],
            ),
            audit_write_errors: counter(
                &r,
                "pgveil_audit_write_errors_total",
                "Failed writes of the audit log (retried until they succeed)",
            ),
            audit_queue: gauge(
                &r,
                "pgveil_audit_queue_records",
                "Audit records waiting for the writer",
            ),
            policy_info,
            registry: r,
        })
    }

    /// Marks the policy set in use (one series at a time).
    pub fn set_policy(&self, version: u64, sha256: &str) {
        self.policy_info.reset();
        self.policy_info
            .with_label_values(&[&version.to_string(), sha256])
            .set(1);
    }

    /// The text exposition format Prometheus scrapes.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Histogram children resolved once, observed without a label lookup.
pub fn observe_seconds(h: &Histogram, started: std::time::Instant) {
    h.observe(started.elapsed().as_secs_f64());
}

/// What /readyz checks besides the process being alive: the policy is
/// loaded, the upstream accepts connections, the catalog is readable.
pub trait Readiness: Send + Sync {
    /// `Err` names what is not ready.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Called before each scrape, to refresh gauges that mirror state kept
    /// elsewhere (the active policy).
    fn before_scrape(&self, _metrics: &Metrics) {}
}

/// Serves `GET /metrics`, `GET /healthz` and `GET /readyz` until the task is
/// dropped.
pub async fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Option<Arc<dyn Readiness>>,
) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
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
            let text = || "text/plain".to_string();
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => {
                    if let Some(r) = &readiness {
                        r.before_scrape(&metrics);
                    }
                    (
                        "200 OK",
                        TextEncoder::new().format_type().to_string(),
                        metrics.render(),
                    )
                }
                ("GET", "/healthz") => ("200 OK", text(), b"ok\n".to_vec()),
                ("GET", "/readyz") => {
                    let checked = match &readiness {
                        Some(r) => r.check().await,
                        None => Ok(()),
                    };
                    match checked {
                        Ok(()) => ("200 OK", text(), b"ready\n".to_vec()),
                        Err(why) => (
                            "503 Service Unavailable",
                            text(),
                            format!("not ready: {why}\n").into_bytes(),
                        ),
                    }
                }
                _ => ("404 Not Found", text(), b"not found\n".to_vec()),
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
        m.set_policy(3, "ab");
        m.set_policy(4, "cd");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("pgveil_connections_total 1"), "{text}");
        assert!(text.contains("pgveil_bytes_total{direction=\"client_to_server\"} 5"));
        assert!(text.contains("pgveil_build_info{version=\""), "{text}");
        assert!(
            text.contains("pgveil_policy_info{sha256=\"cd\",version=\"4\"} 1"),
            "{text}"
        );
        assert!(!text.contains("sha256=\"ab\""), "{text}");
    }
}
