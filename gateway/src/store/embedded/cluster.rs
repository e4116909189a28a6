//! Preparing the cluster before the server starts: the PostgreSQL
//! binaries found, the unprivileged user resolved, the directories made
//! with their modes and owners, and `initdb` run into a scratch directory
//! that is renamed into place only when it succeeds.

use super::*;

/// What `prepare` found out, for starting the server.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) postgres: PathBuf,
    pub(super) run_as: RunAs,
}

pub(super) fn prepare(
    layout: &Layout,
    bin_dir: Option<&Path>,
    user: &str,
) -> Result<Prepared, EmbeddedError> {
    let bin = find_binaries(bin_dir)?;
    let run_as = resolve_user(user)?;
    make_dir(&layout.root, 0o711, None)?;
    make_dir(&layout.run, 0o700, run_as.ids)?;
    if let Some(ids) = run_as.ids {
        check_traversable(&layout.root, ids.0, &run_as.name)?;
    }
    if !layout.data.join("PG_VERSION").exists() {
        initdb(layout, &bin, &run_as)?;
    }
    stop_leftover(&layout.data);
    Ok(Prepared {
        postgres: bin.join("postgres"),
        run_as,
    })
}

/// Finds the directory with `initdb` and `postgres`: the configured one, the
/// newest `/usr/lib/postgresql/*/bin` (Debian), or `pg_config --bindir`.
pub(crate) fn find_binaries(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = explicit {
        return if has_both(dir) {
            Ok(dir.to_owned())
        } else {
            Err(EmbeddedError::NoBinaries {
                looked: dir.display().to_string(),
            })
        };
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.into_iter().rev().find(|(_, d)| has_both(d)) {
        return Ok(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match from_pg_config {
        Some(dir) if has_both(&dir) => Ok(dir),
        _ => Err(EmbeddedError::NoBinaries {
            looked: "/usr/lib/postgresql/*/bin and `pg_config --bindir`".into(),
        }),
    }
}

/// As root: the named system user, created if missing. Otherwise: ourselves.
fn resolve_user(name: &str) -> Result<RunAs, EmbeddedError> {
    if !geteuid().is_root() {
        return Ok(RunAs {
            name: User::from_uid(geteuid())
                .ok()
                .flatten()
                .map_or_else(|| geteuid().to_string(), |u| u.name),
            ids: None,
        });
    }
    let user = crate::sysuser::find_or_create(crate::sysuser::NewUser {
        name,
        comment: "Airlock embedded PostgreSQL",
    })
    .map_err(|e| EmbeddedError::User {
        user: name.to_owned(),
        reason: e.reason,
    })?;
    if user.uid.is_root() {
        return Err(EmbeddedError::RootUser(name.to_owned()));
    }
    Ok(RunAs {
        name: name.to_owned(),
        ids: Some((user.uid.as_raw(), user.gid.as_raw())),
    })
}

fn make_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), EmbeddedError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    if let Some((uid, gid)) = owner {
        chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
    }
    Ok(())
}

/// The server's user must be able to pass through every parent directory.
fn check_traversable(path: &Path, uid: u32, user: &str) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::MetadataExt;
    for dir in path.ancestors() {
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        let passable = meta.mode() & 0o001 != 0 || (meta.uid() == uid && meta.mode() & 0o100 != 0);
        if !passable {
            return Err(EmbeddedError::NotTraversable {
                user: user.to_owned(),
                path: dir.to_owned(),
            });
        }
    }
    Ok(())
}

/// A command that runs as the server's user with a minimal environment:
/// nothing of the daemon's (such as `SECRET_ENCRYPTION_KEY`) reaches it.
pub(super) fn command_as(program: &Path, run_as: &RunAs) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .current_dir("/");
    if let Some((uid, gid)) = run_as.ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn initdb(layout: &Layout, bin: &Path, run_as: &RunAs) -> Result<(), EmbeddedError> {
    tracing::info!(dir = %layout.data.display(), "initialising the embedded PostgreSQL cluster");
    let scratch = layout.root.join("data.init");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
    }
    make_dir(&scratch, 0o700, run_as.ids)?;
    let output = command_as(&bin.join("initdb"), run_as)
        .arg("-D")
        .arg(&scratch)
        .args(["-U", DB_USER, "--auth-local=trust", "--auth-host=reject"])
        .args(["--encoding=UTF8", "--no-locale", "--no-instructions"])
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(&bin.join("initdb")))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(EmbeddedError::Initdb {
            status: output.status.to_string(),
            output: text,
        });
    }
    fs::rename(&scratch, &layout.data).map_err(io_err(&layout.data))?;
    Ok(())
}
