//! `git ls-remote` in an agent's cgroup gets the refs with the injected
//! token.

use std::process::Command;

use crate::harness::*;
use crate::support;
use crate::support::git_http::GitServer;
use crate::support::run;

#[test]
fn ebpf_git_ls_remote_gets_the_refs_with_the_injected_token() {
    git_ls_remote(Mode::Ebpf);
}

#[test]
fn nftables_git_ls_remote_gets_the_refs_with_the_injected_token() {
    git_ls_remote(Mode::Nftables);
}

/// `git ls-remote https://...` inside the agent's cgroup, no proxy and no
/// credential configured, against a smart-HTTP server that answers 401
/// without the token: the gateway injects it and the refs come back.
fn git_ls_remote(mode: Mode) {
    require!(mode);
    let iso = Isolation::new(mode);
    let token = format!("ghp-test-{}", support::random_hex(12));
    let server = GitServer::start(&token);
    let daemon = start_daemon_for(&iso, server.ca_pem_path(), &[server.port()]);
    add_agent(&daemon, &iso, "coder");
    let host = "api.test.local";
    add_secret(
        &daemon,
        "git",
        &format!("{host}:{}", server.port()),
        &token,
        "coder",
    );
    let url = format!("https://{host}:{}/repo.git", server.port());
    let resolve = format!("http.curloptResolve={host}:{}:127.0.0.1", server.port());
    let git = |agent_args: &[&str]| {
        let mut cmd = daemon.command();
        // The clean environment passes only what --env names.
        cmd.args(["run", "--agent", "coder", "--user", "nobody"])
            .args([
                "--env",
                "GIT_TERMINAL_PROMPT",
                "--env",
                "GIT_CONFIG_NOSYSTEM",
            ])
            .args(["--env", "GIT_CONFIG_GLOBAL", "--"])
            .args(agent_args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        run(&mut cmd, None, CLIENT_TIMEOUT)
    };
    let out = git(&["git", "-c", &resolve, "ls-remote", &url]);
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    assert!(
        out.stdout
            .contains(&format!("{}\trefs/heads/main", server.head())),
        "{out:#?}"
    );
    let seen = server.requests();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.authorized), "{seen:#?}");
    let rec = wait_audit(&daemon, |e| {
        e["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/repo.git/"))
    });
    assert_eq!(rec["agent"], "coder", "{rec:#}");
    assert_eq!(rec["secrets"][0], "git", "{rec:#}");

    // The same client outside any agent cgroup, trusting the server's CA:
    // no credential, so the server refuses it.
    let direct = run(
        Command::new("git")
            .args(["-c", &resolve, "ls-remote", &url])
            .env("GIT_SSL_CAINFO", server.ca_pem_path())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null"),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(!direct.success(), "{direct:#?}");
    assert!(
        server.requests().iter().any(|r| !r.authorized),
        "the direct request did not reach the server"
    );
}
