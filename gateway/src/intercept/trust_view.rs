//! The agent's view of the system trust store: the host's roots plus
//! Airlock's CA at the paths clients read by default, seen only by the
//! agent's processes. The host's files are never written.
//!
//! Two files in the data directory (root's, 0644: they hold only public
//! certificates), rebuilt by [`refresh`] when the CA or the host's bundle
//! changed (a stamp of both says so; unchanged, a refresh only reads and
//! hashes them):
//!
//! - [`BUNDLE_FILE`]: the host's PEM bundle, then Airlock's CA (OpenSSL,
//!   GnuTLS, Go, rustls-native-certs, curl, Python).
//! - [`JAVA_FILE`]: the same certificates as a Java keystore for
//!   `cacerts`. JKS, as Debian's own `cacerts` is: Java loads its default
//!   trust store with no password, and skips a PKCS#12's encrypted
//!   certificate bags then (the PKCS#12 writers at hand always encrypt
//!   them), whereas a JKS needs no password to read; Java 9+ reads either
//!   under `keystore.type=pkcs12`. The integrity digest uses Java's default
//!   password, `changeit`, so `keytool -list` checks it too.
//!
//! [`enter`] (in `airlock run`, as root, before privileges are dropped)
//! unshares the mount namespace, makes every mount a slave of the host's
//! (the host's later mounts still show; none of ours goes back), and
//! bind-mounts the two files over each of [`PEM_PATHS`] and
//! [`JAVA_PATHS`] (and each JDK's own `lib/security/cacerts`) that exists
//! on the host, after resolving symlinks, so `/usr/lib/ssl/cert.pem` or
//! `$JAVA_HOME/lib/security/cacerts` pointing at one of them shows the
//! view too. The namespace, and with it the view, ends with the agent's
//! last process.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::datadir::write_atomically;

/// The bundle of OS roots plus Airlock's CA, in the data directory.
pub const BUNDLE_FILE: &str = "agent-ca-bundle.pem";
/// The same certificates as a Java keystore (JKS).
pub const JAVA_FILE: &str = "agent-cacerts.jks";
/// What the two files were built from (hex SHA-256 of the inputs).
const STAMP_FILE: &str = "agent-trust.stamp";
/// Java's default keystore password.
pub const JAVA_PASSWORD: &str = "changeit";
/// Bumped when the files' format changes, so a stamp of an older
/// `airlock` does not keep them.
const FORMAT: &[u8] = b"airlock trust view 1\0";

/// Where distributions keep their trusted roots, in order of preference
/// as the source of the OS roots; each that exists is covered by the view.
pub const PEM_PATHS: &[&str] = &[
    // Debian, Ubuntu, Arch, Alpine, Gentoo.
    "/etc/ssl/certs/ca-certificates.crt",
    // Fedora, RHEL, CentOS (and their /etc/pki/tls/cert.pem link).
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    // Alpine, Arch, BSD-style.
    "/etc/ssl/cert.pem",
    // openSUSE.
    "/etc/ssl/ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
    // Debian's OPENSSLDIR (a link to the first, usually).
    "/usr/lib/ssl/cert.pem",
];

/// Java's system-wide `cacerts`, where JDKs link theirs.
pub const JAVA_PATHS: &[&str] = &[
    // Debian, Ubuntu (ca-certificates-java).
    "/etc/ssl/certs/java/cacerts",
    // Fedora, RHEL.
    "/etc/pki/ca-trust/extracted/java/cacerts",
    "/etc/pki/java/cacerts",
];

/// Where distributions install JDKs; each `*/lib/security/cacerts` that is
/// a file of its own (not a link to one of [`JAVA_PATHS`]) is covered too.
const JVM_DIR: &str = "/usr/lib/jvm";

/// The two files, once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustFiles {
    pub bundle: PathBuf,
    pub java: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustViewError {
    #[error("cannot read Airlock's CA {path}: {source}")]
    ReadCa { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{count} certificates do not fit a Java keystore")]
    TooMany { count: usize },
    #[error("cannot make a mount namespace of its own (unshare): {0}")]
    Unshare(nix::Error),
    #[error("cannot make the mounts private to the agent: {0}")]
    Propagation(nix::Error),
    #[error("cannot bind {source_file} over {target}: {errno}")]
    Bind {
        source_file: PathBuf,
        target: PathBuf,
        errno: nix::Error,
    },
}

impl TrustFiles {
    pub fn in_dir(data_dir: &Path) -> TrustFiles {
        TrustFiles {
            bundle: data_dir.join(BUNDLE_FILE),
            java: data_dir.join(JAVA_FILE),
        }
    }
}

/// Writes (or keeps, when built from the same CA and host bundle) the
/// bundle and the Java keystore in `data_dir`.
pub fn refresh(data_dir: &Path, ca_cert: &Path) -> Result<TrustFiles, TrustViewError> {
    let ca = fs::read(ca_cert).map_err(|source| TrustViewError::ReadCa {
        path: ca_cert.to_owned(),
        source,
    })?;
    let os_roots = PEM_PATHS
        .iter()
        .find_map(|p| fs::read(p).ok())
        .unwrap_or_default();
    let files = TrustFiles::in_dir(data_dir);
    let stamp = {
        let mut h = Sha256::new();
        h.update(FORMAT);
        h.update((os_roots.len() as u64).to_be_bytes());
        h.update(&os_roots);
        h.update(&ca);
        hex::encode(h.finalize())
    };
    let stamp_path = data_dir.join(STAMP_FILE);
    let current = fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp)
        && files.bundle.is_file()
        && files.java.is_file();
    if current {
        return Ok(files);
    }
    let bundle = pem_bundle(&os_roots, &ca);
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&bundle)
        .filter_map(Result::ok)
        .collect();
    let jks = java_keystore(&certs, JAVA_PASSWORD, now_millis())?;
    write_public(&files.bundle, &bundle)?;
    write_public(&files.java, &jks)?;
    // Last: a stamp names only files that are complete.
    write_public(&stamp_path, stamp.as_bytes())?;
    Ok(files)
}

/// The host's roots, then Airlock's CA.
fn pem_bundle(os_roots: &[u8], ca: &[u8]) -> Vec<u8> {
    let mut bundle = os_roots.to_vec();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(b"# Airlock local CA\n");
    bundle.extend_from_slice(ca);
    bundle
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A JKS keystore of trusted-certificate entries (the format of
/// `sun.security.provider.JavaKeyStore`): magic, version 2, the count,
/// each entry (tag 2, alias, date, "X.509", the DER), then SHA-1 of the
/// password (UTF-16BE), "Mighty Aphrodite" and everything before.
/// The last certificate (Airlock's CA) is `airlock-local-ca`.
fn java_keystore(
    certs: &[CertificateDer<'_>],
    password: &str,
    date_millis: u64,
) -> Result<Vec<u8>, TrustViewError> {
    let too_many = || TrustViewError::TooMany { count: certs.len() };
    let mut out = Vec::new();
    out.extend_from_slice(&0xFEED_FEEDu32.to_be_bytes());
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(certs.len())
            .map_err(|_| too_many())?
            .to_be_bytes(),
    );
    let utf = |out: &mut Vec<u8>, s: &str| -> Result<(), TrustViewError> {
        let len = u16::try_from(s.len()).map_err(|_| too_many())?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s.as_bytes());
        Ok(())
    };
    let last = certs.len().saturating_sub(1);
    for (i, cert) in certs.iter().enumerate() {
        let alias = if i == last {
            "airlock-local-ca".to_owned()
        } else {
            format!("os-root-{i}")
        };
        out.extend_from_slice(&2u32.to_be_bytes());
        utf(&mut out, &alias)?;
        out.extend_from_slice(&date_millis.to_be_bytes());
        utf(&mut out, "X.509")?;
        let len = u32::try_from(cert.len()).map_err(|_| too_many())?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(cert);
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for unit in password.encode_utf16() {
        ctx.update(&unit.to_be_bytes());
    }
    ctx.update(b"Mighty Aphrodite");
    ctx.update(&out);
    out.extend_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The view's files are public certificates only: 0644, replaced whole
/// ([`write_atomically`]) so a bind mount made meanwhile sees the old file
/// or the new.
fn write_public(path: &Path, data: &[u8]) -> Result<(), TrustViewError> {
    write_atomically(path, data, 0o644).map_err(|source| TrustViewError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The host's files the view covers: (what is shown there, where), each
/// target a real file (symlinks resolved), each once.
pub fn targets(files: &TrustFiles) -> Vec<(PathBuf, PathBuf)> {
    let jdks: Vec<PathBuf> = fs::read_dir(JVM_DIR)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("lib/security/cacerts"))
        .collect();
    let pem = PEM_PATHS.iter().map(|p| (&files.bundle, PathBuf::from(p)));
    let java = JAVA_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(jdks)
        .map(|p| (&files.java, p));
    let mut seen = BTreeSet::new();
    pem.chain(java)
        .filter_map(|(source, path)| {
            let real = fs::canonicalize(&path).ok()?;
            (real.is_file() && seen.insert(real.clone())).then(|| (source.clone(), real))
        })
        .collect()
}

/// Puts this process (and what it execs) in a mount namespace of its own
/// where [`targets`] show `files`. Needs `CAP_SYS_ADMIN`: call it before
/// dropping privileges. Returns the paths covered.
pub fn enter(files: &TrustFiles) -> Result<Vec<PathBuf>, TrustViewError> {
    let targets = targets(files);
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(TrustViewError::Unshare)?;
    // Slave, not private: the host's mounts made later (a USB disk, a
    // container's overlay) still appear; ours never propagate back.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(TrustViewError::Propagation)?;
    for (source, target) in &targets {
        mount(
            Some(source.as_path()),
            target.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|errno| TrustViewError::Bind {
            source_file: source.clone(),
            target: target.clone(),
            errno,
        })?;
    }
    Ok(targets.into_iter().map(|(_, target)| target).collect())
}

/// `BindReadOnlyPaths=` lines giving a systemd unit the same view (for
/// its drop-in): one per [`targets`] entry, `-` so a path missing when
/// the unit starts is skipped rather than failing it.
pub fn systemd_lines(files: &TrustFiles) -> Vec<String> {
    targets(files)
        .into_iter()
        .map(|(source, target)| {
            format!(
                "BindReadOnlyPaths=-{}:{}",
                source.display(),
                target.display()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cert(cn: &str) -> (String, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![cn.to_owned()]).unwrap();
        let c = params.self_signed(&key).unwrap();
        (c.pem(), c.der().clone())
    }

    #[test]
    fn the_bundle_is_the_os_roots_then_the_ca() {
        let (root, _) = cert("root.example");
        let (ca, _) = cert("airlock.example");
        let bundle = pem_bundle(root.trim_end().as_bytes(), ca.as_bytes());
        let text = String::from_utf8(bundle.clone()).unwrap();
        assert!(text.starts_with(root.trim_end()));
        assert!(text.ends_with(&ca));
        assert_eq!(CertificateDer::pem_slice_iter(&bundle).count(), 2);
        assert_eq!(pem_bundle(b"", ca.as_bytes()).len(), ca.len() + 19);
    }

    #[test]
    fn the_java_keystore_is_a_jks_of_trusted_entries() {
        let (_, a) = cert("a.example");
        let (_, b) = cert("b.example");
        let jks = java_keystore(&[a.clone(), b.clone()], "changeit", 7).unwrap();
        assert_eq!(
            &jks[..12],
            &[0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 2]
        );
        // tag 2, alias, date 7, "X.509", length, DER.
        let mut first = 2u32.to_be_bytes().to_vec();
        first.extend_from_slice(&[0, 9]);
        first.extend_from_slice(b"os-root-0");
        first.extend_from_slice(&7u64.to_be_bytes());
        first.extend_from_slice(&[0, 5]);
        first.extend_from_slice(b"X.509");
        first.extend_from_slice(&u32::try_from(a.len()).unwrap().to_be_bytes());
        first.extend_from_slice(&a);
        assert_eq!(&jks[12..12 + first.len()], first.as_slice());
        let body = &jks[..jks.len() - 20];
        assert!(body.ends_with(&b));
        let alias = b"\0\x10airlock-local-ca";
        assert!(body.windows(alias.len()).any(|w| w == alias));
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        for c in "changeit".encode_utf16() {
            ctx.update(&c.to_be_bytes());
        }
        ctx.update(b"Mighty Aphrodite");
        ctx.update(body);
        assert_eq!(&jks[jks.len() - 20..], ctx.finish().as_ref());
    }

    #[test]
    fn refresh_keeps_unchanged_files_and_rebuilds_on_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.crt");
        let (ca, _) = cert("airlock.example");
        fs::write(&ca_path, &ca).unwrap();
        let files = refresh(dir.path(), &ca_path).unwrap();
        let mode = fs::metadata(&files.java).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(fs::read_to_string(&files.bundle).unwrap().ends_with(&ca));
        let written = fs::metadata(&files.java).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        refresh(dir.path(), &ca_path).unwrap();
        let kept = fs::metadata(&files.java).unwrap().modified().unwrap();
        assert_eq!(written, kept, "unchanged inputs: nothing rewritten");
        let (other, _) = cert("rotated.example");
        fs::write(&ca_path, &other).unwrap();
        refresh(dir.path(), &ca_path).unwrap();
        assert!(fs::read_to_string(&files.bundle).unwrap().ends_with(&other));
    }

    #[test]
    fn systemd_lines_bind_only_existing_host_files() {
        let files = TrustFiles::in_dir(Path::new("/var/lib/airlock"));
        for line in systemd_lines(&files) {
            let (source, target) = line
                .strip_prefix("BindReadOnlyPaths=-")
                .and_then(|l| l.split_once(':'))
                .unwrap();
            assert!(source.starts_with("/var/lib/airlock/agent-"), "{line}");
            assert!(Path::new(target).is_file(), "{line}");
        }
    }
}
