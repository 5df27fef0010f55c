//! net: accepting clients, TLS, the startup phase and the auth relay.
//!
//! Owns sockets until authentication ends, then hands both streams to
//! `session`. Never looks at queries or rows.

pub mod cancel;
pub mod codec;
pub mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::analyze::policy_view::PolicyView;

use crate::config::{LogFormat, ServeArgs, Settings, UpstreamTls};
use crate::observe::Metrics;
use crate::policy::PolicyStore;
use crate::session::runtime::{CatalogAccess, MaskingRuntime};
use crate::session::{self, Phase, SessionEnd, SessionIo};
use cancel::{CancelKey, CancelRegistry};
use codec::{ProxyError, StartupPacket};
use stream::Stream;

/// Everything a connection needs, shared by all of them.
pub struct Proxy {
    pub settings: Settings,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    connector: Option<tokio_rustls::TlsConnector>,
    pub cancel: CancelRegistry,
    pub metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    /// Present when policies are configured.
    pub masking: Option<Arc<MaskingRuntime>>,
    /// Present with `--audit-log`.
    pub audit: Option<crate::observe::audit::AuditLog>,
}

/// A failure while building a proxy from its settings.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl Proxy {
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Result<Proxy, SetupError> {
        let acceptor = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let connector = match settings.upstream_tls {
            UpstreamTls::Disable => None,
            UpstreamTls::Prefer | UpstreamTls::Require => Some(tls::connector(None)?),
            UpstreamTls::VerifyFull => Some(tls::connector(settings.upstream_ca.as_deref())?),
        };
        if connector.is_some() {
            tls::server_name(&settings.upstream_server_name)?;
        }
        let slots = Arc::new(Semaphore::new(settings.max_connections));
        Ok(Proxy {
            settings,
            acceptor,
            connector,
            cancel: CancelRegistry::default(),
            metrics,
            slots,
            masking: None,
            audit: None,
        })
    }
}

/// Entry point of `pgveil serve`.
pub fn serve_main(args: ServeArgs) -> ExitCode {
    let settings = match Settings::resolve(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pgveil: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Statements are analysed on the workers, PostgreSQL's parser
        // included, with the stack that parser needs for the deepest text
        // pgveil accepts (reserved, not committed).
        .thread_stack_size(crate::analyze::pg_tree::ANALYSIS_THREAD_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgveil: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgveil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGVEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let metrics = Metrics::with_role_label(settings.metrics_role_label);
    let listener = TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let http = match &settings.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let mut audit_writer = None;
    let audit = match &settings.audit {
        Some(a) => {
            let (log, writer) = crate::observe::audit::start(a, metrics.clone())
                .map_err(|e| anyhow::anyhow!("cannot open the audit log {:?}: {e}", a.target))?;
            audit_writer = Some(writer);
            Some(log)
        }
        None => None,
    };
    let mut proxy = Proxy::new(settings, metrics)?;
    proxy.audit = audit;
    let mut _watcher = None;
    if let Some(dir) = proxy.settings.policies.clone() {
        let store = PolicyStore::load(&dir, proxy.settings.keys_dir.as_deref())
            .map_err(|e| anyhow::anyhow!("policies in {} are invalid:\n{e}", dir.display()))?;
        store.register_metrics(&proxy.metrics.registry)?;
        info!(dir = %dir.display(), version = store.current().version(), "policies loaded");
        let runtime = MaskingRuntime::new(
            store,
            &proxy.settings,
            CatalogAccess {
                user: proxy.settings.catalog_user.clone(),
                password: proxy.settings.catalog_password.clone(),
            },
            proxy.settings.catalog_ttl,
        )?;
        let runtime = Arc::new(runtime);
        // Say early if pgveil cannot read the catalog: masked sessions would
        // be refused until it can.
        if let Err(e) = runtime.catalog("postgres").await {
            warn!(error = %e, "catalog check failed; sessions of masked roles will be refused until it succeeds (see --catalog-user, PGVEIL_CATALOG_PASSWORD)");
        }
        _watcher = Some(
            runtime
                .store
                .watch()
                .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?,
        );
        spawn_sighup_reload(runtime.clone());
        proxy.masking = Some(runtime);
    } else {
        warn!("no --policies given: pgveil relays every column in clear");
    }
    if let (Some(http), Some(addr)) = (http, &proxy.settings.metrics_listen) {
        info!(addr = %addr, "serving /metrics, /healthz and /readyz");
        let readiness = crate::observe::health::ProxyReadiness {
            upstream: (
                proxy.settings.upstream_host.clone(),
                proxy.settings.upstream_port,
            ),
            connect_timeout: proxy.settings.connect_timeout,
            runtime: proxy.masking.clone(),
            catalog_database: "postgres".into(),
        };
        tokio::spawn(crate::observe::serve_http(
            http,
            proxy.metrics.clone(),
            Some(Arc::new(readiness)),
        ));
    }
    let proxy = Arc::new(proxy);
    info!(
        listen = %listener.local_addr()?,
        upstream = %format!("{}:{}", proxy.settings.upstream_host, proxy.settings.upstream_port),
        "pgveil is accepting connections"
    );
    run(listener, proxy, shutdown_signal()).await;
    // Sessions are gone: the writer drains the queue and ends.
    if let Some(writer) = audit_writer {
        let join = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(Duration::from_secs(10), join)
            .await
            .is_err()
        {
            warn!("audit writer still busy at exit; the last records may be lost");
        }
    }
    Ok(())
}

/// Reloads policies (and role memberships) on SIGHUP.
fn spawn_sighup_reload(runtime: Arc<MaskingRuntime>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match runtime.store.reload() {
                Ok(version) => info!(version, "policies reloaded on SIGHUP"),
                Err(e) => {
                    warn!(error = %e, "policy reload failed; the previous policies stay active")
                }
            }
            runtime.memberships.expire();
            // After a migration applied directly to the database.
            runtime.catalogs.clear();
        }
    });
    #[cfg(not(unix))]
    let _ = runtime;
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Accepts until `shutdown` resolves, then drains: idle sessions close at
/// once, busy ones get `drain_timeout` to finish, the rest are closed with a
/// FATAL error.
pub async fn run(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (sock, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let proxy = proxy.clone();
                let phase = phase_rx.clone();
                tracker.spawn(async move {
                    handle_connection(proxy, sock, peer, phase).await;
                });
            }
        }
    }
    drop(listener);
    let active = tracker.len();
    info!(sessions = active, drain_timeout = ?proxy.settings.drain_timeout, "shutting down: draining sessions");
    tracker.close();
    let _ = phase_tx.send(Phase::Draining);
    if tokio::time::timeout(proxy.settings.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            sessions = tracker.len(),
            "drain timeout reached: closing remaining sessions"
        );
        let _ = phase_tx.send(Phase::Closing);
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    }
    info!("pgveil stopped");
}

async fn handle_connection(
    proxy: Arc<Proxy>,
    sock: TcpStream,
    peer: SocketAddr,
    phase: watch::Receiver<Phase>,
) {
    let _ = sock.set_nodelay(true);
    let span = info_span!(
        "conn",
        peer = %peer,
        user = tracing::field::Empty,
        database = tracing::field::Empty
    );
    async move {
        let Ok(_permit) = proxy.slots.clone().try_acquire_owned() else {
            proxy
                .metrics
                .connections_rejected
                .with_label_values(&["too_many_connections"])
                .inc();
            let mut sock = sock;
            // The client may still be sending its startup packet; answer anyway.
            let _ = sock
                .write_all(
                    &ProxyError::fatal("53300", "sorry, too many clients already").to_bytes(),
                )
                .await;
            let _ = sock.shutdown().await;
            return;
        };
        proxy.metrics.connections_total.inc();
        let startup = tokio::time::timeout(
            proxy.settings.auth_timeout,
            start_session(&proxy, Stream::Plain(sock)),
        )
        .await;
        let io = match startup {
            Ok(Ok(Some(io))) => io,
            Ok(Ok(None)) => return,
            Ok(Err(rejected)) => {
                debug!(
                    reason = rejected.reason,
                    "connection ended before the session started"
                );
                proxy
                    .metrics
                    .connections_rejected
                    .with_label_values(&[rejected.reason])
                    .inc();
                return;
            }
            Err(_) => {
                proxy
                    .metrics
                    .connections_rejected
                    .with_label_values(&["auth_timeout"])
                    .inc();
                debug!("startup and authentication did not finish within auth_timeout");
                return;
            }
        };
        proxy.metrics.connections_active.inc();
        let mut io = io;
        io.client_addr = peer.to_string();
        // A panic anywhere in the session (a bug) ends this session only.
        let end = std::panic::AssertUnwindSafe(session::relay(
            io,
            &proxy.settings,
            &proxy.metrics,
            phase,
            proxy.masking.as_deref(),
            proxy.audit.as_ref(),
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            error!(panic = %session::panic_text(panic.as_ref()), "internal error: session closed");
            SessionEnd::InternalError
        });
        proxy.metrics.connections_active.dec();
        proxy
            .metrics
            .sessions_ended
            .with_label_values(&[end.label()])
            .inc();
        match end {
            SessionEnd::ClientTerminated | SessionEnd::ClientClosed => debug!("session ended"),
            other => info!(reason = other.label(), "session ended"),
        }
    }
    .instrument(span)
    .await
}

/// Why a connection ended before its session started.
#[derive(Debug)]
struct Rejected {
    reason: &'static str,
}

fn rejected(reason: &'static str) -> Rejected {
    Rejected { reason }
}

/// Reads one untyped startup-phase packet. `Ok(None)`: the client left
/// before sending one (closed, or sent Terminate as node-postgres does when
/// `end()` comes before the connection is up). `Err`: a length PostgreSQL
/// would refuse; like PostgreSQL, the caller answers nothing and closes.
async fn read_startup_packet(
    client: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Option<BytesMut>, String> {
    loop {
        // A Terminate message ('X', length 4) where a startup packet belongs:
        // its first four bytes can be no valid startup length.
        if buf.starts_with(b"X\0\0\0") {
            debug!("client sent Terminate before its startup message");
            return Ok(None);
        }
        match codec::startup_frame_len(buf) {
            Ok(Some(len)) if buf.len() >= len => return Ok(Some(buf.split_to(len))),
            Ok(_) => {}
            Err(e) => return Err(format!("invalid length of startup packet: {e}")),
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

async fn send_fatal(client: &mut Stream, err: ProxyError) {
    let _ = client.write_all(&err.to_bytes()).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
}

/// Runs the startup phase: SSL/GSS negotiation, cancel requests, the startup
/// message, the upstream connection and the auth relay. `Ok(None)` means the
/// connection was a cancel request or the client left politely.
async fn start_session(proxy: &Proxy, mut client: Stream) -> Result<Option<SessionIo>, Rejected> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut ssl_done = false;
    let (packet, params) = loop {
        let packet = match read_startup_packet(&mut client, &mut buf).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(rejected("client_closed")),
            Err(e) => {
                // PostgreSQL only logs this (COMMERROR): whatever sent it is
                // not speaking the protocol, and gets no answer.
                info!(error = %e, "connection closed");
                let _ = client.shutdown().await;
                return Err(rejected("bad_startup"));
            }
        };
        match codec::decode_startup_packet(&packet) {
            Ok(StartupPacket::Ssl) if !ssl_done && !client.is_tls() && buf.is_empty() => {
                ssl_done = true;
                let Stream::Plain(tcp) = client else {
                    return Err(rejected("bad_startup"));
                };
                let mut tcp = tcp;
                match &proxy.acceptor {
                    Some(acceptor) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return Err(rejected("client_closed"));
                        }
                        match acceptor.accept(tcp).await {
                            Ok(tls) => client = Stream::ServerTls(Box::new(tls)),
                            Err(e) => {
                                debug!(error = %e, "TLS handshake with client failed");
                                return Err(rejected("tls_handshake"));
                            }
                        }
                    }
                    None => {
                        if tcp.write_all(b"N").await.is_err() {
                            return Err(rejected("client_closed"));
                        }
                        client = Stream::Plain(tcp);
                    }
                }
            }
            Ok(StartupPacket::GssEnc) if !client.is_tls() => {
                if client.write_all(b"N").await.is_err() {
                    return Err(rejected("client_closed"));
                }
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                forward_cancel(proxy, pid, &secret).await;
                return Ok(None);
            }
            Ok(StartupPacket::Startup { params, .. }) => break (packet, params),
            Ok(StartupPacket::Ssl) | Ok(StartupPacket::GssEnc) => {
                send_fatal(
                    &mut client,
                    ProxyError::fatal("08P01", "unexpected encryption request"),
                )
                .await;
                return Err(rejected("bad_startup"));
            }
            Err(message) => {
                send_fatal(&mut client, ProxyError::fatal("08P01", message)).await;
                return Err(rejected("bad_startup"));
            }
        }
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(user) = param("user").filter(|u| !u.is_empty()) else {
        send_fatal(
            &mut client,
            ProxyError::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            ),
        )
        .await;
        return Err(rejected("bad_startup"));
    };
    // `replication=true|on|yes|1` (physical) or `database` (logical); an
    // invalid value is the server's to refuse, so only the off forms count
    // as a normal session.
    let replication = param("replication").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    });
    let database = param("database").unwrap_or_else(|| user.clone());
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("database", database.as_str());

    let mut server = match connect_upstream(proxy).await {
        Ok(s) => s,
        Err(e) => {
            proxy.metrics.upstream_connect_failures.inc();
            warn!(error = %e.message, "cannot reach the upstream");
            send_fatal(&mut client, e).await;
            return Err(rejected("upstream_unavailable"));
        }
    };
    if server.write_all(&packet).await.is_err() {
        send_fatal(
            &mut client,
            ProxyError::fatal("08006", "the upstream closed the connection during startup"),
        )
        .await;
        return Err(rejected("upstream_unavailable"));
    }
    let admission = Admission {
        replication,
        user: &user,
        database: &database,
    };
    let (key, client_buf) = match relay_auth(proxy, &mut client, &mut server, buf, admission).await
    {
        Ok(done) => done,
        Err(reason) => {
            let _ = server.shutdown().await;
            let _ = client.shutdown().await;
            return Err(rejected(reason));
        }
    };
    info!("session started");
    Ok(Some(SessionIo {
        client,
        server,
        cancel_key: key,
        client_buf,
        application: param("application_name").unwrap_or_default(),
        client_addr: String::new(),
        user,
        database,
        replication,
    }))
}

/// Opens a connection to the upstream, negotiating TLS as configured.
async fn connect_upstream(proxy: &Proxy) -> Result<Stream, ProxyError> {
    let s = &proxy.settings;
    let addr = (s.upstream_host.as_str(), s.upstream_port);
    let unavailable = |what: String| {
        ProxyError::fatal("08006", format!("pgveil cannot reach the database: {what}"))
    };
    let tcp = match tokio::time::timeout(s.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(unavailable(e.to_string())),
        Err(_) => return Err(unavailable("connection timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    let Some(connector) = &proxy.connector else {
        return Ok(Stream::Plain(tcp));
    };
    let mut tcp = tcp;
    let mut request = Vec::with_capacity(8);
    request.extend_from_slice(&8i32.to_be_bytes());
    request.extend_from_slice(&codec::SSL_REQUEST_CODE.to_be_bytes());
    let mut answer = [0u8; 1];
    let negotiated = async {
        tcp.write_all(&request).await?;
        tcp.read_exact(&mut answer).await
    };
    if let Err(e) = tokio::time::timeout(s.connect_timeout, negotiated)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("TLS negotiation timed out")))
    {
        return Err(unavailable(e.to_string()));
    }
    match answer[0] {
        b'S' => {
            let name = tls::server_name(&s.upstream_server_name)
                .map_err(|e| unavailable(e.to_string()))?;
            match tokio::time::timeout(s.connect_timeout, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => Ok(Stream::ClientTls(Box::new(tls))),
                Ok(Err(e)) => Err(unavailable(format!("TLS handshake failed: {e}"))),
                Err(_) => Err(unavailable("TLS handshake timed out".into())),
            }
        }
        b'N' if s.upstream_tls == UpstreamTls::Prefer => Ok(Stream::Plain(tcp)),
        b'N' => Err(unavailable(
            "the database does not accept TLS but upstream_tls requires it".into(),
        )),
        _ => Err(unavailable("unexpected answer to SSLRequest".into())),
    }
}

/// Relays authentication until the upstream's first ReadyForQuery. Returns the
/// client's cancel key; the secret of the upstream's BackendKeyData is
/// replaced by pgveil's own.
async fn relay_auth(
    proxy: &Proxy,
    client: &mut Stream,
    server: &mut Stream,
    mut cbuf: BytesMut,
    admission: Admission<'_>,
) -> Result<(CancelKey, BytesMut), &'static str> {
    let mut sbuf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(1024);
    let mut key: Option<CancelKey> = None;
    let limit = proxy.settings.max_message_size;
    loop {
        let msg = match read_typed(server, &mut sbuf, usize::MAX >> 1).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                let _ = client.write_all(&out).await;
                send_fatal(client, closed_during_auth()).await;
                return Err("upstream_closed");
            }
            Err(e) => {
                send_fatal(
                    client,
                    ProxyError::fatal("08P01", format!("invalid message from the database: {e}")),
                )
                .await;
                return Err("upstream_protocol");
            }
        };
        match msg[0] {
            b'R' => {
                let code = codec::auth_code(&msg).unwrap_or(-1);
                match codec::strip_channel_binding(&msg) {
                    Some(stripped) => out.extend_from_slice(&stripped),
                    None => out.extend_from_slice(&msg),
                }
                // Ok (0) and SASLFinal (12) expect nothing from the client.
                if code != 0 && code != 12 {
                    if client.write_all(&out).await.is_err() {
                        return Err("client_closed");
                    }
                    out.clear();
                    let answer = match read_typed(client, &mut cbuf, limit).await {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err("client_closed"),
                        Err(e) => {
                            send_fatal(
                                client,
                                ProxyError::fatal(
                                    "08P01",
                                    format!("invalid authentication message: {e}"),
                                ),
                            )
                            .await;
                            return Err("bad_startup");
                        }
                    };
                    if answer[0] != b'p' {
                        send_fatal(
                            client,
                            ProxyError::fatal(
                                "08P01",
                                format!(
                                    "expected a password response, got message type '{}'",
                                    answer[0].escape_ascii()
                                ),
                            ),
                        )
                        .await;
                        return Err("bad_startup");
                    }
                    if server.write_all(&answer).await.is_err() {
                        send_fatal(client, closed_during_auth()).await;
                        return Err("upstream_closed");
                    }
                }
            }
            b'K' => match codec::decode_backend_key_data(&msg) {
                Some((pid, secret)) => {
                    let issued = proxy.cancel.register(pid, secret);
                    codec::encode_backend_key_data(issued.pid, &issued.secret, &mut out);
                    key = Some(issued);
                }
                None => out.extend_from_slice(&msg),
            },
            b'E' => {
                out.extend_from_slice(&msg);
                let _ = client.write_all(&out).await;
                let _ = client.flush().await;
                let _ = client.shutdown().await;
                return Err("auth_failed");
            }
            b'Z' => {
                // The server authenticated the role; nothing after its
                // AuthenticationOk has reached the client yet.
                if let Err(refusal) = admission.check(proxy).await {
                    let _ = server.write_all(&[b'X', 0, 0, 0, 4]).await;
                    let _ = server.shutdown().await;
                    send_fatal(client, refusal).await;
                    return Err("replication_masked");
                }
                out.extend_from_slice(&msg);
                if client.write_all(&out).await.is_err() {
                    return Err("client_closed");
                }
                // A server that sends no key (none does today) still gets one
                // for the client, which then cancels nothing.
                let key = key.unwrap_or_else(|| proxy.cancel.register(0, vec![0; 4]));
                return Ok((key, cbuf));
            }
            _ => out.extend_from_slice(&msg),
        }
    }
}

/// What decides, once the server has authenticated a role, whether pgveil
/// may serve the session at all.
struct Admission<'a> {
    replication: bool,
    user: &'a str,
    database: &'a str,
}

impl Admission<'_> {
    /// A replication session streams WAL or logically decoded row changes:
    /// a protocol of its own (CopyBoth) that carries every column of every
    /// changed row, and that pgveil relays byte for byte. Only roles with
    /// nothing masked or denied get one.
    async fn check(&self, proxy: &Proxy) -> Result<(), ProxyError> {
        if !self.replication {
            return Ok(());
        }
        let Some(rt) = &proxy.masking else {
            return Ok(());
        };
        let restricted = match rt.role_view(self.user, self.database).await {
            Ok((_, view)) => view.is_restricted(),
            Err(e) => {
                warn!(error = %e, "cannot read the role's policy for a replication session");
                true
            }
        };
        if !restricted {
            return Ok(());
        }
        Err(ProxyError::fatal(
            "42501",
            format!(
                "pgveil: replication connections are refused for role \"{}\", which has masked or denied columns: \
                 physical replication and logical decoding stream every column of every changed row, bypassing every masking rule",
                self.user
            ),
        )
        .with_hint(
            "Connect replication clients to the database directly as a role allowed to see all data, \
             or use a role the policy leaves unmasked.",
        ))
    }
}

fn closed_during_auth() -> ProxyError {
    ProxyError::fatal(
        "08006",
        "the database closed the connection during authentication",
    )
}

/// Reads one complete typed message.
pub(crate) async fn read_typed(
    stream: &mut Stream,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<Option<BytesMut>, codec::FrameError> {
    loop {
        if let Some(len) = codec::typed_frame_len(buf, limit)? {
            if buf.len() >= len {
                return Ok(Some(buf.split_to(len)));
            }
            buf.reserve(len - buf.len());
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Sends a client's cancel request to the upstream backend its key stands for.
async fn forward_cancel(proxy: &Proxy, pid: i32, secret: &[u8]) {
    let Some(target) = proxy.cancel.lookup(pid, secret) else {
        proxy
            .metrics
            .cancel_requests
            .with_label_values(&["unknown_key"])
            .inc();
        debug!(pid, "cancel request with an unknown key ignored");
        return;
    };
    // Held while the session analyses the statement it is meant for.
    if target.until_forwarded().await {
        debug!(pid, "cancel request held until the statement was forwarded");
    }
    match connect_upstream(proxy).await {
        Ok(mut upstream) => {
            let packet = codec::encode_cancel_request(target.upstream_pid, &target.upstream_secret);
            let _ = upstream.write_all(&packet).await;
            let _ = upstream.flush().await;
            // The server closes the connection once it has read the request.
            let mut sink = [0u8; 16];
            let _ = tokio::time::timeout(Duration::from_secs(5), upstream.read(&mut sink)).await;
            proxy
                .metrics
                .cancel_requests
                .with_label_values(&["forwarded"])
                .inc();
        }
        Err(e) => {
            proxy
                .metrics
                .cancel_requests
                .with_label_values(&["upstream_unavailable"])
                .inc();
            warn!(error = %e.message, "cannot forward a cancel request");
        }
    }
}
