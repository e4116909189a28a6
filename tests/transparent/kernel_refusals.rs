//! #17 item 4: what the eBPF programs refuse themselves (UDP to an
//! intercepted port) reaches the audit, one row per refusal, bounded per
//! cgroup; a flood neither floods the audit nor slows the daemon.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use airlock::intercept::events::{AUDIT_ROWS_PER_WINDOW, AUDIT_WINDOW};

use crate::harness::*;
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

/// A Python program run inside the cgroup at `dir`; its stdout.
fn python_in(dir: &Path, program: &str, timeout: Duration) -> String {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
        dir.display()
    );
    let out = run(
        Command::new("bash").args(["-c", &script, program]),
        None,
        timeout,
    );
    assert!(out.success(), "{out:#?}");
    out.stdout
}

/// Sends one datagram (sendto, or connect then send) to `host` port 443
/// and prints `refused` (EPERM) or `sent`.
fn datagram(family: &str, host: &str, connect: bool) -> String {
    let send = if connect {
        format!("s.connect(('{host}', 443)); s.send(b'x')")
    } else {
        format!("s.sendto(b'x', ('{host}', 443))")
    };
    format!(
        "import socket\n\
         s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         try:\n    {send}\n    print('sent')\n\
         except PermissionError:\n    print('refused')\n"
    )
}

fn udp_refused(e: &serde_json::Value) -> bool {
    e["decision"] == "udp_refused"
}

#[test]
fn ebpf_a_refused_datagram_is_one_audit_row_naming_the_agent() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[443]);
    add_agent(&daemon, &iso, "quic");
    let dir = iso.cg.path(&iso.agent_cgroup("quic"));

    // sendto on an unconnected socket: cgroup/sendmsg4.
    let out = python_in(
        &dir,
        &datagram("AF_INET", "127.0.0.1", false),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.trim(), "refused");
    let rows = settled_audit(&daemon, 1, udp_refused);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let rec = &rows[0];
    assert_eq!(rec["agent"], "quic", "{rec:#}");
    assert_eq!(rec["host"], "127.0.0.1:443", "{rec:#}");
    assert_eq!(rec["method"], "UDP", "{rec:#}");
    let detail = rec["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("UDP to 127.0.0.1:443 refused in the kernel"),
        "{detail}"
    );
    assert!(detail.contains("pid "), "{detail}");

    // connect then send, IPv6: refused at cgroup/connect6, so the send
    // never happens and the one refusal is one row.
    let out = python_in(&dir, &datagram("AF_INET6", "::1", true), CLIENT_TIMEOUT);
    assert_eq!(out.trim(), "refused");
    let rows = settled_audit(&daemon, 2, udp_refused);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["host"] == "[::1]:443" && r["agent"] == "quic"),
        "{rows:#?}"
    );
    // No other request row (the admin rows say who added the agent).
    let all: Vec<_> = audit_json(&daemon)
        .into_iter()
        .filter(|e| e["kind"] == "request")
        .collect();
    assert_eq!(all.len(), 2, "{all:#?}");
}

#[test]
fn ebpf_a_refused_datagram_from_an_unregistered_cgroup_names_the_cgroup() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[443]);
    let stranger = iso.parent_dir().join("stranger");
    fs::create_dir_all(&stranger).unwrap();
    let id = airlock::intercept::cgroup::id(&stranger).unwrap();

    let out = python_in(
        &stranger,
        &datagram("AF_INET", "127.0.0.1", true),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.trim(), "refused");
    let rows = settled_audit(&daemon, 1, udp_refused);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let rec = &rows[0];
    assert!(rec["agent"].is_null(), "{rec:#}");
    let detail = rec["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("cgroup id {id}")), "{detail}");
}

/// 100,000 refused datagrams from one agent: every one refused, the
/// audit takes its budget's rows and no more, and `airlock status`
/// answers within a second while the flood runs and after it.
#[test]
fn ebpf_a_flood_of_refused_datagrams_is_bounded_and_the_daemon_stays_responsive() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[443]);
    add_agent(&daemon, &iso, "flood");
    let dir = iso.cg.path(&iso.agent_cgroup("flood"));
    const N: u32 = 100_000;
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         refused = 0\n\
         for i in range({N}):\n    \
             try:\n        s.sendto(b'x', ('127.0.0.1', 443))\n    \
             except PermissionError:\n        refused += 1\n\
         print(refused)\n"
    );
    let started = Instant::now();
    let status_during = std::thread::scope(|scope| {
        let flood = scope.spawn(|| python_in(&dir, &program, Duration::from_secs(120)));
        // While the flood runs (it takes a second or more).
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        daemon.cli_ok(&["status"]);
        let during = t.elapsed();
        let out = flood.join().unwrap();
        assert_eq!(out.trim(), N.to_string(), "every datagram is refused");
        during
    });
    let flood_took = started.elapsed();
    assert!(
        status_during < Duration::from_secs(1),
        "status took {status_during:?} during the flood"
    );
    let t = Instant::now();
    daemon.cli_ok(&["status"]);
    let status_after = t.elapsed();
    assert!(
        status_after < Duration::from_secs(1),
        "status took {status_after:?}"
    );

    // Within one window the budget lets exactly its rows through; a
    // flood that outlasted a window may have used two, and a summary
    // row closes each.
    let windows = if flood_took < AUDIT_WINDOW { 1 } else { 2 };
    let bound = windows * (AUDIT_ROWS_PER_WINDOW as usize + 1);
    let rows = settled_audit(&daemon, AUDIT_ROWS_PER_WINDOW as usize, udp_refused);
    assert!(
        rows.len() >= AUDIT_ROWS_PER_WINDOW as usize && rows.len() <= bound,
        "{} rows for {N} refusals (bound {bound}), flood took {flood_took:?}",
        rows.len()
    );
    assert!(rows.iter().all(|r| r["agent"] == "flood"), "{rows:#?}");
    eprintln!(
        "flood: {N} datagrams refused in {flood_took:?}, {} audit rows, status {status_during:?} \
         during and {status_after:?} after",
        rows.len()
    );
}

/// The programs' aya-log lines reach the daemon's log when it shows
/// debug for them, and cost nothing otherwise: the verifier removes them
/// (aya-log's level is a read-only global the daemon sets at load).
#[test]
fn ebpf_the_programs_log_refusals_at_debug_and_their_lines_are_pruned_otherwise() {
    require!(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let ports = [up.port(), 443];
    let quiet = {
        let iso = Isolation::new(Mode::Ebpf);
        let daemon = start_daemon_for(&iso, up.ca_pem_path(), &ports);
        let sizes = iso.program_sizes();
        drop(daemon);
        sizes
    };
    let iso = Isolation::new(Mode::Ebpf);
    let daemon = daemon_builder(&iso, up.ca_pem_path(), &ports)
        .env("RUST_LOG", "info,airlock_ebpf=debug")
        .start();
    let verbose = iso.program_sizes();
    let stranger = iso.parent_dir().join("stranger");
    fs::create_dir_all(&stranger).unwrap();
    let out = python_in(
        &stranger,
        &datagram("AF_INET", "127.0.0.1", false),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.trim(), "refused");
    let logged =
        crate::support::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            daemon
                .log()
                .contains("airlock: refused (event kind 1) to port 443")
                .then_some(())
        });
    assert!(logged.is_some(), "{}", daemon.log());

    eprintln!(
        "programs (name, instructions after dead-code removal, verified): quiet {quiet:?}, debug {verbose:?}"
    );
    assert_eq!(quiet.len(), 6, "{quiet:?}");
    assert_eq!(verbose.len(), 6, "{verbose:?}");
    for ((name, quiet_insns, quiet_verified), (_, debug_insns, _)) in quiet.iter().zip(&verbose) {
        // Far below the kernel's limits (1M verified, 4096 for what an
        // unprivileged loader may load).
        assert!(
            *quiet_insns < 4096 && *quiet_verified < 100_000,
            "{name}: {quiet:?}"
        );
        assert!(
            quiet_insns <= debug_insns,
            "{name}: {quiet:?} vs {verbose:?}"
        );
    }
    let send4 = |sizes: &[(String, u32, u32)]| {
        sizes
            .iter()
            .find(|(n, ..)| n == "airlock_send4")
            .map(|s| s.1)
            .unwrap_or(0)
    };
    assert!(
        send4(&quiet) < send4(&verbose),
        "the debug lines are pruned when debug is off: {quiet:?} vs {verbose:?}"
    );
}

/// The ring is pinned with the programs: a datagram refused while no
/// daemon runs (killed; the pinned programs still refuse) waits in it and
/// is filed by the next daemon, which adopts the pins, with the time it
/// was refused.
#[test]
fn ebpf_a_refusal_while_the_daemon_is_down_is_audited_by_the_next_one() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let mut daemon = start_daemon(&iso, &up, &[443]);
    add_agent(&daemon, &iso, "offline");
    let dir = iso.cg.path(&iso.agent_cgroup("offline"));
    daemon.kill9();
    let refused_at = chrono::Utc::now();
    let out = python_in(
        &dir,
        &datagram("AF_INET", "127.0.0.1", false),
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.trim(), "refused", "the pinned programs still refuse");
    std::thread::sleep(Duration::from_millis(1500));
    daemon.restart();
    assert!(daemon.log().contains("adopted"), "{}", daemon.log());
    let rows = settled_audit(&daemon, 1, udp_refused);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["agent"], "offline", "{:#}", rows[0]);
    let at: chrono::DateTime<chrono::Utc> = rows[0]["at"].as_str().unwrap().parse().unwrap();
    let skew = (at - refused_at).num_milliseconds().abs();
    assert!(skew < 1000, "filed at {at}, refused at {refused_at}");
}
