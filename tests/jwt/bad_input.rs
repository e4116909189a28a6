//! `secret add` with a key, a key file or a grant that cannot work: exit
//! 1, one line naming what was wrong, nothing stored, and none of the key
//! in the message.

use std::path::Path;

use crate::harness::{
    Issuer, Key, add_github, add_google, assert_no_leaks, body_lines, start_daemon,
};
use crate::support::Daemon;

fn nothing_stored(d: &Daemon) {
    assert_eq!(
        d.db().psql("SELECT count(*) FROM secrets"),
        "0",
        "a refused secret left a row"
    );
    assert_eq!(d.db().psql("SELECT count(*) FROM oauth2_tokens"), "0");
}

/// The refusal is one line and quotes no line of `pem`.
fn one_line_without(stderr: &str, pem: &str) {
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for line in body_lines(pem) {
        assert!(
            !stderr.contains(line),
            "the message quotes the key: {stderr}"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn bad_github_keys_and_grants_are_refused_and_nothing_is_stored() {
    let i = Issuer::start(60);
    let d = start_daemon(&i);
    let dir = i.dir();
    let good = i.github.key.private_path();
    let pem = &i.github.key.pem;

    let not_pem = write(dir, "not-a-key.pem", "this is not a key\n");
    let e = add_github(&d, &i, "gh", &not_pem, &[])
        .fails_with(&["not an RSA private key", "Nothing was stored"])
        .to_owned();
    one_line_without(&e, pem);
    let public = i.github.key.public.display().to_string();
    add_github(&d, &i, "gh", &public, &[]).fails_with(&["not an RSA private key"]);
    let small = Key::generate(dir, "small", true, 1024);
    let e = add_github(&d, &i, "gh", &small.private_path(), &[])
        .fails_with(&["2048 to 8192 bits"])
        .to_owned();
    one_line_without(&e, &small.pem);
    let broken = write(dir, "broken.pem", &pem.replace('A', "*"));
    let e = add_github(&d, &i, "gh", &broken, &[])
        .fails_with(&["private key"])
        .to_owned();
    one_line_without(&e, pem);
    let ec = dir.join("ec.pem");
    let mut keygen = std::process::Command::new("openssl");
    keygen
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&ec);
    crate::support::run(&mut keygen, None, std::time::Duration::from_secs(30)).ok();
    add_github(&d, &i, "gh", &ec.display().to_string(), &[])
        .fails_with(&["not an RSA private key"]);

    // A key GitHub does not know for this app, another installation, and
    // an API URL that is not https.
    let other = Key::generate(dir, "other-app", true, 2048);
    let e = add_github(&d, &i, "gh", &other.private_path(), &[])
        .fails_with(&[
            "bad_credentials",
            "HTTP 401",
            "--github-app-id",
            "Nothing was stored",
        ])
        .to_owned();
    one_line_without(&e, &other.pem);
    let host = i.api_host();
    let api = i.api_url();
    let base = [
        "secret",
        "add",
        "gh",
        "--host",
        &host,
        "--github-app-id",
        &i.github.app_id,
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        d.cli(&args)
    };
    with(&[
        "--github-installation-id",
        "999",
        "--github-api-url",
        &api,
        "--private-key-file",
        &good,
    ])
    .fails_with(&["installation_not_found", "--github-installation-id"]);
    let plain = api.replace("https://", "http://");
    with(&[
        "--github-installation-id",
        &i.github.installation_id,
        "--github-api-url",
        &plain,
        "--private-key-file",
        &good,
    ])
    .fails_with(&["https://"]);
    with(&[
        "--github-installation-id",
        "12ab",
        "--private-key-file",
        &good,
    ])
    .fails_with(&["--github-installation-id"]);
    with(&[
        "--github-installation-id",
        &i.github.installation_id,
        "--github-api-url",
        &api,
        "--private-key-file",
        &good,
        "--scope",
        "repo",
    ])
    .fails_with(&["no --scope"]);
    nothing_stored(&d);

    add_github(&d, &i, "gh", &good, &[]).ok();
    assert_no_leaks(&d, &i);
}

#[test]
fn what_is_not_a_service_account_key_file_is_refused() {
    let i = Issuer::start(60);
    let d = start_daemon(&i);
    let dir = i.dir();
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&i.google.file).expect("the key file"))
            .expect("JSON");
    let pem = &i.google.key.pem;
    let variant = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        change(&mut v);
        let path = dir.join(name);
        std::fs::write(&path, v.to_string()).expect("write");
        path
    };
    let cases: Vec<(std::path::PathBuf, &[&str])> = vec![
        (dir.join("truncated.json"), &["not JSON"]),
        (
            variant("user.json", &|v| v["type"] = "authorized_user".into()),
            &["service_account"],
        ),
        (
            variant("no-email.json", &|v| {
                v.as_object_mut().map(|o| o.remove("client_email"));
            }),
            &["client_email"],
        ),
        (
            variant("no-key.json", &|v| {
                v["private_key"] = serde_json::Value::Null
            }),
            &["private_key"],
        ),
        (
            variant("http.json", &|v| {
                v["token_uri"] = v["token_uri"]
                    .as_str()
                    .map(|u| u.replace("https://", "http://"))
                    .into()
            }),
            &["token_uri", "https://"],
        ),
        (
            variant("not-rsa.json", &|v| {
                v["private_key"] =
                    "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".into()
            }),
            &["private_key", "RSA"],
        ),
    ];
    let raw = good.to_string();
    std::fs::write(dir.join("truncated.json"), &raw[..raw.len() / 2]).expect("write");
    for (file, says) in &cases {
        let mut needles = says.to_vec();
        needles.push("Nothing was stored");
        let e = add_google(&d, &i, "gcp", file)
            .fails_with(&needles)
            .to_owned();
        one_line_without(&e, pem);
    }
    // A key the account does not have: the endpoint refuses the signature.
    let stranger = Key::generate(dir, "stranger", false, 2048);
    let file = variant("stranger.json", &|v| {
        v["private_key"] = stranger.pem.clone().into()
    });
    let e = add_google(&d, &i, "gcp", &file)
        .fails_with(&["invalid_grant", "signed JWT", "Nothing was stored"])
        .to_owned();
    one_line_without(&e, &stranger.pem);
    let host = i.api_host();
    let path = i.google.file.display().to_string();
    d.cli(&[
        "secret",
        "add",
        "gcp",
        "--host",
        &host,
        "--google-service-account-file",
        &path,
    ])
    .fails_with(&["--scope"]);
    nothing_stored(&d);

    add_google(&d, &i, "gcp", &i.google.file).ok();
    assert_no_leaks(&d, &i);
}
