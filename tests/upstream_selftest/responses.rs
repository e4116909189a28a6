//! `/status/CODE` and `/redirect`.

use crate::curl::*;
use crate::upstream::{Upstream, UpstreamOpts};

#[test]
fn status_and_redirect() {
    let up = Upstream::start(UpstreamOpts::default());
    for code in [200u16, 201, 204, 404, 418, 429, 500, 503] {
        let c = curl(&up, &["--http2", &up.url(&format!("/status/{code}"))]);
        ok(&c);
        assert_eq!(c.status, code);
        if code == 204 {
            assert!(c.body.is_empty());
        } else {
            assert_eq!(c.json()["status"], code);
        }
    }
    assert_eq!(curl(&up, &[&up.url("/status/99")]).status, 400);

    let c = curl(
        &up,
        &[
            "--http1.1",
            &up.url("/redirect?to=https%3A%2F%2Fexample.invalid%2Fnext%3Fa%3D1"),
        ],
    );
    ok(&c);
    assert_eq!(c.status, 302);
    assert_eq!(
        c.header("location").as_deref(),
        Some("https://example.invalid/next?a=1")
    );
    let c = curl(&up, &[&up.url("/redirect?to=/echo&code=307")]);
    assert_eq!(c.status, 307);
    assert_eq!(c.header("location").as_deref(), Some("/echo"));
}
