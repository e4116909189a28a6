//! The client side: how the gateway verifies real upstream servers. Roots
//! are the OS store plus, when set, the PEM bundle named by
//! `AIRLOCK_UPSTREAM_CA` (private CAs, and the tests' fake upstreams).
//!
//! Reading the OS store parses every root, so build this once at start and
//! share the `Arc`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::{ALPN_H2_HTTP1, TlsError, crypto_provider};

/// The variable naming an extra PEM bundle of upstream roots.
pub const UPSTREAM_CA_ENV: &str = "AIRLOCK_UPSTREAM_CA";

/// The path in `AIRLOCK_UPSTREAM_CA`, if set and not empty.
pub fn upstream_ca_from_env() -> Option<PathBuf> {
    std::env::var_os(UPSTREAM_CA_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A client config trusting the OS roots plus every certificate in
/// `extra_ca_file`, offering ALPN `h2` then `http/1.1`, sending SNI and
/// resuming sessions. Unparsable OS roots are logged and skipped; an empty
/// OS store is fine when the bundle supplies roots. A bundle that is
/// missing, unreadable, empty or invalid is an error naming the file.
pub fn upstream_client_config(extra_ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    add_native_roots(&mut roots);
    if let Some(path) = extra_ca_file {
        let added = add_bundle(&mut roots, path)?;
        tracing::info!(bundle = %path.display(), roots = added, "trusting extra upstream roots");
    }
    if roots.is_empty() {
        return Err(TlsError::NoUpstreamRoots);
    }
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = ALPN_H2_HTTP1.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = true;
    Ok(Arc::new(config))
}

fn add_native_roots(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping part of the OS certificate store");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "skipped unparsable certificates in the OS store");
    }
    tracing::debug!(added, "loaded OS root certificates");
}

/// Adds every certificate of the PEM bundle at `path`; returns how many.
fn add_bundle(roots: &mut RootCertStore, path: &Path) -> Result<usize, TlsError> {
    let invalid = |reason: String| TlsError::UpstreamCaInvalid {
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read(path).map_err(|source| TlsError::UpstreamCaRead {
        path: path.to_owned(),
        source,
    })?;
    let mut added = 0;
    for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| invalid(format!("certificate {}: {e}", index + 1)))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("certificate {}: {e}", index + 1)))?;
        added += 1;
    }
    if added == 0 {
        return Err(TlsError::UpstreamCaEmpty {
            path: path.to_owned(),
        });
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertificateAuthority;

    #[test]
    fn loads_an_extra_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let ca2 = CertificateAuthority::load_or_create(other.path()).unwrap();
        let bundle = dir.path().join("bundle.pem");
        let both = [
            fs::read_to_string(ca.cert_path()).unwrap(),
            fs::read_to_string(ca2.cert_path()).unwrap(),
        ]
        .concat();
        fs::write(&bundle, both).unwrap();

        let mut roots = RootCertStore::empty();
        assert_eq!(add_bundle(&mut roots, &bundle).unwrap(), 2);
        let config = upstream_client_config(Some(&bundle)).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(config.enable_sni);
    }

    #[test]
    fn bad_bundles_are_clear_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = upstream_client_config(Some(&missing)).unwrap_err();
        assert!(matches!(err, TlsError::UpstreamCaRead { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("missing.pem") && msg.contains(UPSTREAM_CA_ENV),
            "{msg}"
        );

        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "no certificates here\n").unwrap();
        let err = upstream_client_config(Some(&empty)).unwrap_err();
        assert!(matches!(err, TlsError::UpstreamCaEmpty { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"));

        let garbage = dir.path().join("garbage.pem");
        fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = upstream_client_config(Some(&garbage)).unwrap_err();
        assert!(matches!(err, TlsError::UpstreamCaInvalid { .. }), "{err}");
        assert!(err.to_string().contains("garbage.pem"));

        let bad_base64 = dir.path().join("bad64.pem");
        fs::write(
            &bad_base64,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = upstream_client_config(Some(&bad_base64)).unwrap_err();
        assert!(matches!(err, TlsError::UpstreamCaInvalid { .. }), "{err}");
    }
}
