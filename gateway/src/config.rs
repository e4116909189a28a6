//! Settings and where they come from.
//!
//! Precedence, highest first: command-line flags, then the environment
//! (`AIRLOCK_*`, `DATABASE_URL`; clap reads both), then the TOML file
//! (`--config`, `AIRLOCK_CONFIG`, or `/etc/airlock/airlock.toml` when it
//! exists), then the defaults below. The master key is read from the
//! environment only (`SECRET_ENCRYPTION_KEY`), never from a flag or the file,
//! so it appears in no argv and no world-readable file.

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::dashboard::public_url::{PublicUrl, PublicUrlError};

pub const DEFAULT_DATA_DIR: &str = "/var/lib/airlock";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/airlock/airlock.toml";
pub const DEFAULT_PG_USER: &str = "airlock";
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:10255";
pub const DEFAULT_DASHBOARD_LISTEN: &str = "127.0.0.1:10254";
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_UPSTREAM_HEADERS_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Values given on the command line or in the environment; `None` where
/// neither said anything.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub pg_bin_dir: Option<PathBuf>,
    pub pg_user: Option<String>,
    pub proxy_listen: Option<SocketAddr>,
    /// Comma-separated CIDRs, e.g. `127.0.0.0/8,::1/128`.
    pub allow_upstreams: Option<String>,
    /// Comma-separated `HOST=IP` pairs.
    pub resolve: Option<String>,
    pub approval_timeout_secs: Option<u64>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_timeout_secs: Option<u64>,
    pub audit_required: Option<bool>,
    /// `--audit-jsonl`, `--audit-journald`, `--audit-syslog`.
    pub audit_jsonl: Option<PathBuf>,
    pub audit_journald: bool,
    pub audit_syslog: Option<PathBuf>,
    /// Transparent interception (`airlock serve` flags and environment).
    pub intercept: crate::intercept::InterceptArgs,
    pub dashboard_listen: Option<SocketAddr>,
    /// Allow the dashboard on a non-loopback address (no TLS).
    pub insecure_public: bool,
    /// The origin browsers reach the dashboard at, behind a reverse proxy.
    pub dashboard_public_url: Option<String>,
    /// OpenID Connect login (flags/environment; the secret only from the
    /// environment, see [`OIDC_CLIENT_SECRET_ENV`]).
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<String>,
    pub oidc_redirect_url: Option<String>,
    /// Comma-separated e-mail addresses.
    pub oidc_allowed_emails: Option<String>,
    pub oidc_allowed_domain: Option<String>,
}

/// The only place besides the TOML file the OIDC client secret is read
/// from, so it never shows in a process list.
pub const OIDC_CLIENT_SECRET_ENV: &str = "AIRLOCK_OIDC_CLIENT_SECRET";

/// The optional TOML file. Unknown keys are an error, so a typo is caught
/// instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    postgres: FilePostgres,
    #[serde(default)]
    proxy: FileProxy,
    #[serde(default)]
    intercept: crate::intercept::FileIntercept,
    #[serde(default)]
    dashboard: FileDashboard,
    #[serde(default)]
    audit: FileAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    required: Option<bool>,
    spool_max_mb: Option<u64>,
    /// A file for the records as JSON lines.
    jsonl: Option<PathBuf>,
    jsonl_max_mb: Option<u64>,
    jsonl_keep: Option<u32>,
    journald: Option<bool>,
    syslog: Option<bool>,
    /// The syslog socket, if not `/dev/log`.
    syslog_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDashboard {
    listen: Option<SocketAddr>,
    insecure_public: Option<bool>,
    public_url: Option<String>,
    #[serde(default)]
    oidc: FileOidc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_url: Option<String>,
    allowed_emails: Option<Vec<String>>,
    allowed_domain: Option<String>,
}

/// The dashboard's listener.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    pub listen: SocketAddr,
    /// The operator accepts serving it, without TLS, beyond loopback.
    pub insecure_public: bool,
    /// Where browsers reach it, when not at the listener's address (a TLS
    /// reverse proxy in front): the origin of the redirect URIs it gives
    /// OAuth providers. `None`: `http://<listener>`.
    pub public_url: Option<PublicUrl>,
    /// OpenID Connect login, when an issuer is configured.
    pub oidc: Option<OidcSettings>,
}

impl DashboardSettings {
    /// The origin of the dashboard's absolute URLs, once the listener is
    /// bound at `addr` (its port may have been chosen by the kernel).
    pub fn origin(&self, addr: SocketAddr) -> PublicUrl {
        self.public_url
            .clone()
            .unwrap_or_else(|| PublicUrl::of_listener(addr))
    }
}

/// OpenID Connect login for the dashboard.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// `None`: `http://<dashboard address>/login/oidc/callback`, filled in
    /// once the listener is bound (its port may be chosen by the kernel).
    pub redirect_url: Option<String>,
    /// Lower-cased.
    pub allowed_emails: Vec<String>,
    /// Lower-cased, without a leading `@`.
    pub allowed_domain: Option<String>,
}

// Hand-written so the client secret never lands in a log line.
impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("allowed_emails", &self.allowed_emails)
            .field("allowed_domain", &self.allowed_domain)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProxy {
    listen: Option<SocketAddr>,
    allow_upstreams: Option<Vec<IpNet>>,
    resolve: Option<Vec<String>>,
    approval_timeout_secs: Option<u64>,
    upstream_ca: Option<PathBuf>,
    upstream_headers_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePostgres {
    bin_dir: Option<PathBuf>,
    user: Option<String>,
}

/// Which database the daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A private PostgreSQL run by the daemon in `<data dir>/postgres`.
    Embedded {
        /// Where `initdb` and `postgres` are; found automatically when `None`.
        bin_dir: Option<PathBuf>,
        /// The unprivileged system user that runs it (PostgreSQL refuses root).
        user: String,
    },
    /// A server the operator runs, possibly shared by several gateways.
    External { url: String },
}

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The explicit proxy (`HTTPS_PROXY`) listener.
    pub listen: SocketAddr,
    /// Upstream networks allowed although they are normally refused
    /// (loopback, link-local, unspecified): how tests and local services
    /// are reached. The daemon's own ports stay refused.
    pub allow_upstreams: Vec<IpNet>,
    /// Fixed answers for upstream name resolution (`HOST=IP`), like curl's
    /// `--resolve`: for split-horizon names and for tests.
    pub resolve: Vec<(String, IpAddr)>,
    /// How long a request waits for a person's approval.
    pub approval_timeout: Duration,
    /// Extra roots (PEM bundle) trusted for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// How long an upstream may take to send response headers.
    pub upstream_headers_timeout: Duration,
    /// How long a connection or body may sit idle.
    pub idle_timeout: Duration,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: Database,
    pub log_format: LogFormat,
    pub proxy: ProxySettings,
    pub intercept: crate::intercept::InterceptSettings,
    pub dashboard: DashboardSettings,
    pub audit: crate::audit::AuditSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Intercept(crate::intercept::SettingsError),
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the data directory must be an absolute path, got {0}")]
    RelativeDataDir(PathBuf),
    #[error("the audit JSON-lines file must be an absolute path, got {0}")]
    RelativeAuditJsonl(PathBuf),
    #[error("DATABASE_URL must start with postgres:// or postgresql://")]
    BadDatabaseUrl,
    #[error("allowed upstream network {0:?} is not a CIDR like 127.0.0.0/8 or ::1/128")]
    BadCidr(String),
    #[error("resolve entry {0:?} must be HOST=IP, e.g. api.example.com=10.0.0.5")]
    BadResolve(String),
    #[error(
        "OpenID Connect login needs a client id (AIRLOCK_OIDC_CLIENT_ID or \
         [dashboard.oidc] client_id)"
    )]
    OidcNoClientId,
    #[error(
        "OpenID Connect login needs allowed e-mails or an allowed domain \
         (AIRLOCK_OIDC_ALLOWED_EMAILS / AIRLOCK_OIDC_ALLOWED_DOMAIN or [dashboard.oidc]), \
         otherwise anyone with an account at the issuer could log in"
    )]
    OidcNoAllowList,
    #[error(transparent)]
    PublicUrl(#[from] PublicUrlError),
}

impl Settings {
    pub fn resolve(o: Overrides) -> Result<Settings, ConfigError> {
        let file = load_file(o.config_file.as_deref())?;
        Settings::merge(o, file)
    }

    /// [`Settings::resolve`] with the TOML file's text given instead of read
    /// (`o.config_file` only names it in errors): the whole loader as a pure
    /// function, which the fuzz target `config` drives.
    pub fn resolve_from_text(o: Overrides, text: &str) -> Result<Settings, ConfigError> {
        let path = o
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let file = parse_file(&path, text)?;
        Settings::merge(o, file)
    }

    /// Overrides over the file over the defaults, then validation.
    fn merge(o: Overrides, file: FileConfig) -> Result<Settings, ConfigError> {
        // First, while `o` is still whole.
        let oidc = resolve_oidc(&o, file.dashboard.oidc)?;
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if !data_dir.is_absolute() {
            return Err(ConfigError::RelativeDataDir(data_dir));
        }
        let database = match o
            .database_url
            .or(file.database_url)
            .filter(|u| !u.is_empty())
        {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::External { url }
            }
            Some(_) => return Err(ConfigError::BadDatabaseUrl),
            None => Database::Embedded {
                bin_dir: o.pg_bin_dir.or(file.postgres.bin_dir),
                user: o
                    .pg_user
                    .or(file.postgres.user)
                    .unwrap_or_else(|| DEFAULT_PG_USER.to_owned()),
            },
        };
        let p = file.proxy;
        let allow_upstreams = match o.allow_upstreams {
            Some(list) => parse_list(&list, |s| {
                s.parse::<IpNet>()
                    .map_err(|_| ConfigError::BadCidr(s.to_owned()))
            })?,
            None => p.allow_upstreams.unwrap_or_default(),
        };
        let resolve = match (o.resolve, p.resolve) {
            (Some(list), _) => parse_list(&list, parse_resolve)?,
            (None, Some(entries)) => entries
                .iter()
                .map(|e| parse_resolve(e))
                .collect::<Result<_, _>>()?,
            (None, None) => Vec::new(),
        };
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
        let proxy = ProxySettings {
            listen: o.proxy_listen.or(p.listen).unwrap_or_else(|| {
                DEFAULT_PROXY_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 10255)))
            }),
            allow_upstreams,
            resolve,
            approval_timeout: secs(
                o.approval_timeout_secs.or(p.approval_timeout_secs),
                DEFAULT_APPROVAL_TIMEOUT_SECS,
            ),
            upstream_ca: o.upstream_ca.or(p.upstream_ca),
            upstream_headers_timeout: secs(
                o.upstream_timeout_secs.or(p.upstream_headers_timeout_secs),
                DEFAULT_UPSTREAM_HEADERS_TIMEOUT_SECS,
            ),
            idle_timeout: secs(p.idle_timeout_secs, DEFAULT_IDLE_TIMEOUT_SECS),
        };
        let insecure_public = o.insecure_public || file.dashboard.insecure_public.unwrap_or(false);
        let dashboard = DashboardSettings {
            listen: o
                .dashboard_listen
                .or(file.dashboard.listen)
                .unwrap_or_else(|| {
                    DEFAULT_DASHBOARD_LISTEN
                        .parse()
                        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 10254)))
                }),
            insecure_public,
            public_url: o
                .dashboard_public_url
                .or(file.dashboard.public_url)
                .map(|text| PublicUrl::parse(&text, insecure_public))
                .transpose()?,
            oidc,
        };
        let audit = crate::audit::AuditSettings {
            required: o.audit_required.or(file.audit.required).unwrap_or(true),
            spool_max_bytes: file
                .audit
                .spool_max_mb
                .unwrap_or(crate::audit::DEFAULT_SPOOL_MAX_MB)
                .max(1)
                .saturating_mul(1 << 20),
            export: resolve_export(o.audit_jsonl, o.audit_journald, o.audit_syslog, &file.audit)?,
        };
        Ok(Settings {
            audit,
            data_dir,
            dashboard,
            database,
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            proxy,
            intercept: crate::intercept::InterceptSettings::resolve(o.intercept, file.intercept)
                .map_err(ConfigError::Intercept)?,
        })
    }
}

/// The audit trail's JSON-lines sinks: a flag turns one on over the file.
fn resolve_export(
    jsonl: Option<PathBuf>,
    journald: bool,
    syslog: Option<PathBuf>,
    f: &FileAudit,
) -> Result<crate::audit::export::ExportSettings, ConfigError> {
    use crate::audit::export::{self, ExportSettings, JsonlSettings};
    let jsonl = match jsonl.or_else(|| f.jsonl.clone()) {
        Some(path) if !path.is_absolute() => return Err(ConfigError::RelativeAuditJsonl(path)),
        Some(path) => Some(JsonlSettings {
            path,
            max_bytes: f
                .jsonl_max_mb
                .unwrap_or(export::DEFAULT_MAX_MB)
                .max(1)
                .saturating_mul(1 << 20),
            keep: f.jsonl_keep.unwrap_or(export::DEFAULT_KEEP),
        }),
        None => None,
    };
    let journald = (journald || f.journald.unwrap_or(false)).then(ExportSettings::journald_default);
    let syslog = syslog.or_else(|| {
        f.syslog.unwrap_or(false).then(|| {
            f.syslog_socket
                .clone()
                .unwrap_or_else(ExportSettings::syslog_default)
        })
    });
    Ok(ExportSettings {
        jsonl,
        journald,
        syslog,
    })
}

/// OIDC is on when an issuer is named; then a client id and an allow list
/// are required.
fn resolve_oidc(o: &Overrides, f: FileOidc) -> Result<Option<OidcSettings>, ConfigError> {
    let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let Some(issuer) = nonempty(o.oidc_issuer.clone().or(f.issuer)) else {
        return Ok(None);
    };
    let client_id =
        nonempty(o.oidc_client_id.clone().or(f.client_id)).ok_or(ConfigError::OidcNoClientId)?;
    let allowed_emails: Vec<String> = match &o.oidc_allowed_emails {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => f.allowed_emails.unwrap_or_default(),
    }
    .iter()
    .map(|e| e.trim().to_lowercase())
    .filter(|e| !e.is_empty())
    .collect();
    let allowed_domain = nonempty(o.oidc_allowed_domain.clone().or(f.allowed_domain))
        .map(|d| d.trim_start_matches('@').to_lowercase());
    if allowed_emails.is_empty() && allowed_domain.is_none() {
        return Err(ConfigError::OidcNoAllowList);
    }
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret: nonempty(o.oidc_client_secret.clone().or(f.client_secret)),
        redirect_url: nonempty(o.oidc_redirect_url.clone().or(f.redirect_url)),
        allowed_emails,
        allowed_domain,
    }))
}

fn parse_list<T>(
    list: &str,
    parse: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

fn parse_resolve(entry: &str) -> Result<(String, IpAddr), ConfigError> {
    let bad = || ConfigError::BadResolve(entry.to_owned());
    let (host, ip) = entry.split_once('=').ok_or_else(bad)?;
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad());
    }
    let ip = ip
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad())?;
    Ok((host, ip))
}

/// Reads the given file (which must exist), or the default one if present.
fn load_file(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(FileConfig::default());
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
