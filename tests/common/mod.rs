//! Test harness: a throwaway PostgreSQL cluster per test binary, and pgveil
//! processes in front of it.
//!
//! The cluster is created with `initdb` in a temp dir, listens on a free port
//! with scram-sha-256 (plus md5, password and trust for dedicated roles) and
//! TLS with certificates generated here. When the tests run as root the
//! server runs as the `postgres` OS user. A watchdog process stops the
//! server and removes the directory when the test binary exits, even when it
//! panics or is killed.
#![allow(dead_code)]

pub mod bank;
pub mod probe;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "super-secret";
/// Test roles: (name, password, auth method in pg_hba.conf).
pub const ALICE: (&str, &str) = ("alice", "alice-secret");
pub const BOB_MD5: (&str, &str) = ("bob_md5", "bob-secret");
pub const CAROL_PLAIN: (&str, &str) = ("carol_plain", "carol-secret");
pub const DAVE_TRUST: &str = "dave_trust";

/// One PostgreSQL cluster, shared by every test of a binary.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bin: PathBuf,
    /// CA that signed both the server's and pgveil's test certificates.
    pub ca_pem: PathBuf,
    /// Certificate and key pgveil presents to clients in TLS tests.
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The binary's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("test cluster: {e}")))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The server binaries, found as `pgveil demo` finds them.
pub fn pg_bin() -> PathBuf {
    pgveil::demo::pg_bin()
        .unwrap_or_else(|| panic!("PostgreSQL server binaries not found: set PG_BIN"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn run_as_postgres(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write_certs(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf, PathBuf, PathBuf), String> {
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(vec![]).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgveil test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    let leaf = |cn: &str| -> Result<(String, String), String> {
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let write = |name: &str, body: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("write {name}: {e}"))?;
        Ok(p)
    };
    let ca_pem = write("ca.crt", &ca.pem())?;
    let (server_cert, server_key) = leaf("postgres test server")?;
    let server_crt = write("server.crt", &server_cert)?;
    let server_key = write("server.key", &server_key)?;
    let (proxy_cert, proxy_key) = leaf("pgveil test proxy")?;
    let proxy_crt = write("proxy.crt", &proxy_cert)?;
    let proxy_key = write("proxy.key", &proxy_key)?;
    Ok((ca_pem, server_crt, server_key, proxy_crt, proxy_key))
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = pg_bin();
        let dir = std::env::temp_dir().join(format!(
            "pgveil-test-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let data = dir.join("data");
        let (ca_pem, server_crt, server_key, proxy_cert, proxy_key) = write_certs(&dir)?;
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).map_err(|e| e.to_string())?;
        if is_root() {
            check(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            )?;
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600));
        let data_s = data.to_string_lossy().to_string();
        let pw_s = pwfile.to_string_lossy().to_string();
        check(
            &mut run_as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    &data_s,
                    "-U",
                    SUPERUSER,
                    "--pwfile",
                    &pw_s,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            ),
            "initdb",
        )?;
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\n\
             max_connections = 200\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 64MB\nlog_min_messages = warning\n\
             wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n",
            dir = dir.display(),
            crt = server_crt.display(),
            key = server_key.display(),
        );
        append(&data.join("postgresql.conf"), &conf)?;
        let hba = format!(
            "local all all trust\n\
             host all {md5} 127.0.0.1/32 md5\n\
             host all {plain} 127.0.0.1/32 password\n\
             host all {trust} 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n\
             host replication {trust} 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 scram-sha-256\n",
            md5 = BOB_MD5.0,
            plain = CAROL_PLAIN.0,
            trust = DAVE_TRUST,
        );
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        if is_root() {
            check(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            )?;
        }
        let log = dir.join("postgres.log").to_string_lossy().to_string();
        check(
            &mut run_as_postgres(
                &bin.join("pg_ctl"),
                &["-D", &data_s, "-l", &log, "-w", "-t", "60", "start"],
            ),
            "pg_ctl start",
        )?;
        spawn_watchdog(&bin, &dir, &data);
        let cluster = Cluster {
            dir,
            port,
            bin,
            ca_pem,
            proxy_cert,
            proxy_key,
        };
        cluster.psql_super(&format!(
            "CREATE ROLE {a} LOGIN PASSWORD '{ap}';\n\
             SET password_encryption = 'md5';\n\
             CREATE ROLE {b} LOGIN PASSWORD '{bp}';\n\
             RESET password_encryption;\n\
             CREATE ROLE {c} LOGIN PASSWORD '{cp}';\n\
             CREATE ROLE {d} LOGIN;\n\
             CREATE DATABASE app OWNER {a};\n\
             GRANT ALL ON SCHEMA public TO PUBLIC;\n",
            a = ALICE.0,
            ap = ALICE.1,
            b = BOB_MD5.0,
            bp = BOB_MD5.1,
            c = CAROL_PLAIN.0,
            cp = CAROL_PLAIN.1,
            d = DAVE_TRUST,
        ))?;
        Ok(cluster)
    }

    /// Runs SQL as the superuser over the Unix socket (not through pgveil).
    pub fn psql_super(&self, sql: &str) -> Result<String, String> {
        self.psql_super_db("postgres", sql)
    }

    pub fn psql_super_db(&self, db: &str, sql: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"])
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("psql: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes()).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `pg_ctl -D <data> ARGS…` as the server's OS user (to stop the
    /// server under a test, or start it again).
    pub fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.dir.join("data").to_string_lossy().to_string();
        let log = self.dir.join("postgres.log").to_string_lossy().to_string();
        let mut all = vec!["-D", data.as_str(), "-l", log.as_str()];
        all.extend_from_slice(args);
        check(
            &mut run_as_postgres(&self.bin.join("pg_ctl"), &all),
            "pg_ctl",
        )
        .map(|_| ())
    }
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

/// Stops the server and removes its directory once this test process exits,
/// however it exits.
fn spawn_watchdog(bin: &Path, dir: &Path, data: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if is_root() {
        format!(
            "runuser -u postgres -- '{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' -D '{}' -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; \
         [ -n \"$PGVEIL_KEEP_TEST_CLUSTER\" ] || rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A pgveil process; killed when dropped.
pub struct Proxy {
    pub port: u16,
    pub metrics_port: u16,
    pub child: Child,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts `pgveil serve` in front of the cluster with extra arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let c = cluster();
        let port = free_port();
        let metrics_port = free_port();
        let log = c.dir.join(format!("pgveil-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create pgveil log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgveil"));
        cmd.arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{}", c.port)])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("PGVEIL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn pgveil");
        // No pgveil outlives its test binary, even one that was killed.
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null",
            std::process::id(),
            child.id()
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let proxy = Proxy {
            port,
            metrics_port,
            child,
            log,
        };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("pgveil did not start: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// libpq-style connection string through this proxy.
    pub fn conn_str(&self, user: &str, password: &str, db: &str) -> String {
        let password = if password.is_empty() {
            String::new()
        } else {
            format!(" password={password}")
        };
        format!(
            "host=127.0.0.1 port={} user={user}{password} dbname={db}",
            self.port
        )
    }

    /// Sends a signal to the proxy process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a valid pid and signal number.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// The text of GET /metrics.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics port");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with tokio-postgres without TLS and drives the connection.
pub async fn connect(conn_str: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Runs a client binary (psql, pgbench) from the server's bin dir.
pub fn client_cmd(name: &str) -> Command {
    let bin = cluster().bin.join(name);
    let mut c = if bin.exists() {
        Command::new(bin)
    } else {
        Command::new(name)
    };
    c.env_remove("PGSERVICE").env("PGCONNECT_TIMEOUT", "20");
    c
}
