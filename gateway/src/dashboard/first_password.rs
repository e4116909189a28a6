//! The first-start admin password's file: `<data dir>/dashboard-password`,
//! mode 0600 (root only), the password and a newline.
//!
//! Not the log: the journal is readable by every member of `adm`, and an
//! agent started by such a user could read it. The file lives until the
//! operator sets a password of their own (`airlock admin set-password`
//! removes it); `airlock status` says where it is while it exists.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::datadir::write_atomically;
use crate::service::types::SecretValue;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "dashboard-password";

/// Where the first-start password is kept in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Writes the password 0600 and replaced whole
/// ([`write_atomically`]), so no reader ever sees a partial or wider-open
/// file (and a stale file from an earlier first start is replaced whole).
pub fn write(data_dir: &Path, password: &SecretValue) -> Result<PathBuf, (PathBuf, io::Error)> {
    let path = path(data_dir);
    let mut line = Zeroizing::new(Vec::with_capacity(password.expose().len() + 1));
    line.extend_from_slice(password.expose().as_bytes());
    line.push(b'\n');
    match write_atomically(&path, &line, 0o600) {
        Ok(()) => Ok(path),
        Err(e) => Err((path, e)),
    }
}

/// Removes the file once the operator set their own password; `Ok(true)`
/// when there was one.
pub fn remove(data_dir: &Path) -> io::Result<bool> {
    match fs::remove_file(path(data_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_0600_whole_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A stale, world-readable file is replaced, not reused.
        fs::write(path(dir.path()), "old").unwrap();
        fs::set_permissions(path(dir.path()), fs::Permissions::from_mode(0o644)).unwrap();
        let p = write(dir.path(), &SecretValue::new("s3cret-generated".into())).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "s3cret-generated\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert!(remove(dir.path()).unwrap());
        assert!(!remove(dir.path()).unwrap());
    }
}
