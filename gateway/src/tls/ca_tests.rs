use rustls::client::danger::ServerCertVerifier;
use rustls::{CertificateError, Error};
use rustls_pki_types::UnixTime;

use super::*;
use crate::tls::test_util::verifier_trusting;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn verify(ca: &CertificateAuthority, leaf: &CertifiedKey, name: &str) -> Result<(), Error> {
    let verifier = verifier_trusting(ca);
    let name = LeafName::parse(name).unwrap();
    verifier
        .verify_server_cert(
            &leaf.cert[0],
            &leaf.cert[1..],
            name.server_name(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn created_once_then_reloaded_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("new");
    let first = CertificateAuthority::load_or_create(&ca_dir).unwrap();
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(first.cert_path(), ca_dir.join("ca.crt"));
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert_eq!(mode(&ca_dir.join("ca.crt")), 0o644);
    let pem = fs::read_to_string(first.cert_path()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let key_pem = fs::read_to_string(ca_dir.join("ca.key")).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !format!("{first:?}").contains("PRIVATE"),
        "Debug never shows the key"
    );

    let second = CertificateAuthority::load_or_create(&ca_dir).unwrap();
    assert_eq!(first.cert_der(), second.cert_der());
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert_eq!(fs::read_to_string(second.cert_path()).unwrap(), pem);
    assert_eq!(fs::read_to_string(ca_dir.join("ca.key")).unwrap(), key_pem);
    let temporaries: Vec<_> = fs::read_dir(&ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        temporaries.is_empty(),
        "no temporary file left: {temporaries:?}"
    );
}

#[test]
fn the_ca_is_a_constrained_p256_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let der = ca.cert_der().as_ref();
    let find = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(find(b"Airlock local CA "), "CN names Airlock");
    assert!(
        find(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        "P-256 key"
    );
    // basicConstraints: critical, CA:TRUE, pathLen 0.
    assert!(
        find(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]),
        "CA:TRUE pathlen:0"
    );
    assert_eq!(ca.fingerprint().len(), 32 * 3 - 1);
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    let key = dir.path().join("ca.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(
        matches!(err, TlsError::CaKeyTooOpen { mode: 0o644, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", key.display())),
        "{msg}"
    );
}

#[test]
fn corrupt_files_are_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    let key = dir.path().join("ca.key");
    let cert = dir.path().join("ca.crt");
    let good_key = fs::read(&key).unwrap();
    let good_cert = fs::read(&cert).unwrap();

    for garbage in [&b"not a key"[..], b"", &[0xff, 0xfe, 0x00]] {
        fs::write(&key, garbage).unwrap();
        let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyCorrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&*key.to_string_lossy()) && msg.contains("restore"),
            "{msg}"
        );
    }
    fs::write(&key, &good_key).unwrap();

    fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaCertCorrupt { .. }), "{err}");
    assert!(err.to_string().contains(&*cert.to_string_lossy()), "{err}");
    fs::write(&cert, "garbage").unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaCertCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("delete it"), "{err}");

    fs::write(&cert, &good_cert).unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
}

#[test]
fn a_lost_certificate_is_reissued_and_old_trust_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let old = CertificateAuthority::load_or_create(dir.path()).unwrap();
    fs::remove_file(old.cert_path()).unwrap();
    let new = CertificateAuthority::load_or_create(dir.path()).unwrap();
    assert_ne!(old.cert_der(), new.cert_der());
    let name = LeafName::parse("example.test").unwrap();
    let leaf = new.mint_leaf(&name).unwrap();
    verify(&old, &leaf, "example.test").unwrap();
}

#[test]
fn a_lost_key_or_a_mismatched_pair_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    CertificateAuthority::load_or_create(other.path()).unwrap();
    fs::copy(other.path().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaMismatch { .. }), "{err}");

    fs::remove_file(dir.path().join("ca.key")).unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaKeyMissing { .. }), "{err}");
    assert!(err.to_string().contains("restore"), "{err}");
}

#[test]
fn an_expired_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(dir.path()).unwrap();
    let key = load_key(&dir.path().join("ca.key"), &dir.path().join("ca.crt")).unwrap();
    let mut params = ca_params(&key);
    params.not_before = OffsetDateTime::now_utc() - 3 * DAY;
    params.not_after = OffsetDateTime::now_utc() - DAY;
    fs::write(
        dir.path().join("ca.crt"),
        params.self_signed(&key).unwrap().pem(),
    )
    .unwrap();
    let err = CertificateAuthority::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaExpired { .. }), "{err}");
}

#[test]
fn leaves_verify_for_their_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();

    let leaf = ca
        .mint_leaf(&LeafName::parse("api.example.test").unwrap())
        .unwrap();
    assert_eq!(leaf.cert.len(), 2);
    assert_eq!(&leaf.cert[1], ca.cert_der());
    leaf.keys_match().unwrap();
    verify(&ca, &leaf, "api.example.test").unwrap();
    let err = verify(&ca, &leaf, "other.example.test").unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );

    for ip in ["127.0.0.1", "::1"] {
        let leaf = ca.mint_leaf(&LeafName::parse(ip).unwrap()).unwrap();
        verify(&ca, &leaf, ip).unwrap();
        verify(&ca, &leaf, "10.0.0.1").unwrap_err();
    }

    let stranger = tempfile::tempdir().unwrap();
    let stranger = CertificateAuthority::load_or_create(stranger.path()).unwrap();
    verify(&stranger, &leaf, "api.example.test").unwrap_err();
}

#[test]
fn every_leaf_has_a_fresh_key_and_serial() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let name = LeafName::parse("example.test").unwrap();
    let a = ca.mint_leaf(&name).unwrap();
    let b = ca.mint_leaf(&name).unwrap();
    assert_ne!(a.cert[0], b.cert[0]);
    assert_ne!(a.key.public_key(), b.key.public_key());
}
