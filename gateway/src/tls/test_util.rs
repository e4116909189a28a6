//! Fixtures for the TLS tests: a client side that trusts only a given CA.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};

use super::{CertificateAuthority, crypto_provider};

/// Roots holding only `ca`'s certificate.
pub(crate) fn roots_of(ca: &CertificateAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    Arc::new(roots)
}

/// The verifier a client trusting only `ca` would use.
pub(crate) fn verifier_trusting(ca: &CertificateAuthority) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots_of(ca), crypto_provider())
        .build()
        .unwrap()
}

/// A client config trusting only `ca`, offering `alpn`.
pub(crate) fn client_trusting(ca: &CertificateAuthority, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots_of(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
