//! Shared harness for the end-to-end tests: every test binary under `tests/`
//! starts with `mod support;` and drives the real `airlock` binary.
//!
//! - [`process`]: run any program (the CLI, curl, python, node, psql) with a
//!   time limit and collect its exit code and output; poll with a deadline.
//! - [`daemon`]: [`Daemon`], a running `airlock serve` on a fresh data
//!   directory, cleaned up (daemon *and* embedded PostgreSQL) however the
//!   test ends.
//! - [`db`]: psql and pg_dump against a daemon's database.
//! - `agent`: an agent of a daemon, driving curl through its proxy.
//! - [`cgroups`]: removing a test's cgroups and what runs in them.
//! - `docker`: a Docker daemon and a client image for container tests.
//! - `upstream`: test upstream servers.
//! - `browser`: headless Chromium through chromedriver (dashboard tests).
//! - `git_http`: a git smart-HTTP server behind a bearer token.
//! - `prometheus`: a real Prometheus server scraping `/metrics`.
//! - `mcp`: a real MCP server (Python SDK) and the SDK's client.
//! - `inproc`: a gateway in the test's process, without the binary or a
//!   database (tests/pipeline.rs).
//! - `py_upstream`: a Python server (MCP, GraphQL) as an agent's upstream
//!   behind a daemon, for the body-rule tests.
//! - `script_server`: the OAuth2 provider and JWT issuer scripts, over TLS
//!   with a test CA, and the leak scan of what a daemon wrote for them.
//! - `proxied`: a daemon and upstream behind the explicit proxy, with raw
//!   async clients (tunnel, TLS), for the abuse and soak tests.
//!
//! Not every test binary uses every helper, hence the blanket `dead_code`.

#![allow(dead_code)]

#[allow(dead_code)]
pub mod agent;
#[allow(dead_code)]
pub mod browser;
pub mod cgroups;
pub mod daemon;
pub mod db;
#[allow(dead_code)]
pub mod docker;
pub mod evidence;
#[allow(dead_code)]
pub mod git_http;
#[allow(dead_code)]
pub mod gw;
#[allow(dead_code)]
pub mod inproc;
#[allow(dead_code)]
pub mod mcp;
#[allow(dead_code)]
pub mod metrics;
pub mod pg;
pub mod process;
#[allow(dead_code)]
pub mod prometheus;
#[allow(dead_code)]
pub mod proxied;
#[allow(dead_code)]
pub mod py_upstream;
#[allow(dead_code)]
pub mod script_server;
#[allow(dead_code)]
pub mod upstream;

#[allow(unused_imports)]
pub use daemon::{Daemon, airlock_bin, hermetic_command, serve_expect_exit, temp_data_dir};
#[allow(unused_imports)]
pub use db::Db;
#[allow(unused_imports)]
pub use process::{Output, run, wait_until};

/// A random lowercase hex string of `bytes` random bytes, for distinctive
/// names and values (`sk-leakcheck-<random>`).
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A fresh master key as `SECRET_ENCRYPTION_KEY` takes it: base64 of 32
/// random bytes.
pub fn random_master_key() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A two-thread Tokio runtime for tests that drive raw async clients
/// (h2, hyper) from plain `#[test]` functions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
