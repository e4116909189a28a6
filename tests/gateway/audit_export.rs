//! The audit trail where logs go (`--audit-jsonl`, `--audit-syslog`,
//! `--audit-journald`): one JSON line per request with the OCSF fields,
//! into a file and into a real rsyslog on a socket of the test's own; a
//! file sink whose disk is full is counted, never holds up a request, and
//! recovers; a path that cannot work is refused at start; a real
//! systemd-journald, private to the test, gets each line tagged with its
//! decision.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::{serve_expect_exit, temp_data_dir};
use crate::support::gw::Gw;
use crate::support::metrics::{get, sample};
use crate::support::upstream::UpstreamOpts;
use crate::support::{evidence, run, wait_until};

/// A directory of the test's (files the daemon writes outside its data
/// directory), kept for the suite's leak scan like a data directory.
struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: Some(temp_data_dir()),
        }
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take()
            && evidence::keep_data_dir(d.path(), "")
        {
            // Moved under the evidence directory: nothing left to remove.
            let _ = d.keep();
        }
    }
}

/// JSON lines of `path`, waiting until there are at least `n`.
fn lines(path: &Path, n: usize) -> Vec<Value> {
    wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let text = fs::read_to_string(path).ok()?;
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (v.len() >= n).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} lines in {}: {:?}",
            path.display(),
            fs::read_to_string(path)
        )
    })
}

/// A real rsyslogd reading a Unix socket of the test's and writing what
/// it gets (tag and message) to a file; stopped by pid when dropped.
struct Rsyslog {
    _child: Reaped,
    socket: PathBuf,
    out: PathBuf,
}

impl Rsyslog {
    const BIN: &str = "/usr/sbin/rsyslogd";

    fn start(dir: &Path) -> Rsyslog {
        let socket = dir.join("log.sock");
        let out = dir.join("syslog.out");
        let conf = dir.join("rsyslog.conf");
        // No system socket, no rate limit (its default of 200 messages in
        // 5 s would drop lines under load; docs/audit-export.md says so).
        fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{d}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{s}\" RateLimit.Interval=\"0\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%syslogtag%%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{o}\" template=\"raw\")\n",
                d = dir.display(),
                s = socket.display(),
                o = out.display(),
            ),
        )
        .unwrap();
        let child = Command::new(Self::BIN)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rsyslogd");
        let r = Rsyslog {
            _child: Reaped(child),
            socket,
            out,
        };
        wait_for_socket(&r.socket, "rsyslogd");
        r
    }

    /// The JSON of each `airlock[PID]:` message received so far.
    fn messages(&self) -> Vec<Value> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("]:"))
            .filter(|(tag, _)| tag.starts_with("airlock["))
            .map(|(_, msg)| {
                serde_json::from_str(msg.trim()).unwrap_or_else(|e| panic!("{e}: {msg}"))
            })
            .collect()
    }
}

/// A receiver this test started, stopped by its pid when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn each_request_is_one_ocsf_line_in_the_file_and_in_a_real_rsyslog() {
    let scratch = Scratch::new();
    let jsonl = scratch.path().join("audit.jsonl");
    let syslog = Path::new(Rsyslog::BIN)
        .exists()
        .then(|| Rsyslog::start(scratch.path()));
    let mut env = vec![("AIRLOCK_AUDIT_JSONL", jsonl.display().to_string())];
    if let Some(s) = &syslog {
        env.push(("AIRLOCK_AUDIT_SYSLOG", s.socket.display().to_string()));
    } else {
        eprintln!(
            "SKIPPED the syslog part: no {} (cargo xtask setup)",
            Rsyslog::BIN
        );
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gw::start_with(UpstreamOpts::default(), &env);
    let host = gw.host();
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/echo/admin/**",
        "--block",
    ]);
    for _ in 0..3 {
        assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/ok?key=abc")])), 200);
    }
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/admin/x")])), 403);

    let got = lines(&jsonl, 4);
    assert_eq!(got.len(), 4, "{got:#?}");
    let mut rows = gw.requests(4);
    rows.sort_by_key(|r| r["id"].as_i64());
    assert_eq!(rows.len(), 4);
    for (line, row) in got.iter().zip(&rows) {
        assert_eq!(line["class_uid"], 4002, "{line}");
        assert_eq!(line["category_uid"], 4);
        assert_eq!(line["metadata"]["version"], "1.3.0");
        assert_eq!(line["metadata"]["product"]["name"], "Airlock");
        assert_eq!(line["actor"]["user"]["name"], "bot");
        assert_eq!(line["http_request"]["http_method"], "GET");
        assert_eq!(line["http_request"]["url"]["hostname"], "api.test.local");
        assert_eq!(line["http_request"]["url"]["port"], gw.up.port());
        // The database's own words, in the same order.
        assert_eq!(line["unmapped"]["airlock"]["decision"], row["decision"]);
        assert_eq!(line["http_response"]["code"], row["status"]);
        assert!(line["time"].as_i64().is_some_and(|t| t > 0), "{line}");
    }
    let allowed = &got[0];
    assert_eq!(allowed["action"], "Allowed");
    assert_eq!(allowed["type_uid"], 400203);
    // Query values are dropped as in the database.
    assert_eq!(allowed["http_request"]["url"]["query_string"], "key=");
    assert_eq!(allowed["unmapped"]["airlock"]["secrets"][0], "up");
    let blocked = &got[3];
    assert_eq!(blocked["action"], "Denied");
    assert_eq!(blocked["disposition"], "Blocked");
    assert!(
        blocked["unmapped"]["airlock"]["rule_id"].is_i64(),
        "{blocked}"
    );

    let text = fs::read_to_string(&jsonl).unwrap();
    assert!(
        !text.contains(&gw.value),
        "the secret's value is in the JSON lines"
    );
    assert!(
        !text.contains(&gw.token),
        "the agent's token is in the JSON lines"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&jsonl).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);

    if let Some(s) = &syslog {
        let msgs = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            let m = s.messages();
            (m.len() >= 4).then_some(m)
        })
        .unwrap_or_else(|| panic!("rsyslog got {:?}", s.messages()));
        assert_eq!(msgs, got, "syslog and the file carry the same lines");
    }
}

/// A tmpfs of its own, so "disk full" is real and bounded; unmounted
/// when dropped.
struct TinyDisk {
    path: PathBuf,
}

impl TinyDisk {
    fn mount(at: PathBuf) -> TinyDisk {
        fs::create_dir_all(&at).unwrap();
        run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"])
                .arg(&at),
            None,
            Duration::from_secs(10),
        )
        .ok();
        TinyDisk { path: at }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn export_failed(gw: &Gw, token: &str) -> f64 {
    let dash = gw.daemon.status_json()["dashboard_addr"]
        .as_str()
        .expect("dashboard_addr")
        .to_owned();
    let out = get(&format!("http://{dash}/metrics"), Some(token));
    sample(
        &out.stdout,
        r#"airlock_audit_export_failed_lines_total{sink="file"}"#,
    )
    .unwrap_or_else(|| panic!("no failed-lines counter in {}", out.stdout))
}

/// Waits (at most 10 s) for the daemon at `path` to make its socket.
fn wait_for_socket(path: &Path, what: &str) {
    let made = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        path.exists().then_some(())
    });
    assert!(
        made.is_some(),
        "{what} made no socket at {}",
        path.display()
    );
}

#[test]
fn a_full_disk_under_the_file_is_counted_and_never_holds_up_a_request() {
    let scratch = Scratch::new();
    let disk = TinyDisk::mount(scratch.path().join("disk"));
    let jsonl = disk.path.join("audit.jsonl");
    let gw = Gw::start_with(
        UpstreamOpts::default(),
        &[("AIRLOCK_AUDIT_JSONL", jsonl.to_str().unwrap())],
    );
    let token = gw
        .daemon
        .cli_ok(&["admin", "token", "create", "metrics"])
        .trim()
        .to_owned();
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/before")])), 200);
    lines(&jsonl, 1);
    // Fill what is left of the disk.
    let filler = disk.path.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/while-full")])), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "requests were held up by the full disk: {:?}",
        started.elapsed()
    );
    let failed = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        let f = export_failed(&gw, &token);
        (f > 0.0).then_some(f)
    });
    assert!(
        failed.is_some(),
        "no failure counted; log: {}",
        gw.daemon.log()
    );
    // Every line in the file is whole: a failed batch was cut back.
    let text = fs::read_to_string(&jsonl).unwrap();
    for l in text.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
    }
    assert!(text.ends_with('\n'));
    let log = gw.daemon.log();
    assert!(log.contains("audit export sink failed"), "{log}");
    assert_eq!(
        log.matches("audit export sink failed").count(),
        1,
        "logged more than once a minute: {log}"
    );
    // Space again: lines come again (lines of requests made while it
    // was full may land first, from batches still on their way).
    fs::remove_file(&filler).unwrap();
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/after")])), 200);
    let resumed = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let text = fs::read_to_string(&jsonl).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["http_request"]["url"]["path"] == "/echo/after")
            .then_some(())
    });
    assert!(resumed.is_some(), "no line after the disk had room again");
    drop(gw);
    drop(disk);
}

#[test]
fn a_sink_that_cannot_work_is_refused_at_start_with_what_to_do() {
    let data = temp_data_dir();
    let out = serve_expect_exit(
        data.path(),
        &[(
            "AIRLOCK_AUDIT_JSONL",
            "/nonexistent-airlock-dir/audit.jsonl",
        )],
    );
    assert_ne!(out.code, 0);
    out.fails_with(&["/nonexistent-airlock-dir/audit.jsonl", "--audit-jsonl"]);

    let data = temp_data_dir();
    let out = serve_expect_exit(data.path(), &[("AIRLOCK_AUDIT_JSONL", "relative.jsonl")]);
    out.fails_with(&["absolute path", "relative.jsonl"]);

    let data = temp_data_dir();
    let missing = data.path().join("no-syslog.sock");
    let out = serve_expect_exit(
        data.path(),
        &[("AIRLOCK_AUDIT_SYSLOG", missing.to_str().unwrap())],
    );
    out.fails_with(&["cannot reach syslog", "--audit-syslog"]);
}

/// A real systemd-journald in a mount namespace of this test's thread:
/// `/run` and `/var/log/journal` are fresh tmpfs there, so the journal,
/// its sockets and files exist only for this thread and its children (the
/// daemon, `journalctl`), and nothing of the host's changes. The journald
/// is stopped by pid when dropped; the namespace ends with the thread.
struct PrivateJournald {
    _child: Reaped,
}

impl PrivateJournald {
    const BIN: &str = "/lib/systemd/systemd-journald";
    const SOCKET: &str = "/run/systemd/journal/socket";

    fn start() -> PrivateJournald {
        use nix::mount::{MsFlags, mount};
        use nix::sched::{CloneFlags, unshare};
        unshare(CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS) for this test's thread");
        // Nothing mounted here propagates back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("making / private in the test's mount namespace");
        for at in ["/run", "/var/log/journal"] {
            fs::create_dir_all(at).unwrap();
            mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=16m,mode=0755"),
            )
            .unwrap_or_else(|e| panic!("mounting a tmpfs on {at}: {e}"));
        }
        // What the daemon expects of /run (its user-creation lock).
        for d in ["/run/lock", "/run/systemd/journal", "/run/log/journal"] {
            fs::create_dir_all(d).unwrap();
        }
        let child = Command::new(Self::BIN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting systemd-journald");
        let j = PrivateJournald {
            _child: Reaped(child),
        };
        wait_for_socket(Path::new(Self::SOCKET), "systemd-journald");
        j
    }

    /// `journalctl` over this journal: the JSON lines of Airlock's
    /// messages with `AIRLOCK_DECISION=decision`.
    fn messages(&self, decision: &str) -> Vec<Value> {
        let filter = format!("AIRLOCK_DECISION={decision}");
        let out = run(
            Command::new("journalctl").args([
                "-D",
                "/run/log/journal",
                "-t",
                "airlock",
                &filter,
                "-o",
                "cat",
                "--no-pager",
            ]),
            None,
            Duration::from_secs(15),
        );
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[test]
fn a_real_journald_gets_each_line_tagged_with_its_decision() {
    if !Path::new(PrivateJournald::BIN).exists() {
        eprintln!(
            "SKIPPED: no {} (Debian's systemd package; cargo xtask setup installs it)",
            PrivateJournald::BIN
        );
        return;
    }
    let journal = PrivateJournald::start();
    let gw = Gw::start_with(
        UpstreamOpts::default(),
        &[("AIRLOCK_AUDIT_JOURNALD", "true")],
    );
    let host = gw.host();
    gw.daemon.cli_ok(&[
        "rule",
        "add",
        "--host",
        &host,
        "--path",
        "/echo/admin/**",
        "--block",
    ]);
    let path = format!("/echo/journald-{}", crate::support::random_hex(6));
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url(&path)])), 200);
    assert_eq!(Gw::code(&gw.curl(&[&gw.up.url("/echo/admin/x")])), 403);
    let allowed = wait_until(Duration::from_secs(15), Duration::from_millis(250), || {
        let m = journal.messages("allowed");
        (!m.is_empty()).then_some(m)
    })
    .unwrap_or_else(|| panic!("no line reached the journal; log: {}", gw.daemon.log()));
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert_eq!(allowed[0]["class_uid"], 4002);
    assert_eq!(allowed[0]["http_request"]["url"]["path"], path.as_str());
    // The two lines may reach the journal in either order, and apart.
    let blocked = wait_until(Duration::from_secs(15), Duration::from_millis(250), || {
        let m = journal.messages("blocked");
        (!m.is_empty()).then_some(m)
    })
    .unwrap_or_else(|| panic!("the blocked line never reached the journal"));
    assert_eq!(blocked.len(), 1, "{blocked:#?}");
    assert_eq!(blocked[0]["disposition"], "Blocked");
    drop(gw);
}
