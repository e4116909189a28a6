//! A tiny git smart-HTTP server over HTTPS on `127.0.0.1:0`: a bare
//! repository (`/repo.git`, one commit on `main`) served by the real
//! `git http-backend` run as CGI, behind a bearer token. Requests without
//! `Authorization: Bearer TOKEN` get 401, so a client only succeeds when
//! the gateway injected the credential.
//!
//! Its certificate is for [`super::upstream::DEFAULT_NAMES`], signed by
//! its own [`TestCa`] (give [`GitServer::ca_pem_path`] to the gateway as
//! `AIRLOCK_UPSTREAM_CA`). Dropping it stops the server and removes the
//! repository.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::upstream::{DEFAULT_NAMES, TestCa};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct GitRequest {
    pub method: String,
    pub path: String,
    pub authorized: bool,
}

struct Shared {
    root: PathBuf,
    token: String,
    seen: Mutex<Vec<GitRequest>>,
}

pub struct GitServer {
    addr: SocketAddr,
    ca: TestCa,
    head: String,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs git with no user or system configuration; panics on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitServer {
    /// Creates the repository and serves it, requiring `token`.
    pub fn start(token: &str) -> GitServer {
        let dir = tempfile::tempdir().expect("git server dir");
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "first"]);
        let root = dir.path().join("srv");
        std::fs::create_dir(&root).unwrap();
        git(
            &root,
            &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
        );
        let head = git(&root.join("repo.git"), &["rev-parse", "main"]);

        let ca = TestCa::new(dir.path());
        let acceptor = TlsAcceptor::from(ca.server_config(DEFAULT_NAMES, &[b"http/1.1"]));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            root,
            token: token.to_owned(),
            seen: Mutex::default(),
        });
        let (stop, stop_rx) = oneshot::channel::<()>();
        let served = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("git server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::spawn(async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let (acceptor, shared) = (acceptor.clone(), served.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let service = hyper::service::service_fn(move |req| {
                                let shared = shared.clone();
                                async move { Ok::<_, Infallible>(handle(shared, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tls), service)
                                .await;
                        });
                    }
                });
                let _ = stop_rx.await;
            });
            rt.shutdown_background();
        });
        GitServer {
            addr,
            ca,
            head,
            shared,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The commit `main` points at.
    pub fn head(&self) -> &str {
        &self.head
    }

    pub fn ca_pem_path(&self) -> &Path {
        self.ca.ca_pem_path()
    }

    pub fn requests(&self) -> Vec<GitRequest> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let expected = format!("Bearer {}", shared.token);
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    shared.seen.lock().unwrap().push(GitRequest {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        authorized,
    });
    if !authorized {
        let mut r = respond(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"git\""),
        );
        return r;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, "unreadable body\n");
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let env = [
        ("GIT_PROJECT_ROOT", shared.root.display().to_string()),
        ("GIT_HTTP_EXPORT_ALL", "1".to_owned()),
        ("GIT_CONFIG_NOSYSTEM", "1".to_owned()),
        ("GIT_CONFIG_GLOBAL", "/dev/null".to_owned()),
        ("REQUEST_METHOD", parts.method.to_string()),
        ("PATH_INFO", parts.uri.path().to_owned()),
        ("QUERY_STRING", parts.uri.query().unwrap_or("").to_owned()),
        ("CONTENT_TYPE", header("content-type")),
        ("CONTENT_LENGTH", body.len().to_string()),
        ("HTTP_CONTENT_ENCODING", header("content-encoding")),
        ("GIT_PROTOCOL", header("git-protocol")),
        ("REMOTE_USER", "agent".to_owned()),
        ("REMOTE_ADDR", "127.0.0.1".to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || cgi(&env, &body)).await;
    match out {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => respond(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// Runs `git http-backend` and turns its CGI answer into a response.
fn cgi(env: &[(&str, String)], body: &[u8]) -> std::io::Result<Response<Full<Bytes>>> {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body)?;
    }
    let out = child.wait_with_output()?;
    let text = &out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            text.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "git http-backend gave no CGI header: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(&text[split.1..])));
    for line in String::from_utf8_lossy(&text[..split.0]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse().ok());
            if let Some(code) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = code;
            }
        } else if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    Ok(response)
}
