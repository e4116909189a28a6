//! Running programs with a time limit, and polling with a deadline.
//!
//! Every wait in the harness is bounded: a hung child is killed (its whole
//! process group) and the test fails with what it printed so far.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The default limit for one short command (a CLI call, psql, curl).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished program did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; `-N` when killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from_status(status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Output {
            code: status
                .code()
                .unwrap_or_else(|| -status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard output and standard error together, for searching.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts exit status 0 and returns self.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Asserts exit status 1 with nothing on standard output and a message
    /// on standard error that contains every one of `needles`
    /// (case-insensitive). Returns standard error.
    #[track_caller]
    pub fn fails_with(&self, needles: &[&str]) -> &str {
        assert_eq!(self.code, 1, "expected exit status 1, got {self:#?}");
        assert!(
            self.stdout.trim().is_empty(),
            "a failure printed on standard output: {self:#?}"
        );
        let lower = self.stderr.to_lowercase();
        for needle in needles {
            assert!(
                lower.contains(&needle.to_lowercase()),
                "standard error does not mention {needle:?}: {self:#?}"
            );
        }
        &self.stderr
    }
}

/// Runs `cmd` to completion, feeding it `stdin` (or an empty, closed
/// standard input), within `timeout`. The child gets its own process group,
/// and on timeout the whole group is killed and the test fails.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    match try_run(cmd, stdin, timeout) {
        Ok(out) => out,
        Err(partial) => {
            panic!("{cmd:?} did not finish within {timeout:?}; killed it. So far: {partial:#?}")
        }
    }
}

/// Like [`run`], but a timeout is an `Err` with the output so far.
pub fn try_run(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));

    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        // A child that exits without reading gives EPIPE: not our concern.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let reader = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out_rx = reader(Box::new(child.stdout.take().expect("stdout is piped")));
    let err_rx = reader(Box::new(child.stderr.take().expect("stderr is piped")));

    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let mut timed_out = rx.recv_timeout(timeout).is_err();
    if timed_out {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let status = waiter
        .join()
        .expect("waiter thread")
        .expect("waiting for the child");
    // A background grandchild may still hold the pipes open. While it does,
    // the group exists (so its id cannot have been reused): kill it then.
    let mut collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
            timed_out = true;
            let _ = killpg(pgid, Signal::SIGKILL);
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
        })
    };
    let stdout = collect(out_rx);
    let stderr = collect(err_rx);
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let out = Output::from_status(status, stdout, stderr);
    if timed_out { Err(out) } else { Ok(out) }
}

/// Calls `f` every `interval` until it returns `Some`, for at most
/// `timeout`. Returns what `f` returned, or `None` at the deadline.
pub fn wait_until<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Is a process with this pid alive (and not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits (bounded) for a process to go away.
pub fn wait_for_exit(pid: i32, timeout: Duration) -> bool {
    wait_until(timeout, Duration::from_millis(20), || {
        (!pid_alive(pid)).then_some(())
    })
    .is_some()
}
