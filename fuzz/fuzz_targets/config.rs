//! The configuration loader (`airlock::config::Settings::resolve_from_text`):
//! the TOML file's text, merged over the defaults and validated.
//!
//! Checks: accepted settings hold what the daemon relies on (an absolute
//! data directory, a `postgres://` URL for an external database, timeouts of
//! at least a second, an OpenID Connect login only with a client id and an
//! allow list, at least one intercepted port); neither settings' debug form
//! nor an error repeats the OIDC client secret.

#![no_main]

use std::path::PathBuf;
use std::time::Duration;

use airlock::config::{Database, Overrides, Settings};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/fuzz/airlock.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let overrides = Overrides {
        config_file: Some(PathBuf::from(PATH)),
        ..Default::default()
    };
    let secret = client_secret(text);
    let settings = match Settings::resolve_from_text(overrides, text) {
        Ok(settings) => settings,
        Err(e) => {
            // The file's path is in every message; it is no secret.
            let shown = e.to_string().replace(PATH, "");
            if let Some(secret) = &secret {
                assert!(
                    !shown.contains(secret.as_str()),
                    "the error shows the client secret: {e}"
                );
            }
            return;
        }
    };
    assert!(settings.data_dir.is_absolute(), "{:?}", settings.data_dir);
    if let Database::External { url } = &settings.database {
        assert!(url.starts_with("postgres://") || url.starts_with("postgresql://"));
    }
    let second = Duration::from_secs(1);
    let p = &settings.proxy;
    for timeout in [
        p.approval_timeout,
        p.upstream_headers_timeout,
        p.idle_timeout,
    ] {
        assert!(timeout >= second, "{timeout:?}");
    }
    if let Some(oidc) = &settings.dashboard.oidc {
        assert!(!oidc.issuer.is_empty() && !oidc.client_id.is_empty());
        assert!(!oidc.allowed_emails.is_empty() || oidc.allowed_domain.is_some());
        if let Some(secret) = &oidc.client_secret {
            assert!(
                !format!("{settings:?}").contains(secret.as_str()),
                "Debug shows the client secret"
            );
        }
    }
    assert!(!settings.intercept.ports.is_empty(), "no intercepted port");
});

/// The `client_secret = "..."` value in `text`, when it is a quoted string
/// long enough that finding it elsewhere is no coincidence.
fn client_secret(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("client_secret"))?;
    let value = line.split_once('=')?.1.trim();
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (inner.len() >= 8).then(|| inner.to_owned())
}
