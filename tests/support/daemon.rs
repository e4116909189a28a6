//! A running `airlock serve` on a fresh data directory, as a guard.
//!
//! [`Daemon::start`] makes a temporary data directory under /tmp, starts the
//! daemon in it with a hermetic environment, sends its standard error to
//! `<data dir>/daemon.log` and waits (at most 60 s) until `airlock status`
//! answers from that very process. Dropping the guard stops the daemon
//! (SIGTERM, then SIGKILL) and then the embedded PostgreSQL if it is still
//! alive, so nothing is left running however the test ends; when the test
//! is failing, the ends of both logs are printed. Set
//! `AIRLOCK_TEST_KEEP_DATA=1` to keep the data directories for a post-mortem.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::db::Db;
use super::process::{COMMAND_TIMEOUT, Output, pid_alive, run, try_run, wait_for_exit};

/// How long a daemon may take to answer `airlock status` after starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `airlock serve` may run when it is expected to refuse to start.
pub const REFUSE_TIMEOUT: Duration = Duration::from_secs(45);

/// The `airlock` binary under test.
pub fn airlock_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_airlock"))
}

/// A fresh, empty directory under /tmp (not `$TMPDIR`: the embedded
/// PostgreSQL's user must be able to traverse every parent, and Unix socket
/// paths must stay short). Removed when dropped.
pub fn temp_data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("airlock-test-")
        .tempdir_in("/tmp")
        .expect("creating a temporary data directory under /tmp")
}

/// Variables of the test process that must not reach the daemon or CLI.
const SCRUBBED: &[&str] = &[
    "DATABASE_URL",
    "SECRET_ENCRYPTION_KEY",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "PGHOST",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
];

/// `airlock` with an environment that only says what the test says: no
/// inherited `AIRLOCK_*`, `DATABASE_URL`, `SECRET_ENCRYPTION_KEY`, `RUST_LOG`
/// or proxy settings; no configuration file (`AIRLOCK_CONFIG=/dev/null`);
/// plain (uncoloured) logs; `AIRLOCK_DATA_DIR` set to `data_dir`.
pub fn hermetic_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(airlock_bin());
    for (key, _) in std::env::vars_os() {
        let scrub = key
            .to_str()
            .is_some_and(|k| k.starts_with("AIRLOCK_") || SCRUBBED.contains(&k));
        if scrub {
            cmd.env_remove(&key);
        }
    }
    cmd.env("AIRLOCK_DATA_DIR", data_dir)
        .env("AIRLOCK_CONFIG", "/dev/null")
        .env("NO_COLOR", "1")
        // Every daemon of a test run gets its own proxy port; the test
        // reads the bound one from `airlock status --json` (.proxy_addr).
        .env("AIRLOCK_PROXY_LISTEN", "127.0.0.1:0")
        // Transparent interception is host-wide (cgroups, pins): only the
        // tests about it turn it on, each with its own cgroups and pins.
        .env("AIRLOCK_TRANSPARENT", "off")
        .env("AIRLOCK_DASHBOARD_LISTEN", "127.0.0.1:0")
        .current_dir("/");
    cmd
}

/// Runs `airlock serve` in the foreground on `data_dir` with `env`,
/// expecting it to refuse to start: returns its exit code and output once
/// it exits (within [`REFUSE_TIMEOUT`], else the test fails). It must not
/// leave an embedded PostgreSQL running in `data_dir` (the test fails if it
/// does, after stopping that server).
#[track_caller]
pub fn serve_expect_exit(data_dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = hermetic_command(data_dir);
    cmd.arg("serve").envs(env.iter().copied());
    refused(data_dir, try_run(&mut cmd, None, REFUSE_TIMEOUT))
}

/// The verdict on an `airlock serve` expected to refuse to start: it must
/// have exited in time, and must not have left its PostgreSQL behind (a
/// few seconds of grace for `PR_SET_PDEATHSIG`). Cleans up either way.
#[track_caller]
fn refused(data_dir: &Path, result: Result<Output, Output>) -> Output {
    let left =
        embedded_postgres_pid(data_dir).filter(|&pid| !wait_for_exit(pid, Duration::from_secs(5)));
    stop_leftover_postgres(data_dir);
    match result {
        Ok(out) => {
            assert!(
                left.is_none(),
                "`airlock serve` exited but left its PostgreSQL (pid {left:?}) running: {out:#?}"
            );
            out
        }
        Err(partial) => panic!(
            "`airlock serve` on {} was expected to refuse to start, but it was still \
             running after {REFUSE_TIMEOUT:?}; output: {partial:#?}",
            data_dir.display()
        ),
    }
}

/// The pid of the embedded PostgreSQL of `data_dir` (line 1 of
/// `postmaster.pid`), if that process is alive and really is the server of
/// this data directory (pids get reused).
pub fn embedded_postgres_pid(data_dir: &Path) -> Option<i32> {
    let pgdata = data_dir.join("postgres").join("data");
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(&*pgdata.to_string_lossy());
    (ours && pid_alive(pid)).then_some(pid)
}

/// Stops the embedded PostgreSQL of `data_dir` if it is still running:
/// SIGINT (fast shutdown), then SIGKILL.
pub fn stop_leftover_postgres(data_dir: &Path) {
    let Some(pid) = embedded_postgres_pid(data_dir) else {
        return;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    if !wait_for_exit(pid, Duration::from_secs(10)) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_for_exit(pid, Duration::from_secs(5));
    }
}

/// How to start a [`Daemon`].
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    env: Vec<(String, String)>,
}

impl DaemonBuilder {
    /// Sets an environment variable for the daemon (not for CLI calls),
    /// e.g. `DATABASE_URL`, `SECRET_ENCRYPTION_KEY`, `RUST_LOG`,
    /// `AIRLOCK_UPSTREAM_CA`.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Starts the daemon and waits until it answers; fails the test (with
    /// the daemon's log) if it does not.
    #[track_caller]
    pub fn start(self) -> Daemon {
        let dir = temp_data_dir();
        let mut daemon = Daemon {
            data_dir: dir.path().to_owned(),
            dir: Some(dir),
            env: self.env,
            child: None,
            transcript: Mutex::new(Vec::new()),
        };
        daemon.launch();
        daemon
    }
}

/// A running (or stopped, between restarts) `airlock serve`.
pub struct Daemon {
    data_dir: PathBuf,
    dir: Option<TempDir>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Everything every CLI call printed, for leak checks.
    transcript: Mutex<Vec<String>>,
}

impl Daemon {
    /// A daemon with the embedded database and a generated key file.
    #[track_caller]
    pub fn start() -> Daemon {
        Daemon::builder().start()
    }

    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the daemon's standard error goes (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("daemon.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The embedded PostgreSQL's own log.
    pub fn postgres_log(&self) -> String {
        let path = self.data_dir.join("postgres").join("postgres.log");
        String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
    }

    /// The embedded database (also the shared one, for daemons started with
    /// `DATABASE_URL` pointing at it).
    pub fn db(&self) -> Db {
        Db::embedded(&self.data_dir)
    }

    /// The daemon's extra environment, as given to the builder.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Changes the daemon's environment for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
    }

    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// The daemon's pid while it runs.
    pub fn pid(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => i32::try_from(child.id()).ok(),
            _ => None,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.pid().is_some()
    }

    /// The embedded PostgreSQL's pid, from `postmaster.pid`, if alive.
    pub fn postgres_pid(&self) -> Option<i32> {
        embedded_postgres_pid(&self.data_dir)
    }

    /// An `airlock` CLI command aimed at this daemon's data directory.
    pub fn command(&self) -> Command {
        hermetic_command(&self.data_dir)
    }

    /// Runs `airlock ARGS` (standard input empty and closed).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_input(args, None)
    }

    /// Runs `airlock ARGS` with `input` on standard input.
    pub fn cli_stdin(&self, args: &[&str], input: impl AsRef<[u8]>) -> Output {
        self.cli_input(args, Some(input.as_ref()))
    }

    fn cli_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        if let Some(input) = input {
            super::evidence::note_cli_input(args, input);
        }
        let out = run(&mut cmd, input, COMMAND_TIMEOUT);
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(out.all());
        out
    }

    /// Runs `airlock ARGS`, failing the test unless it succeeds; returns
    /// standard output.
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.success(), "airlock {args:?} failed: {out:#?}");
        out.stdout
    }

    /// `airlock status --json`, parsed.
    #[track_caller]
    pub fn status_json(&self) -> serde_json::Value {
        let stdout = self.cli_ok(&["status", "--json"]);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {stdout}"))
    }

    /// Everything the configuration and the audit trail hold, as the CLI
    /// shows it: compare before and after a command that must change nothing.
    #[track_caller]
    pub fn state(&self) -> String {
        [
            &["secret", "list", "--json"][..],
            &["agent", "list", "--json"],
            &["rule", "list", "--json"],
            &["audit", "--json", "--limit", "10000"],
        ]
        .iter()
        .map(|args| self.cli_ok(args))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Standard output and error of every CLI call made through this guard.
    pub fn transcript(&self) -> String {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// SIGKILL to the daemon (not to its PostgreSQL), and waits for it.
    #[track_caller]
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: the daemon is not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit code.
    #[track_caller]
    pub fn stop(&mut self) -> i32 {
        let child = self.child.take().expect("stop: the daemon is not running");
        match terminate(child, STOP_TIMEOUT) {
            Ok(code) => code,
            Err(()) => panic!(
                "the daemon did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed it); log:\n{}",
                tail(&self.log(), 4000)
            ),
        }
    }

    /// Stops the daemon if it runs (expecting a clean exit), starts it again
    /// on the same data directory and waits until it answers.
    #[track_caller]
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let code = self.stop();
            assert_eq!(
                code,
                0,
                "the daemon did not stop cleanly; log:\n{}",
                self.log()
            );
        }
        self.launch();
    }

    /// Runs a second `airlock serve` in the foreground on this data
    /// directory, with this daemon's environment plus `extra_env`, expecting
    /// it to refuse to start (see [`serve_expect_exit`]).
    #[track_caller]
    pub fn serve_expect_exit(&mut self, extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command();
        cmd.arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().copied());
        let result = try_run(&mut cmd, None, REFUSE_TIMEOUT);
        if self.child.is_some() {
            // The embedded server is our running daemon's: not to be touched.
            return result.unwrap_or_else(|partial| {
                panic!("a second `airlock serve` kept running: {partial:#?}")
            });
        }
        refused(&self.data_dir, result)
    }

    #[track_caller]
    fn launch(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening daemon.log");
        let _ = writeln!(log, "===== test harness: starting airlock serve =====");
        let mut cmd = self.command();
        cmd.arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        // If the test process dies without running destructors (SIGKILL,
        // abort), the daemon still gets SIGTERM and stops its PostgreSQL.
        // SAFETY: runs in the forked child before exec; prctl(2) is
        // async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("starting airlock serve");
        let pid = u64::from(child.id());
        self.child = Some(child);
        self.wait_ready(pid);
    }

    #[track_caller]
    fn wait_ready(&mut self, pid: u64) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.as_mut().expect("child").try_wait() {
                self.child = None;
                panic!(
                    "airlock serve exited during start-up ({status}); log:\n{}",
                    tail(&self.log(), 6000)
                );
            }
            let mut cmd = self.command();
            cmd.args(["status", "--json"]);
            let out = run(&mut cmd, None, COMMAND_TIMEOUT);
            let answered_by_ours = out.success()
                && serde_json::from_str::<serde_json::Value>(&out.stdout)
                    .is_ok_and(|v| v["pid"].as_u64() == Some(pid));
            if answered_by_ours {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "airlock serve did not answer `airlock status` within {READY_TIMEOUT:?}; \
                     last answer: {out:#?}; log:\n{}",
                    tail(&self.log(), 6000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM, wait up to `timeout`, then SIGKILL. `Err` if it had to kill.
fn terminate(mut child: Child, timeout: Duration) -> Result<i32, ()> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(status.code().unwrap_or(-1));
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(())
}

/// The last `max` bytes of `text` (on a character boundary).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if let Some(child) = self.child.take() {
            let _ = terminate(child, Duration::from_secs(15));
        }
        stop_leftover_postgres(&self.data_dir);
        if failing {
            eprintln!(
                "---- {}: end of daemon.log ----\n{}\n---- end of postgres.log ----\n{}\n----",
                self.data_dir.display(),
                tail(&self.log(), 6000),
                tail(&self.postgres_log(), 3000)
            );
        }
        if std::env::var_os("AIRLOCK_TEST_KEEP_DATA").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("keeping data directory {}", dir.keep().display());
        } else if let Some(dir) = self.dir.take() {
            let kept = super::evidence::keep_data_dir(dir.path(), &self.transcript());
            if kept {
                // Moved away: nothing left for the guard to remove.
                let _ = dir.keep();
            }
        }
    }
}

/// Creates `path` with `contents` (for config files and the like).
pub fn write_file(path: &Path, contents: &str) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).expect("writing");
}
