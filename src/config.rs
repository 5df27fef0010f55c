//! config: settings from flags, environment (`PGVEIL_*`) and a TOML file.
//!
//! Precedence is flag, then environment variable, then the file given with
//! `--config`, then the built-in default. Everything is validated here, before
//! a socket is opened, so a typo is reported with the setting's name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Arguments of `pgveil serve`. Every field is optional so that the TOML file
/// can fill what flags and environment leave out.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file; flags and PGVEIL_* variables override its keys.
    #[arg(long, env = "PGVEIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:6432].
    #[arg(long, env = "PGVEIL_LISTEN")]
    pub listen: Option<String>,
    /// Upstream PostgreSQL as host:port [default: 127.0.0.1:5432].
    #[arg(long, env = "PGVEIL_UPSTREAM")]
    pub upstream: Option<String>,
    /// PEM certificate chain presented to clients; enables TLS.
    #[arg(long, env = "PGVEIL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PGVEIL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// TLS to the upstream: disable, prefer, require or verify-full [default: disable].
    #[arg(long, env = "PGVEIL_UPSTREAM_TLS")]
    pub upstream_tls: Option<String>,
    /// CA bundle (PEM) used to verify the upstream with verify-full.
    #[arg(long, env = "PGVEIL_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Server name checked against the upstream certificate [default: upstream host].
    #[arg(long, env = "PGVEIL_UPSTREAM_SERVER_NAME")]
    pub upstream_server_name: Option<String>,
    /// Most client connections served at once [default: 1000].
    #[arg(long, env = "PGVEIL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest message accepted from a client, in bytes [default: 268435456].
    #[arg(long, env = "PGVEIL_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Seconds to wait for the upstream to accept a connection [default: 10].
    #[arg(long, env = "PGVEIL_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<f64>,
    /// Seconds a client may take from connect to the end of authentication [default: 60].
    #[arg(long, env = "PGVEIL_AUTH_TIMEOUT")]
    pub auth_timeout: Option<f64>,
    /// Seconds a session may sit idle outside a transaction; 0 disables [default: 0].
    #[arg(long, env = "PGVEIL_IDLE_TIMEOUT")]
    pub idle_timeout: Option<f64>,
    /// Seconds sessions get to finish on shutdown before they are closed [default: 30].
    #[arg(long, env = "PGVEIL_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<f64>,
    /// Address of the HTTP endpoint serving /metrics; empty disables [default: 127.0.0.1:9187].
    #[arg(long, env = "PGVEIL_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "PGVEIL_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Directory of policy files (*.yaml); without it nothing is masked.
    #[arg(long, env = "PGVEIL_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Directory holding key files named after the policy's keys.
    #[arg(long, env = "PGVEIL_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Role pgveil uses to read the catalog and role memberships [default: postgres].
    #[arg(long, env = "PGVEIL_CATALOG_USER")]
    pub catalog_user: Option<String>,
    /// Seconds a cached catalog and role memberships stay fresh [default: 15].
    #[arg(long, env = "PGVEIL_CATALOG_TTL")]
    pub catalog_ttl: Option<f64>,
    /// What the `role` label of metrics carries: login, rule (first policy
    /// role matched) or none [default: login].
    #[arg(long, env = "PGVEIL_METRICS_ROLE_LABEL")]
    pub metrics_role_label: Option<String>,
    /// Audit trail file (JSON lines), or `-` for stdout; unset: no audit trail.
    #[arg(long, env = "PGVEIL_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Size in bytes at which the audit file is rotated [default: 104857600].
    #[arg(long, env = "PGVEIL_AUDIT_MAX_SIZE")]
    pub audit_max_size: Option<u64>,
    /// When the audit writer falls behind: block (statements wait) or drop
    /// (records are counted and lost) [default: block].
    #[arg(long, env = "PGVEIL_AUDIT_ON_FULL")]
    pub audit_on_full: Option<String>,
    /// Audit records held in memory while the writer catches up, before
    /// --audit-on-full applies [default: 16384].
    #[arg(long, env = "PGVEIL_AUDIT_QUEUE")]
    pub audit_queue: Option<usize>,
}

/// The keys a `--config` TOML file may hold: the same names as the flags,
/// with dashes or underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<String>,
    upstream: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    upstream_tls: Option<String>,
    upstream_ca: Option<PathBuf>,
    upstream_server_name: Option<String>,
    max_connections: Option<usize>,
    max_message_size: Option<usize>,
    connect_timeout: Option<f64>,
    auth_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    drain_timeout: Option<f64>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    policies: Option<PathBuf>,
    keys_dir: Option<PathBuf>,
    catalog_user: Option<String>,
    catalog_password: Option<String>,
    catalog_ttl: Option<f64>,
    metrics_role_label: Option<String>,
    audit_log: Option<String>,
    audit_max_size: Option<u64>,
    audit_on_full: Option<String>,
    audit_queue: Option<usize>,
}

/// How pgveil talks TLS to the upstream, with libpq's sslmode names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Validated settings of one pgveil process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub upstream_host: String,
    pub upstream_port: u16,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_tls: UpstreamTls,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_server_name: String,
    pub max_connections: usize,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    pub auth_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    pub metrics_listen: Option<String>,
    pub log_format: LogFormat,
    pub policies: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
    pub catalog_user: String,
    /// From `PGVEIL_CATALOG_PASSWORD` or the config file, never a flag.
    pub catalog_password: Option<String>,
    pub catalog_ttl: Duration,
    pub metrics_role_label: crate::observe::RoleLabel,
    pub audit: Option<crate::observe::audit::AuditSettings>,
}

/// A setting that cannot be used, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{name}`: {message}")]
    Invalid { name: &'static str, message: String },
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        message: message.into(),
    }
}

impl Settings {
    /// Resolves flags and environment (already merged by clap) over the
    /// optional TOML file, then validates.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let listen = pick(&args.listen, &file.listen).unwrap_or_else(|| "127.0.0.1:6432".into());
        let upstream =
            pick(&args.upstream, &file.upstream).unwrap_or_else(|| "127.0.0.1:5432".into());
        let (upstream_host, upstream_port) = split_host_port(&upstream)
            .ok_or_else(|| invalid("upstream", format!("`{upstream}` is not host:port")))?;
        let tls_cert = pick(&args.tls_cert, &file.tls_cert);
        let tls_key = pick(&args.tls_key, &file.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(invalid(
                "tls_cert",
                "--tls-cert and --tls-key must be given together",
            ));
        }
        let upstream_tls = match pick(&args.upstream_tls, &file.upstream_tls).as_deref() {
            None | Some("disable") => UpstreamTls::Disable,
            Some("prefer") => UpstreamTls::Prefer,
            Some("require") => UpstreamTls::Require,
            Some("verify-full") | Some("verify_full") => UpstreamTls::VerifyFull,
            Some(other) => {
                return Err(invalid(
                    "upstream_tls",
                    format!("`{other}` is not one of disable, prefer, require, verify-full"),
                ))
            }
        };
        let upstream_ca = pick(&args.upstream_ca, &file.upstream_ca);
        if upstream_tls == UpstreamTls::VerifyFull && upstream_ca.is_none() {
            return Err(invalid(
                "upstream_ca",
                "verify-full needs --upstream-ca with the CA that signed the upstream certificate",
            ));
        }
        let upstream_server_name = pick(&args.upstream_server_name, &file.upstream_server_name)
            .unwrap_or_else(|| upstream_host.clone());
        let max_connections = pick(&args.max_connections, &file.max_connections).unwrap_or(1000);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let max_message_size =
            pick(&args.max_message_size, &file.max_message_size).unwrap_or(256 << 20);
        if max_message_size < 10_000 {
            return Err(invalid("max_message_size", "must be at least 10000 bytes"));
        }
        let seconds = |name: &'static str, v: Option<f64>, default: f64| {
            let v = v.unwrap_or(default);
            if !v.is_finite() || v < 0.0 {
                return Err(invalid(name, format!("`{v}` is not a number of seconds")));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let connect_timeout = seconds(
            "connect_timeout",
            pick(&args.connect_timeout, &file.connect_timeout),
            10.0,
        )?;
        let auth_timeout = seconds(
            "auth_timeout",
            pick(&args.auth_timeout, &file.auth_timeout),
            60.0,
        )?;
        let idle_timeout = seconds(
            "idle_timeout",
            pick(&args.idle_timeout, &file.idle_timeout),
            0.0,
        )?;
        let drain_timeout = seconds(
            "drain_timeout",
            pick(&args.drain_timeout, &file.drain_timeout),
            30.0,
        )?;
        let metrics_listen = match pick(&args.metrics_listen, &file.metrics_listen) {
            None => Some("127.0.0.1:9187".to_string()),
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
        };
        let log_format = match pick(&args.log_format, &file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}` is not text or json"),
                ))
            }
        };
        let catalog_ttl = seconds(
            "catalog_ttl",
            pick(&args.catalog_ttl, &file.catalog_ttl),
            15.0,
        )?;
        let metrics_role_label = match pick(&args.metrics_role_label, &file.metrics_role_label) {
            None => crate::observe::RoleLabel::Login,
            Some(v) => v
                .parse()
                .map_err(|e: String| invalid("metrics_role_label", e))?,
        };
        let audit = resolve_audit(args, &file)?;
        Ok(Settings {
            metrics_role_label,
            audit,
            policies: pick(&args.policies, &file.policies),
            keys_dir: pick(&args.keys_dir, &file.keys_dir),
            catalog_user: pick(&args.catalog_user, &file.catalog_user)
                .unwrap_or_else(|| "postgres".into()),
            catalog_password: std::env::var("PGVEIL_CATALOG_PASSWORD")
                .ok()
                .or(file.catalog_password),
            catalog_ttl,
            listen,
            upstream_host,
            upstream_port,
            tls_cert,
            tls_key,
            upstream_tls,
            upstream_ca,
            upstream_server_name,
            max_connections,
            max_message_size,
            connect_timeout,
            auth_timeout,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            drain_timeout,
            metrics_listen,
            log_format,
        })
    }
}

fn resolve_audit(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<Option<crate::observe::audit::AuditSettings>, ConfigError> {
    use crate::observe::audit::{AuditSettings, AuditTarget, OnFull, QUEUE_CAPACITY};
    let on_full = match pick(&args.audit_on_full, &file.audit_on_full).as_deref() {
        None | Some("block") => OnFull::Block,
        Some("drop") => OnFull::Drop,
        Some(other) => {
            return Err(invalid(
                "audit_on_full",
                format!("`{other}` is not block or drop"),
            ))
        }
    };
    let max_size = pick(&args.audit_max_size, &file.audit_max_size).unwrap_or(100 << 20);
    if max_size < 4096 {
        return Err(invalid("audit_max_size", "must be at least 4096 bytes"));
    }
    let queue = pick(&args.audit_queue, &file.audit_queue).unwrap_or(QUEUE_CAPACITY);
    if queue == 0 {
        return Err(invalid("audit_queue", "must be at least 1 record"));
    }
    let target = match pick(&args.audit_log, &file.audit_log) {
        None => return Ok(None),
        Some(p) if p.is_empty() => return Ok(None),
        Some(p) if p == "-" => AuditTarget::Stdout,
        Some(p) => AuditTarget::File(PathBuf::from(p)),
    };
    Ok(Some(AuditSettings {
        target,
        max_size,
        on_full,
        queue,
    }))
}

fn pick<T: Clone>(flag_or_env: &Option<T>, file: &Option<T>) -> Option<T> {
    flag_or_env.clone().or_else(|| file.clone())
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // Accept `max-connections` as well as `max_connections`, like the flags.
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let keys: Vec<String> = table.keys().filter(|k| k.contains('-')).cloned().collect();
    for key in keys {
        if let Some(v) = table.remove(&key) {
            table.insert(key.replace('-', "_"), v);
        }
    }
    FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Splits `host:port`, `[v6]:port`; a bare host gets port 5432.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if port.is_empty() => 5432,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Some((host.to_string(), port.parse().ok()?))
        }
        None if !s.is_empty() => Some((s.to_string(), 5432)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgveil.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:7000\"\nupstream = \"db:5433\"\nmax-connections = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7001".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7001");
        assert_eq!((s.upstream_host.as_str(), s.upstream_port), ("db", 5433));
        assert_eq!(s.max_connections, 7);
        assert_eq!(s.upstream_tls, UpstreamTls::Disable);
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgveil.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = Settings::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn verify_full_needs_a_ca() {
        let args = ServeArgs {
            upstream_tls: Some("verify-full".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("upstream_ca"), "{err}");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("h:1"), Some(("h".into(), 1)));
        assert_eq!(split_host_port("h"), Some(("h".into(), 5432)));
        assert_eq!(split_host_port("[::1]:7"), Some(("::1".into(), 7)));
        assert_eq!(split_host_port("h:x"), None);
    }
}
