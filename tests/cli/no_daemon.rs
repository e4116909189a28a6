//! Without a daemon: every command says how to start it, and grammar
//! errors come first.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

#[test]
fn without_a_daemon_every_command_says_how_to_start_it() {
    let dir = temp_data_dir();
    let run_in = |data_dir: &Path, args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = hermetic_command(data_dir);
        cmd.args(args);
        run(&mut cmd, stdin, Duration::from_secs(30))
    };
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["secret", "list"],
        &["secret", "rm", "x"],
        &["agent", "add", "bot"],
        &["agent", "list"],
        &["agent", "grant", "bot", "x"],
        &["rule", "list"],
        &["rule", "add", "--host", "evil.com", "--block"],
        &["rule", "rm", "1"],
        &["rule", "add", "--host", "evil.com", "--allow"],
        &["default"],
        &["default", "deny", "--agent", "bot"],
        &["audit"],
    ] {
        let out = run_in(dir.path(), args, None);
        let message = out.fails_with(&["airlock is not running", "airlock serve", "--data-dir"]);
        assert_eq!(message.trim_end().lines().count(), 1, "{args:?}: {message}");
    }
    let out = run_in(
        dir.path(),
        &[
            "secret",
            "add",
            "k",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        Some(b"sk-nodaemon\n"),
    );
    assert!(!out.all().contains("sk-nodaemon"));
    out.fails_with(&["airlock is not running", "airlock serve"]);
    // A data directory that does not exist at all.
    run_in(Path::new("/nonexistent/airlock"), &["status"], None)
        .fails_with(&["airlock is not running", "/nonexistent/airlock/admin.sock"]);
    // The CLI created nothing.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Grammar errors are found before the daemon is needed.
    run_in(dir.path(), &["frobnicate"], None).fails_with(&["frobnicate"]);
    run_in(dir.path(), &["status", "--bogus"], None).fails_with(&["--bogus"]);
    run_in(Path::new("relative/dir"), &["status"], None).fails_with(&["absolute path"]);
    let help = run_in(dir.path(), &["--help"], None);
    help.ok();
    for command in [
        "serve", "status", "secret", "agent", "rule", "default", "audit",
    ] {
        assert!(help.stdout.contains(command), "--help lacks {command}");
    }
    let version = run_in(dir.path(), &["--version"], None);
    assert_eq!(
        version.ok().stdout,
        format!("airlock {}\n", env!("CARGO_PKG_VERSION"))
    );
}
