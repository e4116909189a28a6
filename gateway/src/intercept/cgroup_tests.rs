use super::*;

const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 22 0:40 / /sys/fs/bpf rw,relatime - bpf bpf rw
60 22 0:41 /sub/tree /mnt/cg\\040x rw - cgroup2 cgroup2 rw
";

#[test]
fn finds_the_cgroup2_mount_and_levels() {
    let lines = parse_mountinfo(SAMPLE);
    assert_eq!(lines.len(), 4);
    let cg = Cgroup2::from_mountinfo(&lines).unwrap();
    assert_eq!(cg.mount, PathBuf::from("/sys/fs/cgroup/unified"));
    assert_eq!(cg.root_depth, 0);
    assert_eq!(
        cg.path("/airlock.slice/agent-a"),
        PathBuf::from("/sys/fs/cgroup/unified/airlock.slice/agent-a")
    );
    assert_eq!(cg.level("airlock.slice"), 1);
    assert_eq!(cg.level("airlock.slice/agent-a/"), 2);
    assert_eq!(lines[3].mount_point, PathBuf::from("/mnt/cg x"));
    assert_eq!(depth(&lines[3].root), 2);
}

#[test]
fn names_a_cgroup_by_its_id() {
    let Ok(cg) = Cgroup2::find() else { return };
    let Ok(rel) = cg.of_pid(std::process::id()) else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let id = id(&cg.path(&rel)).unwrap();
    assert_eq!(cg.rel_path_of_id(id).unwrap(), rel);
    assert!(cg.rel_path_of_id(u64::MAX).is_err());
}

#[test]
fn owner_marks_and_kill_and_remove() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Ok(cg) = Cgroup2::find() else { return };
    let dir = cg.path(&format!("airlock-unit-{}", std::process::id()));
    ensure(&dir.join("sub")).unwrap();
    assert_eq!(owner_mark(&dir).unwrap(), None);
    set_owner_mark(&dir, "7f0c").unwrap();
    assert_eq!(owner_mark(&dir).unwrap().as_deref(), Some("7f0c"));
    assert!(!populated(&dir).unwrap());
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    move_pid(&dir.join("sub"), child.id()).unwrap();
    assert!(populated(&dir).unwrap());
    assert_eq!(kill_and_remove(&dir).unwrap(), Removed::Gone { killed: 1 });
    assert!(!child.wait().unwrap().success(), "killed");
    assert!(!dir.exists());
    assert_eq!(kill_and_remove(&dir).unwrap(), Removed::Absent);
    assert!(!populated(&dir).unwrap());
}

#[test]
fn parents() {
    assert!(is_under("airlock.slice/agent-a", "airlock.slice"));
    assert!(is_under("/airlock.slice/agent-a", "airlock.slice/"));
    assert!(!is_under("airlock.slice", "airlock.slice"));
    assert!(!is_under("airlock.slicex/agent-a", "airlock.slice"));
}
