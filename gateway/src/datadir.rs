//! The data directory and what lives in it.
//!
//! ```text
//! <data dir>/            0711: the embedded PostgreSQL's user must pass through
//!   airlock.lock         flock held by the running daemon; holds its pid
//!   admin.sock           the admin API, 0600 (root only; bound in .admin.d/, see admin::bind)
//!   agent-ca-bundle.pem  OS roots + Airlock's CA for agents, 0644 (airlock run's trust view)
//!   agent-cacerts.jks    the same as Java's cacerts, 0644; agent-trust.stamp says what they were built from
//!   agent-home/NAME/     each agent's home, 0700, its own user's (airlock run)
//!   master.key           the master key when not given in the environment, 0600
//!   dashboard-password   the generated first-start admin password, 0600, until set-password
//!   postgres/            the embedded PostgreSQL (data/, run/, postgres.log)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "cannot create data directory {path}: {source} (set AIRLOCK_DATA_DIR or --data-dir to a writable directory)"
    )]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "data directory {path} is not writable: {source} (set AIRLOCK_DATA_DIR or --data-dir to a writable directory)"
    )]
    NotWritable { path: PathBuf, source: io::Error },
    #[error(
        "another airlock daemon{pid} is already running on data directory {path}: stop it first, or use another --data-dir"
    )]
    Locked { path: PathBuf, pid: String },
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    pub fn postgres_dir(&self) -> PathBuf {
        self.root.join("postgres")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("airlock.lock")
    }

    /// The pid of the daemon that holds this directory's lock, if one runs
    /// (`airlock doctor`): a shared lock is refused while it holds its own.
    pub fn running_daemon(&self) -> Option<u32> {
        let file = File::open(self.lock_path()).ok()?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(_unlocked_on_drop) => None,
            Err((mut file, _)) => {
                let mut pid = String::new();
                file.read_to_string(&mut pid).ok()?;
                pid.trim().parse().ok()
            }
        }
    }

    /// Creates the directory if needed, checks it is writable and takes the
    /// daemon lock. The lock is released when the guard drops or the process
    /// dies, however it dies.
    pub fn lock_for_daemon(&self) -> Result<DaemonLock, DataDirError> {
        let create = |source| DataDirError::Create {
            path: self.root.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .map_err(create)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o711)).map_err(|source| {
            DataDirError::NotWritable {
                path: self.root.clone(),
                source,
            }
        })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path())
            .map_err(|source| DataDirError::NotWritable {
                path: self.root.clone(),
                source,
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(DataDirError::Locked {
                    path: self.root.clone(),
                    pid: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
        };
        write_pid(&mut lock).map_err(|source| DataDirError::NotWritable {
            path: self.root.clone(),
            source,
        })?;
        Ok(DaemonLock { _file: lock })
    }
}

fn write_pid(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()
}

/// Held for the daemon's lifetime.
#[derive(Debug)]
pub struct DaemonLock {
    _file: Flock<File>,
}

/// Writes `contents` to a temporary file beside `path` with `mode` (set
/// explicitly, so the umask cannot make a public file unreadable or a
/// private one wider), fsyncs it, renames it over `path` and fsyncs the
/// directory: a reader, a bind mount or a crash sees the old file or the
/// new one, never half of either. The temporary name carries the pid, so
/// two processes writing the same file cannot take each other's.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let first = data.lock_for_daemon().unwrap();
        let err = data.lock_for_daemon().unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        data.lock_for_daemon().unwrap();
        let mode = fs::metadata(data.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
    }

    #[test]
    fn an_uncreatable_directory_is_a_clear_error() {
        let err = DataDir::new("/proc/airlock-test")
            .lock_for_daemon()
            .unwrap_err();
        assert!(matches!(err, DataDirError::Create { .. }), "{err}");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_with_its_own_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"old and longer").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        write_atomically(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the mode given, not the old file's or the umask's"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"], "no temporary file left");
        let missing = dir.path().join("no-such-dir").join("f");
        assert!(write_atomically(&missing, b"x", 0o644).is_err());
    }
}
