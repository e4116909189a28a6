//! The upstream: Debian's nginx with a generated configuration in the run's
//! temporary directory, TLS with a certificate from a throwaway CA made with
//! the `openssl` CLI, on 127.0.0.1 only.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procs;

/// The name the upstream serves; the gateway resolves it with
/// `AIRLOCK_RESOLVE`, the direct runs reach it by IP (the certificate holds
/// both).
pub const HOST: &str = "bench.local";
/// The key the gateway injects; nginx answers 401 to requests without it.
pub const SECRET: &str = "sk-bench";
/// The header value nginx requires on the benchmark path.
pub const EXPECTED_AUTH: &str = "Bearer sk-bench";
/// What a client of Airlock sees of nginx's echo of it: the secret
/// (`bench`, [`super::gateway`]) by its placeholder.
pub const SCRUBBED_AUTH: &str = "Bearer airlock:bench";
/// The benchmark path: 200 with a small JSON body if the key is there.
pub const BENCH_PATH: &str = "/v1/bench";
/// A debug path that echoes the Authorization header it received.
pub const ECHO_PATH: &str = "/echo-auth";
/// The name under which the OAuth2 secret (`bench-oauth2`) applies: a
/// host of its own, so a request there is injected with that secret alone.
pub const OAUTH2_HOST: &str = "oauth2.bench.local";
/// nginx's token endpoint (by IP: the certificate holds it), answering
/// every token request with [`OAUTH2_TOKEN`] for a day.
pub const OAUTH2_TOKEN_PATH: &str = "/oauth2/token";
/// The access token the gateway obtains and injects.
pub const OAUTH2_TOKEN: &str = "at-bench-oauth2";
/// The OAuth2 secret's path: 200 only with `Bearer` [`OAUTH2_TOKEN`].
pub const OAUTH2_PATH: &str = "/v1/oauth2-bench";
/// An MCP endpoint that an MCP rule judges (`--mcp-tool`, added by
/// [`super::gateway`]): every request's body is read and parsed as
/// JSON-RPC before it is sent on. 200 with the key, whatever the method.
pub const MCP_JUDGED_PATH: &str = "/mcp/judged";
/// The same endpoint that no body rule concerns: the body is streamed
/// through unread.
pub const MCP_PLAIN_PATH: &str = "/mcp/plain";
/// What the MCP runs POST: one JSON-RPC `tools/call` of 300 bytes, a tool
/// the rule lets pass (it blocks `delete_*`).
pub const MCP_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/home/agent/project/src/main.rs","offset":0,"limit":4000,"encoding":"utf-8","follow_symlinks":false,"reason":"read the entry point first to see how the command line is parsed before changing it again"}}}"#;

pub struct Upstream {
    pub port: u16,
    pub ca_pem: PathBuf,
    /// The server's certificate and key (the SSE server uses them too).
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pid: u32,
}

/// Names the gateway mints a first leaf for (`first-mint`): they resolve
/// to 127.0.0.1 and the upstream's certificate covers them.
pub fn mint_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("mint-{i}.{HOST}")).collect()
}

/// Makes a CA and a server certificate for `HOST`, its subdomains and
/// 127.0.0.1 in `dir`. Returns the CA's PEM path.
fn make_certs(dir: &Path) -> Result<PathBuf> {
    let ca_key = dir.join("upstream-ca.key");
    let ca_pem = dir.join("upstream-ca.pem");
    let key = dir.join("upstream.key");
    let csr = dir.join("upstream.csr");
    let pem = dir.join("upstream.pem");
    let ext = dir.join("upstream.ext");
    fs::write(
        &ext,
        format!(
            "subjectAltName=DNS:{HOST},DNS:*.{HOST},IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )?;
    let quiet = |c: &mut Command| -> Result<()> {
        let out = c
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start `{}`", procs::shown(c)))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                procs::shown(c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    quiet(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Airlock bench upstream CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_pem),
    )?;
    quiet(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={HOST}"),
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    quiet(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-sha256"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_pem)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&pem),
    )?;
    Ok(ca_pem)
}

/// A free loopback port (bound then released; racy in theory, fine here).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"# Generated by `cargo xtask bench`.
worker_processes 1;
# The default limit is the inherited one; 256 connections and the idle
# holds need more than 1024.
worker_rlimit_nofile 20000;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {{
        # nginx 1.22 (Debian 12) spells HTTP/2 on the listen line.
        listen 127.0.0.1:{port} ssl http2;
        server_name {HOST};
        ssl_certificate {d}/upstream.pem;
        ssl_certificate_key {d}/upstream.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        location = {BENCH_PATH} {{
            default_type application/json;
            if ($http_authorization != "{EXPECTED_AUTH}") {{
                return 401 '{{"error":"missing key"}}';
            }}
            return 200 '{{"ok":true}}';
        }}
        location = {ECHO_PATH} {{
            default_type text/plain;
            return 200 "$http_authorization";
        }}
        location = {OAUTH2_TOKEN_PATH} {{
            default_type application/json;
            return 200 '{{"access_token":"{OAUTH2_TOKEN}","token_type":"Bearer","expires_in":86400}}';
        }}
        location = {OAUTH2_PATH} {{
            default_type application/json;
            if ($http_authorization != "Bearer {OAUTH2_TOKEN}") {{
                return 401 '{{"error":"missing token"}}';
            }}
            return 200 '{{"ok":true}}';
        }}
        location ^~ /mcp/ {{
            default_type application/json;
            if ($http_authorization != "{EXPECTED_AUTH}") {{
                return 401 '{{"error":"missing key"}}';
            }}
            return 200 '{{"jsonrpc":"2.0","id":42,"result":{{"content":[]}}}}';
        }}
        location / {{
            return 404;
        }}
    }}
}}
"#
    )
}

/// Starts nginx (foreground master, one worker) in `dir`; waits until it
/// accepts connections.
pub fn start(dir: &Path) -> Result<Upstream> {
    let ca_pem = make_certs(dir)?;
    let port = free_port()?;
    fs::create_dir_all(dir.join("nginx-tmp"))?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config(dir, port))?;
    let mut command = Command::new(nginx_binary());
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("nginx-error.log"));
    let pid = procs::start(
        "nginx",
        &mut command,
        &dir.join("nginx-stderr.log"),
        libc::SIGTERM,
        procs::ORDER_UPSTREAM,
    )?;
    wait_listening(port, Duration::from_secs(10)).with_context(|| {
        format!(
            "nginx did not listen on 127.0.0.1:{port}; see {}",
            dir.join("nginx-error.log").display()
        )
    })?;
    Ok(Upstream {
        port,
        ca_pem,
        cert: dir.join("upstream.pem"),
        key: dir.join("upstream.key"),
        pid,
    })
}

pub fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").is_file() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

pub fn wait_listening(port: u16, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}
