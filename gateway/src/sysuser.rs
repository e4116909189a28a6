//! The unprivileged system users Airlock creates on the host: the embedded
//! PostgreSQL's (`store::embedded`) and one per agent
//! (`intercept::agent_user`).
//!
//! Creation is idempotent and serialised host-wide: two daemons (or a
//! daemon and an `airlock run`) starting at once must not each run
//! `useradd`, because two concurrent `useradd`s can each write
//! `/etc/passwd` from what they read, and the last rename wins, leaving one
//! of them holding a uid that no longer exists (seen on a fresh machine:
//! initdb "could not look up effective user ID"). So creation takes one
//! `flock` and looks the user up again under it.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::User;

/// Where the creation lock lives (shared by every Airlock on the host).
const LOCK_PATH: &str = "/run/lock/airlock-useradd.lock";

/// Why a system user could not be looked up or created.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SysUserError {
    pub reason: String,
}

fn fail(reason: impl Into<String>) -> SysUserError {
    SysUserError {
        reason: reason.into(),
    }
}

/// What a user to create looks like in `/etc/passwd`.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub name: &'a str,
    /// The GECOS field: says who made the user and what for.
    pub comment: &'a str,
}

/// Looks `name` up, without creating it.
pub fn lookup(name: &str) -> Result<Option<User>, SysUserError> {
    User::from_name(name).map_err(|e| fail(format!("cannot look up user {name:?}: {e}")))
}

/// The user `new.name`, created if missing: a system user with a group of
/// its own, no home directory (`/nonexistent`) and no login shell. Only root
/// can create one.
pub fn find_or_create(new: NewUser<'_>) -> Result<User, SysUserError> {
    if let Some(user) = lookup(new.name)? {
        return Ok(user);
    }
    let _lock = CreationLock::take()?;
    if let Some(user) = lookup(new.name)? {
        return Ok(user);
    }
    create(new)?;
    lookup(new.name)?.ok_or_else(|| fail("useradd succeeded but the user is not visible"))
}

/// An exclusive `flock` on [`LOCK_PATH`]; released when dropped.
struct CreationLock(#[allow(dead_code)] Flock<fs::File>);

impl CreationLock {
    fn take() -> Result<Self, SysUserError> {
        let path = Path::new(LOCK_PATH);
        let dir = path.parent().unwrap_or(Path::new("/run"));
        fs::create_dir_all(dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| fail(format!("opening {}: {e}", path.display())))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(CreationLock)
            .map_err(|(_, e)| fail(format!("locking {}: {e}", path.display())))
    }
}

fn create(new: NewUser<'_>) -> Result<(), SysUserError> {
    tracing::info!(
        user = new.name,
        comment = new.comment,
        "creating system user"
    );
    let output = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
        .arg("--comment")
        .arg(new.comment)
        .arg(new.name)
        .output()
        .map_err(|e| fail(format!("running useradd: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&output.stderr).trim()))
    }
}
