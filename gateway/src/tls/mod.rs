//! TLS for both sides of the gateway: the local CA that agents trust, the
//! leaf certificates it mints per host, the client configuration that
//! verifies real upstream servers, and a ClientHello reader for routing.
//!
//! - [`ca`]: [`CertificateAuthority`], created in the data directory on first
//!   start (`ca.crt` 0644, `ca.key` 0600) and loaded after; mints a
//!   short-lived leaf for one [`LeafName`].
//! - [`name`]: [`LeafName`], a validated SNI host name or IP literal.
//! - [`leaf`]: [`LeafCache`], a bounded cache of ready `ServerConfig`s, one
//!   per name, minted once per name off the async runtime.
//! - [`upstream`]: [`upstream_client_config`], the OS roots plus the bundle
//!   in `AIRLOCK_UPSTREAM_CA`.
//! - [`trust_store`]: `airlock ca install|uninstall`, the OS trust store.
//! - [`sni`]: [`parse_client_hello_sni`], a pure, never-panicking reader of
//!   the SNI in the first bytes of a connection.
//!
//! Everything here uses the ring provider ([`crypto_provider`]); nothing
//! relies on a process-wide default provider being installed.

#![forbid(unsafe_code)]

pub mod ca;
mod der;
pub mod leaf;
pub mod name;
pub mod sni;
pub mod trust_store;
pub mod upstream;

#[cfg(test)]
mod test_util;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority, LEAF_VALIDITY};
pub use leaf::{DEFAULT_CAPACITY, DEFAULT_TTL, LeafCache, LeafCacheStats};
pub use name::LeafName;
pub use sni::{MAX_CLIENT_HELLO_LEN, Sni, parse_client_hello_sni};
pub use upstream::{UPSTREAM_CA_ENV, upstream_ca_from_env, upstream_client_config};

/// The ALPN protocols offered on both sides, in order of preference.
pub const ALPN_H2_HTTP1: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ring crypto provider, built once and shared by every config here.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// What went wrong with certificates or TLS configuration. Each message names
/// the file or name involved and what to do; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot create the CA directory {path}: {source} (set AIRLOCK_DATA_DIR or --data-dir to a writable directory)"
    )]
    CaDir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    CaRead { path: PathBuf, source: io::Error },
    #[error(
        "cannot write {path}: {source} (is the data directory writable and the disk not full?)"
    )]
    CaWrite { path: PathBuf, source: io::Error },
    #[error(
        "CA key {path} is readable by other users (mode {mode:o}): run `chmod 600 {path}` and start again"
    )]
    CaKeyTooOpen { path: PathBuf, mode: u32 },
    #[error(
        "CA key {path} is not a PEM private key Airlock can use: restore it from backup, or delete \
         {path} and {cert} to create a new CA (agents must then trust the new {cert})"
    )]
    CaKeyCorrupt { path: PathBuf, cert: PathBuf },
    #[error(
        "CA key {path} is missing but {cert} exists: restore {path} from backup, or delete {cert} \
         to create a new CA (agents must then trust the new {cert})"
    )]
    CaKeyMissing { path: PathBuf, cert: PathBuf },
    #[error(
        "CA certificate {path} is corrupt ({reason}): delete it and Airlock re-issues it from its \
         key on the next start"
    )]
    CaCertCorrupt { path: PathBuf, reason: String },
    #[error(
        "CA certificate {path} does not belong to the key in {key} ({reason}): restore the matching \
         pair from backup, or delete {path} and Airlock re-issues it from {key} on the next start"
    )]
    CaMismatch {
        path: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error(
        "CA certificate {path} has expired or is not yet valid (check the system clock): delete it \
         and Airlock re-issues it from its key on the next start"
    )]
    CaExpired { path: PathBuf },
    #[error("{name:?} is not a host name or IP address: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("cannot mint a certificate for {name}: {reason}")]
    Mint { name: String, reason: String },
    #[error("cannot build the TLS configuration: {reason}")]
    Config { reason: String },
    #[error("cannot read the upstream CA bundle {path} (from {env}): {source}", env = UPSTREAM_CA_ENV)]
    UpstreamCaRead { path: PathBuf, source: io::Error },
    #[error(
        "the upstream CA bundle {path} (from {env}) holds no PEM certificates: point {env} at a \
         file of -----BEGIN CERTIFICATE----- blocks",
        env = UPSTREAM_CA_ENV
    )]
    UpstreamCaEmpty { path: PathBuf },
    #[error(
        "the upstream CA bundle {path} (from {env}) is invalid: {reason}; fix or replace the file",
        env = UPSTREAM_CA_ENV
    )]
    UpstreamCaInvalid { path: PathBuf, reason: String },
    #[error(
        "no trusted root certificates: the OS store is empty or unreadable; install the \
         ca-certificates package, or set {env} to a PEM bundle",
        env = UPSTREAM_CA_ENV
    )]
    NoUpstreamRoots,
}

impl TlsError {
    fn config(err: rustls::Error) -> Self {
        TlsError::Config {
            reason: err.to_string(),
        }
    }
}
