//! A real Docker daemon and a client image for the container tests
//! (tests/docker) and the benchmark's container route (`cargo xtask bench`
//! includes this file by path): std only, errors as strings.
//!
//! - [`Dockerd::ensure`]: the running Docker daemon if there is one, else
//!   one started here with `--iptables=false --ip6tables=false
//!   --ip-forward=false` (containers need no route out: the gateway's
//!   upstream leg leaves from the host), stopped by PID when the last
//!   holder drops it, with the `docker0` bridge it made removed and
//!   `ip_forward` put back.
//! - [`client_image`]: an image `docker import`ed from host files, since no
//!   registry is reachable: a static busybox, curl, wget (GnuTLS) and
//!   Python with the libraries `ldd` names, and no CA certificates at all.
//!   Tagged by a digest of its inputs, so reruns reuse it.
//! - [`Container`]: `docker rm -f` by id on drop.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The image's repository; its tag is the inputs' digest.
pub const IMAGE_REPO: &str = "airlock-test-clients";

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Programs in the image, with their libraries.
const PROGRAMS: &[&str] = &["/usr/bin/curl", "/usr/bin/wget", "/usr/bin/python3"];
/// busybox applets linked in `/bin` (not wget: GNU wget is the client).
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "id", "env", "true", "false", "test", "nc", "grep",
];
/// Python's standard library parts no client here needs.
const PYTHON_EXCLUDES: &[&str] = &[
    "__pycache__",
    "test",
    "idlelib",
    "tkinter",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "turtledemo",
    "config-3*",
];

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker ARGS`, its trimmed standard output, or why it failed.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A Docker daemon for the tests; see the module docs.
pub struct Dockerd {
    /// The one started here (none: it was already running).
    started: Option<Started>,
}

struct Started {
    child: Child,
    log: PathBuf,
    ip_forward: Option<String>,
    had_docker0: bool,
}

static SHARED: Mutex<Weak<Dockerd>> = Mutex::new(Weak::new());

impl Dockerd {
    /// The running daemon, or one started now; `Err` says why Docker
    /// cannot run here (the caller skips).
    pub fn ensure() -> Result<Arc<Dockerd>, String> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = shared.upgrade() {
            return Ok(d);
        }
        if Command::new("docker").arg("--version").output().is_err() {
            return Err("no docker command (cargo xtask setup installs docker.io)".into());
        }
        let d = Arc::new(if docker_ok(&["info"]) {
            Dockerd { started: None }
        } else {
            Dockerd {
                started: Some(start()?),
            }
        });
        *shared = Arc::downgrade(&d);
        Ok(d)
    }

    /// Whether this guard started the daemon (and will stop it).
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }
}

fn start() -> Result<Started, String> {
    if Command::new("dockerd").arg("--version").output().is_err() {
        return Err("docker does not answer and there is no dockerd to start \
                    (cargo xtask setup installs docker.io)"
            .into());
    }
    let ip_forward = fs::read_to_string(IP_FORWARD).ok();
    let had_docker0 = Path::new("/sys/class/net/docker0").exists();
    let log = std::env::temp_dir().join(format!("airlock-test-dockerd-{}.log", std::process::id()));
    let log_file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let child = Command::new("dockerd")
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
        ])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("starting dockerd: {e}"))?;
    let mut started = Started {
        child,
        log,
        ip_forward,
        had_docker0,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if docker_ok(&["info"]) {
            return Ok(started);
        }
        if let Ok(Some(status)) = started.child.try_wait() {
            let log = fs::read_to_string(&started.log).unwrap_or_default();
            return Err(format!("dockerd exited ({status}):\n{log}"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    let log = fs::read_to_string(&started.log).unwrap_or_default();
    stop(&mut started);
    Err(format!("dockerd did not answer within 60 s:\n{log}"))
}

fn stop(s: &mut Started) {
    let pid = s.child.id();
    // SIGTERM: dockerd stops its containers and its containerd.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = s.child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = s.child.kill();
            let _ = s.child.wait();
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    if !s.had_docker0 && Path::new("/sys/class/net/docker0").exists() {
        let _ = Command::new("ip").args(["link", "del", "docker0"]).status();
    }
    if let Some(before) = &s.ip_forward
        && fs::read_to_string(IP_FORWARD).ok().as_ref() != Some(before)
    {
        let _ = fs::write(IP_FORWARD, before);
    }
    let _ = fs::remove_file(&s.log);
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(s) = &mut self.started {
            stop(s);
        }
    }
}

/// Removes the cgroup v1 directories runc made for the agents' parent
/// `parent` on a hybrid host (`/sys/fs/cgroup/<controller>/PARENT`): they
/// hold no processes once the containers are gone, so `rmdir`, deepest
/// first. The unified one is the caller's to remove.
pub fn remove_v1_dirs(parent: &str) {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path().join(parent);
        if !e.path().ends_with("unified") && dir.is_dir() {
            remove_dirs(&dir);
        }
    }
}

fn remove_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// A container, removed (`docker rm -f`, by id) on drop.
pub struct Container {
    pub id: String,
}

impl Container {
    /// The container's main process on the host.
    pub fn pid(&self) -> Result<u32, String> {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.id])?
            .parse()
            .map_err(|e| format!("container {} pid: {e}", self.id))
    }

    /// `docker exec ID ARGS...`.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("exec").arg(&self.id).args(args);
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

/// 64-bit FNV-1a: a stable digest for the image tag.
fn fnv1a(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The libraries `ldd` names for `file` (absolute paths), loader included.
fn ldd(file: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(file).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Python's stdlib directory and its extension modules.
fn python_lib() -> Result<(PathBuf, Vec<PathBuf>), String> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let lib = PathBuf::from(format!("/usr/lib/python{version}"));
    let dynload = lib.join("lib-dynload");
    let modules = fs::read_dir(&dynload)
        .map_err(|e| format!("{}: {e}", dynload.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    Ok((lib, modules))
}

/// The client image's tag, building and importing it if no image of the
/// same inputs exists.
pub fn client_image() -> Result<String, String> {
    client_image_for(&[])
}

/// [`client_image`] with the libraries of `extra` too, for programs
/// bind-mounted at run time (the benchmark's oha).
pub fn client_image_for(extra: &[PathBuf]) -> Result<String, String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("no busybox (cargo xtask setup installs busybox-static)")?;
    let (pylib, modules) = python_lib()?;
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for p in PROGRAMS {
        let p = Path::new(p);
        if !p.exists() {
            return Err(format!(
                "{} is missing (cargo xtask setup installs it)",
                p.display()
            ));
        }
        files.insert(p.to_owned());
        files.extend(ldd(p));
    }
    for m in modules.iter().chain(extra) {
        files.extend(ldd(m));
    }
    // The digest: every input's path, size and modification time.
    let mut h = 0xcbf2_9ce4_8422_2325;
    for f in files.iter().chain([&pylib, &busybox.to_owned()]) {
        let meta = fs::metadata(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        h = fnv1a(f.as_os_str().as_encoded_bytes(), h);
        h = fnv1a(&meta.len().to_le_bytes(), h);
        h = fnv1a(&mtime.to_le_bytes(), h);
    }
    h = fnv1a(APPLETS.join(",").as_bytes(), h);
    let tag = format!("{IMAGE_REPO}:{h:016x}");
    if docker_ok(&["image", "inspect", &tag]) {
        return Ok(tag);
    }
    let stage = std::env::temp_dir().join(format!(
        "airlock-image-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let result = build(&stage, busybox, &files, &pylib, &tag);
    let _ = fs::remove_dir_all(&stage);
    result.map(|()| tag)
}

/// An I/O error naming its file.
fn io(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

fn build(
    stage: &Path,
    busybox: &Path,
    files: &BTreeSet<PathBuf>,
    pylib: &Path,
    tag: &str,
) -> Result<(), String> {
    let root = stage.join("root");
    for d in ["bin", "tmp", "etc", "root"] {
        fs::create_dir_all(root.join(d)).map_err(io(&root.join(d)))?;
    }
    fs::copy(busybox, root.join("bin/busybox")).map_err(io(busybox))?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a))
            .map_err(io(&root.join(a)))?;
    }
    let tar = stage.join("image.tar");
    let run = |c: &mut Command| -> Result<(), String> {
        let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    // The host files, under their own paths, symlinks followed (the image
    // has real directories where a merged-/usr host has links).
    let mut c = Command::new("tar");
    c.arg("-C").arg("/").arg("-h").arg("-rf").arg(&tar);
    for x in PYTHON_EXCLUDES {
        c.arg(format!("--exclude={x}"));
    }
    let rel = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_owned();
    c.args(files.iter().map(|f| rel(f))).arg(rel(pylib));
    run(&mut c)?;
    docker(&["import", &tar.display().to_string(), tag]).map(|_| ())
}
