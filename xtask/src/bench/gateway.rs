//! The gateway under test: `target/release/airlock serve` on a fresh data
//! directory, with eBPF interception of the upstream's ports for the
//! benchmark's own agents' cgroup ([`super::intercept`]), one secret per
//! upstream port injected as `Authorization`, one agent `bot` that uses
//! both the explicit proxy (its token) and transparent interception (its
//! cgroup).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::intercept::Isolation;
use super::procs;
use super::route::{Reach, Route, Watched};
use super::upstream::{self, HOST};

pub struct Gateway {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub pid: u32,
    pub postgres_pid: Option<u32>,
    pub proxy_addr: String,
    pub ca_cert: PathBuf,
    pub token: String,
    pub isolation: Isolation,
}

/// The agent every Airlock scenario runs as.
pub const AGENT: &str = "bot";

impl Gateway {
    /// Through the explicit proxy, with the agent's token.
    pub fn explicit_route(&self) -> Route {
        Route {
            name: "airlock-explicit",
            reach: Reach::Proxy {
                addr: self.proxy_addr.clone(),
                proxy_authorization: Some(self.proxy_authorization()),
            },
            ..self.route_base()
        }
    }

    /// From inside the agent's cgroup, no proxy setting: eBPF redirects.
    pub fn transparent_route(&self) -> Route {
        let wrapper = vec![
            self.binary.clone().into_os_string(),
            "--data-dir".into(),
            self.data_dir.clone().into_os_string(),
            "run".into(),
            "--agent".into(),
            AGENT.into(),
            "--".into(),
        ];
        Route {
            name: "airlock-transparent",
            reach: Reach::Agent { wrapper },
            ..self.route_base()
        }
    }

    /// Like [`Gateway::transparent_route`], but the client only joins the
    /// agent's cgroup (`cgroup.procs`), without `airlock run`'s CA bundle
    /// variables: for timing handshakes, where curl reading the bundle (the
    /// OS roots plus Airlock's CA) would count as the gateway's time.
    pub fn cgroup_only_route(&self) -> Route {
        let procs = self
            .isolation
            .agents_dir()
            .join(format!("agent-{AGENT}"))
            .join("cgroup.procs");
        let wrapper = vec![
            "sh".into(),
            "-c".into(),
            format!("echo $$ > '{}' && exec \"$@\"", procs.display()).into(),
            "sh".into(),
        ];
        Route {
            name: "airlock-transparent",
            reach: Reach::Agent { wrapper },
            ..self.route_base()
        }
    }

    fn route_base(&self) -> Route {
        Route {
            name: "",
            reach: Reach::Agent { wrapper: vec![] },
            cacert: self.ca_cert.clone(),
            host: HOST,
            proxy: Some(Watched {
                pid: self.pid,
                tree: false,
            }),
            store_pid: self.postgres_pid,
        }
    }

    /// `airlock status --json`.
    pub fn status(&self) -> Result<Value> {
        status(&self.binary, &self.data_dir)
    }

    /// The `Proxy-Authorization` header value for the bench agent.
    pub fn proxy_authorization(&self) -> String {
        format!("Basic {}", base64(format!("bot:{}", self.token).as_bytes()))
    }
}

fn cli(binary: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(binary);
    c.env("AIRLOCK_DATA_DIR", data_dir);
    c
}

fn status(binary: &Path, data_dir: &Path) -> Result<Value> {
    let mut c = cli(binary, data_dir);
    c.args(["status", "--json"]);
    let out = c.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            procs::shown(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("`airlock status --json` printed no JSON")
}

fn run_quiet(c: &mut Command, stdin: Option<&str>) -> Result<String> {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", procs::shown(c)))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            procs::shown(c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the daemon also intercepts its agents transparently (the bench)
/// or serves the explicit proxy only (the soak; the profile, whose daemon
/// runs under valgrind, which cannot load eBPF programs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interception {
    Ebpf,
    Off,
}

/// The OAuth2 secret every benchmark gateway has beside its static ones.
pub const OAUTH2_SECRET: &str = "bench-oauth2";

/// Starts the daemon with a data directory under `dir`, intercepting
/// `upstream_ports` for its agents; configures a secret for each port
/// (`bench`, `bench-2`, ...) and the agent with all of them.
pub fn start(
    binary: &Path,
    dir: &Path,
    upstream_ca: &Path,
    upstream_ports: &[u16],
    interception: Interception,
) -> Result<Gateway> {
    let data_dir = dir.join("airlock-data");
    fs::create_dir_all(&data_dir)?;
    let isolation = Isolation::new(binary, &data_dir)?;
    let proxy_port = upstream::free_port()?;
    let log_path = dir.join("airlock.log");
    let resolve: Vec<String> = [HOST.to_owned(), upstream::OAUTH2_HOST.to_owned()]
        .into_iter()
        .chain(upstream::mint_names(super::mint::NAMES))
        .map(|h| format!("{h}=127.0.0.1"))
        .collect();
    let mut command = cli(binary, &data_dir);
    command
        .arg("serve")
        .env("AIRLOCK_PROXY_LISTEN", format!("127.0.0.1:{proxy_port}"))
        .env("AIRLOCK_DASHBOARD_LISTEN", "127.0.0.1:0")
        .env("AIRLOCK_UPSTREAM_CA", upstream_ca)
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8")
        .env("AIRLOCK_RESOLVE", resolve.join(","))
        .envs(match interception {
            Interception::Ebpf => isolation.env(upstream::free_port()?, upstream_ports),
            Interception::Off => vec![("AIRLOCK_TRANSPARENT", "off".to_owned())],
        });
    let pid = procs::start(
        "airlock",
        &mut command,
        &log_path,
        libc::SIGTERM,
        procs::ORDER_GATEWAY,
    )?;

    // Wait for the admin API and the proxy listener.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let postgres = postmaster_pid(&data_dir);
        if let Some(pg) = postgres {
            procs::track("postgres", pg, libc::SIGINT, procs::ORDER_POSTGRES);
        }
        if let Ok(s) = status(binary, &data_dir)
            && s["proxy_addr"].as_str().is_some_and(|a| !a.is_empty())
        {
            break s;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            bail!(
                "airlock did not come up; its log: {}\n{}",
                log_path.display(),
                tail(&log_path, 20)
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    let postgres_pid = status["database"]["postgres_pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .or_else(|| postmaster_pid(&data_dir));
    if let Some(pg) = postgres_pid {
        procs::track("postgres", pg, libc::SIGINT, procs::ORDER_POSTGRES);
    }
    let proxy_addr = status["proxy_addr"].as_str().unwrap_or_default().to_owned();
    let ca_cert = PathBuf::from(status["ca_cert"].as_str().unwrap_or_default());
    if !ca_cert.is_file() {
        bail!("airlock status names no CA certificate file: {status}");
    }
    upstream::wait_listening(
        proxy_addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(proxy_port),
        Duration::from_secs(10),
    )?;

    let mut agent_add = cli(binary, &data_dir);
    agent_add.args(["agent", "add", AGENT]);
    for (i, port) in upstream_ports.iter().enumerate() {
        let name = if i == 0 {
            "bench".to_owned()
        } else {
            format!("bench-{}", i + 1)
        };
        run_quiet(
            cli(binary, &data_dir).args([
                "secret",
                "add",
                &name,
                "--host",
                &format!("{HOST}:{port}"),
                "--header",
                "Authorization",
            ]),
            Some(upstream::SECRET),
        )?;
        agent_add.args(["--grant", &name]);
    }
    // The OAuth2 secret of the first port (`secret_cost`): client
    // credentials at nginx's token endpoint, whose one-day token stays
    // cached for the whole run.
    if let Some(port) = upstream_ports.first() {
        run_quiet(
            cli(binary, &data_dir).args([
                "secret",
                "add",
                OAUTH2_SECRET,
                "--host",
                &format!("{}:{port}", upstream::OAUTH2_HOST),
                "--oauth2-token-url",
                &format!("https://127.0.0.1:{port}{}", upstream::OAUTH2_TOKEN_PATH),
                "--client-id",
                "bench",
                "--client-credentials",
            ]),
            Some("cs-bench-oauth2"),
        )?;
        agent_add.args(["--grant", OAUTH2_SECRET]);
    }
    // The MCP rule of `secret_cost`: judges the tool calls POSTed to the
    // first port's MCP_JUDGED_PATH (blocking a tool they never name), and
    // no other request.
    if let Some(port) = upstream_ports.first() {
        run_quiet(
            cli(binary, &data_dir).args([
                "rule",
                "add",
                "--host",
                &format!("{HOST}:{port}"),
                "--path",
                upstream::MCP_JUDGED_PATH,
                "--mcp-tool",
                "delete_*",
                "--block",
            ]),
            None,
        )?;
    }
    let token = run_quiet(&mut agent_add, None)?.trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("`airlock agent add` printed no single token: {token:?}");
    }

    let gateway = Gateway {
        binary: binary.to_owned(),
        data_dir,
        pid,
        postgres_pid,
        proxy_addr,
        ca_cert,
        token,
        isolation,
    };
    Ok(gateway)
}

/// The embedded PostgreSQL's PID: the first line of `postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(data_dir.join("postgres/data/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization`.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
