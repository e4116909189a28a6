//! `airlock install-service`: puts the binary and the systemd units in
//! place, so the daemon runs as a service and agents' units need only
//! `Slice=airlock-agents.slice`.
//!
//! The unit files live in `packaging/systemd/` and are compiled in, so the
//! binary installs exactly the units it was built with.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SERVICE_UNIT: &str = include_str!("../../packaging/systemd/airlock.service");
pub const AGENTS_SLICE: &str = include_str!("../../packaging/systemd/airlock-agents.slice");

/// Where things go; the defaults are the system's.
#[derive(Debug, Clone)]
pub struct Targets {
    pub unit_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Run `systemctl daemon-reload` when systemd is running.
    pub reload: bool,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            unit_dir: PathBuf::from("/etc/systemd/system"),
            bin_dir: PathBuf::from("/usr/local/bin"),
            reload: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot write {path}: {cause} (run as root, or choose another directory)")]
    Write { path: PathBuf, cause: io::Error },
    #[error("cannot find this program's own binary: {0}")]
    SelfExe(io::Error),
    #[error("`systemctl daemon-reload` failed: {0}")]
    Reload(String),
}

/// What was installed, for the message to the operator.
#[derive(Debug)]
pub struct Installed {
    pub binary: PathBuf,
    pub units: Vec<PathBuf>,
    pub reloaded: bool,
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), InstallError> {
    let err = |cause| InstallError::Write {
        path: path.to_owned(),
        cause,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    // Through a temporary file: a running binary cannot be overwritten in
    // place, and a half-written unit must never be loaded.
    crate::datadir::write_atomically(path, contents, mode).map_err(err)
}

/// Installs the running binary and the units into `targets`.
pub fn install(targets: &Targets) -> Result<Installed, InstallError> {
    let me = std::env::current_exe().map_err(InstallError::SelfExe)?;
    let binary = targets.bin_dir.join("airlock");
    if fs::canonicalize(&me).ok() != fs::canonicalize(&binary).ok() {
        let bytes = fs::read(&me).map_err(InstallError::SelfExe)?;
        write(&binary, &bytes, 0o755)?;
    }
    let units = vec![
        targets.unit_dir.join("airlock.service"),
        targets.unit_dir.join("airlock-agents.slice"),
    ];
    write(&units[0], SERVICE_UNIT.as_bytes(), 0o644)?;
    write(&units[1], AGENTS_SLICE.as_bytes(), 0o644)?;
    let systemd_running = Path::new("/run/systemd/system").is_dir();
    let reloaded = targets.reload && systemd_running;
    if reloaded {
        let out = Command::new("systemctl")
            .arg("daemon-reload")
            .output()
            .map_err(|e| InstallError::Reload(e.to_string()))?;
        if !out.status.success() {
            return Err(InstallError::Reload(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
    }
    Ok(Installed {
        binary,
        units,
        reloaded,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_units_agree_with_the_defaults_they_set() {
        assert!(SERVICE_UNIT.contains("Type=notify"));
        assert!(SERVICE_UNIT.contains("ExecStart=/usr/local/bin/airlock serve"));
        assert!(SERVICE_UNIT.contains("AIRLOCK_AGENTS_CGROUP=airlock.slice/airlock-agents.slice"));
        assert!(AGENTS_SLICE.contains("[Slice]"));
    }

    #[test]
    fn installs_into_given_directories() {
        let dir = tempfile::tempdir().unwrap();
        let targets = Targets {
            unit_dir: dir.path().join("units"),
            bin_dir: dir.path().join("bin"),
            reload: false,
        };
        let done = install(&targets).unwrap();
        assert!(!done.reloaded);
        assert_eq!(fs::read_to_string(&done.units[0]).unwrap(), SERVICE_UNIT);
        assert_eq!(fs::read_to_string(&done.units[1]).unwrap(), AGENTS_SLICE);
        let mode = fs::metadata(&done.binary).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
}
