//! The throwaway CA that signs an upstream's certificate, and the rustls
//! configs built from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

static CA_FILE_SEQ: AtomicU64 = AtomicU64::new(0);

fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A throwaway certificate authority (ECDSA P-256, valid from a day ago for
/// 30 days).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem: String,
    pem_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

/// A server certificate (leaf only; the CA is a root) and its PKCS#8 key.
#[derive(Debug)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

impl ServerCert {
    /// The chain to serve (just the leaf).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

fn validity(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
}

impl TestCa {
    /// Creates a CA and writes its certificate to a new file
    /// `upstream-ca-N.pem` in `dir` (created if missing).
    pub fn new(dir: &Path) -> TestCa {
        Self::build(dir, None)
    }

    /// Like [`TestCa::new`], in a temporary directory owned by the CA.
    pub fn new_temp() -> TestCa {
        let tmp = tempfile::tempdir().expect("upstream CA tempdir");
        let dir = tmp.path().to_path_buf();
        Self::build(&dir, Some(tmp))
    }

    fn build(dir: &Path, tmp: Option<tempfile::TempDir>) -> TestCa {
        use rcgen::{BasicConstraints, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, "Airlock Test Upstream CA");
        dn.push(DnType::OrganizationName, "Airlock tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let pem = issuer.pem();
        std::fs::create_dir_all(dir).expect("create CA dir");
        let seq = CA_FILE_SEQ.fetch_add(1, Ordering::Relaxed);
        let pem_path = dir.join(format!("upstream-ca-{seq}.pem"));
        std::fs::write(&pem_path, &pem).expect("write CA PEM");
        TestCa {
            issuer,
            pem,
            pem_path,
            _tmp: tmp,
        }
    }

    /// The file holding the CA certificate (PEM).
    pub fn ca_pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Mints a server certificate for `names`; each is an IP address SAN if it
    /// parses as one (`127.0.0.1`, `::1`), else a DNS name SAN.
    pub fn mint<S: AsRef<str>>(&self, names: &[S]) -> ServerCert {
        use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        assert!(!names.is_empty(), "a server certificate needs a name");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// A rustls server config with a fresh certificate for `names`, offering
    /// the given ALPN protocols (e.g. `&[b"h2", b"http/1.1"]`).
    pub fn server_config<S: AsRef<str>>(
        &self,
        names: &[S],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let cert = self.mint(names);
        let mut cfg = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(cert.chain(), cert.key())
            .expect("server cert");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}
