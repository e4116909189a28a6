//! The admin socket is never open to anyone but root (issue #15, item 8):
//! not once it is up (0600, root's; another user's connect is refused),
//! and not while it is being set up. The second is a race of one syscall,
//! so the test widens it for real: the daemon runs under `strace`, which
//! holds every `listen(2)` for two seconds after it returns, with umask 0
//! (the worst an operator's shell could give it), while the test keeps
//! trying to connect as `nobody`. Binding in place and chmod-ing after
//! leaves the socket listening at the umask's mode for those two seconds:
//! 0777 with umask 0. (The daemon also sets umask 077 at start-up, which
//! hid that window; the bind no longer depends on it. With that umask
//! line removed, the old bind fails this test and the new one passes.)
//!
//! Needs root (to be another user) and, for the race, strace; without
//! either it says so and checks what it can.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::daemon::{READY_TIMEOUT, stop_leftover_postgres};
use support::process::try_run;
use support::{Daemon, hermetic_command, run, temp_data_dir};

const NOBODY: u32 = 65534;

/// What `nobody` gets when it connects to `path`: "ok", or the errno's name.
fn connect_as_nobody(path: &Path) -> String {
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import errno, socket, sys\n\
         try:\n    socket.socket(socket.AF_UNIX).connect(sys.argv[1]); print('ok')\n\
         except OSError as e:\n    print(errno.errorcode.get(e.errno, e.errno))",
    ])
    .arg(path)
    .uid(NOBODY)
    .gid(NOBODY)
    .env_clear()
    .env("PATH", "/usr/bin:/bin");
    run(&mut cmd, None, Duration::from_secs(20))
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn the_admin_socket_is_root_only_and_refuses_other_users() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the admin socket test needs root (to try as another user)");
        return;
    }
    let daemon = Daemon::start();
    let path = daemon.data_dir().join("admin.sock");
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert!(!daemon.data_dir().join(".admin.d").exists());
    assert_eq!(connect_as_nobody(&path), "EACCES");
    // Root still can (the CLI works).
    daemon.cli_ok(&["status"]);
}

/// A daemon under strace, stopped (and its PostgreSQL) on drop.
struct Traced {
    child: Child,
    data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = daemon_pid(&self.data_dir) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        stop_leftover_postgres(&self.data_dir);
    }
}

/// The daemon's pid, from its lock file.
fn daemon_pid(data_dir: &Path) -> Option<i32> {
    fs::read_to_string(data_dir.join("airlock.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn the_admin_socket_is_never_open_while_it_is_set_up() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the admin socket race test needs root");
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED: the admin socket race test needs strace (apt-get install strace)");
        return;
    }
    let dir = temp_data_dir();
    let data_dir = dir.path().to_owned();
    let log = fs::File::create(data_dir.join("daemon.log")).unwrap();
    let hermetic = hermetic_command(&data_dir);
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=listen"])
        .args(["-e", "inject=listen:delay_exit=2000000"])
        .arg(hermetic.get_program())
        .arg("serve")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: runs in the forked child before exec; umask(2) and prctl(2)
    // are async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        traced.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    // The hermetic environment, as the harness gives every daemon.
    for (key, value) in hermetic.get_envs() {
        match value {
            Some(value) => traced.env(key, value),
            None => traced.env_remove(key),
        };
    }
    let guard = Traced {
        child: traced.spawn().expect("starting airlock serve under strace"),
        data_dir: data_dir.clone(),
        _dir: dir,
    };

    let path = data_dir.join("admin.sock");
    let deadline = Instant::now() + READY_TIMEOUT + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the daemon never answered; tries: {seen:?}"
        );
        if let Ok(meta) = fs::symlink_metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            let attempt = connect_as_nobody(&path);
            seen.push(format!("{mode:o} {attempt}"));
            assert!(
                mode & 0o077 == 0 && attempt != "ok",
                "the admin socket was open to others while being set up: mode {mode:o}, \
                 nobody's connect: {attempt}; tries so far: {seen:?}"
            );
            let mut status = hermetic_command(&data_dir);
            status.arg("status");
            if try_run(&mut status, None, Duration::from_secs(20)).is_ok_and(|o| o.success()) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!data_dir.join(".admin.d").exists());
    drop(guard);
}
