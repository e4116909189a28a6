//! `secret add` with a grant that cannot work: a specific error, a
//! non-zero exit, and nothing stored (the grant is checked by fetching its
//! first token).

use crate::harness::{Provider, add_oauth2, assert_no_leaks, start_daemon};

#[test]
fn bad_grants_are_refused_and_nothing_is_stored() {
    let p = Provider::start(30);
    let d = start_daemon(&p, &[]);
    let host = p.api_host();
    let add = |url: &str, extra: &[&str], input: &str| {
        let mut args = vec![
            "secret",
            "add",
            "api",
            "--host",
            &host,
            "--oauth2-token-url",
            url,
            "--client-id",
            &p.client_id,
        ];
        args.extend_from_slice(extra);
        d.cli_stdin(&args, input)
    };
    let secret = format!("{}\n", p.client_secret);
    let cc = ["--client-credentials"];

    add(&p.token_url, &cc, "cs-wrong-secret-000000\n").fails_with(&[
        "invalid_client",
        "client secret",
        "Nothing was stored",
    ]);
    add("https://127.0.0.1:1/token", &cc, &secret)
        .fails_with(&["could not be reached", "Nothing was stored"]);
    add(&p.token_url.replace("https://", "http://"), &cc, &secret).fails_with(&["https://"]);
    add("not a url", &cc, &secret).fails_with(&["not a URL"]);
    add(&p.token_url, &["--refresh-token-stdin"], &secret)
        .fails_with(&["the refresh token is missing"]);
    add(&p.token_url, &cc, "").fails_with(&["the client secret is missing"]);
    let bogus = format!("{}rt-not-issued-0000000000\n", secret);
    add(&p.token_url, &["--refresh-token-stdin"], &bogus)
        .fails_with(&["invalid_grant", "refresh token"]);
    add(&p.token_url, &[], &secret).fails_with(&["--refresh-token-stdin"]);

    // Connect: the authorization endpoint is needed, https, and its extra
    // parameters may not replace the ones the flow sets.
    add(&p.token_url, &["--connect"], &secret).fails_with(&["--oauth2-authorize-url or --preset"]);
    let http_auth = p.authorize_url.replace("https://", "http://");
    add(
        &p.token_url,
        &["--connect", "--oauth2-authorize-url", &http_auth],
        &secret,
    )
    .fails_with(&["authorization URL", "https://"]);
    let connect = [
        "--connect",
        "--oauth2-authorize-url",
        p.authorize_url.as_str(),
    ];
    for (param, says) in [
        ("state=fixed", "not one the gateway sets itself"),
        (
            "redirect_uri=https://evil.example/",
            "not one the gateway sets itself",
        ),
        ("no-equals-sign", "must be NAME=VALUE"),
    ] {
        let mut args = connect.to_vec();
        args.extend(["--authorize-param", param]);
        add(&p.token_url, &args, &secret).fails_with(&[says]);
    }
    let preset = d.cli_stdin(
        &[
            "secret",
            "add",
            "api",
            "--host",
            &host,
            "--preset",
            "gitlab",
            "--client-id",
            "x",
            "--connect",
        ],
        &secret,
    );
    preset.fails_with(&[
        "no OAuth2 preset \"gitlab\"",
        "google, microsoft, github, slack",
    ]);

    assert_eq!(
        d.db().psql("SELECT count(*) FROM secrets"),
        "0",
        "a refused grant left a row"
    );
    assert_eq!(d.db().psql("SELECT count(*) FROM oauth2_tokens"), "0");

    // The client secret from a file, nothing on standard input.
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("client-secret");
    std::fs::write(&file, &secret).expect("write the client secret");
    let file = file.display().to_string();
    add(
        &p.token_url,
        &["--client-credentials", "--client-secret-file", &file],
        "",
    )
    .ok();
    assert_eq!(d.db().psql("SELECT count(*) FROM oauth2_tokens"), "1");
    add_oauth2(&d, &p, "api2", None).ok();
    assert_no_leaks(&d, &p);
}
