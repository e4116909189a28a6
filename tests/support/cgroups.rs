//! Removing the cgroups a test made, with whatever runs in them.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// Removes the cgroup at `dir` and everything below it, deepest first:
/// kills whatever is left inside (`cgroup.kill`, Linux 5.14+), then waits
/// (bounded) for each cgroup to empty before removing it.
pub fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..100 {
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("warning: could not remove cgroup {}", dir.display());
}
