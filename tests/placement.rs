//! Issue #15, items 2 and 3, end to end (the real daemon, curl through the
//! explicit proxy, the recording upstream of tests/support): a placeholder
//! resolves only in the position its secret declares, and what the gateway
//! injected never comes back to the agent in a response head.

mod support;

use support::gw::Gw;

/// A query secret's value, with characters that get percent-encoded.
const QUERY_VALUE: &str = "qk-Zt9 /+=x";
const AWS_VALUE: &str = "AKIDPLACEMENT1:wJalrXUtnFEMI/K7MDENG+bPxRfiCYPLACEKEY";

/// The fixture's `up` (the `Authorization` header) plus `qkey` (query
/// parameter `key`) and `aws` (SigV4, under `/echo/s3/`), all granted.
fn gateway() -> Gw {
    let gw = Gw::start();
    gw.add_secret("qkey", &["--query", "key"], QUERY_VALUE);
    gw.add_secret(
        "aws",
        &["--path", "/echo/s3/**", "--aws-sigv4", "us-east-1/s3"],
        AWS_VALUE,
    );
    gw
}

/// Every spelling of `value` a server could hand back: raw, percent-encoded
/// (both hex cases) and form-encoded.
fn spellings(value: &str) -> Vec<String> {
    let encode = |space: &str, upper: bool| {
        value.bytes().fold(String::new(), |mut out, b| {
            match b {
                b' ' => out.push_str(space),
                b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
                b if upper => out.push_str(&format!("%{b:02X}")),
                b => out.push_str(&format!("%{b:02x}")),
            }
            out
        })
    };
    vec![
        value.to_owned(),
        encode("%20", true),
        encode("%20", false),
        encode("+", true),
        encode("+", false),
    ]
}

/// Issue #15, item 2: `X-Echo: airlock:up` reached the upstream holding the
/// real key (so did `?q=airlock:qkey`), and `x-amz-meta-n: airlock:aws` on a
/// SigV4 request stored the whole key pair as S3 metadata. Each is now
/// refused with 403 before anything is sent, audited as exfiltration, with
/// a reason that says where the placeholder may go.
#[test]
fn a_placeholder_outside_its_secrets_position_is_refused() {
    let gw = gateway();
    let s3 = gw.up.url("/echo/s3/bucket/object");
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "another header",
            vec!["-H", "X-Echo: airlock:up", "/echo/x"],
            "may be used only in the authorization header",
        ),
        (
            "another query value",
            vec!["/echo/x?q=airlock:qkey"],
            "may be used only as the value of query parameter key",
        ),
        (
            "another secret's position",
            vec!["-H", "Authorization: Bearer airlock:qkey", "/echo/x"],
            "may be used only as the value of query parameter key",
        ),
        (
            "S3 metadata for a SigV4 secret",
            // Over HTTP/1.1: refused on its head, an HTTP/2 request whose
            // body is still on its way ends in RST_STREAM after the 403,
            // and curl then reports a framing error (92) instead
            // of the answer (seen once in a fresh-clone run). The refusal
            // is the same over both; that race is noted as a known issue.
            vec![
                "--http1.1",
                "-X",
                "PUT",
                "--data-binary",
                "object body",
                "-H",
                "x-amz-meta-n: airlock:aws",
                "S3",
            ],
            "AWS SigV4 key pair, which is never placed in a request",
        ),
    ];
    for (what, args, reason) in &cases {
        let urls: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "S3" => s3.clone(),
                a if a.starts_with('/') => gw.up.url(a),
                a => a.to_owned(),
            })
            .collect();
        let args: Vec<&str> = urls.iter().map(String::as_str).collect();
        let out = gw.curl(&args);
        assert_eq!(Gw::code(&out), 403, "{what}: {out:#?}");
        assert!(out.stdout.contains("exfiltration"), "{what}: {out:#?}");
        assert!(out.stdout.contains(reason), "{what}: {out:#?}");
    }
    assert!(
        gw.up.requests().is_empty(),
        "a refused request reached the upstream: {:#?}",
        gw.up.requests()
    );
    let rows = gw.requests(cases.len());
    assert_eq!(rows.len(), cases.len(), "{rows:#?}");
    for ((what, _, reason), row) in cases.iter().zip(rows.iter()) {
        assert_eq!(row["decision"], "exfiltration", "{what}: {row:#}");
        assert_eq!(row["status"], 403, "{what}: {row:#}");
        assert_eq!(row["secrets"], serde_json::json!([]), "{what}: {row:#}");
        let detail = row["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{what}: {row:#}");
    }
    let pair = AWS_VALUE.split_once(':').unwrap();
    for leaked in [&gw.value, QUERY_VALUE, pair.0, pair.1] {
        assert!(!gw.up.saw(leaked), "the upstream saw a secret");
    }
}

/// The declared positions keep working: the secret's own header, its own
/// query parameter (however the agent spells it), and a SigV4 request with
/// no placeholder at all.
#[test]
fn a_placeholder_in_its_secrets_position_is_injected() {
    let gw = gateway();
    let out = gw.curl(&[
        "-H",
        "Authorization: Bearer airlock:up",
        &gw.up.url("/echo/x?a=1&key=airlock:qkey"),
    ]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
    assert_eq!(seen.path, "/echo/x?a=1&key=qk-Zt9%20%2F%2B%3Dx");

    let out = gw.curl(&[&gw.up.url("/echo/x?k%65y=%61irlock%3Aqkey")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(
        gw.up.last_request().unwrap().path,
        "/echo/x?key=qk-Zt9%20%2F%2B%3Dx"
    );

    let out = gw.curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "object body",
        "-H",
        "x-amz-meta-n: plain metadata",
        &gw.up.url("/echo/s3/bucket/object"),
    ]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    let auth = seen.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPLACEMENT1/"),
        "{auth}"
    );
    assert_eq!(seen.header("x-amz-meta-n"), Some("plain metadata"));
    let rows = gw.requests(3);
    assert!(rows.iter().all(|r| r["status"] == 200), "{rows:#?}");
}

/// Issue #15, item 3: a query-injected key came back in the `Location` of
/// a query-preserving redirect, and an upstream reflecting request headers
/// handed the header key back. Now the agent's raw response bytes hold
/// neither key in any spelling; `Location` carries the placeholder, which
/// a redirect-following client re-sends and the gateway injects again.
#[test]
fn injected_values_never_come_back_in_response_headers() {
    let gw = gateway();
    let url = gw.up.url("/reflect?a=1&key=airlock:qkey");
    for version in ["--http1.1", "--http2"] {
        let out = gw.curl(&[
            version,
            "-i",
            "-H",
            "Authorization: Bearer airlock:up",
            &url,
        ]);
        assert_eq!(Gw::code(&out), 302, "{out:#?}");
        let seen = gw.up.last_request().unwrap();
        // The upstream did get both keys, so it had them to reflect.
        assert!(seen.path.contains("key=qk-Zt9%20%2F%2B%3Dx"), "{seen:#?}");
        assert!(seen.header("authorization").unwrap().ends_with(&gw.value));
        let raw = out.stdout.to_ascii_lowercase();
        for spelling in spellings(QUERY_VALUE).iter().chain([&gw.value]) {
            assert!(
                !out.stdout.contains(spelling.as_str())
                    && !raw.contains(&spelling.to_ascii_lowercase()),
                "{version}: the agent got {spelling:?} back: {out:#?}"
            );
        }
        assert!(
            raw.contains("location: /echo/landed?a=1&key=airlock:qkey\r\n"),
            "{version}: {out:#?}"
        );
        assert!(
            raw.contains("x-reflect-authorization: bearer airlock:up\r\n"),
            "{version}: {out:#?}"
        );
        for name in ["x-query-decoded", "x-query-lower", "x-query-form"] {
            assert!(
                raw.contains(&format!("{name}: airlock:qkey\r\n")),
                "{version} {name}: {out:#?}"
            );
        }
    }

    // Following the scrubbed Location re-sends the placeholder in its own
    // position: injected again, at the same host.
    gw.up.clear_requests();
    let out = gw.curl(&["-L", "--max-redirs", "1", &url]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let landed = gw.up.requests_to("/echo/landed");
    assert_eq!(landed.len(), 1, "{:#?}", gw.up.requests());
    assert_eq!(landed[0].path, "/echo/landed?a=1&key=qk-Zt9%20%2F%2B%3Dx");
}
