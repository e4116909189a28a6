//! Which user an agent runs as (`airlock run`), decided.
//!
//! An agent that runs as the operator's own user is the operator: it has
//! the operator's groups (`adm` reads the journal, `docker` is root), can
//! ask the operator's systemd manager (`systemd-run --user`), docker, cron
//! or sshd to start a process outside its cgroup, and can read the
//! operator's files and the environments of the operator's other
//! processes (other agents' included). So by default every agent gets a
//! user of its own:
//!
//! - **Per agent, created on first run**: `airlock-agent-NAME` (a name too
//!   long for `useradd`'s 32 characters keeps a prefix of the agent name
//!   and gets 8 hex characters of its SHA-256). A system user with a group
//!   of its own, no login shell and `/nonexistent` as its passwd home,
//!   created idempotently under the host-wide lock of [`crate::sysuser`].
//!   Per agent rather than from a uid range, so two agents never share a
//!   uid (which would let one read the other's `/proc/PID/environ` and
//!   files) and `ps`/`ls -l` say whose process or file it is. Its GECOS
//!   field (`Airlock agent NAME`) marks it as Airlock's: an existing user
//!   of that name without the mark is refused, never borrowed.
//! - **Only its own group**: `setgroups` to its primary group alone, then
//!   `setgid`/`setuid`, and `PR_SET_NO_NEW_PRIVS`, so no setuid program
//!   (`sudo`, `su`, `newgrp`, ...) gives any of it back.
//! - **A home it may write**: `<data dir>/agent-home/NAME` (0700, owned by
//!   the agent's user; `agent-home/` is 0711 root), kept across runs
//!   (caches, tool configuration), set as `HOME`. Per data directory, so a
//!   test daemon's agents never write the host's.
//!
//! `--user USER` runs as another existing user instead, also with only its
//! primary group. Refused: root, the invoking user (that is what
//! `--as-invoking-user` is for, so it is never chosen by accident), the
//! embedded PostgreSQL's user (it owns the database files) and another
//! agent's own user. `--as-invoking-user` runs as the user who ran sudo
//! (`SUDO_UID`) with all of that user's groups, as before; `airlock run`
//! then prints what that gives away. Never as root: without `SUDO_UID`
//! the invoking user is root, and that is refused.
//!
//! The agent's user is not removed by `airlock agent rm`: re-adding the
//! name gets the same user and home back.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};

use crate::sysuser::{self, NewUser};

/// The prefix of every agent's own user.
pub const USER_PREFIX: &str = "airlock-agent-";
/// The GECOS mark of an agent's own user: this, then the agent's name.
pub const COMMENT_PREFIX: &str = "Airlock agent ";
/// `useradd`'s limit on a user name.
const MAX_USER_NAME: usize = 32;
/// Under the data directory: one home per agent.
pub const HOME_DIR: &str = "agent-home";
/// The embedded PostgreSQL's GECOS (store::embedded).
const POSTGRES_COMMENT: &str = "Airlock embedded PostgreSQL";

/// Who the operator asked the agent to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs<'a> {
    /// The default: the agent's own user, created if missing.
    AgentUser,
    /// `--user USER`: an existing, non-root user (name or uid).
    User(&'a str),
    /// `--as-invoking-user`: the user who ran sudo, with all its groups.
    InvokingUser,
}

/// Which supplementary groups the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Groups {
    /// Only the user's primary group (`setgroups([gid])`).
    PrimaryOnly,
    /// Every group of this user (`initgroups`): `--as-invoking-user`.
    AllOf(CString),
}

/// Whether the process has to change user at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Root becomes the target user.
    Required,
    /// Already the target user (a non-root operator with
    /// `--as-invoking-user`): nothing to drop.
    AlreadyThem,
}

/// The resolved user an agent runs as.
#[derive(Debug, Clone)]
pub struct Target {
    pub uid: Uid,
    pub gid: Gid,
    pub name: String,
    /// `HOME` for the command.
    pub home: PathBuf,
    pub groups: Groups,
    pub switch: Switch,
    /// How it was chosen (for the warning and errors).
    pub chosen: Chosen,
}

/// How a [`Target`] was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    AgentUser,
    User,
    InvokingUser,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentUserError {
    #[error(
        "airlock run must run as root (it starts the agent in its cgroup as a user of its \
         own): run it with sudo"
    )]
    NotRoot,
    #[error("cannot create agent {agent}'s user {user:?}: {reason}")]
    Create {
        agent: String,
        user: String,
        reason: String,
    },
    #[error(
        "the user {user:?} exists but is not agent {agent}'s own user (its comment is {found:?}, \
         not {expected:?}): remove or rename it, or run the agent with --user"
    )]
    NotOurs {
        agent: String,
        user: String,
        found: String,
        expected: String,
    },
    #[error("there is no user {0:?} (--user takes an existing user's name or uid)")]
    UnknownUser(String),
    #[error("cannot look up user {user:?}: {reason}")]
    Lookup { user: String, reason: String },
    #[error(
        "--user {0:?} is root: an agent never runs as root (omit --user: the agent then gets \
         a user of its own)"
    )]
    Root(String),
    #[error(
        "--user {0:?} is the user who invoked airlock run: say --as-invoking-user if you mean \
         to give the agent your own identity"
    )]
    IsInvoker(String),
    #[error(
        "--user {0:?} runs Airlock's embedded PostgreSQL and owns the database: an agent must \
         not run as it"
    )]
    DatabaseUser(String),
    #[error("--user {user:?} is agent {other}'s own user: an agent must not run as another agent")]
    OtherAgent { user: String, other: String },
    #[error(
        "--as-invoking-user: the invoking user is root (SUDO_UID is not set): an agent never \
         runs as root; run airlock run through sudo from your own account, or omit \
         --as-invoking-user"
    )]
    InvokerIsRoot,
    #[error("cannot prepare agent {agent}'s home {path}: {source}")]
    Home {
        agent: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// The name of agent `agent`'s own user.
pub fn user_name(agent: &str) -> String {
    let full = format!("{USER_PREFIX}{agent}");
    if full.len() <= MAX_USER_NAME {
        return full;
    }
    let digest = hex::encode(Sha256::digest(agent.as_bytes()));
    // Agent names are ASCII (model::names), so byte offsets are characters.
    let keep = MAX_USER_NAME - USER_PREFIX.len() - 9;
    format!("{USER_PREFIX}{}-{}", &agent[..keep], &digest[..8])
}

/// Resolves `run_as` for `agent`, creating the agent's own user if it is
/// the default and missing. `data_dir` is the daemon's (to recognise its
/// database user).
pub fn resolve(run_as: RunAs<'_>, agent: &str, data_dir: &Path) -> Result<Target, AgentUserError> {
    match run_as {
        RunAs::AgentUser => agent_user(agent),
        RunAs::User(spec) => named_user(spec, data_dir),
        RunAs::InvokingUser => invoking_user(),
    }
}

fn agent_user(agent: &str) -> Result<Target, AgentUserError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(AgentUserError::NotRoot);
    }
    let name = user_name(agent);
    let comment = format!("{COMMENT_PREFIX}{agent}");
    let user = sysuser::find_or_create(NewUser {
        name: &name,
        comment: &comment,
    })
    .map_err(|e| AgentUserError::Create {
        agent: agent.to_owned(),
        user: name.clone(),
        reason: e.reason,
    })?;
    let found = user.gecos.to_string_lossy();
    if found != comment || user.uid.is_root() {
        return Err(AgentUserError::NotOurs {
            agent: agent.to_owned(),
            user: name,
            found: found.into_owned(),
            expected: comment,
        });
    }
    Ok(Target {
        uid: user.uid,
        gid: user.gid,
        name: user.name,
        home: PathBuf::new(), // set by ensure_home
        groups: Groups::PrimaryOnly,
        switch: Switch::Required,
        chosen: Chosen::AgentUser,
    })
}

fn named_user(spec: &str, data_dir: &Path) -> Result<Target, AgentUserError> {
    let user = lookup(spec)?.ok_or_else(|| AgentUserError::UnknownUser(spec.to_owned()))?;
    if user.uid.is_root() {
        return Err(AgentUserError::Root(spec.to_owned()));
    }
    if invoker_uid() == Some(user.uid) {
        return Err(AgentUserError::IsInvoker(spec.to_owned()));
    }
    let gecos = user.gecos.to_string_lossy();
    if gecos == POSTGRES_COMMENT || owns_database(user.uid, data_dir) {
        return Err(AgentUserError::DatabaseUser(spec.to_owned()));
    }
    if let Some(other) = gecos.strip_prefix(COMMENT_PREFIX) {
        return Err(AgentUserError::OtherAgent {
            user: spec.to_owned(),
            other: other.to_owned(),
        });
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(AgentUserError::NotRoot);
    }
    Ok(Target {
        uid: user.uid,
        gid: user.gid,
        home: user.dir.clone(),
        name: user.name,
        groups: Groups::PrimaryOnly,
        switch: Switch::Required,
        chosen: Chosen::User,
    })
}

fn invoking_user() -> Result<Target, AgentUserError> {
    let euid = nix::unistd::geteuid();
    let uid = match invoker_uid() {
        Some(uid) => uid,
        None if euid.is_root() => return Err(AgentUserError::InvokerIsRoot),
        None => euid,
    };
    if uid.is_root() {
        return Err(AgentUserError::InvokerIsRoot);
    }
    let user = User::from_uid(uid)
        .map_err(|e| AgentUserError::Lookup {
            user: uid.to_string(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| AgentUserError::UnknownUser(uid.to_string()))?;
    let name = CString::new(user.name.as_bytes()).map_err(|_| AgentUserError::Lookup {
        user: uid.to_string(),
        reason: "the user name contains a NUL byte".into(),
    })?;
    Ok(Target {
        uid,
        gid: user.gid,
        home: user.dir.clone(),
        name: user.name,
        groups: Groups::AllOf(name),
        switch: if uid == euid {
            Switch::AlreadyThem
        } else {
            Switch::Required
        },
        chosen: Chosen::InvokingUser,
    })
}

/// The user who ran sudo, when we are root through sudo.
fn invoker_uid() -> Option<Uid> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    std::env::var("SUDO_UID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(Uid::from_raw)
}

fn lookup(spec: &str) -> Result<Option<User>, AgentUserError> {
    let found = match spec.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(spec),
    };
    found.map_err(|e| AgentUserError::Lookup {
        user: spec.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether `uid` owns the embedded PostgreSQL's files in `data_dir`.
fn owns_database(uid: Uid, data_dir: &Path) -> bool {
    let pgdata = data_dir.join("postgres").join("data");
    fs::metadata(pgdata).is_ok_and(|m| m.uid() == uid.as_raw())
}

/// Makes `<data dir>/agent-home/AGENT` the agent user's home (0700, owned
/// by it) and records it in `target.home`. Only for the agent's own user:
/// `--user` and `--as-invoking-user` keep the user's passwd home.
pub fn ensure_home(
    target: &mut Target,
    agent: &str,
    data_dir: &Path,
) -> Result<(), AgentUserError> {
    if target.chosen != Chosen::AgentUser {
        return Ok(());
    }
    let parent = data_dir.join(HOME_DIR);
    let home = parent.join(agent);
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| AgentUserError::Home {
            agent: agent.to_owned(),
            path,
            source,
        }
    };
    make_private_dir(&parent, 0o711, None).map_err(fail(&parent))?;
    make_private_dir(&home, 0o700, Some((target.uid, target.gid))).map_err(fail(&home))?;
    target.home = home;
    Ok(())
}

/// Creates `dir` (mode `mode`) if missing; refuses anything but a real
/// directory (a symlink would hand the agent another path); sets the mode
/// and owner.
fn make_private_dir(dir: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::other("it exists and is not a directory"));
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(dir, Some(uid.as_raw()), Some(gid.as_raw()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_keep_the_agent_name() {
        assert_eq!(user_name("bot"), "airlock-agent-bot");
        assert_eq!(
            user_name("a23456789012345678"),
            "airlock-agent-a23456789012345678"
        );
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = user_name("a-very-long-agent-name-number-one");
        let b = user_name("a-very-long-agent-name-number-two");
        assert_eq!(a.len(), MAX_USER_NAME, "{a}");
        assert!(a.starts_with("airlock-agent-a-very-lo"), "{a}");
        assert_ne!(a, b);
        let longest = "x".repeat(63);
        assert_eq!(user_name(&longest).len(), MAX_USER_NAME);
    }
}
