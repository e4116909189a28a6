//! The embedded PostgreSQL: Airlock's zero-configuration database.
//!
//! With no `DATABASE_URL`, the daemon runs a private server from the host's
//! PostgreSQL binaries in `<data dir>/postgres`:
//!
//! ```text
//! postgres/          0711 root
//!   data/            PGDATA, 0700, owned by the PostgreSQL user
//!   run/             the Unix socket, 0700, owned by the PostgreSQL user
//!   postgres.log     the server's own log
//! ```
//!
//! - `initdb` runs on first start, into a scratch directory renamed into
//!   place only when it succeeds, so a crash never leaves half a cluster.
//! - The server listens on the Unix socket only (`listen_addresses=''`); the
//!   socket directory is private to the server's user, and root, so local
//!   `trust` authentication admits nobody else.
//! - PostgreSQL refuses to run as root, so a root daemon runs it as an
//!   unprivileged system user (`airlock` by default, created if missing).
//! - A supervisor thread restarts the server if it dies. The server gets
//!   `SIGINT` (fast shutdown) if the daemon dies, however it dies, through
//!   `PR_SET_PDEATHSIG` tied to that long-lived thread; a server left over
//!   from an earlier daemon is stopped before a new one starts.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use self::cluster::{Prepared, command_as, prepare};
use super::Target;

mod cluster;

pub(crate) use cluster::find_binaries;

/// The database role and database the daemon uses inside its cluster.
const DB_USER: &str = "airlock";
const DB_NAME: &str = "airlock";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and postgres in {looked}): \
         install PostgreSQL (Debian: apt-get install postgresql), set AIRLOCK_PG_BIN_DIR, \
         or set DATABASE_URL to use an existing server"
    )]
    NoBinaries { looked: String },
    #[error(
        "cannot create the PostgreSQL system user {user:?}: {reason} (create it, or set AIRLOCK_PG_USER to an existing unprivileged user)"
    )]
    User { user: String, reason: String },
    #[error(
        "the embedded PostgreSQL cannot run as {0:?}: it must be an unprivileged user (set AIRLOCK_PG_USER)"
    )]
    RootUser(String),
    #[error(
        "the PostgreSQL user {user:?} cannot reach {path}: a parent directory is not \
         traversable by other users; run `chmod o+x` on it or choose another AIRLOCK_DATA_DIR"
    )]
    NotTraversable { user: String, path: PathBuf },
    #[error("preparing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("initdb failed ({status}); its output:\n{output}")]
    Initdb { status: String, output: String },
    #[error(
        "the embedded PostgreSQL did not become ready within {secs} s; the end of {log}:\n{tail}"
    )]
    NotReady {
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("creating the airlock database failed: {0}")]
    CreateDatabase(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Who runs the server: a user to switch to, or the daemon's own user when
/// the daemon is not root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    /// `None`: do not switch users.
    ids: Option<(u32, u32)>,
}

/// Where the cluster lives.
#[derive(Debug, Clone)]
struct Layout {
    root: PathBuf,
    data: PathBuf,
    run: PathBuf,
    log: PathBuf,
}

impl Layout {
    fn new(root: PathBuf) -> Self {
        Layout {
            data: root.join("data"),
            run: root.join("run"),
            log: root.join("postgres.log"),
            root,
        }
    }
}

/// A running embedded server and its supervisor thread.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    layout: Layout,
    pid: Arc<AtomicI32>,
    stopping: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

impl EmbeddedPostgres {
    /// Prepares the cluster (initdb on first start), starts the server under
    /// supervision, waits until it accepts connections and makes sure the
    /// `airlock` database exists.
    pub async fn start(
        root: PathBuf,
        bin_dir: Option<PathBuf>,
        user: String,
    ) -> Result<(EmbeddedPostgres, Target), EmbeddedError> {
        let layout = Layout::new(root);
        let prepared = {
            let layout = layout.clone();
            let root = layout.root.clone();
            tokio::task::spawn_blocking(move || prepare(&layout, bin_dir.as_deref(), &user))
                .await
                .map_err(|e| EmbeddedError::Io {
                    path: root,
                    source: io::Error::other(e),
                })??
        };
        let server = EmbeddedPostgres::supervise(layout.clone(), prepared);
        let options = PgConnectOptions::new()
            .socket(&layout.run)
            .username(DB_USER)
            .database("postgres");
        wait_ready(&options, &layout).await?;
        ensure_database(&options).await?;
        let target = Target {
            options: options.database(DB_NAME),
            display: format!("embedded PostgreSQL at {}", layout.run.display()),
        };
        Ok((server, target))
    }

    fn supervise(layout: Layout, prepared: Prepared) -> EmbeddedPostgres {
        let pid = Arc::new(AtomicI32::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let supervisor = {
            let (pid, stopping, layout) = (pid.clone(), stopping.clone(), layout.clone());
            std::thread::Builder::new()
                .name("postgres-supervisor".into())
                .spawn(move || supervise_loop(&layout, &prepared, &pid, &stopping))
                .ok()
        };
        EmbeddedPostgres {
            layout,
            pid,
            stopping,
            supervisor,
        }
    }

    /// The server's process id, when it is running.
    pub fn pid(&self) -> Option<i32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p > 0)
    }

    /// The live pid cell (0 while the server is down), for `airlock status`.
    pub fn pid_cell(&self) -> Arc<AtomicI32> {
        self.pid.clone()
    }

    pub fn socket_dir(&self) -> &Path {
        &self.layout.run
    }

    /// Fast shutdown (SIGINT), waiting up to 20 s before SIGKILL.
    pub fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Some(handle) = self.supervisor.take() {
            if handle.is_finished() || Instant::now() > deadline {
                if let Some(pid) = self.pid().filter(|_| !handle.is_finished()) {
                    tracing::warn!(pid, "embedded PostgreSQL did not stop in time; killing it");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = handle.join();
                break;
            }
            self.supervisor = Some(handle);
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!("embedded PostgreSQL stopped");
    }
}

/// Stops a server left running by an earlier daemon on this cluster (its
/// pid is the first line of `postmaster.pid`), so two never share it.
fn stop_leftover(data: &Path) {
    let Ok(text) = fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let is_postgres = exe
        .as_deref()
        .and_then(Path::file_name)
        .is_some_and(|n| n == OsStr::new("postgres"));
    if !is_postgres {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a PostgreSQL left running by an earlier daemon"
    );
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if kill(pid, None).is_ok() {
        let _ = kill(pid, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the server until asked to stop, restarting it (with a growing
/// pause, up to 30 s) whenever it exits on its own.
fn supervise_loop(layout: &Layout, prepared: &Prepared, pid: &AtomicI32, stopping: &AtomicBool) {
    let mut backoff = Duration::from_millis(500);
    while !stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        match spawn_server(layout, prepared) {
            Ok(mut child) => {
                pid.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
                let status = child.wait();
                pid.store(0, Ordering::SeqCst);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                tracing::error!(?status, "embedded PostgreSQL exited; restarting it");
            }
            Err(e) => tracing::error!(error = %e, "cannot start the embedded PostgreSQL"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn spawn_server(layout: &Layout, prepared: &Prepared) -> io::Result<std::process::Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.log)?;
    let mut cmd = command_as(&prepared.postgres, &prepared.run_as);
    cmd.arg("-D")
        .arg(&layout.data)
        .arg("-k")
        .arg(&layout.run)
        .args(["-c", "listen_addresses="])
        .args(["-c", "unix_socket_permissions=0700"])
        .args(["-c", "max_connections=50"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the daemon's terminal reaches
        // the daemon, which then stops the server in order.
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(io::Error::from));
    }
    cmd.spawn()
}

async fn wait_ready(options: &PgConnectOptions, layout: &Layout) -> Result<(), EmbeddedError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(conn) = options.connect().await {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(EmbeddedError::NotReady {
                secs: READY_TIMEOUT.as_secs(),
                log: layout.log.clone(),
                tail: log_tail(&layout.log),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(2000)));
        let _ = file.read_to_string(&mut text);
    }
    text
}

async fn ensure_database(options: &PgConnectOptions) -> Result<(), EmbeddedError> {
    let err = |e: sqlx::Error| EmbeddedError::CreateDatabase(e.to_string());
    let mut conn = options.connect().await.map_err(err)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DB_NAME)
            .fetch_one(&mut conn)
            .await
            .map_err(err)?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {DB_NAME}"))
            .execute(&mut conn)
            .await
            .map_err(err)?;
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}
