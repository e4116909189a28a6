//! Airlock's CA, and which client families trust it where.

use std::fs;
use std::path::Path;
use std::process::Command;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use super::Check;
use crate::intercept::trust_view::{self, PEM_PATHS, TrustFiles};
use crate::tls::ca::CA_CERT_FILE;

pub(super) fn checks(data_dir: &Path) -> Vec<Check> {
    let mut checks = ca(data_dir);
    checks.extend([trust_view(data_dir), node(), python_certifi()]);
    checks
}

/// The CA itself and, when there is one, whether the host trusts it.
fn ca(data_dir: &Path) -> Vec<Check> {
    let path = data_dir.join(CA_CERT_FILE);
    let Ok(pem) = fs::read(&path) else {
        return vec![Check::ok(
            "ca",
            format!("no CA yet: the first start makes one at {}", path.display()),
        )];
    };
    match CertificateDer::from_pem_slice(&pem) {
        Ok(der) => {
            let fingerprint = hex::encode(Sha256::digest(der.as_ref()));
            vec![
                Check::ok("ca", format!("{} (SHA-256 {fingerprint})", path.display())),
                host_store(&der),
            ]
        }
        Err(e) => vec![Check::fail(
            "ca",
            format!("{} is not a PEM certificate: {e}", path.display()),
            "move it away: the next start makes a new CA (agents must then trust it)",
        )],
    }
}

/// Whether the host's own store (OpenSSL's and GnuTLS's bundle) holds the
/// CA: only after `airlock ca install`, and not needed for agents.
fn host_store(ca: &CertificateDer<'_>) -> Check {
    const NAME: &str = "host trust";
    let Some((path, bundle)) = PEM_PATHS
        .iter()
        .find_map(|p| fs::read(p).ok().map(|b| (*p, b)))
    else {
        return Check::warn(
            NAME,
            "no system CA bundle found at the usual paths",
            "install ca-certificates",
        );
    };
    let trusted = CertificateDer::pem_slice_iter(&bundle)
        .filter_map(Result::ok)
        .any(|c| c.as_ref() == ca.as_ref());
    if trusted {
        Check::ok(
            NAME,
            format!("{path} holds Airlock's CA: every process on the host trusts it"),
        )
    } else {
        Check::ok(
            NAME,
            format!(
                "{path} does not hold Airlock's CA: only agents do (through the trust view); \
                 `airlock ca install` makes the whole host trust it"
            ),
        )
    }
}

/// What `airlock run`, the systemd drop-in and `airlock docker` show agents.
fn trust_view(data_dir: &Path) -> Check {
    const NAME: &str = "trust view";
    let files = TrustFiles::in_dir(data_dir);
    let covered = trust_view::targets(&files);
    let java = covered
        .iter()
        .filter(|(source, _)| *source == files.java)
        .count();
    let written = files.bundle.is_file() && files.java.is_file();
    let families = if java > 0 {
        "OpenSSL, GnuTLS, Go, rustls-native-certs and Java clients"
    } else {
        "OpenSSL, GnuTLS, Go and rustls-native-certs clients (no Java found here)"
    };
    let detail = format!(
        "{families} in agents trust Airlock's CA with no settings: {} path(s) of this host are \
         covered{}",
        covered.len(),
        if written {
            ""
        } else {
            " (the files are written at the first start)"
        }
    );
    if nix::unistd::geteuid().is_root() {
        Check::ok(NAME, detail)
    } else {
        Check::warn(
            NAME,
            detail,
            "`airlock run` needs root (CAP_SYS_ADMIN) for the view; without it only clients \
             that read SSL_CERT_FILE and the like trust the CA",
        )
    }
}

fn node() -> Check {
    const NAME: &str = "node";
    match version("node", &["--version"]) {
        Some(v) => Check::ok(
            NAME,
            format!(
                "Node {v} trusts only its built-in roots plus NODE_EXTRA_CA_CERTS, which \
                 `airlock run` and `airlock docker` set"
            ),
        ),
        None => Check::ok(NAME, "no Node.js here"),
    }
}

/// certifi's bundle is a file of its own that the trust view does not
/// cover: requests reads REQUESTS_CA_BUNDLE instead, others need telling.
fn python_certifi() -> Check {
    const NAME: &str = "python certifi";
    let Some(path) = version("python3", &["-c", "import certifi; print(certifi.where())"]) else {
        return Check::ok(
            NAME,
            "no certifi here: Python's ssl module uses the system store",
        );
    };
    Check::warn(
        NAME,
        format!(
            "certifi's bundle ({path}) is not the system store: `requests` follows \
             REQUESTS_CA_BUNDLE and httpx SSL_CERT_FILE (both set by `airlock run`), but code \
             that passes certifi.where() itself does not trust Airlock's CA"
        ),
        "use the default SSL context, or point such code at SSL_CERT_FILE",
    )
}

/// The first line `program args` prints, if it runs and succeeds.
fn version(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next()?.trim().to_owned()).filter(|s| !s.is_empty())
}
