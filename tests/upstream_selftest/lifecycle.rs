//! CA files, and shutdown on drop.

use std::sync::Arc;
use std::time::Duration;

use crate::curl::*;
use crate::upstream::{TestCa, Upstream, UpstreamOpts};

#[test]
fn ca_files_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestCa::new(dir.path());
    let b = TestCa::new(dir.path());
    assert_ne!(a.ca_pem_path(), b.ca_pem_path());
    assert!(a.ca_pem_path().starts_with(dir.path()));
    let pem = std::fs::read_to_string(a.ca_pem_path()).unwrap();
    assert_eq!(pem, a.ca_pem());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let leaf = a.mint(&["x.test.local", "10.1.2.3"]);
    assert!(leaf.cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(leaf.key_pem.contains("PRIVATE KEY"));

    let up = Upstream::start(UpstreamOpts::default().with_ca(Arc::new(a)));
    ok(&curl(&up, &[&up.url("/echo")]));
    assert_eq!(up.connection_count(), 1);
    // Dropping stops the server's runtime and returns. (Whether the port
    // refuses afterwards cannot be checked here: tests run in parallel and
    // another test's upstream may be given the freed port at once.)
    let started = std::time::Instant::now();
    drop(up);
    assert!(started.elapsed() < Duration::from_secs(10));
}
