//! The command-line grammar (clap). DESIGN.md's "Interfaces" is the
//! contract these follow.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use airlock::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Airlock: keeps API keys out of AI agents. Manage the vault, agents, rules and audit trail.",
    propagate_version = true
)]
pub struct Cli {
    /// The data directory (default /var/lib/airlock).
    #[arg(long, global = true, env = "AIRLOCK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The TOML configuration file (default /etc/airlock/airlock.toml, if it exists).
    #[arg(long, global = true, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the admin API, the store and (later) the gateway.
    // Boxed: its many flags would make every other variant as large.
    Serve(Box<ServeArgs>),
    /// Check what works on this host and what does not, before or after
    /// `serve`: takes serve's flags and checks the settings they make.
    Doctor(Box<DoctorArgs>),
    /// Is the daemon running, on which database, with what configuration.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Manage secrets (values are write-only: read from standard input, never shown).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage agents and the secrets they are granted.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage rules: allow, block, hold for approval, or rate-limit requests.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Show the default (what happens to a request no allow rule covers),
    /// or set it: globally, or for one agent with --agent.
    Default(DefaultArgs),
    /// Show the audit trail, or check it (`airlock audit verify`).
    #[command(args_conflicts_with_subcommands = true)]
    Audit(AuditArgs),
    /// Requests waiting for a person's approval.
    Approvals {
        /// Keep watching for new requests.
        #[arg(long)]
        follow: bool,
        /// Also show decided ones (the latest 200).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Access requests: what agents were refused by a default of deny.
    /// Lists the open ones, or allows or dismisses one.
    #[command(args_conflicts_with_subcommands = true)]
    Requests(RequestsArgs),
    /// Let a held request through.
    Approve { id: String },
    /// Refuse a held request (the agent gets 403).
    Deny { id: String },
    /// The local CA that agents must trust.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Install the binary and the systemd units (airlock.service, airlock-agents.slice).
    InstallService {
        /// Where the units go.
        #[arg(long, default_value = "/etc/systemd/system", value_name = "DIR")]
        unit_dir: PathBuf,
        /// Where the binary goes.
        #[arg(long, default_value = "/usr/local/bin", value_name = "DIR")]
        bin_dir: PathBuf,
        /// Do not run `systemctl daemon-reload`.
        #[arg(long)]
        no_reload: bool,
    },
    /// Run a command as an agent: in its cgroup (transparent interception),
    /// as the agent's own unprivileged user, with a clean environment,
    /// trusting Airlock's CA.
    Run(RunArgs),
    /// Docker containers as agents: `docker run` in the agent's cgroup,
    /// trusting Airlock's CA (docs/docker.md).
    #[command(subcommand)]
    Docker(DockerCommand),
    /// The dashboard's credentials: its password and API tokens.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Stop the daemon; with --release also remove transparent interception.
    Stop {
        /// Also detach and unpin the eBPF programs: agents' connections then
        /// go out directly instead of failing while the daemon is down.
        #[arg(long)]
        release: bool,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent to run as.
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    /// Run as this existing non-root user (name or uid), with only its
    /// primary group, instead of the agent's own user (airlock-agent-NAME,
    /// created on first run).
    #[arg(long, value_name = "USER", conflicts_with = "as_invoking_user")]
    pub user: Option<String>,
    /// Run as the user who invoked sudo, with all of that user's groups.
    /// This GIVES THE AGENT YOUR IDENTITY: your files, your groups' powers
    /// (docker, adm, sudo...), your systemd user manager and session bus
    /// (a way out of its cgroup), your other processes' environments and
    /// tokens. Prints a warning.
    #[arg(long)]
    pub as_invoking_user: bool,
    /// Give the command this variable: NAME=VALUE, or NAME for airlock
    /// run's own value (repeatable; a VALUE shows in `ps`, NAME does not).
    /// Otherwise it gets only PATH, HOME, USER, LOGNAME, SHELL, TERM,
    /// COLORTERM, LANG, LANGUAGE, LC_*, TZ and the CA variables.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    pub env: Vec<airlock::intercept::run::EnvArg>,
    /// The command's working directory (default: the current one). The
    /// agent's user must be able to enter it.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub enum DockerCommand {
    /// `docker run` with the flags that make the container agent NAME: its
    /// cgroup below the agent's (the identity), Airlock's CA over the
    /// image's trust store paths, the CA variables. No proxy variables.
    Run {
        /// The agent the container runs as.
        #[arg(long, value_name = "NAME")]
        agent: String,
        /// The docker program (default: docker on PATH).
        #[arg(
            long,
            env = "AIRLOCK_DOCKER",
            default_value = "docker",
            value_name = "PATH"
        )]
        docker: PathBuf,
        /// `docker run`'s own arguments: options, the image, its command.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "DOCKER RUN ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Print those flags, for scripts (one per line) or compose files.
    Flags {
        /// The agent the container runs as.
        #[arg(long, value_name = "NAME")]
        agent: String,
        /// The docker program (default: docker on PATH).
        #[arg(
            long,
            env = "AIRLOCK_DOCKER",
            default_value = "docker",
            value_name = "PATH"
        )]
        docker: PathBuf,
        /// As a docker compose service's keys (cgroup_parent, volumes,
        /// environment) instead of command-line flags.
        #[arg(long)]
        compose: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set the dashboard password, read from standard input (or prompted for).
    SetPassword,
    /// API tokens for scripts calling the dashboard's /api/v1 over TCP.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create { name: String },
    /// List tokens (names and when they were last used).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: scripts using it get 401 at once.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the path of the CA certificate (PEM).
    Path,
    /// Add the CA to the operating system's trust store (Debian, Fedora).
    Install,
    /// Remove the CA from the operating system's trust store.
    Uninstall,
    /// Print a systemd drop-in that gives an agent unit the same view of
    /// the trust store as `airlock run` (the host's roots plus the CA).
    SystemdDropin,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// One JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Use this PostgreSQL instead of the embedded one (many gateways may share it).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log format on standard error.
    #[arg(long, env = "AIRLOCK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Where the embedded PostgreSQL's initdb and postgres are (found automatically).
    #[arg(long, env = "AIRLOCK_PG_BIN_DIR", value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// The unprivileged user that runs the embedded PostgreSQL (default airlock).
    #[arg(long, env = "AIRLOCK_PG_USER", value_name = "USER")]
    pub pg_user: Option<String>,
    /// Address of the explicit proxy (default 127.0.0.1:10255).
    #[arg(long, env = "AIRLOCK_PROXY_LISTEN", value_name = "ADDR")]
    pub proxy_listen: Option<std::net::SocketAddr>,
    /// Networks upstreams may be in although normally refused (loopback,
    /// link-local), comma-separated CIDRs, e.g. 127.0.0.0/8.
    #[arg(long, env = "AIRLOCK_ALLOW_UPSTREAMS", value_name = "CIDRS")]
    pub allow_upstreams: Option<String>,
    /// Fixed upstream addresses, comma-separated HOST=IP (like curl --resolve).
    #[arg(long, env = "AIRLOCK_RESOLVE", value_name = "HOST=IP,...")]
    pub resolve: Option<String>,
    /// Seconds a request waits for approval before it is refused (default 300).
    #[arg(long, env = "AIRLOCK_APPROVAL_TIMEOUT", value_name = "SECS")]
    pub approval_timeout: Option<u64>,
    /// Extra CA certificates (PEM) trusted for upstream servers.
    #[arg(long, env = "AIRLOCK_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Seconds an upstream may take to send response headers (default 300).
    #[arg(long, env = "AIRLOCK_UPSTREAM_TIMEOUT", value_name = "SECS")]
    pub upstream_timeout: Option<u64>,
    /// Refuse requests (503) while they cannot be audited: the database is
    /// unreachable and the audit spool cannot be written (default true).
    #[arg(long, env = "AIRLOCK_AUDIT_REQUIRED", value_name = "BOOL")]
    pub audit_required: Option<bool>,
    /// Also write each audit record as one JSON line (OCSF field names) to
    /// FILE, rotated at 100 MiB keeping 5 (see `[audit]` in the config).
    #[arg(long, env = "AIRLOCK_AUDIT_JSONL", value_name = "FILE")]
    pub audit_jsonl: Option<PathBuf>,
    /// Also send each audit record's JSON line to journald.
    #[arg(long, env = "AIRLOCK_AUDIT_JOURNALD")]
    pub audit_journald: bool,
    /// Also send each audit record's JSON line to syslog, at SOCKET
    /// (default /dev/log).
    #[arg(
        long,
        env = "AIRLOCK_AUDIT_SYSLOG",
        value_name = "SOCKET",
        num_args = 0..=1,
        default_missing_value = "/dev/log"
    )]
    pub audit_syslog: Option<PathBuf>,
    #[command(flatten)]
    pub intercept: airlock::intercept::InterceptArgs,
    /// Address of the dashboard (default 127.0.0.1:10254).
    #[arg(long, env = "AIRLOCK_DASHBOARD_LISTEN", value_name = "ADDR")]
    pub dashboard_listen: Option<std::net::SocketAddr>,
    /// Serve the dashboard on a non-loopback address although it has no TLS
    /// (put it behind a TLS-terminating proxy).
    #[arg(long, env = "AIRLOCK_INSECURE_PUBLIC")]
    pub insecure_public: bool,
    /// Where browsers reach the dashboard when a TLS reverse proxy is in
    /// front, e.g. https://airlock.example.com: the origin of the redirect
    /// URIs given to OAuth providers (default http://<dashboard address>).
    #[arg(long, env = "AIRLOCK_DASHBOARD_PUBLIC_URL", value_name = "URL")]
    pub dashboard_public_url: Option<String>,
    /// OpenID Connect issuer URL: turns on "Sign in with ..." on the
    /// dashboard. The client secret is read from AIRLOCK_OIDC_CLIENT_SECRET
    /// or the config file only.
    #[arg(long, env = "AIRLOCK_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The dashboard's client id at the OpenID Connect issuer.
    #[arg(long, env = "AIRLOCK_OIDC_CLIENT_ID", value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// Where the issuer sends the browser back (default
    /// http://<dashboard address>/login/oidc/callback).
    #[arg(long, env = "AIRLOCK_OIDC_REDIRECT_URL", value_name = "URL")]
    pub oidc_redirect_url: Option<String>,
    /// Comma-separated e-mail addresses allowed to log in with OpenID Connect.
    #[arg(long, env = "AIRLOCK_OIDC_ALLOWED_EMAILS", value_name = "EMAILS")]
    pub oidc_allowed_emails: Option<String>,
    /// An e-mail domain whose verified addresses may log in with OpenID Connect.
    #[arg(long, env = "AIRLOCK_OIDC_ALLOWED_DOMAIN", value_name = "DOMAIN")]
    pub oidc_allowed_domain: Option<String>,
}

/// The hidden `--value` flag exists only to refuse it with a clear reason.
#[derive(Debug, Args)]
pub struct ValueInput {
    /// Read the value from standard input without prompting (the default
    /// when standard input is not a terminal).
    #[arg(long)]
    pub value_stdin: bool,
    #[arg(long, hide = true, value_name = "VALUE")]
    pub value: Option<String>,
}

/// An OAuth2 secret: the gateway obtains access tokens and injects them
/// as `Authorization: Bearer`. The client secret is read from standard
/// input (first line) or --client-secret-file, never from argv; with
/// --refresh-token-stdin the refresh token follows on the next line.
#[derive(Debug, clap::Args)]
pub struct OAuth2Args {
    /// OAuth2: the provider's token endpoint (https://).
    #[arg(
        long,
        value_name = "URL",
        requires = "client_id",
        requires = "oauth2_grant"
    )]
    pub oauth2_token_url: Option<String>,
    /// OAuth2: a known provider (google, microsoft, github, slack) instead
    /// of --oauth2-token-url and --oauth2-authorize-url; its scopes come
    /// before any --scope.
    #[arg(
        long,
        value_name = "ID",
        requires = "client_id",
        requires = "oauth2_grant",
        conflicts_with_all = ["oauth2_token_url", "oauth2_authorize_url", "client_credentials"]
    )]
    pub preset: Option<String>,
    /// OAuth2: the client id.
    #[arg(long, value_name = "ID", requires = "oauth2_provider")]
    pub client_id: Option<String>,
    /// OAuth2 or a Google service account: a scope to request (repeat
    /// for several).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// OAuth2: the refresh-token grant; the refresh token is read from
    /// standard input, on the line after the client secret.
    #[arg(long, requires = "oauth2_provider")]
    pub refresh_token_stdin: bool,
    /// OAuth2: the refresh-token grant, its refresh token obtained by the
    /// dashboard's Connect (the authorization-code flow with PKCE); needs
    /// --oauth2-authorize-url or --preset. Until connected, requests fail
    /// with "needs reconnection".
    #[arg(long, requires = "oauth2_provider")]
    pub connect: bool,
    /// OAuth2: the provider's authorization endpoint (https://), where the
    /// dashboard's Connect sends the browser.
    #[arg(long, value_name = "URL", requires = "oauth2_token_url")]
    pub oauth2_authorize_url: Option<String>,
    /// OAuth2: an extra parameter of the authorization request, NAME=VALUE
    /// (repeat for several), e.g. access_type=offline.
    #[arg(
        long = "authorize-param",
        value_name = "NAME=VALUE",
        requires = "oauth2_provider"
    )]
    pub authorize_params: Vec<String>,
    /// OAuth2: the client-credentials grant.
    #[arg(long, requires = "oauth2_provider")]
    pub client_credentials: bool,
    /// OAuth2: read the client secret from this file (its first line)
    /// instead of standard input.
    #[arg(long, value_name = "FILE", requires = "oauth2_provider")]
    pub client_secret_file: Option<PathBuf>,
}

impl OAuth2Args {
    /// Is this an OAuth2 secret (a token URL or a preset)?
    pub fn is_set(&self) -> bool {
        self.oauth2_token_url.is_some() || self.preset.is_some()
    }
}

/// A signed-JWT secret: the gateway signs short-lived RS256 JWTs with a
/// private key, exchanges them for access tokens, and injects those as
/// `Authorization: Bearer`. Keys are read from files (or the GitHub App's
/// PEM from standard input), never from argv.
#[derive(Debug, clap::Args)]
pub struct JwtArgs {
    /// GitHub App: the app id (or the app's client id), the JWT's issuer.
    #[arg(long, value_name = "ID", requires = "github_installation_id")]
    pub github_app_id: Option<String>,
    /// GitHub App: the installation whose access tokens are minted.
    #[arg(long, value_name = "ID", requires = "github_app_id")]
    pub github_installation_id: Option<String>,
    /// GitHub App: the REST API's base URL (GitHub Enterprise Server:
    /// https://HOST/api/v3).
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://api.github.com",
        requires = "github_app_id"
    )]
    pub github_api_url: String,
    /// GitHub App: read the app's private key (PEM) from this file
    /// instead of standard input.
    #[arg(long, value_name = "FILE", requires = "github_app_id")]
    pub private_key_file: Option<PathBuf>,
    /// Google service account: its JSON key file (type service_account);
    /// give the API's scopes with --scope.
    #[arg(long, value_name = "FILE")]
    pub google_service_account_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Add a secret; its value is read from standard input.
    #[command(group(ArgGroup::new("injection").required(true).args(["header", "query", "aws_sigv4", "path_template", "basic", "body", "oauth2_token_url", "preset", "github_app_id", "google_service_account_file"])))]
    #[command(group(ArgGroup::new("oauth2_grant").args(["refresh_token_stdin", "client_credentials", "connect"])))]
    #[command(group(ArgGroup::new("oauth2_provider").args(["oauth2_token_url", "preset"])))]
    Add {
        name: String,
        /// The host it belongs to: api.example.com, *.example.com, an IP, optionally :PORT.
        #[arg(long, value_name = "HOST")]
        host: String,
        /// Only for request paths matching this glob (default /**: every path).
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
        /// Inject as this header; TEMPLATE uses {value} (default "Bearer {value}" for Authorization).
        #[arg(long, value_name = "NAME[=TEMPLATE]")]
        header: Option<String>,
        /// Inject as this query parameter.
        #[arg(long, value_name = "PARAM")]
        query: Option<String>,
        /// Sign with AWS SigV4; the value is ACCESS_KEY_ID:SECRET_ACCESS_KEY.
        #[arg(long, value_name = "REGION/SERVICE")]
        aws_sigv4: Option<String>,
        /// Put the value into the URL path where the agent writes its
        /// placeholder: PREFIX{value}REST, REST a glob (e.g. "/bot{value}/**").
        #[arg(long, value_name = "TEMPLATE")]
        path_template: Option<String>,
        /// HTTP Basic: Authorization: Basic base64(TEMPLATE), e.g. "api:{value}" or "{value}:".
        #[arg(long, value_name = "USER:{value}")]
        basic: Option<String>,
        /// Replace its placeholder wherever the agent writes it in a JSON or
        /// form request body, or a WebSocket text message.
        #[arg(long)]
        body: bool,
        // Boxed: the grant flags would make every other variant as large.
        #[command(flatten)]
        oauth2: Box<OAuth2Args>,
        #[command(flatten)]
        jwt: Box<JwtArgs>,
        #[command(flatten)]
        value: ValueInput,
    },
    /// Replace a secret's value, keeping its name and grants. For an
    /// OAuth2 secret: the client secret, and with --refresh-token-stdin a
    /// new refresh token (how a secret that needs reconnection is fixed);
    /// for a GitHub App, its private key.
    Rotate {
        name: String,
        /// GitHub App or service account: read the private key (PEM) from
        /// this file instead of standard input.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["refresh_token_stdin", "client_secret_file", "google_service_account_file"])]
        private_key_file: Option<PathBuf>,
        /// Service account: take the private key from this JSON key file
        /// (of the same key: a new key is a new secret).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["refresh_token_stdin", "client_secret_file"])]
        google_service_account_file: Option<PathBuf>,
        /// OAuth2: read a new refresh token from standard input, on the
        /// line after the client secret.
        #[arg(long)]
        refresh_token_stdin: bool,
        /// OAuth2: read the client secret from this file instead of
        /// standard input.
        #[arg(long, value_name = "FILE")]
        client_secret_file: Option<PathBuf>,
        #[command(flatten)]
        value: ValueInput,
    },
    /// List secrets (never their values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret and its grants.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Add an agent; prints its proxy token once.
    Add {
        name: String,
        /// Grant these secrets (repeatable).
        #[arg(long = "grant", value_name = "SECRET")]
        grants: Vec<String>,
        /// A cgroup that systemd or a container runtime manages for this agent.
        #[arg(long, value_name = "PATH")]
        cgroup: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Let an agent use a secret.
    Grant { agent: String, secret: String },
    /// Take a secret away from an agent.
    Revoke { agent: String, secret: String },
    /// List agents and their grants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent, its grants and its rules. The processes in the
    /// cgroup Airlock made for it are killed; a --cgroup one is left alone,
    /// and the removal refused while processes are in it unless --force.
    Rm {
        name: String,
        /// Remove it even though processes are still in its --cgroup cgroup
        /// (they keep running, refused as an unknown cgroup).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule.
    #[command(group(ArgGroup::new("action").required(true).args(["allow", "block", "rate", "approve"])))]
    Add {
        /// Host pattern: api.example.com, *.example.com, * (every host), an IP, optionally :PORT.
        #[arg(long, value_name = "HOST")]
        host: String,
        /// Path glob (default /**).
        #[arg(long, value_name = "GLOB")]
        path: Option<String>,
        /// Only this HTTP method (default: every method).
        #[arg(long, value_name = "METHOD")]
        method: Option<String>,
        /// Only this agent (default: every agent).
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// Let matching requests out under a default of deny (never lifts a
        /// block, an approval or a rate limit).
        #[arg(long)]
        allow: bool,
        /// Refuse matching requests (403).
        #[arg(long)]
        block: bool,
        /// Allow N requests per PERIOD (s, min, h, day), e.g. 60/min; more get 429.
        #[arg(long, value_name = "N/PERIOD")]
        rate: Option<String>,
        /// Hold matching requests until a person approves them.
        #[arg(long)]
        approve: bool,
        #[command(flatten)]
        body: Box<RuleBodyArgs>,
        #[arg(long)]
        json: bool,
    },
    /// List rules in evaluation order.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule.
    Rm { id: String },
}

/// `rule add`'s body condition: MCP (JSON-RPC) messages or GraphQL
/// operations in the body (one kind per rule).
#[derive(Debug, Args)]
pub struct RuleBodyArgs {
    /// Only MCP (JSON-RPC) messages in the body with this method, e.g. tools/call.
    #[arg(long, value_name = "METHOD")]
    pub mcp_method: Option<String>,
    /// Only tools/call messages whose tool name matches this glob, e.g. 'delete_*'.
    #[arg(long, value_name = "GLOB")]
    pub mcp_tool: Option<String>,
    /// Only tools/call messages whose argument at this JSON pointer matches
    /// the glob, e.g. '/path=/etc/*' (repeatable: all must match).
    #[arg(long = "mcp-arg", value_name = "POINTER=GLOB")]
    pub mcp_args: Vec<String>,
    /// Only GraphQL operations of this type (the rule's host and path are
    /// the GraphQL endpoint).
    #[arg(long, value_name = "query|mutation|subscription")]
    pub graphql: Option<String>,
    /// Only GraphQL operations with a top-level field of this name (not
    /// alias), or matching this glob, e.g. 'delete*'.
    #[arg(long, value_name = "NAME")]
    pub graphql_field: Option<String>,
    /// Bytes of the body read before deciding: N, NKiB or NMiB (default 64KiB).
    #[arg(long, value_name = "SIZE")]
    pub body_limit: Option<String>,
    /// What a body the rule cannot read (too large, not JSON, too deep, a
    /// GraphQL document too complex or not parseable) gets: refuse
    /// (default) or allow (the rule is passed over).
    #[arg(long, value_name = "refuse|allow")]
    pub on_unreadable: Option<String>,
}

#[derive(Debug, Args)]
pub struct DefaultArgs {
    /// allow or deny; with --agent also inherit (follow the global
    /// default). Without it: show the defaults.
    #[arg(value_name = "allow|deny")]
    pub action: Option<String>,
    /// Set this agent's own default, which overrides the global one.
    #[arg(long, value_name = "AGENT", requires = "action")]
    pub agent: Option<String>,
    /// Under deny, whether a secret granted to the agent that would be
    /// injected into a request also lets it out: allow (the default) or
    /// ignore (only allow rules do). Global only.
    #[arg(
        long,
        value_name = "allow|ignore",
        requires = "action",
        conflicts_with = "agent"
    )]
    pub grants: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RequestsArgs {
    /// Also allowed and dismissed ones.
    #[arg(long)]
    pub all: bool,
    /// The list as a JSON array.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<RequestsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Add the allow rule the request suggests (its agent, method, host
    /// and path pattern); the agent's next such request goes through.
    Allow { id: String },
    /// Silence the request: it is no longer listed, however often the
    /// agent is refused again (the count still grows).
    Dismiss { id: String },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this agent's requests.
    #[arg(long)]
    pub agent: Option<String>,
    /// From this time on: RFC 3339, or a duration back from now (90s, 15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Keep printing new events as they happen.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// At most this many events (default 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<i64>,
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain over every audit row; names the first row that
    /// was changed, removed or inserted, and exits 1 if there is one.
    Verify {
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn signed_jwt_secrets_take_their_flags_together() {
        let add = |extra: &[&str]| {
            let mut argv = vec!["airlock", "secret", "add", "x", "--host", "h"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv)
        };
        let app = ["--github-app-id", "1", "--github-installation-id", "2"];
        assert!(add(&app).is_ok());
        assert!(
            add(&["--github-app-id", "1"]).is_err(),
            "needs the installation"
        );
        assert!(
            add(&["--private-key-file", "k.pem"]).is_err(),
            "needs an app"
        );
        assert!(add(&["--google-service-account-file", "sa.json", "--scope", "s"]).is_ok());
        let both = [&app[..], &["--google-service-account-file", "sa.json"]].concat();
        assert!(add(&both).is_err(), "one injection");
    }

    #[test]
    fn a_secret_needs_exactly_one_injection() {
        assert!(Cli::try_parse_from(["airlock", "secret", "add", "x", "--host", "h"]).is_err());
        assert!(
            Cli::try_parse_from([
                "airlock", "secret", "add", "x", "--host", "h", "--header", "a", "--query", "b"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "airlock", "secret", "add", "x", "--host", "h", "--query", "k"
            ])
            .is_ok()
        );
    }
}
