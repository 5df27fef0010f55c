//! Cancel keys: the key pgveil hands each client, mapped to the upstream
//! backend's own key, so a CancelRequest reaches the right backend.

use std::sync::Arc;

use dashmap::DashMap;
use rand::RngCore;

/// The upstream backend a client key stands for.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    secret: Vec<u8>,
    pub upstream_pid: i32,
    pub upstream_secret: Vec<u8>,
}

/// Every live session's cancel key, shared by all connections of a process.
#[derive(Debug, Clone, Default)]
pub struct CancelRegistry {
    keys: Arc<DashMap<i32, CancelTarget>>,
}

/// Removes its key from the registry when the session ends.
#[derive(Debug)]
pub struct CancelKey {
    registry: CancelRegistry,
    pub pid: i32,
    pub secret: Vec<u8>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.keys.remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Issues a fresh client key for an upstream backend key. The secret has
    /// the same length as the upstream's, so it fits the negotiated protocol.
    pub fn register(&self, upstream_pid: i32, upstream_secret: Vec<u8>) -> CancelKey {
        let mut rng = rand::thread_rng();
        let mut secret = vec![0u8; upstream_secret.len().max(4)];
        rng.fill_bytes(&mut secret);
        loop {
            // Positive, like real backend PIDs, so clients print them sanely.
            let pid = (rng.next_u32() >> 1) as i32;
            if pid == 0 {
                continue;
            }
            if let dashmap::Entry::Vacant(slot) = self.keys.entry(pid) {
                slot.insert(CancelTarget {
                    secret: secret.clone(),
                    upstream_pid,
                    upstream_secret: upstream_secret.clone(),
                });
                return CancelKey {
                    registry: self.clone(),
                    pid,
                    secret,
                };
            }
        }
    }

    /// The upstream key for a client's cancel request, if the key is valid.
    pub fn lookup(&self, pid: i32, secret: &[u8]) -> Option<CancelTarget> {
        let target = self.keys.get(&pid)?;
        constant_time_eq(&target.secret, secret).then(|| target.clone())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
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
    fn keys_map_to_upstream_and_expire_with_the_session() {
        let reg = CancelRegistry::default();
        let key = reg.register(4242, vec![9, 9, 9, 9]);
        let target = reg.lookup(key.pid, &key.secret).unwrap();
        assert_eq!(target.upstream_pid, 4242);
        assert!(reg.lookup(key.pid, &[0, 0, 0, 0]).is_none());
        let pid = key.pid;
        drop(key);
        assert!(reg.lookup(pid, &[9, 9, 9, 9]).is_none());
        assert!(reg.is_empty());
    }
}
