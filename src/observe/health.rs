//! /readyz for a running proxy: policy loaded, upstream reachable, catalog
//! readable. Kept apart from the HTTP code so the checks are testable.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Metrics, Readiness};
use crate::session::runtime::MaskingRuntime;

/// What a replica needs before a load balancer sends it clients.
pub struct ProxyReadiness {
    pub upstream: (String, u16),
    pub connect_timeout: Duration,
    /// Present when policies are configured.
    pub runtime: Option<Arc<MaskingRuntime>>,
    /// Database whose catalog is read for the check.
    pub catalog_database: String,
}

impl Readiness for ProxyReadiness {
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let addr = (self.upstream.0.as_str(), self.upstream.1);
            match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "upstream {}:{} unreachable: {e}",
                        self.upstream.0, self.upstream.1
                    ))
                }
                Err(_) => {
                    return Err(format!(
                        "upstream {}:{} did not accept within {:?}",
                        self.upstream.0, self.upstream.1, self.connect_timeout
                    ))
                }
            }
            if let Some(rt) = &self.runtime {
                // The catalog is cached for its TTL, so probes cost little.
                rt.catalog(&self.catalog_database)
                    .await
                    .map_err(|e| format!("catalog not readable: {e}"))?;
            }
            Ok(())
        })
    }

    fn before_scrape(&self, metrics: &Metrics) {
        if let Some(rt) = &self.runtime {
            let set = rt.store.current();
            metrics.set_policy(set.version(), set.sha256());
        }
    }
}
