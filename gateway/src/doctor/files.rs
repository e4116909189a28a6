//! The data directory and the key files in it: present, and closed to
//! other users.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Check;

/// The files whose disclosure would give away every secret or let anyone
/// mint certificates agents trust.
const KEY_FILES: [&str; 2] = [crate::vault::MASTER_KEY_FILE, crate::tls::ca::CA_KEY_FILE];

pub(super) fn checks(data_dir: &Path) -> Vec<Check> {
    let meta = match fs::metadata(data_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::ok(
                "data dir",
                format!(
                    "{} does not exist yet: the first start creates it (mode 0711)",
                    data_dir.display()
                ),
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "data dir",
                format!("cannot read {}: {e}", data_dir.display()),
                "run as root, or point --data-dir at the daemon's directory",
            )];
        }
    };
    let mut checks = vec![directory(data_dir, &meta)];
    checks.extend(KEY_FILES.iter().filter_map(|f| key_file(&data_dir.join(f))));
    checks
}

fn directory(dir: &Path, meta: &fs::Metadata) -> Check {
    const NAME: &str = "data dir";
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() {
        return Check::fail(
            NAME,
            format!("{} is not a directory", dir.display()),
            "point --data-dir at a directory",
        );
    }
    if mode & 0o022 != 0 {
        return Check::fail(
            NAME,
            format!(
                "{} is writable by other users (mode {mode:o}): they could replace its files",
                dir.display()
            ),
            format!("chmod 711 {}", dir.display()),
        );
    }
    if meta.uid() != 0 && nix::unistd::geteuid().is_root() {
        return Check::warn(
            NAME,
            format!("{} is owned by uid {}, not root", dir.display(), meta.uid()),
            format!("chown root: {}", dir.display()),
        );
    }
    Check::ok(NAME, format!("{} (mode {mode:o})", dir.display()))
}

fn key_file(path: &Path) -> Option<Check> {
    const NAME: &str = "key files";
    let meta = fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    Some(if mode & 0o077 != 0 {
        Check::fail(
            NAME,
            format!(
                "{} is readable by other users (mode {mode:o})",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        )
    } else {
        Check::ok(NAME, format!("{} (mode {mode:o})", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn open_modes_fail_and_closed_ones_pass() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let key = dir.path().join("master.key");
        fs::write(&key, "k").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(checks(dir.path()).iter().all(|c| c.status != Status::Fail));

        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let c = checks(dir.path());
        let failed: Vec<_> = c.iter().filter(|c| c.status == Status::Fail).collect();
        assert_eq!(failed.len(), 1, "{c:?}");
        assert_eq!(
            failed[0].fix.as_deref(),
            Some(&*format!("chmod 600 {}", key.display()))
        );

        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(checks(dir.path())[0].status, Status::Fail);
        assert_eq!(checks(&dir.path().join("none"))[0].status, Status::Ok);
    }
}
