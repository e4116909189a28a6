//! cgroup v2 and the BPF filesystem: where they are mounted (from
//! `/proc/self/mountinfo`, never assumed), cgroup paths, ids and levels,
//! and moving processes.
//!
//! Agents' cgroup paths (the `cgroup` column of an agent) are relative to
//! the cgroup2 mount, with or without a leading `/`:
//! `airlock.slice/agent-NAME` is `<mount>/airlock.slice/agent-NAME`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where BPF objects are pinned when no bpffs is mounted: mounted there.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// The cgroup v2 hierarchy as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2 {
    /// Where it is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub mount: PathBuf,
    /// How deep the mount's root is in the whole hierarchy (0 unless the
    /// mount shows a sub-tree, e.g. inside a cgroup namespace).
    pub root_depth: u32,
}

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountLine {
    root: String,
    mount_point: PathBuf,
    fs_type: String,
}

/// Undoes the kernel's octal escapes in mount fields (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount-point options [optional...] - type source super
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let root = unescape(l.nth(3)?);
            let mount_point = PathBuf::from(unescape(l.next()?));
            let fs_type = right.split(' ').next()?.to_owned();
            Some(MountLine {
                root,
                mount_point,
                fs_type,
            })
        })
        .collect()
}

fn mounts() -> io::Result<Vec<MountLine>> {
    Ok(parse_mountinfo(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

fn depth(path: &str) -> u32 {
    path.split('/').filter(|c| !c.is_empty()).count() as u32
}

impl Cgroup2 {
    /// The first cgroup2 mount.
    pub fn find() -> io::Result<Cgroup2> {
        Self::from_mountinfo(&mounts()?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup v2 file system is mounted (see /proc/self/mountinfo): transparent \
                 interception needs cgroup v2",
            )
        })
    }

    fn from_mountinfo(lines: &[MountLine]) -> Option<Cgroup2> {
        lines
            .iter()
            .find(|m| m.fs_type == "cgroup2")
            .map(|m| Cgroup2 {
                mount: m.mount_point.clone(),
                root_depth: depth(&m.root),
            })
    }

    /// The directory of the cgroup at `rel` (relative to the mount).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mount.join(normalize(rel))
    }

    /// The cgroup's level in the hierarchy (the root is 0), as
    /// `bpf_get_current_ancestor_cgroup_id` counts.
    pub fn level(&self, rel: &str) -> u32 {
        self.root_depth + depth(&normalize(rel))
    }

    /// The cgroup containing process `pid`, relative to the mount, if it
    /// is in this hierarchy's visible part.
    pub fn of_pid(&self, pid: u32) -> io::Result<String> {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(normalize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup v2 line"))
    }
}

impl Cgroup2 {
    /// The cgroup whose id is `id`, relative to the mount: opened by
    /// handle (cgroup2 exports its directories by id as `FILEID_KERNFS`
    /// handles, which is how systemd resolves cgroup ids), then named by
    /// `/proc/self/fd`. Needs `CAP_DAC_READ_SEARCH` (root).
    #[allow(unsafe_code)]
    pub fn rel_path_of_id(&self, id: u64) -> io::Result<String> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        /// `struct file_handle` with room for the 8-byte cgroup id.
        #[repr(C)]
        struct Handle {
            bytes: u32,
            kind: i32,
            id: [u8; 8],
        }
        const FILEID_KERNFS: i32 = 0xfe;
        let mount = fs::File::open(&self.mount)?;
        let mut handle = Handle {
            bytes: 8,
            kind: FILEID_KERNFS,
            id: id.to_ne_bytes(),
        };
        // SAFETY: `handle` is a `struct file_handle` whose `handle_bytes`
        // matches the bytes that follow it; `mount` is an open directory.
        let fd = unsafe {
            nix::libc::open_by_handle_at(
                mount.as_raw_fd(),
                (&mut handle as *mut Handle).cast(),
                nix::libc::O_RDONLY | nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        path.strip_prefix(&self.mount)
            .map(|rel| normalize(&rel.to_string_lossy()))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("cgroup {id} is outside {}", self.mount.display()),
                )
            })
    }
}

/// `rel` without leading or trailing slashes.
pub fn normalize(rel: &str) -> String {
    rel.trim_matches('/').to_owned()
}

/// Whether `rel` is `parent` itself or below it (both relative paths).
pub fn is_under(rel: &str, parent: &str) -> bool {
    let (rel, parent) = (normalize(rel), normalize(parent));
    rel.len() > parent.len() && rel.starts_with(&parent) && rel.as_bytes()[parent.len()] == b'/'
}

/// A cgroup's id: the inode number of its directory (what the kernel's
/// `bpf_get_current_cgroup_id` returns).
pub fn id(dir: &Path) -> io::Result<u64> {
    Ok(fs::metadata(dir)?.ino())
}

/// Creates the cgroup directory (and its parents) if missing.
pub fn ensure(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// The cgroup Airlock creates and owns for agent `name` (given no
/// `--cgroup`), relative to the mount: `PARENT/agent-NAME`.
pub fn owned_path(parent: &str, name: &impl std::fmt::Display) -> String {
    format!("{}/agent-{name}", normalize(parent))
}

/// The extended attribute that marks an Airlock-owned agent cgroup with the
/// id of the agent it was made for. Agent ids are new on every `agent add`,
/// so a cgroup left by a removed agent (the same path, the same name) is
/// told apart from the re-added agent's. `trusted.*` needs `CAP_SYS_ADMIN`:
/// an agent cannot forge it.
pub const OWNER_XATTR: &str = "trusted.airlock.agent";

/// The agent id marked on the cgroup at `dir`, if any.
#[allow(unsafe_code)]
pub fn owner_mark(dir: &Path) -> io::Result<Option<String>> {
    let path = c_path(dir)?;
    let name = c_str(OWNER_XATTR)?;
    let mut buf = [0u8; 64];
    // SAFETY: `path` and `name` are NUL-terminated; `buf` is writable for
    // its full length.
    let n = unsafe {
        nix::libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(nix::libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(
        String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
    ))
}

/// Marks the cgroup at `dir` as made for agent `id`.
#[allow(unsafe_code)]
pub fn set_owner_mark(dir: &Path, id: &str) -> io::Result<()> {
    let path = c_path(dir)?;
    let name = c_str(OWNER_XATTR)?;
    // SAFETY: `path` and `name` are NUL-terminated; the value is `id.len()`
    // readable bytes.
    let rc = unsafe {
        nix::libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            id.as_ptr().cast(),
            id.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_path(dir: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn c_str(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// Whether any process is in the cgroup at `dir` or below it
/// (`cgroup.events`' `populated`). A missing cgroup is not populated.
pub fn populated(dir: &Path) -> io::Result<bool> {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(text) => Ok(text.lines().any(|l| l.trim() == "populated 1")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long [`kill_and_remove`] waits for killed processes to exit.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`kill_and_remove`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// Removed, after killing this many processes (0: it was empty).
    Gone { killed: usize },
    /// There was no such cgroup.
    Absent,
}

/// Kills every process in the cgroup at `dir` and below it, waits (at most
/// [`KILL_TIMEOUT`]) for them to exit, and removes the cgroup and its
/// sub-cgroups. `cgroup.kill` (Linux 5.14+) kills the whole tree at once,
/// forks included; without it each process is sent SIGKILL until none is
/// left. `Err` when the tree cannot be emptied or removed.
pub fn kill_and_remove(dir: &Path) -> io::Result<Removed> {
    if !dir.is_dir() {
        return Ok(Removed::Absent);
    }
    let killed = count_procs(dir);
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut next_signal = Instant::now();
    while populated(dir)? {
        let now = Instant::now();
        if now >= next_signal {
            // Again now and then: without cgroup.kill a fork may have
            // escaped the last round.
            signal_tree(dir)?;
            next_signal = now + Duration::from_millis(250);
        }
        if now > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "processes in {} did not exit within {KILL_TIMEOUT:?} of SIGKILL",
                    dir.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_tree(dir)?;
    Ok(Removed::Gone { killed })
}

/// The processes in the cgroup at `dir` and below it.
fn count_procs(dir: &Path) -> usize {
    let own = fs::read_to_string(dir.join("cgroup.procs"))
        .map(|p| p.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    own + sub_cgroups(dir)
        .iter()
        .map(|d| count_procs(d))
        .sum::<usize>()
}

fn sub_cgroups(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL to every process in the tree at `dir`: `cgroup.kill`, or one
/// by one where the kernel has none.
fn signal_tree(dir: &Path) -> io::Result<()> {
    match fs::write(dir.join("cgroup.kill"), "1") {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for sub in sub_cgroups(dir) {
        signal_tree(&sub)?;
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    Ok(())
}

/// Removes the (empty) cgroup at `dir` and its sub-cgroups, deepest first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for sub in sub_cgroups(dir) {
        remove_tree(&sub)?;
    }
    // The last exits are reported a moment before rmdir may succeed.
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    fs::remove_dir(dir)
}

/// Moves process `pid` (all its threads) into the cgroup at `dir`.
pub fn move_pid(dir: &Path, pid: u32) -> io::Result<()> {
    fs::write(dir.join("cgroup.procs"), pid.to_string())
}

/// Makes sure a BPF file system holds `pin_dir`: finds the bpffs mount
/// that contains it, or mounts one at [`DEFAULT_BPFFS`] when none is
/// mounted there and `pin_dir` is below it. Then creates `pin_dir`.
pub fn ensure_bpffs(pin_dir: &Path) -> io::Result<()> {
    let lines = mounts()?;
    let covered = lines
        .iter()
        .any(|m| m.fs_type == "bpf" && pin_dir.starts_with(&m.mount_point));
    if !covered {
        let default = Path::new(DEFAULT_BPFFS);
        if !pin_dir.starts_with(default) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no BPF file system is mounted above {} (mount one: mount -t bpf bpf DIR)",
                    pin_dir.display()
                ),
            ));
        }
        fs::create_dir_all(default)?;
        nix::mount::mount(
            Some("bpf"),
            default,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| {
            io::Error::other(format!(
                "cannot mount the BPF file system at {DEFAULT_BPFFS}: {e}"
            ))
        })?;
        tracing::info!(at = DEFAULT_BPFFS, "mounted the BPF file system");
    }
    fs::create_dir_all(pin_dir)
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
