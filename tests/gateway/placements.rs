//! Issue #18, item 4, end to end: where the key goes. A path template
//! (Telegram's `/bot{value}/**`), HTTP Basic encoded by the gateway, and
//! placeholders in JSON and form bodies, with real clients (curl, Python
//! requests) through the real daemon to the recording upstream. Each
//! resolves only where its secret applies: sent to another host, or put
//! where its secret does not go, it is a 403 audited as exfiltration.

use crate::harness::{python, websocket};
use crate::support::gw::Gw;

/// A Telegram-style bot token: `:` stays as it is in a path segment.
const TG_VALUE: &str = "123456:AAE-tgKEY_x";
/// A body secret's value with characters JSON and forms must escape.
const BODY_VALUE: &str = r#"bk-9"z\ /+&=k"#;
const BODY_JSON: &str = r#"bk-9\"z\\ /+&=k"#;
const BODY_FORM: &str = "bk-9%22z%5C+%2F%2B%26%3Dk";
const BASIC_VALUE: &str = "bs-Basic-9Zk";

fn gateway() -> Gw {
    // The forms the gateway writes the body value in join the suite's
    // leak scan beside the raw value (`secret add` records that one).
    for form in [BODY_JSON, BODY_FORM] {
        crate::support::evidence::note_secret(form);
    }
    let gw = Gw::start();
    gw.add_secret("tg", &["--path-template", "/echo/bot{value}/**"], TG_VALUE);
    gw.add_secret("jkey", &["--body"], BODY_VALUE);
    gw
}

/// The status of a refused request, its audit row, and that nothing of
/// the key reached the upstream.
#[track_caller]
fn assert_refused(gw: &Gw, out: &crate::support::Output, reason: &str) {
    assert_eq!(Gw::code(out), 403, "{out:#?}");
    assert!(out.stdout.contains("exfiltration"), "{out:#?}");
    assert!(out.stdout.contains(reason), "{out:#?}");
    for value in [TG_VALUE, BODY_VALUE, BODY_JSON, BODY_FORM] {
        assert!(
            !gw.up.saw(value),
            "the upstream saw a key: {:#?}",
            gw.up.requests()
        );
    }
}

/// The audit rows of refused requests say exfiltration, with the reason.
#[track_caller]
fn assert_audited(gw: &Gw, n: usize, reasons: &[&str]) {
    let rows = gw.requests(n);
    for reason in reasons {
        assert!(
            rows.iter().any(|r| r["decision"] == "exfiltration"
                && r["status"] == 403
                && r["detail"].as_str().unwrap_or_default().contains(reason)),
            "no exfiltration row for {reason:?}: {rows:#?}"
        );
    }
}

#[test]
fn a_path_template_puts_the_key_where_the_agent_wrote_it() {
    let gw = gateway();
    for spelled in ["airlock:tg", "airlock%3Atg", "%61irlock%3atg"] {
        let out = gw.curl(&[&gw
            .up
            .url(&format!("/echo/bot{spelled}/sendMessage?chat_id=1"))]);
        assert_eq!(Gw::code(&out), 200, "{spelled}: {out:#?}");
        let seen = gw.up.last_request().unwrap();
        assert_eq!(
            seen.path,
            format!("/echo/bot{TG_VALUE}/sendMessage?chat_id=1")
        );
    }
    let printed = python(
        &gw,
        &gw.up.url("/echo/botairlock:tg/getMe"),
        "r = requests.post(url, json={'a': 1}, proxies=proxies, verify=ca)\nprint(r.status_code)",
    );
    assert_eq!(printed.trim(), "200");
    assert_eq!(
        gw.up.last_request().unwrap().path,
        format!("/echo/bot{TG_VALUE}/getMe")
    );

    gw.up.clear_requests();
    let template = "only in the URL path, where its template /echo/bot{value}/** puts it";
    // Not where the template puts it, in a header, or to another host.
    let out = gw.curl(&[&gw.up.url("/echo/x/botairlock:tg/sendMessage")]);
    assert_refused(&gw, &out, template);
    let out = gw.curl(&["-H", "X-Echo: airlock:tg", &gw.up.url("/echo/x")]);
    assert_refused(&gw, &out, template);
    let other = format!(
        "https://localhost:{}/echo/botairlock:tg/sendMessage",
        gw.up.port()
    );
    let out = gw.curl(&[&other]);
    assert_refused(&gw, &out, "it belongs to api.test.local");
    assert!(gw.up.requests().is_empty(), "{:#?}", gw.up.requests());
    // Four requests went through before the three refused ones.
    assert_audited(&gw, 7, &[template, "it belongs to api.test.local"]);
}

#[test]
fn a_path_template_without_value_is_refused_at_secret_add() {
    let gw = Gw::start();
    let host = gw.host();
    for bad in ["/bot/**", "/*/{value}", "bot{value}"] {
        let out = gw.daemon.cli_stdin(
            &[
                "secret",
                "add",
                "tg2",
                "--host",
                &host,
                "--path-template",
                bad,
            ],
            TG_VALUE,
        );
        let err = out.fails_with(&["path template", "{value}"]);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.all().contains(TG_VALUE), "{out:#?}");
    }
    let list = gw.daemon.cli_ok(&["secret", "list"]);
    assert!(!list.contains("tg2"), "{list}");
}

#[test]
fn http_basic_is_encoded_by_the_gateway() {
    let gw = Gw::start();
    // `up` sets Authorization for every path of the host: out of the way.
    gw.daemon.cli_ok(&["secret", "rm", "up"]);
    gw.add_secret("basic", &["--basic", "api:{value}"], BASIC_VALUE);
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{BASIC_VALUE}"))
    );
    crate::support::evidence::note_secret(want.trim_start_matches("Basic "));
    let out = gw.curl(&[
        "-H",
        "Authorization: Basic airlock:basic",
        &gw.up.url("/echo/b"),
    ]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(
        gw.up.last_request().unwrap().header("authorization"),
        Some(want.as_str())
    );
    // requests' own Basic auth of a placeholder: overwritten the same.
    let printed = python(
        &gw,
        &gw.up.url("/echo/py"),
        "r = requests.get(url, auth=('api', 'airlock:basic'), proxies=proxies, verify=ca)\nprint(r.status_code)",
    );
    assert_eq!(printed.trim(), "200");
    assert_eq!(
        gw.up.last_request().unwrap().header("authorization"),
        Some(want.as_str())
    );

    gw.up.clear_requests();
    let out = gw.curl(&["-H", "X-Echo: airlock:basic", &gw.up.url("/echo/b")]);
    assert_refused(&gw, &out, "HTTP Basic secret");
    let other = format!("https://localhost:{}/echo/b", gw.up.port());
    let out = gw.curl(&["-H", "X-Echo: airlock:basic", &other]);
    assert_refused(&gw, &out, "it belongs to api.test.local");
    assert!(gw.up.requests().is_empty(), "{:#?}", gw.up.requests());
}

#[test]
fn json_and_form_bodies_get_the_key_escaped() {
    let gw = gateway();
    let url = gw.up.url("/echo/body");
    let json_in = r#"{"token":"airlock:jkey","n":1,"s":"airlock\u003ajkey!"}"#;
    let json_out = format!(r#"{{"token":"{BODY_JSON}","n":1,"s":"{BODY_JSON}!"}}"#);
    for version in ["--http1.1", "--http2"] {
        let out = gw.curl(&[version, "--json", json_in, &url]);
        assert_eq!(Gw::code(&out), 200, "{version}: {out:#?}");
        let seen = gw.up.last_request().unwrap();
        assert!(seen.body_complete, "{seen:#?}");
        assert_eq!(
            String::from_utf8_lossy(&seen.body_head),
            json_out,
            "{version}"
        );
        // The length changed: no stale Content-Length went up.
        assert_eq!(seen.header("content-length"), None, "{seen:#?}");
        assert_eq!(seen.body_len, json_out.len() as u64);
    }
    let out = gw.curl(&["--data-urlencode", "token=airlock:jkey", "-d", "x=1", &url]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.body_head),
        format!("token={BODY_FORM}&x=1")
    );

    let printed = python(
        &gw,
        &url,
        "a = requests.post(url, json={'token': 'airlock:jkey'}, proxies=proxies, verify=ca)\n\
         b = requests.post(url, data={'token': 'airlock:jkey', 'q': 'a b'}, proxies=proxies, verify=ca)\n\
         print(a.status_code, b.status_code)",
    );
    assert_eq!(printed.trim(), "200 200");
    let seen = gw.up.requests_to("/echo/body");
    let n = seen.len();
    assert_eq!(
        String::from_utf8_lossy(&seen[n - 2].body_head),
        format!(r#"{{"token": "{BODY_JSON}"}}"#)
    );
    assert_eq!(
        String::from_utf8_lossy(&seen[n - 1].body_head),
        format!("token={BODY_FORM}&q=a+b")
    );

    // Other types are not read: the placeholder goes as the text it is.
    let out = gw.curl(&["-H", "Content-Type: text/plain", "-d", "airlock:jkey", &url]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(gw.up.last_request().unwrap().body_head, b"airlock:jkey");
}

#[test]
fn a_body_placeholder_that_does_not_apply_is_refused() {
    let gw = gateway();
    gw.up.clear_requests();
    let url = gw.up.url("/echo/body");
    // Another secret's placeholder in the body: `up` goes in its header.
    let out = gw.curl(&["--http1.1", "--json", r#"{"t":"airlock:up"}"#, &url]);
    assert_refused(&gw, &out, "may be used only in the authorization header");
    let out = gw.curl(&["--http1.1", "-d", "t=airlock%3Anosuch", &url]);
    assert_refused(&gw, &out, "no secret has that name");
    // The body secret, to a host it does not belong to.
    let other = format!("https://localhost:{}/echo/body", gw.up.port());
    let out = gw.curl(&["--http1.1", "--json", r#"{"t":"airlock:jkey"}"#, &other]);
    assert_refused(&gw, &out, "it belongs to api.test.local");
    // Whatever reached the upstream stopped before the placeholder.
    for seen in gw.up.requests() {
        assert!(!seen.body_complete, "{seen:#?}");
        assert!(!String::from_utf8_lossy(&seen.body_tail).contains("airlock:"));
    }
    assert_audited(
        &gw,
        3,
        &[
            "may be used only in the authorization header",
            "no secret has that name",
            "it belongs to api.test.local",
        ],
    );
}

/// A 1 GiB JSON upload streamed from a Python generator, its placeholders
/// at the start, split across two writes, and at the end: substituted,
/// with the daemon's peak memory grown by less than 64 MiB.
#[test]
fn a_gigabyte_json_body_streams_with_flat_memory() {
    let gw = gateway();
    let pid = gw.daemon.status_json()["pid"].as_i64().unwrap();
    let before = peak_kib(pid);
    const FILLER_MIB: u64 = 1024;
    let code = format!(
        "def body():\n\
         \x20   yield b'{{\"token\":\"airlock:jk'\n\
         \x20   yield b'ey\",\"fill\":\"'\n\
         \x20   chunk = b'x' * (1 << 20)\n\
         \x20   for _ in range({FILLER_MIB}):\n\
         \x20       yield chunk\n\
         \x20   yield b'\",\"end\":\"airlock:jkey\"}}'\n\
         r = requests.post(url, data=body(), headers={{'Content-Type': 'application/json'}}, proxies=proxies, verify=ca)\n\
         print(r.status_code)",
    );
    let printed = python(&gw, &gw.up.url("/echo/big"), &code);
    assert_eq!(printed.trim(), "200");
    let seen = gw.up.last_request().unwrap();
    assert!(seen.body_complete);
    let head = format!(r#"{{"token":"{BODY_JSON}","fill":"xxxx"#);
    let tail = format!(r#"xxxx","end":"{BODY_JSON}"}}"#);
    assert!(
        seen.body_head.starts_with(head.as_bytes()),
        "{:?}",
        &seen.body_head[..80]
    );
    assert!(seen.body_tail.ends_with(tail.as_bytes()));
    let want = (FILLER_MIB << 20) + (head.len() - 4 + tail.len() - 4) as u64;
    assert_eq!(seen.body_len, want);
    let grown_kib = peak_kib(pid).saturating_sub(before);
    println!("peak RSS growth for a 1 GiB JSON body: {grown_kib} KiB");
    assert!(
        grown_kib < 64 * 1024,
        "the daemon's peak memory grew by {grown_kib} KiB for a 1 GiB JSON body"
    );
}

/// The daemon's peak resident memory (`VmHWM`), in KiB.
fn peak_kib(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn websocket_text_messages_get_the_key_and_its_echo_does_not() {
    let gw = gateway();
    let url = format!("wss://api.test.local:{}/ws", gw.up.port());
    // The echo upstream answers each message with what it received: the
    // value, which comes back to the agent as its placeholder again. It
    // answers `authorization?` with the handshake's header secret.
    let got = websocket(
        &gw,
        &url,
        r#"['{"op":"auth","key":"airlock:jkey"}', ['x airlock:j', 'key y'], b'airlock:jkey', 'authorization?']"#,
    );
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(
        got[..3],
        [
            r#"{"op":"auth","key":"airlock:jkey"}"#,
            "x airlock:jkey y",
            // Binary messages are not substituted.
            "bytes: airlock:jkey",
        ],
        "{got:#?}"
    );
    assert!(
        got[3].contains("airlock:up") && !got[3].contains(&gw.value),
        "{got:#?}"
    );
    let seen = gw.up.requests_to("/ws");
    assert!(
        seen[0].header("sec-websocket-extensions").is_none(),
        "{seen:#?}"
    );
    // What the upstream got: the values, not the placeholders.
    let received = String::from_utf8_lossy(&seen[0].body_head).into_owned();
    assert_eq!(
        received,
        format!(
            r#"{{"op":"auth","key":"{BODY_VALUE}"}}x {BODY_VALUE} yairlock:jkeyauthorization?"#
        ),
        "{seen:#?}"
    );

    // Another secret's placeholder, and the body secret to another host:
    // the connection ends, audited as exfiltration.
    let got = websocket(&gw, &url, r#"['hello', '{"key":"airlock:up"}', 'after']"#);
    assert_eq!(
        got,
        ["hello", "ended: ConnectionClosedError"],
        "{got:#?}, upstream saw {} upgrades; daemon log:\n{}",
        gw.up.requests_to("/ws").len(),
        gw.daemon.log()
    );
    let other = format!("wss://localhost:{}/ws", gw.up.port());
    let got = websocket(&gw, &other, r#"['airlock:jkey']"#);
    assert_eq!(got, ["ended: ConnectionClosedError"], "{got:#?}");
    let rows = gw.requests(3);
    let refused: Vec<_> = rows
        .iter()
        .filter(|r| r["decision"] == "exfiltration")
        .collect();
    assert_eq!(refused.len(), 2, "{rows:#?}");
    assert!(
        refused.iter().any(|r| r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("may be used only in the authorization header")),
        "{rows:#?}"
    );
    assert!(
        refused.iter().any(|r| r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("it belongs to api.test.local")),
        "{rows:#?}"
    );
}
