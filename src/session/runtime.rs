//! What masking sessions share: the policy store, role memberships, the
//! per-database catalogs and the analysis cache, plus pgveil's own catalog
//! connections to the upstream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Mutex;

use crate::analyze::catalog::{CatalogRead, ReadScope};
use crate::analyze::{Analyzer, Catalog, CatalogCache};
use crate::config::{Settings, UpstreamTls};
use crate::policy::{PolicyStore, RoleMembership, RoleMembershipCache, RolePolicy};

/// Times a whole catalog read is tried again after it met an object
/// another session dropped while it ran.
const CONCURRENT_CHANGE_RETRIES: u64 = 5;

/// Why pgveil could not get what a masking session needs.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to the database as catalog user `{user}`: {source}")]
    Connect {
        user: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot read the catalog of database `{database}`: {message}")]
    Catalog { database: String, message: String },
    #[error("cannot read role memberships: {0}")]
    Membership(tokio_postgres::Error),
}

/// Shared by every session of a process.
pub struct MaskingRuntime {
    pub store: PolicyStore,
    pub memberships: RoleMembershipCache,
    pub catalogs: CatalogCache,
    pub analyzer: Arc<Analyzer>,
    catalog_user: String,
    catalog_password: Option<String>,
    host: String,
    port: u16,
    tls: Option<rustls::ClientConfig>,
    /// Per database: one catalog read at a time, over a connection kept
    /// open between reads (connecting costs more than a refresh).
    load_locks: DashMap<String, Arc<Mutex<Option<CatalogConnection>>>>,
    membership_lock: Mutex<()>,
    last_forced_reload: DashMap<String, Instant>,
    /// Open sessions per database (see `session_ended`).
    sessions: DashMap<String, usize>,
}

/// pgveil's own connection to one database, with the refresh queries
/// prepared on it (one per `ReadScope`).
pub struct CatalogConnection {
    client: tokio_postgres::Client,
    refresh_user: Option<tokio_postgres::Statement>,
    refresh_all: Option<tokio_postgres::Statement>,
}

impl CatalogConnection {
    /// The prepared statement of an incremental read over `scope`,
    /// prepared on first use; None when preparing failed (the read then
    /// goes as a simple query).
    async fn refresh_statement(&mut self, scope: ReadScope) -> Option<tokio_postgres::Statement> {
        let slot = match scope {
            ReadScope::User => &mut self.refresh_user,
            ReadScope::All => &mut self.refresh_all,
        };
        if slot.is_none() {
            *slot = self
                .client
                .prepare(&CatalogRead::parameterised_sql(scope))
                .await
                .ok();
        }
        slot.clone()
    }
}

/// How pgveil reaches the upstream for its own catalog queries.
pub struct CatalogAccess {
    pub user: String,
    pub password: Option<String>,
}

impl MaskingRuntime {
    pub fn new(
        store: PolicyStore,
        settings: &Settings,
        access: CatalogAccess,
        catalog_ttl: Duration,
    ) -> Result<MaskingRuntime, crate::net::tls::TlsError> {
        let tls = match settings.upstream_tls {
            UpstreamTls::Disable => None,
            UpstreamTls::Prefer | UpstreamTls::Require => {
                Some(crate::net::tls::client_config(None)?)
            }
            UpstreamTls::VerifyFull => Some(crate::net::tls::client_config(
                settings.upstream_ca.as_deref(),
            )?),
        };
        Ok(MaskingRuntime {
            store,
            memberships: RoleMembershipCache::new(catalog_ttl),
            catalogs: CatalogCache::new(catalog_ttl),
            analyzer: Arc::new(Analyzer::default()),
            catalog_user: access.user,
            catalog_password: access.password,
            host: settings.upstream_host.clone(),
            port: settings.upstream_port,
            tls,
            load_locks: DashMap::new(),
            membership_lock: Mutex::new(()),
            last_forced_reload: DashMap::new(),
            sessions: DashMap::new(),
        })
    }

    /// A session on `database` started.
    pub fn session_started(&self, database: &str) {
        *self.sessions.entry(database.to_string()).or_default() += 1;
    }

    /// A session on `database` ended. With none left, pgveil closes its
    /// catalog connection to it (reopened on the next read): a connection
    /// of pgveil's own would make `DROP DATABASE` of it fail ("being
    /// accessed by other users") where it succeeds direct.
    pub fn session_ended(&self, database: &str) {
        let last = match self.sessions.entry(database.to_string()) {
            dashmap::Entry::Occupied(mut e) => {
                *e.get_mut() = e.get().saturating_sub(1);
                let last = *e.get() == 0;
                if last {
                    e.remove();
                }
                last
            }
            dashmap::Entry::Vacant(_) => false,
        };
        let lock = last
            .then(|| self.load_locks.get(database).map(|l| Arc::clone(&l)))
            .flatten();
        // A read in progress keeps it; the next session's end tries again.
        if let Some(lock) = lock {
            if let Ok(mut connection) = lock.try_lock() {
                *connection = None;
            }
        }
    }

    /// Directory the policies come from.
    pub fn policy_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, RuntimeError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.catalog_user)
            .dbname(database)
            .application_name("pgveil catalog")
            // Never queue behind a session's DDL: fail and retry instead.
            // The refresh query is prepared once; a generic plan keeps its
            // Bind from planning it again on every refresh. Its estimates
            // are rough, and JIT compiling it would cost 100 times more
            // than running it (hundreds of ms per refresh). With only
            // pg_catalog on the search_path, pg_get_viewdef names every
            // other relation with its schema: a view's text then means the
            // same whatever pgveil resolves it against.
            .options(
                "-c lock_timeout=5s -c statement_timeout=60s -c plan_cache_mode=force_generic_plan \
                 -c jit=off -c search_path=pg_catalog",
            )
            .connect_timeout(Duration::from_secs(10));
        if let Some(pw) = &self.catalog_password {
            config.password(pw);
        }
        let connect_err = |source| RuntimeError::Connect {
            user: self.catalog_user.clone(),
            source,
        };
        match &self.tls {
            None => {
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(connect_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let (client, conn) = config.connect(tls).await.map_err(connect_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    /// The catalog of `database`, read once per TTL or DDL however many
    /// sessions ask at the same time: only what changed since the last
    /// read (a few ms), the whole catalog on first use, after SIGHUP, or
    /// when the incremental read fails. Sessions that ask while a read is
    /// running wait for it and then for one more read at most: a read
    /// that began before a session's DDL was announced (`invalidate_catalog`)
    /// does not count as current.
    pub async fn catalog(&self, database: &str) -> Result<Arc<Catalog>, RuntimeError> {
        if let Some(c) = self.catalogs.get(database) {
            return Ok(c);
        }
        let lock = self
            .load_locks
            .entry(database.to_string())
            .or_default()
            .clone();
        let mut connection = lock.lock().await;
        // The read that held the lock began after our caller's request (it
        // began after whatever invalidation made the caller ask): share it.
        if let Some(c) = self.catalogs.get(database) {
            return Ok(c);
        }
        let epoch = self.catalogs.epoch(database);
        let started = Instant::now();
        let last = self.catalogs.last(database);
        // After DDL only the user's objects are looked at; once per TTL
        // every object is, built-in ones included (see `ReadScope`).
        let read = last.as_ref().and_then(|last| {
            if last.all_read_age() >= self.catalogs.ttl() {
                last.all_changes_query()
            } else {
                last.changes_query()
            }
        });
        if let (Some(last), Some(read), Some(conn)) = (&last, read, connection.as_mut()) {
            if !conn.client.is_closed() {
                let statement = conn.refresh_statement(read.scope()).await;
                let refreshed = last
                    .refreshed_by(&conn.client, &read, statement.as_ref())
                    .await;
                match refreshed {
                    Ok(catalog) => {
                        tracing::debug!(
                            database,
                            scope = ?read.scope(),
                            us = started.elapsed().as_micros() as u64,
                            "catalog refreshed"
                        );
                        return Ok(self.catalogs.insert(catalog, epoch));
                    }
                    Err(e) => {
                        tracing::warn!(database, error = %e, "incremental catalog refresh failed; reading it whole");
                    }
                }
            }
        }
        *connection = None;
        let client = self.connect(database).await?;
        let mut attempt = 0u64;
        let catalog = loop {
            match Catalog::load(&client).await {
                Ok(catalog) => break catalog,
                // Another session dropped an object while the read ran.
                Err(e) if e.is_concurrent_change() && attempt < CONCURRENT_CHANGE_RETRIES => {
                    attempt += 1;
                    tracing::debug!(database, error = %e, attempt, "catalog read met a concurrent drop; reading again");
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Err(e) => {
                    return Err(RuntimeError::Catalog {
                        database: database.to_string(),
                        message: e.to_string(),
                    })
                }
            }
        };
        *connection = Some(CatalogConnection {
            client,
            refresh_user: None,
            refresh_all: None,
        });
        tracing::info!(
            database,
            relations = catalog.relations().count(),
            ms = started.elapsed().as_millis() as u64,
            "catalog loaded"
        );
        Ok(self.catalogs.insert(catalog, epoch))
    }

    /// Drops the cached catalog so the next statement reads a fresh one.
    /// Forced reloads are rate-limited per database to one a second.
    pub fn invalidate_catalog(&self, database: &str, forced: bool) -> bool {
        if forced {
            if let Some(at) = self.last_forced_reload.get(database) {
                if at.elapsed() < Duration::from_secs(1) {
                    return false;
                }
            }
            self.last_forced_reload
                .insert(database.to_string(), Instant::now());
        }
        self.catalogs.invalidate(database);
        true
    }

    /// Current role memberships, refreshed from the upstream when stale.
    pub async fn memberships(&self, database: &str) -> Result<Arc<RoleMembership>, RuntimeError> {
        if !self.memberships.is_stale() {
            return Ok(self.memberships.current());
        }
        // One refresh at a time; sessions that waited reuse its result.
        let _guard = self.membership_lock.lock().await;
        if !self.memberships.is_stale() {
            return Ok(self.memberships.current());
        }
        let fresh = match self.connect(database).await {
            Ok(client) => self
                .memberships
                .refresh(&client)
                .await
                .map_err(RuntimeError::Membership),
            Err(e) => Err(e),
        };
        match fresh {
            Ok(m) => Ok(m),
            Err(e) => {
                // Keep serving with the last snapshot: before the first one
                // every role is only itself, which can only narrow what it
                // sees. Retry after the TTL, not on every statement.
                tracing::warn!(error = %e, "role memberships not refreshed; using the last snapshot");
                self.memberships.mark_fetched();
                Ok(self.memberships.current())
            }
        }
    }

    /// The policy view of a login role under the current policy set.
    pub async fn role_view(
        &self,
        login_role: &str,
        database: &str,
    ) -> Result<(Arc<crate::policy::PolicySet>, Arc<RolePolicy>), RuntimeError> {
        let memberships = self.memberships(database).await?;
        let set = self.store.current();
        let view = set.for_role(login_role, &memberships);
        Ok((set, view))
    }
}
