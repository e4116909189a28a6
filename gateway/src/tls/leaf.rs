//! [`LeafCache`]: one ready `ServerConfig` per host name the agents dial,
//! minted on first use and kept in a bounded cache.
//!
//! The TTL stays well inside the leaf's validity, so a cached config never
//! serves an expired certificate. Minting is single-flight per name (many
//! connections to a new host mint once) and runs on the blocking pool,
//! since key generation and signing are CPU work. All configs share one
//! session store and one ticketer, so resumption works across them (rustls
//! only resumes a session for the SNI it was made for).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use rustls::ServerConfig;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::SingleCertAndKey;

use super::{
    ALPN_H2_HTTP1, CertificateAuthority, LEAF_VALIDITY, LeafName, TlsError, crypto_provider,
};

/// Names kept by default: far more hosts than an agent host talks to.
pub const DEFAULT_CAPACITY: u64 = 10_000;
/// How long a config is kept by default (the leaf is valid for 7 days).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest TTL allowed: half the leaf's life, a margin for clock jumps.
const MAX_TTL: Duration = Duration::from_secs(LEAF_VALIDITY.as_secs() / 2);
/// TLS 1.2 sessions remembered (TLS 1.3 uses stateless tickets).
const SESSION_CACHE_SIZE: usize = 4096;

/// Bounded, single-flight cache of per-name server configs.
pub struct LeafCache {
    /// What a miss needs, shared with the blocking task that mints.
    minter: Arc<Minter>,
    /// Name → ready config; bounded by entry count, expiring after the TTL.
    configs: Cache<LeafName, Arc<ServerConfig>>,
    /// Lookups answered from the cache, for benchmarks and metrics.
    hits: AtomicU64,
}

/// Counters of a [`LeafCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafCacheStats {
    /// Leaves minted since start.
    pub mints: u64,
    /// Lookups served from the cache.
    pub hits: u64,
    /// Configs cached now (approximate until pending cache work has run).
    pub entries: u64,
}

struct Minter {
    ca: Arc<CertificateAuthority>,
    /// TLS 1.2 session-id resumption, shared by every config.
    sessions: Arc<dyn StoresServerSessions>,
    /// TLS 1.3 (and 1.2) ticket keys, rotated by rustls, shared by every config.
    ticketer: Arc<dyn ProducesTickets>,
    mints: AtomicU64,
}

impl LeafCache {
    /// A cache of at most `capacity` names, each kept for `ttl` (capped at
    /// half the leaf's validity).
    pub fn new(
        ca: Arc<CertificateAuthority>,
        capacity: u64,
        ttl: Duration,
    ) -> Result<Self, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::config)?;
        let minter = Minter {
            ca,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            ticketer,
            mints: AtomicU64::new(0),
        };
        Ok(LeafCache {
            minter: Arc::new(minter),
            configs: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.min(MAX_TTL))
                .build(),
            hits: AtomicU64::new(0),
        })
    }

    /// A cache with [`DEFAULT_CAPACITY`] and [`DEFAULT_TTL`].
    pub fn with_defaults(ca: Arc<CertificateAuthority>) -> Result<Self, TlsError> {
        Self::new(ca, DEFAULT_CAPACITY, DEFAULT_TTL)
    }

    /// The server config for `name`: its leaf and the CA as the chain, no
    /// client auth, ALPN `h2` then `http/1.1`, resumption on. Concurrent
    /// callers for a new name wait for one mint; a failed mint is not cached.
    pub async fn server_config(&self, name: &LeafName) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(config) = self.configs.get(name).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(config);
        }
        let minter = self.minter.clone();
        let owned = name.clone();
        let mint = async move {
            let task_name = owned.to_string();
            tokio::task::spawn_blocking(move || minter.server_config(&owned))
                .await
                .map_err(|e| TlsError::Mint {
                    name: task_name,
                    reason: format!("the minting task failed: {e}"),
                })?
        };
        let entry = self
            .configs
            .entry_by_ref(name)
            .or_try_insert_with(mint)
            .await
            .map_err(|shared| unshare(&shared))?;
        if !entry.is_fresh() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(entry.into_value())
    }

    /// Leaves minted since start.
    pub fn mints(&self) -> u64 {
        self.minter.mints.load(Ordering::Relaxed)
    }

    /// Lookups answered from the cache since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The counters and the current entry count.
    pub fn stats(&self) -> LeafCacheStats {
        LeafCacheStats {
            mints: self.mints(),
            hits: self.hits(),
            entries: self.configs.entry_count(),
        }
    }

    /// The CA the leaves are signed by.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.minter.ca
    }
}

impl Minter {
    /// Mints a leaf for `name` and wraps it in a server config. Blocking.
    fn server_config(&self, name: &LeafName) -> Result<Arc<ServerConfig>, TlsError> {
        let leaf = self.ca.mint_leaf(name)?;
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(leaf)));
        config.alpn_protocols = ALPN_H2_HTTP1.iter().map(|p| p.to_vec()).collect();
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        self.mints.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(config))
    }
}

/// moka hands every waiter the same `Arc` of a failed init; give each
/// caller an owned error with the same message.
fn unshare(shared: &TlsError) -> TlsError {
    match shared {
        TlsError::Mint { name, reason } => TlsError::Mint {
            name: name.clone(),
            reason: reason.clone(),
        },
        TlsError::Config { reason } => TlsError::Config {
            reason: reason.clone(),
        },
        other => TlsError::Config {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
#[path = "leaf_tests.rs"]
mod tests;
