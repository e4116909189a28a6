use super::*;

fn with_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn oidc_from_the_file_and_environment() {
    let (_dir, path) = with_file(
        "[dashboard.oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"airlock\"\n\
         client_secret = \"from-file\"\nallowed_domain = \"@Example.COM\"\n",
    );
    let s = Settings::resolve(Overrides {
        config_file: Some(path.clone()),
        oidc_allowed_emails: Some(" Ops@Other.org ,".into()),
        ..Default::default()
    })
    .unwrap();
    let o = s.dashboard.oidc.unwrap();
    assert_eq!(o.allowed_emails, ["ops@other.org"]);
    assert_eq!(o.allowed_domain.as_deref(), Some("example.com"));
    assert_eq!(o.client_secret.as_deref(), Some("from-file"));
    assert!(!format!("{o:?}").contains("from-file"), "never in logs");
    // No allow list: anyone at the issuer could log in, so refused.
    let (_dir, path) = with_file(
        "[dashboard.oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"airlock\"\n",
    );
    let err = Settings::resolve(Overrides {
        config_file: Some(path),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ConfigError::OidcNoAllowList), "{err}");
    // Off without an issuer.
    assert!(
        Settings::resolve(Overrides {
            config_file: Some(PathBuf::from("/dev/null")),
            ..Default::default()
        })
        .unwrap()
        .dashboard
        .oidc
        .is_none()
    );
}

#[test]
fn flags_beat_the_file_and_the_file_beats_defaults() {
    let (_dir, path) = with_file(
        "data_dir = \"/srv/airlock\"\nlog_format = \"json\"\n[postgres]\nuser = \"pg\"\n",
    );
    let s = Settings::resolve(Overrides {
        config_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/srv/airlock"));
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(
        s.database,
        Database::Embedded {
            bin_dir: None,
            user: "pg".into()
        }
    );
    let s = Settings::resolve(Overrides {
        config_file: Some(path),
        data_dir: Some("/tmp/x".into()),
        database_url: Some("postgres:///airlock".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    assert!(matches!(s.database, Database::External { .. }));
}

#[test]
fn text_given_is_read_like_a_file() {
    let text = "data_dir = \"/srv/airlock\"\n[proxy]\nresolve = [\"a.test=::1\"]\n";
    let (_dir, path) = with_file(text);
    let from_file = Settings::resolve(Overrides {
        config_file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap();
    let from_text = Settings::resolve_from_text(
        Overrides {
            config_file: Some(path.clone()),
            ..Default::default()
        },
        text,
    )
    .unwrap();
    assert_eq!(from_text.data_dir, from_file.data_dir);
    assert_eq!(from_text.proxy.resolve, from_file.proxy.resolve);
    let err = Settings::resolve_from_text(Overrides::default(), "data_dri = 1").unwrap_err();
    assert!(err.to_string().contains(DEFAULT_CONFIG_FILE), "{err}");
}

#[test]
fn unknown_keys_and_missing_explicit_files_are_errors() {
    let (_dir, path) = with_file("data_dri = \"/x\"\n");
    let err = Settings::resolve(Overrides {
        config_file: Some(path),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("data_dri"), "{err}");
    assert!(matches!(
        Settings::resolve(Overrides {
            config_file: Some("/nonexistent/airlock.toml".into()),
            ..Default::default()
        }),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn proxy_settings_parse() {
    let s = Settings::resolve(Overrides {
        config_file: Some("/dev/null".into()),
        allow_upstreams: Some("127.0.0.0/8, ::1/128".into()),
        resolve: Some("api.test.local=127.0.0.1,v6.test=[::1]".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.proxy.listen.to_string(), DEFAULT_PROXY_LISTEN);
    assert_eq!(s.proxy.allow_upstreams.len(), 2);
    assert_eq!(
        s.proxy.resolve[1],
        ("v6.test".to_owned(), "::1".parse().unwrap())
    );
    assert_eq!(s.proxy.approval_timeout, Duration::from_secs(300));
    for (cidrs, resolve) in [
        (Some("nope"), None),
        (None, Some("x")),
        (None, Some("x=1.2.3")),
    ] {
        assert!(
            Settings::resolve(Overrides {
                config_file: Some("/dev/null".into()),
                allow_upstreams: cidrs.map(Into::into),
                resolve: resolve.map(Into::into),
                ..Default::default()
            })
            .is_err()
        );
    }
}

#[test]
fn relative_data_dirs_and_bad_urls_are_refused() {
    assert!(matches!(
        Settings::resolve(Overrides {
            data_dir: Some("rel/dir".into()),
            config_file: Some("/dev/null".into()),
            ..Default::default()
        }),
        Err(ConfigError::RelativeDataDir(_))
    ));
    assert!(matches!(
        Settings::resolve(Overrides {
            data_dir: Some("/x".into()),
            config_file: Some("/dev/null".into()),
            database_url: Some("mysql://x".into()),
            ..Default::default()
        }),
        Err(ConfigError::BadDatabaseUrl)
    ));
}

#[test]
fn audit_export_sinks_from_the_file_and_flags() {
    let text = "[audit]\njsonl = \"/var/log/airlock/audit.jsonl\"\njsonl_max_mb = 7\n\
                jsonl_keep = 2\nsyslog = true\n";
    let s = Settings::resolve_from_text(Overrides::default(), text).unwrap();
    let e = &s.audit.export;
    let j = e.jsonl.as_ref().unwrap();
    assert_eq!(j.path, Path::new("/var/log/airlock/audit.jsonl"));
    assert_eq!((j.max_bytes, j.keep), (7 << 20, 2));
    assert_eq!(e.syslog.as_deref(), Some(Path::new("/dev/log")));
    assert_eq!(e.journald, None);
    // Flags over the file.
    let s = Settings::resolve_from_text(
        Overrides {
            audit_jsonl: Some("/srv/a.jsonl".into()),
            audit_journald: true,
            audit_syslog: Some("/run/other.sock".into()),
            ..Default::default()
        },
        text,
    )
    .unwrap();
    let e = &s.audit.export;
    assert_eq!(e.jsonl.as_ref().unwrap().path, Path::new("/srv/a.jsonl"));
    assert_eq!(
        e.journald.as_deref(),
        Some(Path::new("/run/systemd/journal/socket"))
    );
    assert_eq!(e.syslog.as_deref(), Some(Path::new("/run/other.sock")));
    // None by default; a relative file refused.
    let s = Settings::resolve_from_text(Overrides::default(), "").unwrap();
    assert!(s.audit.export.is_empty());
    let err = Settings::resolve_from_text(Overrides::default(), "[audit]\njsonl = \"a.jsonl\"\n")
        .unwrap_err();
    assert!(matches!(err, ConfigError::RelativeAuditJsonl(_)), "{err}");
}

#[test]
fn the_dashboard_public_url_comes_from_the_flag_over_the_file_and_is_checked() {
    let text = "[dashboard]\npublic_url = \"https://airlock.example.com/\"\n";
    let s = Settings::resolve_from_text(Overrides::default(), text).unwrap();
    let origin = s.dashboard.origin("127.0.0.1:10254".parse().unwrap());
    assert_eq!(origin.to_string(), "https://airlock.example.com");
    let s = Settings::resolve_from_text(
        Overrides {
            dashboard_public_url: Some("https://flag.example.com".into()),
            ..Default::default()
        },
        text,
    )
    .unwrap();
    assert_eq!(
        s.dashboard.public_url.map(|u| u.to_string()).as_deref(),
        Some("https://flag.example.com")
    );
    // Unset: the listener's own address.
    let s = Settings::resolve_from_text(Overrides::default(), "").unwrap();
    let origin = s.dashboard.origin("127.0.0.1:4000".parse().unwrap());
    assert_eq!(origin.to_string(), "http://127.0.0.1:4000");
    // Plain HTTP beyond loopback only when the operator accepted a
    // dashboard without TLS.
    let lan = "[dashboard]\npublic_url = \"http://airlock.lan\"\n";
    let err = Settings::resolve_from_text(Overrides::default(), lan).unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    let s = Settings::resolve_from_text(
        Overrides {
            insecure_public: true,
            ..Default::default()
        },
        lan,
    )
    .unwrap();
    assert!(s.dashboard.public_url.is_some());
}
