//! `airlock run --agent NAME [--user U | --as-invoking-user] [--env ..]
//! [--cwd DIR] -- CMD ARGS...`: start a command as an agent.
//!
//! In order, all before CMD runs (any failure stops there, CMD never runs):
//!
//! 1. decide the user ([`super::agent_user`]: by default the agent's own,
//!    created on first run) and the environment;
//! 2. refresh the trust files ([`super::trust_view`]: the OS roots plus
//!    Airlock's CA as a PEM bundle and a Java keystore, 0644 in the data
//!    directory, which is 0711: readable by path to every user);
//! 3. join the agent's cgroup (its identity on the transparent path;
//!    children inherit it);
//! 4. enter a mount namespace of its own where the system's trust store
//!    paths show those files ([`super::trust_view::enter`]), so clients
//!    that ignore the CA variables (Java, GnuTLS, Go) trust Airlock too;
//!    if it cannot be made (no `CAP_SYS_ADMIN`: a non-root
//!    `--as-invoking-user`, a container, a seccomp filter), the agent
//!    runs with the CA variables only and `airlock run` warns, naming
//!    the clients that will not trust the gateway;
//! 5. become the user: `setgroups` (its primary group only, except with
//!    `--as-invoking-user`), `setgid`, `setuid`, a check that root cannot
//!    be regained, then `PR_SET_NO_NEW_PRIVS`;
//! 6. as that user: enter the working directory and check that the CA
//!    bundle is readable, so either failure is a clear error rather than
//!    an agent that half works;
//! 7. exec CMD, so CMD's exit status is the command's.
//!
//! The environment is built, not inherited: `PATH` (the invoker's, else a
//! standard one), `HOME`, `USER` and `LOGNAME` of the agent's user,
//! `SHELL=/bin/sh` (the agent's user has no login shell), `TERM`,
//! `COLORTERM`, `LANG`, `LANGUAGE`, `LC_*` and `TZ` when set, the CA
//! variables ([`CA_VARIABLES`]), and what `--env` names. Nothing else: no
//! `SUDO_*`, `SSH_AUTH_SOCK`, `DBUS_SESSION_BUS_ADDRESS`,
//! `XDG_RUNTIME_DIR` (the invoker's session bus and user manager live
//! there), proxy variables or tokens.
//!
//! The working directory is the invoker's current one (or `--cwd DIR`),
//! entered as the agent's user: a directory that user may not enter (an
//! operator's home is usually 0700) is an error that says how to give
//! access or choose another, never a silent fallback to somewhere else.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use nix::unistd::{AccessFlags, Group, Uid};

use super::agent_user::{self, AgentUserError, Chosen, Groups, RunAs, Switch, Target};
use super::cgroup::{self, Cgroup2};
use super::trust_view::{self, TrustViewError};

pub use super::trust_view::BUNDLE_FILE;

/// The variables that point clients at the CA bundle.
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
];

/// Variables passed through from the invoker when set: how to print and
/// which language, nothing that names a session, a socket or a secret.
const PASSED_THROUGH: &[&str] = &["PATH", "TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ"];

/// `PATH` when the invoker has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run, and as which agent.
#[derive(Debug)]
pub struct RunSpec<'a> {
    pub agent: &'a str,
    /// The agent's cgroup, relative to the cgroup2 mount.
    pub cgroup: &'a str,
    /// Airlock's CA certificate (PEM).
    pub ca_cert: &'a Path,
    pub data_dir: &'a Path,
    pub run_as: RunAs<'a>,
    /// `--env`: variables beyond the built environment.
    pub env: &'a [EnvArg],
    /// `--cwd`; else the current directory.
    pub cwd: Option<&'a Path>,
    pub command: &'a [OsString],
}

/// One `--env`: `NAME=VALUE`, or `NAME` to pass the invoker's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvArg {
    Set { name: String, value: String },
    Pass(String),
}

/// An `--env` whose name is not a variable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a variable name (letters, digits and _, not starting with a digit): use --env \
     NAME=VALUE or --env NAME"
)]
pub struct BadEnvName(String);

impl FromStr for EnvArg {
    type Err = BadEnvName;

    fn from_str(s: &str) -> Result<Self, BadEnvName> {
        let (name, value) = match s.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (s, None),
        };
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(BadEnvName(name.to_owned()));
        }
        Ok(match value {
            Some(value) => EnvArg::Set {
                name: name.to_owned(),
                value: value.to_owned(),
            },
            None => EnvArg::Pass(name.to_owned()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no command given: airlock run --agent NAME -- CMD ARGS...")]
    NoCommand,
    #[error(transparent)]
    User(#[from] AgentUserError),
    #[error("--env {0}: {0} is not set in airlock run's environment (or say --env {0}=VALUE)")]
    EnvUnset(String),
    #[error(transparent)]
    Trust(#[from] TrustViewError),
    #[error("cannot find the cgroup2 mount: {0}")]
    Cgroup2(io::Error),
    #[error("cannot create agent cgroup {path}: {source}")]
    CreateCgroup { path: PathBuf, source: io::Error },
    #[error(
        "cannot join agent {agent}'s cgroup {path}: {source} (run airlock run as root, e.g. \
         with sudo)"
    )]
    JoinCgroup {
        agent: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot find the current directory: {0} (say --cwd DIR)")]
    CurrentDir(io::Error),
    #[error("cannot drop privileges ({step}): {source}")]
    Drop {
        step: &'static str,
        source: nix::Error,
    },
    #[error("privileges were not dropped: the agent could become root again")]
    StillPrivileged,
    #[error(
        "the agent's user {user} cannot enter the working directory {dir}: {source}; run from \
         a directory it may enter, say --cwd DIR, or give it access (e.g. setfacl -m \
         u:{user}:x on each parent)"
    )]
    Cwd {
        user: String,
        dir: PathBuf,
        source: nix::Error,
    },
    #[error(
        "the agent's user {user} cannot read the CA bundle {path}: {source}; every parent of \
         the data directory must be traversable by others (chmod o+x), or move the data \
         directory (AIRLOCK_DATA_DIR)"
    )]
    BundleUnreadable {
        user: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("cannot run {program:?}: {source}")]
    Exec {
        program: OsString,
        source: io::Error,
    },
}

/// Joins the cgroup, drops privileges and becomes the command. Returns
/// only on failure.
pub fn exec(spec: &RunSpec<'_>) -> RunError {
    let (mut cmd, target, view) = match prepare(spec) {
        Ok(prepared) => prepared,
        Err(e) => return e,
    };
    if target.chosen == Chosen::InvokingUser {
        warn_invoking_user(spec.agent, &target);
    }
    if let Err(e) = view {
        warn_no_view(spec.agent, &e);
    }
    let source = cmd.exec();
    RunError::Exec {
        program: spec.command.first().cloned().unwrap_or_default(),
        source,
    }
}

/// What [`prepare`] made: the command, its user, and whether the trust
/// view is in place (else why not).
type Prepared = (Command, Target, Result<Vec<PathBuf>, TrustViewError>);

fn prepare(spec: &RunSpec<'_>) -> Result<Prepared, RunError> {
    let (program, args) = spec.command.split_first().ok_or(RunError::NoCommand)?;
    let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let extra = resolve_extra(&inherited, spec.env)?;
    let cwd = match spec.cwd {
        Some(dir) => std::path::absolute(dir).map_err(RunError::CurrentDir)?,
        None => std::env::current_dir().map_err(RunError::CurrentDir)?,
    };
    let mut target = agent_user::resolve(spec.run_as, spec.agent, spec.data_dir)?;
    agent_user::ensure_home(&mut target, spec.agent, spec.data_dir)?;
    let files = trust_view::refresh(spec.data_dir, spec.ca_cert)?;
    let bundle = files.bundle.clone();
    let env = agent_env(&inherited, &target, &bundle, extra);
    join_cgroup(spec)?;
    let view = trust_view::enter(&files);
    become_user(&target)?;
    nix::unistd::chdir(&cwd).map_err(|source| RunError::Cwd {
        user: target.name.clone(),
        dir: cwd.clone(),
        source,
    })?;
    nix::unistd::access(&bundle, AccessFlags::R_OK).map_err(|source| {
        RunError::BundleUnreadable {
            user: target.name.clone(),
            path: bundle.clone(),
            source,
        }
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env);
    Ok((cmd, target, view))
}

fn join_cgroup(spec: &RunSpec<'_>) -> Result<(), RunError> {
    let cg = Cgroup2::find().map_err(RunError::Cgroup2)?;
    let dir = cg.path(spec.cgroup);
    cgroup::ensure(&dir).map_err(|source| RunError::CreateCgroup {
        path: dir.clone(),
        source,
    })?;
    cgroup::move_pid(&dir, std::process::id()).map_err(|source| RunError::JoinCgroup {
        agent: spec.agent.to_owned(),
        path: dir.clone(),
        source,
    })
}

/// The `--env` variables with their values, or which one is not set.
fn resolve_extra(
    inherited: &[(OsString, OsString)],
    extra: &[EnvArg],
) -> Result<Vec<(OsString, OsString)>, RunError> {
    extra
        .iter()
        .map(|arg| match arg {
            EnvArg::Set { name, value } => Ok((name.into(), value.into())),
            EnvArg::Pass(name) => inherited
                .iter()
                .find(|(k, _)| k == name.as_str())
                .map(|(_, v)| (name.into(), v.clone()))
                .ok_or_else(|| RunError::EnvUnset(name.clone())),
        })
        .collect()
}

/// The command's whole environment (see the module docs); `extra` last,
/// so the operator's `--env` wins.
fn agent_env(
    inherited: &[(OsString, OsString)],
    target: &Target,
    bundle: &Path,
    extra: Vec<(OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &OsStr, v: OsString| {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    };
    set("PATH".as_ref(), DEFAULT_PATH.into());
    for (k, v) in inherited {
        let lc = k.to_str().is_some_and(|k| k.starts_with("LC_"));
        if lc || PASSED_THROUGH.iter().any(|p| k == p) {
            set(k, v.clone());
        }
    }
    set("HOME".as_ref(), target.home.clone().into());
    set("USER".as_ref(), target.name.clone().into());
    set("LOGNAME".as_ref(), target.name.clone().into());
    set("SHELL".as_ref(), "/bin/sh".into());
    for var in CA_VARIABLES {
        set(var.as_ref(), bundle.into());
    }
    for (k, v) in extra {
        set(&k, v);
    }
    env
}

/// Step 5: groups, gid, uid, no new privileges.
fn become_user(t: &Target) -> Result<(), RunError> {
    let fail = |step| move |source| RunError::Drop { step, source };
    if t.switch == Switch::Required {
        match &t.groups {
            Groups::PrimaryOnly => {
                nix::unistd::setgroups(&[t.gid]).map_err(fail("setgroups"))?;
            }
            Groups::AllOf(name) => {
                nix::unistd::initgroups(name, t.gid).map_err(fail("initgroups"))?;
            }
        }
        nix::unistd::setgid(t.gid).map_err(fail("setgid"))?;
        nix::unistd::setuid(t.uid).map_err(fail("setuid"))?;
        if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(RunError::StillPrivileged);
        }
    }
    nix::sys::prctl::set_no_new_privs().map_err(fail("PR_SET_NO_NEW_PRIVS"))
}

/// No trust view: the agent still has the CA variables, but clients with
/// a trust store of their own will refuse the gateway's certificates.
// On the operator's terminal, like the warning below.
#[allow(clippy::print_stderr)]
fn warn_no_view(agent: &str, e: &TrustViewError) {
    eprintln!(
        "airlock: warning: agent {agent} does not see Airlock's CA in the system trust store \
         ({e}): only clients that read SSL_CERT_FILE and the other CA variables (curl, \
         OpenSSL, Python, Node, git) trust the gateway; Java, GnuTLS (wget) and Go clients will \
         refuse its certificates. Run airlock run as root, outside a container, to get the view"
    );
}

/// `--as-invoking-user`: say plainly what the agent holds.
// On the terminal of the operator who asked for it, the last thing before
// exec: `airlock run` has no log.
#[allow(clippy::print_stderr)]
fn warn_invoking_user(agent: &str, t: &Target) {
    let groups = match &t.groups {
        Groups::AllOf(name) => nix::unistd::getgrouplist(name, t.gid)
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                Group::from_gid(g)
                    .ok()
                    .flatten()
                    .map_or_else(|| g.to_string(), |g| g.name)
            })
            .collect::<Vec<_>>()
            .join(", "),
        Groups::PrimaryOnly => t.gid.to_string(),
    };
    eprintln!(
        "airlock: warning: agent {agent} runs as you ({}, uid {}) with all your groups \
         ({groups}) because of --as-invoking-user: it can read and change everything you can, \
         use your groups' powers (docker, adm, sudo, ...), reach your systemd user manager and \
         session bus (and start processes outside its cgroup through them), and read your \
         other processes' environments and tokens",
        t.name, t.uid
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Gid;

    fn target() -> Target {
        Target {
            uid: Uid::from_raw(990),
            gid: Gid::from_raw(990),
            name: "airlock-agent-bot".into(),
            home: "/data/agent-home/bot".into(),
            groups: Groups::PrimaryOnly,
            switch: Switch::Required,
            chosen: Chosen::AgentUser,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn the_environment_is_built_not_inherited() {
        let inherited = vars(&[
            ("PATH", "/usr/bin:/bin"),
            ("TERM", "xterm"),
            ("LC_TIME", "C"),
            ("SUDO_UID", "1000"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-x/agent.1"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("HOME", "/home/operator"),
            ("OPENAI_API_KEY", "sk-real"),
            ("EXTRA", "kept"),
        ]);
        let extra = [
            EnvArg::Pass("EXTRA".into()),
            EnvArg::Set {
                name: "MODE".into(),
                value: "a=b".into(),
            },
        ];
        let extra = resolve_extra(&inherited, &extra).unwrap();
        let env = agent_env(&inherited, &target(), Path::new("/d/b.pem"), extra);
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        let mut keys: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_str().unwrap().to_owned())
            .collect();
        keys.sort();
        let mut expected: Vec<String> = [
            "PATH", "TERM", "LC_TIME", "HOME", "USER", "LOGNAME", "SHELL", "EXTRA", "MODE",
        ]
        .iter()
        .chain(CA_VARIABLES)
        .map(|s| (*s).to_owned())
        .collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(get("HOME").as_deref(), Some("/data/agent-home/bot"));
        assert_eq!(get("USER").as_deref(), Some("airlock-agent-bot"));
        assert_eq!(get("PATH").as_deref(), Some("/usr/bin:/bin"));
        assert_eq!(get("SSL_CERT_FILE").as_deref(), Some("/d/b.pem"));
        assert_eq!(get("MODE").as_deref(), Some("a=b"));
    }

    #[test]
    fn without_a_path_the_standard_one_is_used() {
        let env = agent_env(&[], &target(), Path::new("/b"), Vec::new());
        assert!(env.iter().any(|(k, v)| k == "PATH" && v == DEFAULT_PATH));
    }

    #[test]
    fn passing_an_unset_variable_is_an_error() {
        let err = resolve_extra(&[], &[EnvArg::Pass("NOPE".into())]).unwrap_err();
        assert!(err.to_string().contains("--env NOPE"), "{err}");
    }

    #[test]
    fn env_arguments_parse() {
        assert_eq!(
            "A_1=x=y".parse::<EnvArg>(),
            Ok(EnvArg::Set {
                name: "A_1".into(),
                value: "x=y".into()
            })
        );
        assert_eq!("TOKEN".parse::<EnvArg>(), Ok(EnvArg::Pass("TOKEN".into())));
        for bad in ["", "=x", "1A=x", "A-B", "A B=c"] {
            assert!(bad.parse::<EnvArg>().is_err(), "{bad:?}");
        }
    }
}
