//! Inside `airlock run`, clients with trust stores of their own trust
//! Airlock's CA with no settings at all (issue #17, item 3), for real: as
//! root, against a real daemon intercepting transparently, Java's
//! `java.net.http.HttpClient`, Debian's `wget` (GnuTLS), a Go client,
//! Python's `ssl` defaults (OpenSSL) and curl each reach a loopback HTTPS upstream through the gateway with the
//! credential injected, with every CA variable removed from their
//! environment. The host's trust store is byte for byte the same
//! afterwards, and the view's mounts never reach the namespace `airlock
//! run` started in, even a shared one. Where the namespace cannot be made,
//! the agent runs with the CA variables and a warning.
//!
//! The isolation (own cgroups, pins, nft table) is the transparent tests'
//! ([`harness`]). Without root, cgroup v2 or a redirect mechanism the test
//! says so and passes without checking, except under CI (`CI` set), where
//! that fails; a missing client (`cargo xtask setup` installs them all)
//! always fails.

mod support;

#[path = "transparent/harness.rs"]
#[macro_use]
#[allow(dead_code, unused_macros)]
mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use airlock::intercept::run::CA_VARIABLES;
use airlock::intercept::trust_view;
use harness::{
    CLIENT_TIMEOUT, Isolation, Mode, add_agent, add_secret, agent_run, skip_reason, start_daemon,
};
use sha2::{Digest, Sha256};
use support::upstream::{Upstream, UpstreamOpts};
use support::{Daemon, Output, run};

const JAVA_CLIENT: &str = r#"
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder().proxy(HttpClient.Builder.NO_PROXY).build();
        HttpResponse<String> r = client.send(
            HttpRequest.newBuilder(URI.create(args[0])).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println(r.statusCode());
        System.exit(r.statusCode() == 200 ? 0 : 1);
    }
}
"#;

const GO_CLIENT: &str = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	r, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(r.StatusCode)
	if r.StatusCode != 200 {
		os.Exit(1)
	}
}
"#;

/// Every regular file and link under the host's trust store directories
/// (and the bundles elsewhere), with its content's hash or link target.
fn host_trust_store() -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    let mut walk = vec![Path::new("/etc/ssl/certs").to_owned()];
    walk.extend(
        trust_view::PEM_PATHS
            .iter()
            .chain(trust_view::JAVA_PATHS)
            .map(|p| Path::new(p).to_owned()),
    );
    while let Some(path) = walk.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let key = path.display().to_string();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap_or_default();
            seen.insert(key, format!("-> {}", target.display()));
            if let Ok(real) = fs::canonicalize(&path)
                && real.is_file()
                && !seen.contains_key(&real.display().to_string())
            {
                walk.push(real);
            }
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).into_iter().flatten().flatten() {
                walk.push(entry.path());
            }
        } else if meta.is_file() {
            let data = fs::read(&path).unwrap_or_default();
            seen.insert(key, hex::encode(Sha256::digest(&data)));
        }
    }
    seen
}

/// A client the test needs, or a failure that says how to get it.
#[track_caller]
fn require_tool(program: &str, package: &str) {
    let found = Command::new(program).arg("--version").output().is_ok()
        || Command::new(program).arg("version").output().is_ok();
    assert!(
        found,
        "{program} is missing: `cargo xtask setup` installs it (Debian's {package})"
    );
}

/// `env -u VAR ...` for every CA variable: the client sees none.
fn without_ca_variables(client: &[&str]) -> Vec<String> {
    let mut args = vec!["env".to_owned()];
    for var in CA_VARIABLES {
        args.push("-u".into());
        args.push((*var).to_owned());
    }
    args.extend(client.iter().map(|s| (*s).to_owned()));
    args
}

/// The redirect mechanism to use, or `None` (after saying why) when
/// neither can run here; under CI that fails the test instead.
fn mode() -> Option<Mode> {
    let mode = [Mode::Ebpf, Mode::Nftables]
        .into_iter()
        .find(|m| skip_reason(*m).is_none());
    if mode.is_none() {
        let why = skip_reason(Mode::Nftables).unwrap_or_default();
        assert!(
            std::env::var_os("CI").is_none(),
            "the trust view tests need root and transparent interception: {why}"
        );
        eprintln!("SKIPPED: the trust view tests need root and transparent interception: {why}");
    }
    mode
}

/// A daemon intercepting for agent `bot`, which holds the upstream's
/// secret (its value returned) for `127.0.0.1:PORT`.
fn start(mode: Mode) -> (Isolation, Upstream, Daemon, String) {
    let iso = Isolation::new(mode);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-trust-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("127.0.0.1:{}", up.port()),
        &value,
        "bot",
    );
    (iso, up, daemon, value)
}

#[track_caller]
fn assert_injected(up: &Upstream, path: &str, value: &str) {
    let seen = up.requests_to(path);
    assert_eq!(seen.len(), 1, "{path}: {seen:#?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str()),
        "{path}: the credential was not injected"
    );
}

/// `WRAPPER... airlock ARGS...` with the environment `daemon.command()`
/// would give `airlock`.
fn wrapped(daemon: &Daemon, wrapper: &[&str], args: &[&str]) -> Output {
    let airlock = daemon.command();
    let (program, wrapper_args) = wrapper.split_first().expect("a wrapper");
    let mut cmd = Command::new(program);
    cmd.args(wrapper_args)
        .arg(airlock.get_program())
        .args(args)
        .current_dir("/");
    for (k, v) in airlock.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run(&mut cmd, None, CLIENT_TIMEOUT)
}

#[test]
fn clients_with_trust_stores_of_their_own_trust_airlock_with_no_settings_and_the_host_is_unchanged()
{
    let Some(mode) = mode() else {
        return;
    };
    for (program, package) in [
        ("java", "openjdk-17-jdk-headless"),
        ("wget", "wget"),
        ("go", "golang-go"),
        ("curl", "curl"),
    ] {
        require_tool(program, package);
    }
    let before = host_trust_store();
    assert!(
        before.contains_key("/etc/ssl/certs/ca-certificates.crt"),
        "no system bundle: {before:#?}"
    );

    // The clients, readable and runnable by `nobody` (the agent's user).
    let tmp = tempfile::Builder::new()
        .prefix("airlock-test-trust-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let java_src = tmp.path().join("Fetch.java");
    fs::write(&java_src, JAVA_CLIENT).expect("writing the Java client");
    let go_src = tmp.path().join("fetch.go");
    fs::write(&go_src, GO_CLIENT).expect("writing the Go client");
    let go_bin = tmp.path().join("fetch-go");
    let build = run(
        Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&go_bin)
            .arg(&go_src)
            .env("GOCACHE", tmp.path().join("gocache"))
            .env("GOPATH", tmp.path().join("gopath"))
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off"),
        None,
        std::time::Duration::from_secs(300),
    );
    assert!(build.success(), "go build: {build:#?}");

    let (_iso, up, daemon, value) = start(mode);
    let addr = format!("127.0.0.1:{}", up.port());
    let ca_pem = fs::read_to_string(daemon.data_dir().join(airlock::tls::CA_CERT_FILE))
        .expect("the daemon's CA");
    let host_bundle =
        fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").expect("the host bundle");
    assert!(
        !host_bundle.contains(ca_pem.trim()),
        "the host already trusts this CA: the test would prove nothing"
    );

    let url = |client: &str| format!("https://{addr}/echo/{client}");
    let java_src = java_src.display().to_string();
    let go_bin = go_bin.display().to_string();
    // Python's ssl module with OpenSSL's default paths (no cafile).
    let python = format!(
        "import ssl, urllib.request; \
         print(urllib.request.urlopen({:?}, context=ssl.create_default_context()).status)",
        url("python")
    );
    let clients: [(&str, Vec<String>); 5] = [
        ("java", vec!["java".into(), java_src, url("java")]),
        (
            "wget",
            ["wget", "-q", "-O", "-", "--no-proxy", "--no-hsts"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain([url("wget")])
                .collect(),
        ),
        ("go", vec![go_bin, url("go")]),
        ("python", vec!["python3".into(), "-c".into(), python]),
        (
            "curl",
            ["curl", "-sS", "--noproxy", "*", "-m", "20"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain([url("curl")])
                .collect(),
        ),
    ];
    for (name, client) in &clients {
        let client: Vec<&str> = client.iter().map(String::as_str).collect();
        let args = without_ca_variables(&client);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out: Output = agent_run(&daemon, "bot", &args);
        assert!(
            out.success(),
            "{name} inside airlock run: {out:#?}\n{}",
            daemon.log()
        );
        assert!(
            !out.stderr.contains("does not see Airlock's CA"),
            "{name}: no trust view: {out:#?}"
        );
        assert_injected(&up, &format!("/echo/{name}"), &value);
    }

    // What the agent sees at the system paths is the view; the host's
    // files are what they were.
    let inside = agent_run(
        &daemon,
        "bot",
        &[
            "grep",
            "-c",
            "Airlock local CA",
            "/etc/ssl/certs/ca-certificates.crt",
        ],
    );
    assert_eq!(inside.stdout.trim(), "1", "{inside:#?}");
    let view = daemon.data_dir().join(trust_view::JAVA_FILE);
    let cmp = agent_run(
        &daemon,
        "bot",
        &[
            "cmp",
            "/etc/ssl/certs/java/cacerts",
            &view.display().to_string(),
        ],
    );
    assert!(cmp.success(), "Java's cacerts is not the view: {cmp:#?}");
    // Java's own tool reads it, and its digest checks out under `changeit`.
    let keytool = run(
        Command::new("keytool")
            .args([
                "-list",
                "-storepass",
                trust_view::JAVA_PASSWORD,
                "-keystore",
            ])
            .arg(&view),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(
        keytool.success() && keytool.stdout.contains("airlock-local-ca"),
        "{keytool:#?}"
    );
    drop(daemon);
    assert_eq!(host_trust_store(), before, "the host's trust store changed");
    // No bind mount of the view propagated back to the host's namespace.
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let leaked: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            trust_view::PEM_PATHS
                .iter()
                .chain(trust_view::JAVA_PATHS)
                .any(|p| l.contains(&format!(" {p} ")))
        })
        .collect();
    assert!(leaked.is_empty(), "mounts on the host: {leaked:#?}");
}

/// Where the namespace cannot be made (here: `airlock run` without
/// `CAP_SYS_ADMIN`), the agent still runs, with the CA variables, and
/// `airlock run` says which clients will refuse the gateway.
#[test]
fn without_a_mount_namespace_the_agent_runs_with_the_ca_variables_and_a_warning() {
    let Some(mode) = mode() else {
        return;
    };
    require_tool("setpriv", "util-linux");
    require_tool("wget", "wget");
    let (_iso, up, daemon, value) = start(mode);
    let url = |path: &str| format!("https://127.0.0.1:{}/echo/{path}", up.port());
    let without_sys_admin = |client: &[String]| -> Output {
        let mut run_args = vec!["run", "--agent", "bot", "--user", "nobody", "--"];
        run_args.extend(client.iter().map(String::as_str));
        wrapped(
            &daemon,
            &["setpriv", "--bounding-set", "-sys_admin", "--"],
            &run_args,
        )
    };
    let curl: Vec<String> = ["curl", "-sS", "--noproxy", "*", "-m", "20"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([url("fallback-curl")])
        .collect();
    let out = without_sys_admin(&curl);
    assert!(out.success(), "curl with the CA variables: {out:#?}");
    for needle in [
        "warning",
        "does not see Airlock's CA",
        "unshare",
        "Java, GnuTLS",
    ] {
        assert!(out.stderr.contains(needle), "no {needle:?} in: {out:#?}");
    }
    assert_injected(&up, "/echo/fallback-curl", &value);

    let wget: Vec<String> = ["wget", "-q", "-O", "-", "--no-proxy", "--no-hsts"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([url("fallback-wget")])
        .collect();
    let out = without_sys_admin(&wget);
    assert!(
        !out.success(),
        "wget (GnuTLS) trusted the gateway with no view: {out:#?}"
    );
    assert!(up.requests_to("/echo/fallback-wget").is_empty());
}

/// The view's mounts never reach the namespace `airlock run` was started
/// in, even where that namespace's mounts are shared (systemd makes `/`
/// shared on most hosts; this machine's may not be, so the test makes a
/// shared one of its own with `unshare`).
#[test]
fn the_view_never_propagates_to_a_shared_parent_namespace() {
    let Some(mode) = mode() else {
        return;
    };
    require_tool("unshare", "util-linux");
    let (_iso, _up, daemon, _) = start(mode);
    // In the shared namespace: airlock run (whose agent sees the view),
    // then the namespace's own mount table once the agent has exited.
    let script = r#""$0" run --agent bot --user nobody -- grep -c "Airlock local CA" /etc/ssl/certs/ca-certificates.crt && echo --- && cat /proc/self/mountinfo"#;
    let out = wrapped(
        &daemon,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "shared",
            "--",
            "sh",
            "-c",
            script,
        ],
        &[],
    );
    assert!(out.success(), "{out:#?}");
    let (inside, parent) = out.stdout.split_once("---").expect("both parts");
    assert_eq!(
        inside.trim(),
        "1",
        "the agent did not see the view: {out:#?}"
    );
    assert!(
        parent.contains("shared:"),
        "the parent is not shared: {parent}"
    );
    let leaked: Vec<&str> = parent
        .lines()
        .filter(|l| l.contains("/etc/ssl/") || l.contains("cacerts"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the view reached the parent: {leaked:#?}"
    );
}
