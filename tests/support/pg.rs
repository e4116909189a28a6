//! A standalone PostgreSQL server the test controls, for daemons given a
//! `DATABASE_URL`: unlike the embedded one, nobody restarts it, so a test
//! can stop it for as long as an outage should last.
//!
//! Runs as Debian's `postgres` user (PostgreSQL refuses root) from the
//! newest `/usr/lib/postgresql/*/bin`, in a temporary directory, on a Unix
//! socket only, with trust authentication for the superuser `airlock` and
//! a database `airlock`. Stopped (by `pg_ctl`, then its pid) when dropped.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::db::Db;
use super::process::{COMMAND_TIMEOUT, pid_alive, run, wait_for_exit};

pub struct Pg {
    dir: TempDir,
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

impl Pg {
    /// Initialises and starts a fresh server.
    pub fn start() -> Pg {
        let user = nix::unistd::User::from_name("postgres")
            .expect("looking up the postgres user")
            .expect("Debian's postgresql package creates the postgres user");
        let dir = tempfile::Builder::new()
            .prefix("airlock-pg-")
            .tempdir_in("/tmp")
            .expect("a temporary directory for PostgreSQL");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let pg = Pg {
            bin: newest_bin_dir(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            dir,
        };
        for sub in ["data", "run", "log"] {
            let p = pg.dir.path().join(sub);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
            chown(&p, Some(pg.uid), Some(pg.gid)).unwrap();
        }
        let out = run(
            pg.as_postgres("initdb")
                .args(["-U", "airlock", "--auth=trust", "-E", "UTF8", "-D"])
                .arg(pg.data_dir()),
            None,
            COMMAND_TIMEOUT,
        );
        assert!(out.success(), "initdb: {out:#?}");
        pg.resume();
        let out = run(
            Command::new("/usr/bin/createdb")
                .arg("-h")
                .arg(pg.socket_dir())
                .args(["-U", "airlock", "airlock"]),
            None,
            COMMAND_TIMEOUT,
        );
        assert!(out.success(), "createdb: {out:#?}");
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir("/");
        cmd
    }

    /// The `DATABASE_URL` of its `airlock` database.
    pub fn url(&self) -> String {
        Db::at(&self.socket_dir()).url()
    }

    pub fn db(&self) -> Db {
        Db::at(&self.socket_dir())
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let log = self.dir.path().join("log").join("postgres.log");
        let out = run(
            self.as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses='' -k {}",
                    self.socket_dir().display()
                ))
                .args(["-w", "-t", "60", "start"]),
            None,
            COMMAND_TIMEOUT,
        );
        assert!(
            out.success(),
            "pg_ctl start: {out:#?}\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn pause(&self) {
        let out = run(
            self.as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            None,
            COMMAND_TIMEOUT,
        );
        assert!(out.success(), "pg_ctl stop: {out:#?}");
    }

    fn postmaster_pid(&self) -> Option<i32> {
        fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let Some(pid) = self.postmaster_pid() else {
            return;
        };
        if !pid_alive(pid) {
            return;
        }
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .output();
        if !wait_for_exit(pid, Duration::from_secs(10)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn newest_bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin)
                .join("initdb")
                .exists()
                .then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}
