//! The live policy: the current `PolicySet` behind an atomic pointer, swapped
//! only for a set that compiled cleanly. Statements keep the `Arc` they
//! started with, so a swap never changes a running statement.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use prometheus::{IntCounter, IntGauge, Registry};

use super::compile::PolicySet;
use super::error::PolicyErrors;

/// Editors and ConfigMap updates write several events per change; reload once
/// after the directory has been quiet this long.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reload counters, exported once registered.
#[derive(Clone)]
struct ReloadMetrics {
    reloads: IntCounter,
    failures: IntCounter,
    version: IntGauge,
}

impl ReloadMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            reloads: IntCounter::new(
                "pgveil_policy_reloads_total",
                "Policy reloads that took effect",
            )?,
            failures: IntCounter::new(
                "pgveil_policy_reload_failures_total",
                "Policy reloads rejected because a file was broken; the last good set stayed active",
            )?,
            version: IntGauge::new(
                "pgveil_policy_version",
                "Version of the active policy set (1 = loaded at start, +1 per reload)",
            )?,
        })
    }
}

struct StoreState {
    dir: PathBuf,
    keys_dir: Option<PathBuf>,
    current: ArcSwap<PolicySet>,
    next_version: AtomicU64,
    /// File names and contents of the active set: events that change
    /// nothing (touch, atime, ConfigMap symlink dance) don't bump the version.
    fingerprint: Mutex<Vec<(PathBuf, Vec<u8>)>>,
    /// Serializes reloads from the watcher and from SIGHUP.
    reload_lock: Mutex<()>,
    metrics: ReloadMetrics,
}

/// The active policy set of a policy directory. Cheap to clone.
#[derive(Clone)]
pub struct PolicyStore {
    state: Arc<StoreState>,
}

/// Keeps the directory watched; dropping it stops watching.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl PolicyStore {
    /// Loads and compiles the directory; fails with every problem found, each
    /// with file and line, so a broken start never serves traffic.
    pub fn load(dir: &Path, keys_dir: Option<&Path>) -> Result<PolicyStore, PolicyErrors> {
        let set = PolicySet::load(&[dir.to_path_buf()], keys_dir)?.with_version(1);
        let metrics = ReloadMetrics::new().map_err(|e| {
            PolicyErrors(vec![super::PolicyError::new(
                super::SourceLocation {
                    file: dir.to_path_buf(),
                    line: 1,
                    column: 1,
                },
                super::Problem::Unreadable(format!("metrics: {e}")),
            )])
        })?;
        metrics.version.set(1);
        Ok(PolicyStore {
            state: Arc::new(StoreState {
                dir: dir.to_path_buf(),
                keys_dir: keys_dir.map(Path::to_path_buf),
                current: ArcSwap::from_pointee(set),
                next_version: AtomicU64::new(2),
                fingerprint: Mutex::new(fingerprint(dir)),
                reload_lock: Mutex::new(()),
                metrics,
            }),
        })
    }

    /// Exposes `pgveil_policy_reloads_total`,
    /// `pgveil_policy_reload_failures_total` and `pgveil_policy_version`.
    pub fn register_metrics(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let m = &self.state.metrics;
        registry.register(Box::new(m.reloads.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.version.clone()))?;
        Ok(())
    }

    /// The active set. Hold the `Arc` for the duration of one statement.
    pub fn current(&self) -> Arc<PolicySet> {
        self.state.current.load_full()
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// Recompiles the directory (and re-reads the key bytes, so SIGHUP picks
    /// up rotated keys) and swaps the new set in if it is clean. Returns the
    /// new version. On error the previous set stays active, the problems are
    /// logged with file and line, and the failure counter goes up.
    pub fn reload(&self) -> Result<u64, PolicyErrors> {
        self.reload_files(true)
    }

    /// Like `reload`, but does nothing when no policy file changed: the
    /// watcher sees many events that change nothing.
    pub fn reload_if_changed(&self) -> Result<u64, PolicyErrors> {
        self.reload_files(false)
    }

    fn reload_files(&self, force: bool) -> Result<u64, PolicyErrors> {
        let state = &self.state;
        let _serialized = state.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let files_now = fingerprint(&state.dir);
        if !force {
            let active = state.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
            if *active == files_now {
                return Ok(self.current().version());
            }
        }
        match PolicySet::load(std::slice::from_ref(&state.dir), state.keys_dir.as_deref()) {
            Ok(set) => {
                let version = state.next_version.fetch_add(1, Ordering::Relaxed);
                state.current.store(Arc::new(set.with_version(version)));
                *state.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = files_now;
                state.metrics.reloads.inc();
                state
                    .metrics
                    .version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                tracing::info!(version, dir = %state.dir.display(), "policy reloaded");
                Ok(version)
            }
            Err(errors) => {
                state.metrics.failures.inc();
                for error in errors.iter() {
                    tracing::error!(
                        file = %error.location.file.display(),
                        line = error.location.line,
                        column = error.location.column,
                        "policy reload rejected, previous policy stays active: {error}"
                    );
                }
                Err(errors)
            }
        }
    }

    /// Watches the policy directory and reloads (debounced) on change, on a
    /// thread of its own. Keep the returned watcher alive.
    pub fn watch(&self) -> Result<PolicyWatcher, notify::Error> {
        let (events_tx, events_rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    // The receiver is gone only when the store thread ended.
                    let _ = events_tx.send(());
                }
            })?;
        watcher.watch(&self.state.dir, RecursiveMode::NonRecursive)?;
        let store = self.clone();
        std::thread::Builder::new()
            .name("pgveil-policy-watch".into())
            .spawn(move || {
                while events_rx.recv().is_ok() {
                    while events_rx.recv_timeout(DEBOUNCE).is_ok() {}
                    // Errors are logged and counted inside.
                    let mut failed_on = store
                        .reload_if_changed()
                        .err()
                        .map(|_| fingerprint(store.dir()));
                    // An editor that truncates then writes can be caught
                    // half-way, with no event left to follow: look again
                    // while the files keep differing from what failed.
                    while let Some(seen) = failed_on.take() {
                        match events_rx.recv_timeout(DEBOUNCE * 4) {
                            Ok(()) => while events_rx.recv_timeout(DEBOUNCE).is_ok() {},
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                        }
                        if fingerprint(store.dir()) != seen {
                            failed_on = store
                                .reload_if_changed()
                                .err()
                                .map(|_| fingerprint(store.dir()));
                        }
                    }
                }
            })
            .map_err(notify::Error::io)?;
        Ok(PolicyWatcher { _watcher: watcher })
    }
}

/// The names and bytes of the policy files of `dir`, sorted.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes)))
        .collect();
    files.sort();
    files
}
