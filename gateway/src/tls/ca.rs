//! The local certificate authority that agents trust.
//!
//! ```text
//! <dir>/ca.crt   the CA certificate, PEM, 0644: what agents are told to trust
//! <dir>/ca.key   its ECDSA P-256 key, PKCS#8 PEM, 0600
//! ```
//!
//! The CA's subject is derived from its key ("Airlock local CA" plus the
//! first bytes of the key's SHA-256), so the issuer can be rebuilt from
//! `ca.key` alone: a missing `ca.crt` is re-issued from the key at start (a
//! crash between writing the two files recovers by itself), and so is a
//! corrupt or expired one once the operator deletes it, as its error says.
//! Agents that trusted the old certificate keep working: same subject, same
//! key. A loaded pair is proven at start by minting and verifying a leaf.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use super::name::LeafName;
use super::{TlsError, crypto_provider, der};
use crate::datadir::write_atomically;

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The CA outlives any reasonable install; re-issue is automatic anyway.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Backdating absorbs clock skew between the gateway and its agents.
const CA_BACKDATE: Duration = DAY;
/// How long a minted leaf is valid; caches must drop leaves well before.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const LEAF_BACKDATE: Duration = Duration::from_secs(60 * 60);
/// How early an expiring CA certificate is warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The name the load-time self-check mints a throwaway leaf for.
const SELF_CHECK_NAME: &str = "airlock-self-check.invalid";

/// The CA: signs leaves for the names agents connect to.
pub struct CertificateAuthority {
    /// The CA's subject, key identifier method and key: all rcgen needs to sign.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, sent after each leaf so clients can build the chain.
    cert_der: CertificateDer<'static>,
    /// Where `ca.crt` lives, for `airlock ca path` and the agent wrapper.
    cert_path: PathBuf,
    /// Loads leaf keys into rustls signing keys.
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating it on first start (and `dir` with
    /// mode 0700 if it does not exist). A key readable by group or others is
    /// refused; a missing certificate is re-issued from the key; a loaded
    /// pair must mint a leaf that verifies, and must be within its dates.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (exists(&key_path)?, exists(&cert_path)?) {
            (false, false) => Self::create(dir, cert_path, key_path),
            (false, true) => Err(TlsError::CaKeyMissing {
                path: key_path,
                cert: cert_path,
            }),
            (true, false) => {
                let key = load_key(&key_path, &cert_path)?;
                tracing::warn!(cert = %cert_path.display(), "CA certificate missing: re-issuing it from the CA key");
                Self::issue(key, cert_path)
            }
            (true, true) => {
                let key = load_key(&key_path, &cert_path)?;
                let ca = Self::load(key, cert_path)?;
                ca.self_check(&key_path)?;
                Ok(ca)
            }
        }
    }

    /// The path of `ca.crt`, the file agents trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The SHA-256 fingerprint of the CA certificate, colon-separated hex as
    /// browsers and `openssl x509 -fingerprint -sha256` show it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.cert_der.as_ref());
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }

    /// Mints a fresh ECDSA P-256 leaf for `name`: SAN dNSName or iPAddress,
    /// CN the name, EKU serverAuth, valid from an hour ago for
    /// [`LEAF_VALIDITY`], a random serial. The chain is `[leaf, CA]`.
    /// CPU-bound (a key generation and a signature): call it off the async
    /// runtime, as [`LeafCache`](super::LeafCache) does.
    pub fn mint_leaf(&self, name: &LeafName) -> Result<CertifiedKey, TlsError> {
        let mint_err = |reason: String| TlsError::Mint {
            name: name.to_string(),
            reason,
        };
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| mint_err(e.to_string()))?;
        let san = match name.ip() {
            Some(ip) => SanType::IpAddress(ip),
            None => SanType::DnsName(
                Ia5String::try_from(name.as_str()).map_err(|e| mint_err(e.to_string()))?,
            ),
        };
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.subject_alt_names = vec![san];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| mint_err(e.to_string()))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| mint_err(e.to_string()))?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            signing_key,
        ))
    }

    /// First start: a new key, written before the certificate so a crash in
    /// between leaves a state the next start recovers from.
    fn create(dir: &Path, cert_path: PathBuf, key_path: PathBuf) -> Result<Self, TlsError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| TlsError::CaDir {
                path: dir.to_owned(),
                source,
            })?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| TlsError::Mint {
            name: "the CA".into(),
            reason: e.to_string(),
        })?;
        let pem = Zeroizing::new(key.serialize_pem());
        write_atomically(&key_path, pem.as_bytes(), 0o600).map_err(|source| TlsError::CaWrite {
            path: key_path.clone(),
            source,
        })?;
        let ca = Self::issue(key, cert_path)?;
        tracing::info!(cert = %ca.cert_path.display(), fingerprint = %ca.fingerprint(), "created a new local CA");
        Ok(ca)
    }

    /// Issues a new self-signed CA certificate for `key` and writes it.
    fn issue(key: KeyPair, cert_path: PathBuf) -> Result<Self, TlsError> {
        let params = ca_params(&key);
        let cert = params.self_signed(&key).map_err(|e| TlsError::Mint {
            name: "the CA".into(),
            reason: e.to_string(),
        })?;
        write_atomically(&cert_path, cert.pem().as_bytes(), 0o644).map_err(|source| {
            TlsError::CaWrite {
                path: cert_path.clone(),
                source,
            }
        })?;
        Ok(CertificateAuthority {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_path,
            provider: crypto_provider(),
        })
    }

    fn load(key: KeyPair, cert_path: PathBuf) -> Result<Self, TlsError> {
        let corrupt = |reason: String| TlsError::CaCertCorrupt {
            path: cert_path.clone(),
            reason,
        };
        let pem = fs::read(&cert_path).map_err(|source| TlsError::CaRead {
            path: cert_path.clone(),
            source,
        })?;
        let cert_der = CertificateDer::from_pem_slice(&pem)
            .map_err(|e| corrupt(format!("no PEM certificate: {e}")))?;
        Ok(CertificateAuthority {
            issuer: Issuer::new(ca_params(&key), key),
            cert_der,
            cert_path,
            provider: crypto_provider(),
        })
    }

    /// Proves the loaded pair works: a throwaway leaf signed with `ca.key`
    /// must verify against `ca.crt` as the only root.
    fn self_check(&self, key_path: &Path) -> Result<(), TlsError> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::{CertificateError, Error, RootCertStore};

        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| TlsError::CaCertCorrupt {
                path: self.cert_path.clone(),
                reason: e.to_string(),
            })?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?;
        let name = LeafName::parse(SELF_CHECK_NAME)?;
        let leaf = self.mint_leaf(&name)?;
        let result = verifier.verify_server_cert(
            &leaf.cert[0],
            &leaf.cert[1..],
            name.server_name(),
            &[],
            rustls_pki_types::UnixTime::now(),
        );
        match result {
            Ok(_) => self.check_dates(),
            Err(Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            )) => Err(TlsError::CaExpired {
                path: self.cert_path.clone(),
            }),
            Err(e) => Err(TlsError::CaMismatch {
                path: self.cert_path.clone(),
                key: key_path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// rustls does not check a trust anchor's dates but agents do: refuse
    /// an expired CA, and warn a month ahead.
    fn check_dates(&self) -> Result<(), TlsError> {
        let Some((not_before, not_after)) = der::validity(&self.cert_der) else {
            return Err(TlsError::CaCertCorrupt {
                path: self.cert_path.clone(),
                reason: "its validity period cannot be read".into(),
            });
        };
        let now = OffsetDateTime::now_utc();
        if now < not_before || now > not_after {
            return Err(TlsError::CaExpired {
                path: self.cert_path.clone(),
            });
        }
        if not_after - now < EXPIRY_WARNING {
            tracing::warn!(
                cert = %self.cert_path.display(),
                %not_after,
                "the CA certificate expires soon: delete it and restart to re-issue it from its key"
            );
        }
        Ok(())
    }
}

/// The CA's parameters. Subject, key usages and key identifier method are a
/// function of the key alone, so [`Issuer`] can be rebuilt from `ca.key`.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let key_id = Sha256::digest(key.subject_public_key_info());
    let suffix: String = key_id[..4].iter().map(|b| format!("{b:02x}")).collect();
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Airlock");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Airlock local CA {suffix}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    params.not_before = now - CA_BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params
}

/// A positive random 128-bit serial (RFC 5280 allows up to 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Reads `ca.key`, refusing one that group or others can read.
fn load_key(path: &Path, cert_path: &Path) -> Result<KeyPair, TlsError> {
    let read_err = |source| TlsError::CaRead {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(read_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::CaKeyTooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = Zeroizing::new(
        fs::read_to_string(path).map_err(|source| match source.kind() {
            // Not UTF-8: as corrupt as any other garbage.
            io::ErrorKind::InvalidData => TlsError::CaKeyCorrupt {
                path: path.to_owned(),
                cert: cert_path.to_owned(),
            },
            _ => read_err(source),
        })?,
    );
    KeyPair::from_pem(&text).map_err(|_| TlsError::CaKeyCorrupt {
        path: path.to_owned(),
        cert: cert_path.to_owned(),
    })
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(TlsError::CaRead {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
