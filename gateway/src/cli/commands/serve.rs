//! `airlock serve` and `airlock install-service`: the two commands that
//! are not clients of a running daemon.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cli::args::ServeArgs;
use airlock::config::{Overrides, Settings};

/// `airlock serve`: the daemon, on a multi-threaded runtime, until it stops.
pub fn serve(overrides: Overrides, args: ServeArgs) -> Result<()> {
    let settings = settings(overrides, args)?;
    airlock::logging::init(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(airlock::daemon::serve(settings))?;
    Ok(())
}

/// The settings `serve` runs with: its flags over `overrides` (the global
/// flags), the environment, the config file and the defaults. `doctor`
/// takes the same flags and checks these.
pub fn settings(overrides: Overrides, args: ServeArgs) -> Result<Settings> {
    Ok(Settings::resolve(Overrides {
        database_url: args.database_url,
        log_format: args.log_format,
        pg_bin_dir: args.pg_bin_dir,
        pg_user: args.pg_user,
        proxy_listen: args.proxy_listen,
        allow_upstreams: args.allow_upstreams,
        resolve: args.resolve,
        approval_timeout_secs: args.approval_timeout,
        upstream_ca: args.upstream_ca,
        upstream_timeout_secs: args.upstream_timeout,
        audit_required: args.audit_required,
        audit_jsonl: args.audit_jsonl,
        audit_journald: args.audit_journald,
        audit_syslog: args.audit_syslog,
        intercept: args.intercept,
        dashboard_listen: args.dashboard_listen,
        insecure_public: args.insecure_public,
        dashboard_public_url: args.dashboard_public_url,
        oidc_issuer: args.oidc_issuer,
        oidc_client_id: args.oidc_client_id,
        // From the environment only: a flag would show it in `ps`.
        oidc_client_secret: std::env::var(airlock::config::OIDC_CLIENT_SECRET_ENV).ok(),
        oidc_redirect_url: args.oidc_redirect_url,
        oidc_allowed_emails: args.oidc_allowed_emails,
        oidc_allowed_domain: args.oidc_allowed_domain,
        ..overrides
    })?)
}

/// `airlock install-service`: the binary and the systemd units.
pub fn install_service(unit_dir: PathBuf, bin_dir: PathBuf, no_reload: bool) -> Result<()> {
    let done = airlock::install::install(&airlock::install::Targets {
        unit_dir,
        bin_dir,
        reload: !no_reload,
    })?;
    println!("installed {}", done.binary.display());
    for unit in &done.units {
        println!("installed {}", unit.display());
    }
    if done.reloaded {
        println!("systemd reloaded; start it with: systemctl enable --now airlock");
    } else {
        println!("then: systemctl daemon-reload && systemctl enable --now airlock");
    }
    Ok(())
}
