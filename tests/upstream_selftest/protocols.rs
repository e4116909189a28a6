//! Plain HTTP and h2c, ALPN restrictions, the IPv6 listener and IP SANs.

use std::sync::Arc;

use crate::curl::*;
use crate::upstream::{TestCa, Upstream, UpstreamOpts};

#[test]
fn plain_http_and_h2c() {
    let up = Upstream::start(UpstreamOpts::plain_http());
    assert_eq!(up.scheme(), "http");
    let c = curl(&up, &[&up.ip_url("/echo?plain=1")]);
    ok(&c);
    let v = c.json();
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["tls"], false);
    assert!(v["alpn"].is_null());
    let c = curl(&up, &["--http2-prior-knowledge", &up.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/2.0");
    let r = up.last_request().unwrap();
    assert!(!r.tls);
    assert_eq!(
        r.authority.as_deref(),
        Some(&*format!("api.test.local:{}", up.port()))
    );
}

#[test]
fn protocol_restrictions() {
    let ca = Arc::new(TestCa::new_temp());

    let h1 = Upstream::start(UpstreamOpts::default().http1_only().with_ca(ca.clone()));
    let c = curl(&h1, &["--http2", &h1.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/1.1");
    assert_eq!(h1.last_request().unwrap().alpn.as_deref(), Some("http/1.1"));

    let h2 = Upstream::start(UpstreamOpts::default().http2_only().with_ca(ca.clone()));
    assert_eq!(h1.ca_pem_path(), h2.ca_pem_path());
    let c = curl(&h2, &["--http2", &h2.url("/echo")]);
    ok(&c);
    assert_eq!(c.json()["version"], "HTTP/2.0");
    let c = curl(&h2, &["--http1.1", &h2.url("/echo")]);
    assert_ne!(
        c.exit, 0,
        "h2-only upstream accepted an http/1.1-only client"
    );
    assert_eq!(h2.requests().len(), 1);
}

#[test]
fn ipv6_listener_and_ip_sans() {
    let up = Upstream::start(UpstreamOpts::default().with_ipv6());
    let v6 = up.addr_v6().expect("v6 addr");
    assert_ne!(v6.port(), 0);
    let c = curl(&up, &["-g", &format!("https://[::1]:{}/echo", v6.port())]);
    ok(&c);
    assert_eq!(c.json()["path"], "/echo");
    assert!(up.last_request().unwrap().peer.is_ipv6());
    // IP SAN 127.0.0.1 and DNS SAN localhost.
    ok(&curl(&up, &[&up.ip_url("/echo")]));
    ok(&curl(
        &up,
        &[&format!("https://localhost:{}/echo", up.port())],
    ));
    // A name not on the certificate is rejected.
    let c = curl(
        &up,
        &[
            "--resolve",
            &format!("other.test.local:{}:127.0.0.1", up.port()),
            &format!("https://other.test.local:{}/echo", up.port()),
        ],
    );
    assert_eq!(c.exit, 60, "{}", c.stderr);
}
