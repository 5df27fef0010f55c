//! Cancel keys: the client sees the upstream backend's real PID (the one
//! `pg_backend_pid()`, NOTIFY and `pg_stat_activity` show) with a secret of
//! pgveil's own, so a CancelRequest reaches the right backend only through
//! pgveil and the upstream's secret never leaves it.
//!
//! A cancel that arrives while the session is still analysing a statement
//! (or reading the catalog for it) is held until the statement has been
//! forwarded: sent at once it would reach a backend that has nothing to
//! cancel yet, and be lost. So is one that arrives while the session has
//! nothing in flight, for a moment: a client cancels a statement it sent,
//! which pgveil may not have read yet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rand::RngCore;
use tokio::sync::watch;

/// The longest a cancel request waits for its session to forward the
/// statement it analyses.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// How long a held request still waits once the statement was written:
/// the backend ignores a cancel that reaches it while it is still reading
/// the statement (it cancels only what runs), and a long statement takes a
/// moment to read.
const AFTER_HOLD: Duration = Duration::from_millis(100);

/// How long a request for a session with nothing in flight waits for the
/// statement it is meant for to arrive. Short: a cancel that comes after
/// its statement ended must not hit the client's next one.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// The upstream backend a client key stands for.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    secret: Vec<u8>,
    pub upstream_pid: i32,
    pub upstream_secret: Vec<u8>,
    held: watch::Receiver<Hold>,
    waiters: Arc<AtomicUsize>,
}

/// Whether a session holds a statement the server has not seen, and how
/// often it released one: a waiter that looks late still sees a release
/// that another hold followed at once.
#[derive(Debug, Clone, Copy, Default)]
struct Hold {
    held: bool,
    releases: u64,
    /// A statement was forwarded and its answer is not complete.
    busy: bool,
}

impl CancelTarget {
    /// Waits until the session has forwarded the statement it was
    /// analysing, if any (at most `MAX_HOLD` in all; not at all once the
    /// session has ended). When the session holds again right after (the
    /// next step of a query string, or a catalog read of pgveil's own that
    /// the cancel must not abort), waits for that too. True when the
    /// request was held.
    pub async fn until_forwarded(&self) -> bool {
        let _waiting = Waiting::new(&self.waiters);
        let mut rx = self.held.clone();
        let mut first = *rx.borrow_and_update();
        let mut waited = false;
        if !first.held && !first.busy {
            // Nothing in flight: the statement may still be on its way.
            let arrived = matches!(
                tokio::time::timeout(IDLE_GRACE, rx.wait_for(|h| h.held || h.busy)).await,
                Ok(Ok(_))
            );
            if !arrived {
                return false;
            }
            first = *rx.borrow_and_update();
            waited = true;
        }
        if !first.held {
            if waited {
                // Forwarded already: give the backend its moment to read it.
                tokio::time::sleep(AFTER_HOLD).await;
            }
            return waited;
        }
        let deadline = tokio::time::Instant::now() + MAX_HOLD;
        let mut seen = first.releases;
        loop {
            let released = matches!(
                tokio::time::timeout_at(deadline, rx.wait_for(|h| !h.held || h.releases != seen))
                    .await,
                Ok(Ok(_))
            );
            // Timed out, or the session ended.
            if !released {
                break;
            }
            tokio::time::sleep(AFTER_HOLD).await;
            let now = *rx.borrow_and_update();
            if !now.held || tokio::time::Instant::now() >= deadline {
                break;
            }
            seen = now.releases;
        }
        true
    }
}

/// Every live session's cancel key, shared by all connections of a process.
/// Keyed by PID; several entries share one when the upstream is a pooler or
/// a balancer over several servers, and the secret tells them apart.
#[derive(Debug, Clone, Default)]
pub struct CancelRegistry {
    keys: Arc<DashMap<i32, Vec<CancelTarget>>>,
}

/// Removes its key from the registry when the session ends.
#[derive(Debug)]
pub struct CancelKey {
    registry: CancelRegistry,
    pub pid: i32,
    pub secret: Vec<u8>,
    held: watch::Sender<Hold>,
    waiters: Arc<AtomicUsize>,
}

impl CancelKey {
    /// The session has a statement of the client's that it has not
    /// forwarded yet: cancel requests wait (see `CancelTarget::until_forwarded`).
    pub fn hold(&self) {
        self.update(|h| !std::mem::replace(&mut h.held, true));
    }

    /// Whether a forwarded statement's answer is still to come: a cancel
    /// request for a session without one waits a moment for it (see
    /// `IDLE_GRACE`).
    pub fn set_busy(&self, busy: bool) {
        self.update(|h| std::mem::replace(&mut h.busy, busy) != busy);
    }

    /// The statement reached the server (or there is none): held cancel
    /// requests go now.
    pub fn release(&self) {
        self.update(|h| {
            let was = std::mem::replace(&mut h.held, false);
            h.releases += u64::from(was);
            was
        });
    }

    /// Changes the state; wakes waiting cancel requests only when there are
    /// any (a session changes it several times a statement, and a wake-up
    /// of no one still costs locks). The count is read after the change,
    /// under the channel's lock: a request that starts waiting later reads
    /// the changed state when it looks.
    fn update(&self, change: impl FnOnce(&mut Hold) -> bool) {
        self.held
            .send_if_modified(|h| change(h) && self.waiters.load(Ordering::SeqCst) > 0);
    }
}

/// Counts a cancel request as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut slot) = self.registry.keys.entry(self.pid) {
            slot.get_mut().retain(|t| t.secret != self.secret);
            if slot.get().is_empty() {
                slot.remove();
            }
        }
    }
}

impl CancelRegistry {
    /// Issues the client key for an upstream backend key: the same PID and a
    /// fresh secret of the same length as the upstream's (4 bytes in
    /// protocol 3.0, up to 256 in 3.2), so it fits the negotiated protocol.
    pub fn register(&self, upstream_pid: i32, upstream_secret: Vec<u8>) -> CancelKey {
        let mut rng = rand::thread_rng();
        let mut secret = vec![0u8; upstream_secret.len().max(4)];
        let (held, held_rx) = watch::channel(Hold::default());
        let waiters = Arc::new(AtomicUsize::new(0));
        let mut targets = self.keys.entry(upstream_pid).or_default();
        loop {
            rng.fill_bytes(&mut secret);
            // A secret already issued for this PID would make two sessions
            // cancel each other; draw again.
            if targets.iter().all(|t| t.secret != secret) {
                break;
            }
        }
        targets.push(CancelTarget {
            secret: secret.clone(),
            upstream_pid,
            upstream_secret,
            held: held_rx,
            waiters: Arc::clone(&waiters),
        });
        CancelKey {
            registry: self.clone(),
            pid: upstream_pid,
            secret,
            held,
            waiters,
        }
    }

    /// The upstream key for a client's cancel request, if the key is valid.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let targets = self.keys.get(&pid)?;
        // Compare with every candidate, so timing tells nothing about which.
        let mut found = None;
        for t in targets.iter() {
            if constant_time_eq(&t.secret, secret) {
                found = Some(t.clone());
            }
        }
        found
    }

    /// Live sessions with a cancel key.
    pub fn len(&self) -> usize {
        self.keys.iter().map(|e| e.value().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_pid_map_to_upstream_and_expire_with_the_session() {
        let reg = CancelRegistry::default();
        let key = reg.register(4242, vec![9, 9, 9, 9]);
        assert_eq!(key.pid, 4242);
        assert_eq!(key.secret.len(), 4);
        let target = reg.lookup(key.pid, &key.secret).unwrap();
        assert_eq!(target.upstream_pid, 4242);
        assert_eq!(target.upstream_secret, vec![9, 9, 9, 9]);
        // The upstream's own secret is not a key pgveil accepts.
        assert!(reg.lookup(key.pid, &[9, 9, 9, 9]).is_none() || key.secret == [9, 9, 9, 9]);
        assert!(reg.lookup(4243, &key.secret).is_none());
        let pid = key.pid;
        let secret = key.secret.clone();
        drop(key);
        assert!(reg.lookup(pid, &secret).is_none());
        assert!(reg.is_empty());
    }

    #[test]
    fn protocol_3_2_secrets_keep_their_length() {
        let reg = CancelRegistry::default();
        let key = reg.register(7, vec![1; 32]);
        assert_eq!(key.secret.len(), 32);
        assert_eq!(
            reg.lookup(7, &key.secret).unwrap().upstream_secret,
            vec![1; 32]
        );
        assert!(reg.lookup(7, &key.secret[..4]).is_none());
    }

    #[test]
    fn one_pid_from_two_upstream_servers_cancels_each_its_own() {
        let reg = CancelRegistry::default();
        let a = reg.register(100, vec![1, 1, 1, 1]);
        let b = reg.register(100, vec![2, 2, 2, 2]);
        assert_eq!(reg.len(), 2);
        assert_eq!(
            reg.lookup(100, &a.secret).unwrap().upstream_secret,
            vec![1; 4]
        );
        assert_eq!(
            reg.lookup(100, &b.secret).unwrap().upstream_secret,
            vec![2; 4]
        );
        drop(a);
        assert_eq!(reg.len(), 1);
        assert_eq!(
            reg.lookup(100, &b.secret).unwrap().upstream_secret,
            vec![2; 4]
        );
        drop(b);
        assert!(reg.is_empty());
    }

    #[tokio::test]
    async fn a_cancel_waits_while_the_session_holds_a_statement() {
        let reg = CancelRegistry::default();
        let key = reg.register(5, vec![3; 4]);
        let target = reg.lookup(5, &key.secret).unwrap();
        key.set_busy(true);
        assert!(
            !target.until_forwarded().await,
            "a statement in flight: sent at once"
        );
        key.set_busy(false);
        key.hold();
        let waiting = tokio::spawn(async move { target.until_forwarded().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "sent while the statement was held");
        key.release();
        assert!(waiting.await.unwrap());
        // A release that another hold follows at once still counts, and
        // the request then waits for the second hold too.
        let target = reg.lookup(5, &key.secret).unwrap();
        key.hold();
        let waiting = tokio::spawn(async move { target.until_forwarded().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        key.release();
        key.hold();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "sent while the session held again");
        key.release();
        assert!(waiting.await.unwrap());
        // Nothing in flight: the request waits a moment for its statement,
        // and goes once that is forwarded; or when none comes.
        let target = reg.lookup(5, &key.secret).unwrap();
        let waiting = tokio::spawn(async move { target.until_forwarded().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "sent before its statement arrived");
        key.hold();
        tokio::time::sleep(Duration::from_millis(20)).await;
        key.release();
        assert!(waiting.await.unwrap());
        let target = reg.lookup(5, &key.secret).unwrap();
        let started = tokio::time::Instant::now();
        assert!(!target.until_forwarded().await);
        assert!(started.elapsed() >= IDLE_GRACE);
        // A session that ends releases its held requests too.
        key.hold();
        let target = reg.lookup(5, &key.secret).unwrap();
        let waiting = tokio::spawn(async move { target.until_forwarded().await });
        drop(key);
        assert!(waiting.await.unwrap());
    }
}
