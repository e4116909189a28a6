//! The TLS name and the Host header must be the CONNECT host.

use crate::harness::*;
use crate::support::gw::Gw;

#[test]
fn a_tls_name_other_than_the_connect_host_is_refused() {
    let gw = Gw::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(tunnel_tls(&gw, "localhost", vec![]));
    assert!(
        result.is_err(),
        "TLS for another name than the CONNECT host must fail"
    );
    let rows = gw.requests(1);
    assert!(
        rows.iter().any(|r| r["decision"] == "exfiltration"),
        "{rows:#?}"
    );
}

/// Issue #8, exfiltration matrix: TLS opened for the secret's host, and a
/// request inside it addressed to another host (`Host` or `:authority`
/// other than the SNI and `CONNECT` host), with or without a placeholder,
/// over HTTP/1.1 and HTTP/2: 403, audited as `exfiltration`, nothing
/// injected or sent.
#[test]
fn a_host_header_other_than_the_tls_name_is_refused() {
    let gw = Gw::start();
    let elsewhere = format!("localhost:{}", gw.up.port());
    for version in ["--http1.1", "--http2"] {
        for placeholder in [None, Some("X-Api-Key: airlock:up")] {
            let host = format!("Host: {elsewhere}");
            let mut args = vec![version, "-H", host.as_str()];
            if let Some(p) = placeholder {
                args.extend(["-H", p]);
            }
            let url = gw.up.url("/echo/host-mismatch");
            args.push(&url);
            let out = gw.curl(&args);
            assert_eq!(Gw::code(&out), 403, "{version} {placeholder:?}: {out:#?}");
            assert!(out.stdout.contains("exfiltration"), "{out:#?}");
        }
    }
    assert!(gw.up.requests().is_empty(), "{:#?}", gw.up.requests());
    let rows = gw.requests(4);
    assert!(
        rows.iter().all(|r| r["decision"] == "exfiltration"
            && r["status"] == 403
            && r["agent"] == "bot"
            && r["secrets"] == serde_json::json!([])),
        "{rows:#?}"
    );
}
