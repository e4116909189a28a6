//! A whole workflow at trace level, then a search for every secret value in
//! the CLI's output, the logs, pg_dump and every file of the data directory.

use crate::support::*;

#[test]
fn secret_values_never_leak() {
    let tag = random_hex(8);
    let v = |what: &str| format!("sk-leakcheck-{what}-{tag}");
    let header = v("header");
    let template = v("template");
    let query = v("query");
    let aws_id = format!("AKIDLEAKCHECK{}", tag.to_uppercase());
    let aws_secret = v("aws");
    let rotated = v("rotated");
    let argv = v("argv");
    let multiline = v("multiline");
    let duplicate = v("duplicate");
    let bad_host = v("badhost");
    let mut d = Daemon::builder().env("RUST_LOG", "trace").start();

    let ok = |args: &[&str], value: &str| {
        d.cli_stdin(args, format!("{value}\n")).ok();
    };
    ok(
        &[
            "secret",
            "add",
            "hdr",
            "--host",
            "api.example.com",
            "--header",
            "Authorization",
        ],
        &header,
    );
    ok(
        &[
            "secret",
            "add",
            "tpl",
            "--host",
            "api.example.com",
            "--path",
            "/v2/**",
            "--header",
            "X-Auth=Key {value}",
        ],
        &template,
    );
    ok(
        &[
            "secret",
            "add",
            "qry",
            "--host",
            "maps.example.com",
            "--query",
            "key",
        ],
        &query,
    );
    ok(
        &[
            "secret",
            "add",
            "aws",
            "--host",
            "s3.amazonaws.com",
            "--aws-sigv4",
            "eu-west-1/s3",
        ],
        &format!("{aws_id}:{aws_secret}"),
    );
    ok(&["secret", "rotate", "hdr"], &rotated);
    d.cli(&["agent", "add", "bot", "--grant", "hdr", "--grant", "qry"])
        .ok();
    d.cli(&["agent", "grant", "bot", "aws"]).ok();
    d.cli(&[
        "rule",
        "add",
        "--host",
        "api.example.com",
        "--rate",
        "10/s",
        "--agent",
        "bot",
    ])
    .ok();

    // Refused attempts that carry values.
    d.cli_stdin(
        &[
            "secret",
            "add",
            "argv",
            "--host",
            "api.example.com",
            "--header",
            "x",
            "--value",
            &argv,
        ],
        "",
    )
    .fails_with(&["standard input"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "ml",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        format!("{multiline}\r\nX-Injected: 1"),
    )
    .fails_with(&["control character"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "hdr",
            "--host",
            "api.example.com",
            "--header",
            "x",
        ],
        format!("{duplicate}\n"),
    )
    .fails_with(&["already exists"]);
    d.cli_stdin(
        &[
            "secret",
            "add",
            "bad",
            "--host",
            "not a host",
            "--header",
            "x",
        ],
        format!("{bad_host}\n"),
    )
    .fails_with(&["not a host name"]);
    d.cli_stdin(&["secret", "rotate", "ghost"], format!("{duplicate}\n"))
        .fails_with(&["does not exist"]);

    // Everything that reads configuration back.
    for args in [
        &["secret", "list"][..],
        &["secret", "list", "--json"],
        &["agent", "list"],
        &["agent", "list", "--json"],
        &["rule", "list", "--json"],
        &["audit"],
        &["audit", "--json"],
        &["status"],
        &["status", "--json"],
    ] {
        d.cli(args).ok();
    }
    // A restart loads every sealed value into the snapshot.
    d.restart();
    d.cli(&["status", "--json"]).ok();
    let dump = d.db().pg_dump();
    assert!(dump.contains("COPY public.secrets"), "unexpected dump");
    assert_eq!(d.stop(), 0);

    let values = [
        header, template, query, aws_id, aws_secret, rotated, argv, multiline, duplicate, bad_host,
    ];
    let transcript = d.transcript();
    let daemon_log = d.log();
    let postgres_log = d.postgres_log();
    assert!(
        daemon_log.contains("DEBUG"),
        "the daemon did not log at trace level"
    );
    for value in &values {
        for (place, text) in [
            ("CLI output", &transcript),
            ("the daemon log", &daemon_log),
            ("the PostgreSQL log", &postgres_log),
            ("pg_dump", &dump),
        ] {
            assert!(!text.contains(value.as_str()), "{value} found in {place}");
        }
        // bytea columns are dumped in hex.
        assert!(
            !dump.contains(&hex::encode(value)),
            "{value} found in pg_dump (hex)"
        );
    }
    // Every file under the data directory: heap, WAL, logs, key file.
    let mut files = vec![d.data_dir().to_owned()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                files.push(entry.unwrap().path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            scanned += bytes.len();
            // Lossy decoding keeps every ASCII run intact.
            let text = String::from_utf8_lossy(&bytes);
            for value in &values {
                assert!(
                    !text.contains(value.as_str()),
                    "{value} found in {}",
                    path.display()
                );
            }
        }
    }
    assert!(scanned > 1_000_000, "scanned only {scanned} bytes");
}
