//! Adding the local CA to the operating system's trust store (`airlock ca
//! install`), so clients that read only the system roots trust the
//! gateway's leaves, and taking it out again (`airlock ca uninstall`).
//!
//! Debian and Ubuntu: `/usr/local/share/ca-certificates/airlock.crt` and
//! `update-ca-certificates`. Fedora, RHEL and friends:
//! `/etc/pki/ca-trust/source/anchors/airlock.crt` and `update-ca-trust`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One distribution family's way of trusting an extra root.
#[derive(Debug, Clone, Copy)]
struct Family {
    anchor_dir: &'static str,
    refresh: &'static [&'static str],
}

const FAMILIES: &[Family] = &[
    Family {
        anchor_dir: "/usr/local/share/ca-certificates",
        refresh: &["update-ca-certificates"],
    },
    Family {
        anchor_dir: "/etc/pki/ca-trust/source/anchors",
        refresh: &["update-ca-trust", "extract"],
    },
];

const ANCHOR_NAME: &str = "airlock.crt";

#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    #[error(
        "this system has no known trust store (looked for /usr/local/share/ca-certificates with \
         update-ca-certificates, and /etc/pki/ca-trust/source/anchors with update-ca-trust): \
         add {0} to it by hand"
    )]
    Unsupported(PathBuf),
    #[error(
        "there is no CA certificate at {0} yet: start the daemon once (`airlock serve`) to create it"
    )]
    NoCa(PathBuf),
    #[error("cannot write {path}: {cause} (run as root)")]
    Write { path: PathBuf, cause: io::Error },
    #[error("`{command}` failed: {output}")]
    Refresh { command: String, output: String },
}

fn family() -> Option<Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| Path::new(f.anchor_dir).is_dir() && which(f.refresh[0]).is_some())
}

fn which(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn refresh(f: Family) -> Result<(), TrustStoreError> {
    let command = f.refresh.join(" ");
    let program = which(f.refresh[0]).ok_or_else(|| TrustStoreError::Refresh {
        command: command.clone(),
        output: "not found".into(),
    })?;
    let out = Command::new(program)
        .args(&f.refresh[1..])
        .output()
        .map_err(|e| TrustStoreError::Refresh {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TrustStoreError::Refresh {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Copies `ca_cert` into the system's anchors and refreshes the store.
/// Returns where it was put.
pub fn install(ca_cert: &Path) -> Result<PathBuf, TrustStoreError> {
    let pem = fs::read(ca_cert).map_err(|_| TrustStoreError::NoCa(ca_cert.to_owned()))?;
    let f = family().ok_or_else(|| TrustStoreError::Unsupported(ca_cert.to_owned()))?;
    let anchor = Path::new(f.anchor_dir).join(ANCHOR_NAME);
    fs::write(&anchor, pem).map_err(|cause| TrustStoreError::Write {
        path: anchor.clone(),
        cause,
    })?;
    refresh(f)?;
    Ok(anchor)
}

/// Removes the anchor `install` wrote and refreshes the store. Returns the
/// removed path, or `None` when it was not installed.
pub fn uninstall() -> Result<Option<PathBuf>, TrustStoreError> {
    let Some(f) = family() else {
        return Ok(None);
    };
    let anchor = Path::new(f.anchor_dir).join(ANCHOR_NAME);
    match fs::remove_file(&anchor) {
        Ok(()) => {
            refresh(f)?;
            Ok(Some(anchor))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(TrustStoreError::Write {
            path: anchor,
            cause,
        }),
    }
}
