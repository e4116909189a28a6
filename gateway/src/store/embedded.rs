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

use super::Target;

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

/// What `prepare` found out, for starting the server.
#[derive(Debug)]
struct Prepared {
    postgres: PathBuf,
    run_as: RunAs,
}

fn prepare(layout: &Layout, bin_dir: Option<&Path>, user: &str) -> Result<Prepared, EmbeddedError> {
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
fn find_binaries(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
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
fn command_as(program: &Path, run_as: &RunAs) -> Command {
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
