//! `airlock run --agent NAME [--user U] -- CMD ARGS...`: start a command as
//! an agent. It joins the agent's cgroup (its identity for the transparent
//! path), drops to the invoking user (`SUDO_UID`/`SUDO_GID`) or `--user`,
//! trusts Airlock's CA through the usual variables, and becomes CMD (exec),
//! so CMD's exit status is the command's.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use super::cgroup::{self, Cgroup2};

/// The bundle of OS roots plus Airlock's CA, in the data directory.
pub const BUNDLE_FILE: &str = "agent-ca-bundle.pem";

/// The variables that point clients at the CA bundle.
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
];

/// Where distributions keep their trusted roots, in order of preference.
const OS_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What to run, and as which agent.
#[derive(Debug)]
pub struct RunSpec<'a> {
    pub agent: &'a str,
    /// The agent's cgroup, relative to the cgroup2 mount.
    pub cgroup: &'a str,
    /// Airlock's CA certificate (PEM).
    pub ca_cert: &'a Path,
    pub data_dir: &'a Path,
    /// A user name or numeric uid; else `SUDO_UID`, else unchanged.
    pub user: Option<&'a str>,
    pub command: &'a [OsString],
}

/// The user to become.
#[derive(Debug)]
struct Target {
    uid: Uid,
    gid: Gid,
    user: Option<User>,
}

fn target_user(user: Option<&str>) -> Result<Option<Target>, String> {
    if let Some(u) = user {
        let found = match u.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(u),
        }
        .map_err(|e| format!("cannot look up user {u:?}: {e}"))?
        .ok_or_else(|| format!("there is no user {u:?}"))?;
        return Ok(Some(Target {
            uid: found.uid,
            gid: found.gid,
            user: Some(found),
        }));
    }
    let Some(uid) = std::env::var("SUDO_UID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return Ok(None);
    };
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let gid = std::env::var("SUDO_GID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(Gid::from_raw)
        .or(user.as_ref().map(|u| u.gid))
        .unwrap_or(Gid::from_raw(uid));
    Ok(Some(Target {
        uid: Uid::from_raw(uid),
        gid,
        user,
    }))
}

/// Writes the OS roots plus `ca_cert` to `<data dir>/agent-ca-bundle.pem`
/// (0644, replaced atomically) and returns its path.
pub fn write_bundle(data_dir: &Path, ca_cert: &Path) -> Result<PathBuf, String> {
    let ca = fs::read(ca_cert)
        .map_err(|e| format!("cannot read Airlock's CA {}: {e}", ca_cert.display()))?;
    let mut bundle = OS_BUNDLES
        .iter()
        .find_map(|p| fs::read(p).ok())
        .unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(b"# Airlock local CA\n");
    bundle.extend_from_slice(&ca);
    let path = data_dir.join(BUNDLE_FILE);
    let tmp = data_dir.join(format!(".{BUNDLE_FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(&bundle)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write the CA bundle {}: {e}", path.display())
    })?;
    Ok(path)
}

/// Joins the cgroup, drops privileges and becomes the command. Returns
/// only on failure.
pub fn exec(spec: &RunSpec<'_>) -> String {
    match prepare(spec) {
        Ok(mut cmd) => {
            let e = cmd.exec();
            format!("cannot run {:?}: {e}", spec.command[0])
        }
        Err(e) => e,
    }
}

fn prepare(spec: &RunSpec<'_>) -> Result<Command, String> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or("no command given: airlock run --agent NAME -- CMD ARGS...")?;
    let target = target_user(spec.user)?;
    let bundle = write_bundle(spec.data_dir, spec.ca_cert)?;
    let cg = Cgroup2::find().map_err(|e| e.to_string())?;
    let dir = cg.path(spec.cgroup);
    cgroup::ensure(&dir)
        .map_err(|e| format!("cannot create agent cgroup {}: {e}", dir.display()))?;
    cgroup::move_pid(&dir, std::process::id()).map_err(|e| {
        format!(
            "cannot join agent {}'s cgroup {}: {e} (run airlock run as root, e.g. with sudo)",
            spec.agent,
            dir.display()
        )
    })?;
    if let Some(t) = &target {
        drop_privileges(t)?;
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    for var in CA_VARIABLES {
        cmd.env(var, &bundle);
    }
    if let Some(user) = target.as_ref().and_then(|t| t.user.as_ref())
        && spec.user.is_some()
    {
        cmd.env("HOME", &user.dir)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    Ok(cmd)
}

fn drop_privileges(t: &Target) -> Result<(), String> {
    let fail = |what: &str, e: nix::Error| format!("cannot drop privileges ({what}): {e}");
    match &t.user {
        Some(u) => {
            let name = std::ffi::CString::new(u.name.as_bytes())
                .map_err(|_| "the user name contains a NUL byte".to_owned())?;
            nix::unistd::initgroups(&name, t.gid).map_err(|e| fail("initgroups", e))?;
        }
        None => nix::unistd::setgroups(&[t.gid]).map_err(|e| fail("setgroups", e))?,
    }
    nix::unistd::setgid(t.gid).map_err(|e| fail("setgid", e))?;
    nix::unistd::setuid(t.uid).map_err(|e| fail("setuid", e))?;
    if t.uid.as_raw() != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("privileges were not dropped: could become root again".into());
    }
    Ok(())
}
