//! What each command does: build the request, call the daemon, print.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::SecondsFormat;

use super::args::*;
use super::{output, value};
use airlock::admin::client::AdminClient;
use airlock::config::{Overrides, Settings};
use airlock::datadir::DataDir;
use airlock::intercept::agent_user::RunAs;
use airlock::model::Injection;
use airlock::policy::{Rate, RuleAction};
use airlock::service::types::*;
use airlock::store::verify::ChainReport;

pub fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides {
        data_dir: cli.data_dir,
        config_file: cli.config,
        ..Overrides::default()
    };
    match cli.command {
        Command::Serve(args) => serve(overrides, *args),
        Command::InstallService {
            unit_dir,
            bin_dir,
            no_reload,
        } => install_service(unit_dir, bin_dir, no_reload),
        other => {
            let settings = Settings::resolve(overrides)?;
            let client = AdminClient::new(DataDir::new(&settings.data_dir).admin_socket());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(manage(&client, other))
        }
    }
}

fn serve(overrides: Overrides, args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(Overrides {
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
        intercept: args.intercept,
        dashboard_listen: args.dashboard_listen,
        insecure_public: args.insecure_public,
        oidc_issuer: args.oidc_issuer,
        oidc_client_id: args.oidc_client_id,
        // From the environment only: a flag would show it in `ps`.
        oidc_client_secret: std::env::var(airlock::config::OIDC_CLIENT_SECRET_ENV).ok(),
        oidc_redirect_url: args.oidc_redirect_url,
        oidc_allowed_emails: args.oidc_allowed_emails,
        oidc_allowed_domain: args.oidc_allowed_domain,
        ..overrides
    })?;
    airlock::logging::init(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(airlock::daemon::serve(settings))?;
    Ok(())
}

async fn manage(client: &AdminClient, command: Command) -> Result<()> {
    match command {
        Command::Serve(_) | Command::InstallService { .. } => unreachable!("handled by run"),
        Command::Status { json } => status(client, json).await,
        Command::Secret(cmd) => secret(client, cmd).await,
        Command::Agent(cmd) => agent(client, cmd).await,
        Command::Rule(cmd) => rule(client, cmd).await,
        Command::Audit(args) => audit(client, args).await,
        Command::Approvals { follow, all, json } => approvals(client, follow, all, json).await,
        Command::Approve { id } => decide(client, &id, true).await,
        Command::Deny { id } => decide(client, &id, false).await,
        Command::Run(args) => run_agent(client, args).await,
        Command::Stop { release } => stop(client, release).await,
        Command::Admin(cmd) => admin(client, cmd).await,
        Command::Ca(CaCommand::Path) => {
            let s: Status = client.get("/api/v1/status").await?;
            println!("{}", s.ca_cert);
            Ok(())
        }
        // The trust store needs no daemon: the CA is a file in the data dir.
        Command::Ca(cmd) => trust_store(client, cmd),
    }
}

/// `airlock admin ...`: the dashboard's credentials, over the admin socket
/// only (see `airlock::admin`).
async fn admin(client: &AdminClient, cmd: AdminCommand) -> Result<()> {
    use airlock::service::credentials::{
        ApiTokenCreated, ApiTokenView, CreateApiToken, SetPassword,
    };
    match cmd {
        AdminCommand::SetPassword => {
            let input = ValueInput {
                value: None,
                value_stdin: false,
            };
            let password = value::read(&input, "the dashboard password")?;
            let _: () = client
                .put_json("/api/v1/admin/password", &SetPassword { password })
                .await?;
            eprintln!("dashboard password set");
            // The first-start password no longer works: its file goes.
            let data_dir = client
                .socket()
                .parent()
                .unwrap_or(std::path::Path::new("/"));
            if airlock::dashboard::first_password::remove(data_dir)? {
                eprintln!(
                    "removed {} (the first-start password)",
                    airlock::dashboard::first_password::path(data_dir).display()
                );
            }
        }
        AdminCommand::Token(TokenCommand::Create { name }) => {
            let created: ApiTokenCreated = client
                .post("/api/v1/admin/tokens", &CreateApiToken { name })
                .await?;
            eprintln!(
                "API token {} created; it is shown only now. Send it as \
                 `Authorization: Bearer TOKEN` to the dashboard's /api/v1.",
                created.token.name
            );
            println!("{}", created.secret.expose());
        }
        AdminCommand::Token(TokenCommand::List { json }) => {
            let tokens: Vec<ApiTokenView> = client.get("/api/v1/admin/tokens").await?;
            if json {
                return output::json(&tokens);
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        output::or_dash(
                            t.last_used_at
                                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
                        ),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["NAME", "CREATED", "LAST USED"], &rows);
        }
        AdminCommand::Token(TokenCommand::Rm { name }) => {
            client
                .delete(&format!("/api/v1/admin/tokens/{}", segment(&name)))
                .await?;
            eprintln!("API token {name} removed");
        }
    }
    Ok(())
}

async fn status(client: &AdminClient, json: bool) -> Result<()> {
    let s: Status = client.get("/api/v1/status").await?;
    if json {
        return output::json(&s);
    }
    println!("airlock {} is running (pid {})", s.version, s.pid);
    println!(
        "  since       {}",
        s.started_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    println!("  data dir    {}", s.data_dir);
    println!("  mode        {}", s.mode);
    for l in &s.listeners {
        println!("  listening   {l}");
    }
    let pid = s
        .database
        .postgres_pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    println!(
        "  database    {} ({}){pid}",
        s.database.target, s.database.kind
    );
    println!("  master key  {}", s.key_id);
    println!("  CA          {}", s.ca_cert);
    if let Some(addr) = &s.dashboard_addr {
        println!("  dashboard   http://{addr}/");
    }
    let password_file = airlock::dashboard::first_password::path(std::path::Path::new(&s.data_dir));
    if password_file.exists() {
        println!(
            "  password    the first-start dashboard password is in {} (root only); \
             replace it with `airlock admin set-password`",
            password_file.display()
        );
    }
    println!(
        "  config      {} agents, {} secrets, {} rules (generation {})",
        s.snapshot.agents, s.snapshot.secrets, s.snapshot.rules, s.snapshot.generation
    );
    let events = s
        .audit_events
        .map_or("? (database unreachable)".to_owned(), |n| n.to_string());
    println!("  audit       {events} events");
    let a = &s.audit;
    if a.spool_bytes > 0 {
        println!(
            "  audit spool {} bytes waiting for the database ({} records spooled since start)",
            a.spool_bytes, a.spooled
        );
    }
    if a.dropped > 0 {
        println!("  AUDIT LOST  {} records could not be stored", a.dropped);
    }
    if a.stalled {
        println!(
            "  AUDIT STALLED records can be stored neither in the database nor in the spool{}",
            if a.required {
                ": new requests are refused (503)"
            } else {
                ""
            }
        );
    }
    for problem in &s.snapshot.corrupt {
        println!("  NOT IN EFFECT: {problem}");
    }
    Ok(())
}

async fn secret(client: &AdminClient, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Add {
            name,
            host,
            path,
            header,
            query,
            aws_sigv4,
            value,
        } => {
            let injection = match (header, query, aws_sigv4) {
                (Some(spec), None, None) => Injection::header_from_spec(&spec)?,
                (None, Some(param), None) => Injection::Query { param },
                (None, None, Some(spec)) => Injection::aws_from_spec(&spec)?,
                _ => bail!("give exactly one of --header, --query or --aws-sigv4"),
            };
            let value = value::read(&value, &name)?;
            let view: SecretView = client
                .post(
                    "/api/v1/secrets",
                    &AddSecret {
                        name,
                        host,
                        path,
                        injection,
                        value,
                    },
                )
                .await?;
            println!(
                "added secret {} for {}{} ({})",
                view.name,
                view.host,
                view.path,
                view.injection.describe()
            );
        }
        SecretCommand::Rotate { name, value } => {
            let value = value::read(&value, &name)?;
            let view: SecretView = client
                .post(
                    &format!("/api/v1/secrets/{}/rotate", segment(&name)),
                    &RotateSecret { value },
                )
                .await?;
            println!(
                "rotated secret {} (now version {})",
                view.name, view.version
            );
        }
        SecretCommand::List { json } => {
            let secrets: Vec<SecretView> = client.get("/api/v1/secrets").await?;
            if json {
                return output::json(&secrets);
            }
            let rows: Vec<Vec<String>> = secrets
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.host.clone(),
                        s.path.clone(),
                        s.injection.describe(),
                        s.version.to_string(),
                        s.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "HOST", "PATH", "INJECTION", "VERSION", "UPDATED"],
                &rows,
            );
        }
        SecretCommand::Rm { name } => {
            client
                .delete(&format!("/api/v1/secrets/{}", segment(&name)))
                .await?;
            println!("removed secret {name}");
        }
    }
    Ok(())
}

async fn agent(client: &AdminClient, cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Add {
            name,
            grants,
            cgroup,
            json,
        } => {
            let created: AgentCreated = client
                .post(
                    "/api/v1/agents",
                    &AddAgent {
                        name,
                        grants,
                        cgroup,
                    },
                )
                .await?;
            if json {
                return output::json(&created);
            }
            let grants = if created.agent.grants.is_empty() {
                "no secrets".to_owned()
            } else {
                created.agent.grants.join(", ")
            };
            eprintln!(
                "added agent {} (cgroup {}; granted {grants})\n\
                 its proxy token is below; it is shown only this once:",
                created.agent.name, created.agent.cgroup
            );
            println!("{}", created.token.expose());
        }
        AgentCommand::Grant { agent, secret } => {
            let r: GrantResult = client
                .put(&format!(
                    "/api/v1/agents/{}/grants/{}",
                    segment(&agent),
                    segment(&secret)
                ))
                .await?;
            if r.added {
                println!("granted {secret} to {agent}");
            } else {
                println!("{agent} already had {secret}");
            }
        }
        AgentCommand::Revoke { agent, secret } => {
            client
                .delete(&format!(
                    "/api/v1/agents/{}/grants/{}",
                    segment(&agent),
                    segment(&secret)
                ))
                .await?;
            println!("revoked {secret} from {agent}");
        }
        AgentCommand::List { json } => {
            let agents: Vec<AgentView> = client.get("/api/v1/agents").await?;
            if json {
                return output::json(&agents);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.cgroup.clone(),
                        if a.grants.is_empty() {
                            "-".into()
                        } else {
                            a.grants.join(",")
                        },
                        a.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ]
                })
                .collect();
            output::table(&["NAME", "CGROUP", "GRANTS", "CREATED"], &rows);
        }
        AgentCommand::Rm { name, force } => {
            let query = if force { "?force=true" } else { "" };
            client
                .delete(&format!("/api/v1/agents/{}{query}", segment(&name)))
                .await?;
            println!("removed agent {name}");
        }
    }
    Ok(())
}

async fn rule(client: &AdminClient, cmd: RuleCommand) -> Result<()> {
    match cmd {
        RuleCommand::Add {
            host,
            path,
            method,
            agent,
            block,
            rate,
            approve,
            json,
        } => {
            let action = match (block, rate, approve) {
                (true, None, false) => RuleAction::Block,
                (false, None, true) => RuleAction::Approve,
                (false, Some(rate), false) => RuleAction::Rate(Rate::parse(&rate)?),
                _ => bail!("give exactly one of --block, --rate N/PERIOD or --approve"),
            };
            let rule: RuleView = client
                .post(
                    "/api/v1/rules",
                    &AddRule {
                        host,
                        path,
                        method,
                        agent,
                        action,
                    },
                )
                .await?;
            if json {
                return output::json(&rule);
            }
            println!("added rule {}: {}", rule.id, describe_rule(&rule));
        }
        RuleCommand::List { json } => {
            let rules: Vec<RuleView> = client.get("/api/v1/rules").await?;
            if json {
                return output::json(&rules);
            }
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.host.clone(),
                        r.path.clone(),
                        r.method.clone().unwrap_or_else(|| "*".into()),
                        r.agent.clone().unwrap_or_else(|| "*".into()),
                        r.action.to_string(),
                    ]
                })
                .collect();
            output::table(&["ID", "HOST", "PATH", "METHOD", "AGENT", "ACTION"], &rows);
        }
        RuleCommand::Rm { id } => {
            let id: i64 = id.parse().map_err(|_| {
                anyhow::anyhow!("rule id {id:?} is not a number: see `airlock rule list`")
            })?;
            client.delete(&format!("/api/v1/rules/{id}")).await?;
            println!("removed rule {id}");
        }
    }
    Ok(())
}

fn describe_rule(r: &RuleView) -> String {
    format!(
        "{} {}{} for {} → {}",
        r.method.as_deref().unwrap_or("*"),
        r.host,
        r.path,
        r.agent
            .as_deref()
            .map_or("every agent".to_owned(), |a| format!("agent {a}")),
        r.action
    )
}

async fn audit(client: &AdminClient, args: AuditArgs) -> Result<()> {
    if let Some(AuditCommand::Verify { json }) = args.command {
        return verify_audit(client, json).await;
    }
    let mut q = AuditQuery {
        agent: args.agent,
        since: args.since,
        after_id: None,
        limit: args.limit,
    };
    loop {
        let path = format!(
            "/api/v1/audit?{}",
            serde_urlencoded::to_string(&q).context("encoding the query")?
        );
        let events: Vec<AuditEvent> = client.get(&path).await?;
        for e in &events {
            print_event(e, args.json)?;
        }
        if !args.follow {
            return Ok(());
        }
        if let Some(last) = events.last() {
            q.after_id = Some(last.id);
        } else if q.after_id.is_none() {
            // Nothing yet: follow from the newest event, whatever it will be.
            q.after_id = Some(0);
        }
        q.since = None;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn verify_audit(client: &AdminClient, json: bool) -> Result<()> {
    let r: ChainReport = client.get("/api/v1/audit/verify").await?;
    if json {
        output::json(&r)?;
    }
    match &r.broken {
        None => {
            if !json {
                let before = if r.unchained > 0 {
                    format!(" ({} older rows from before the chain)", r.unchained)
                } else {
                    String::new()
                };
                println!(
                    "audit trail intact: {} rows verified{before}; head {}",
                    r.verified, r.head
                );
            }
            Ok(())
        }
        Some(b) => {
            let at = b.row.map_or("at the end of the trail".to_owned(), |id| {
                format!("at row {id}")
            });
            bail!(
                "audit trail broken {at}: {} ({} rows before it verified)",
                b.reason,
                r.verified
            )
        }
    }
}

fn print_event(e: &AuditEvent, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let at = e.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    if e.kind == "admin" {
        println!(
            "{at}  admin    {}  {}",
            e.decision,
            e.detail.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let secrets = if e.secrets.is_empty() {
        String::new()
    } else {
        format!("  secrets={}", e.secrets.join(","))
    };
    println!(
        "{at}  request  {}  {} {}{}  {} {}{secrets}",
        output::or_dash(e.agent.as_deref()),
        output::or_dash(e.method.as_deref()),
        output::or_dash(e.host.as_deref()),
        e.path.as_deref().unwrap_or(""),
        output::or_dash(e.status),
        e.decision,
    );
    Ok(())
}

/// Names are validated to need no escaping; anything else is refused by
/// the daemon, but must still not break the URL.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn approvals(client: &AdminClient, follow: bool, all: bool, json: bool) -> Result<()> {
    let path = format!("/api/v1/approvals?all={all}");
    let mut shown = std::collections::HashSet::new();
    loop {
        let list: Vec<ApprovalView> = client.get(&path).await?;
        let new: Vec<&ApprovalView> = list.iter().filter(|a| !shown.contains(&a.id)).collect();
        if json {
            for a in &new {
                println!("{}", serde_json::to_string(a)?);
            }
        } else if !follow || !new.is_empty() {
            if shown.is_empty() && new.is_empty() {
                println!("no requests are waiting for approval");
            }
            let rows: Vec<Vec<String>> = new
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.agent.clone(),
                        format!("{} {}{}", a.method, a.host, a.path),
                        a.status.to_string(),
                        a.requested_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                output::table(&["ID", "AGENT", "REQUEST", "STATUS", "REQUESTED"], &rows);
            }
        }
        shown.extend(new.iter().map(|a| a.id));
        if !follow {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn decide(client: &AdminClient, id: &str, approve: bool) -> Result<()> {
    let id: i64 = id.parse().map_err(|_| {
        anyhow::anyhow!("approval id {id:?} is not a number: see `airlock approvals`")
    })?;
    let verb = if approve { "approve" } else { "deny" };
    let a: ApprovalView = client
        .post(&format!("/api/v1/approvals/{id}/{verb}"), &())
        .await?;
    println!(
        "{} approval {}: {} {}{} by {}",
        a.status, a.id, a.method, a.host, a.path, a.agent
    );
    Ok(())
}

/// `airlock run`: look the agent up, then become its command.
async fn run_agent(client: &AdminClient, args: RunArgs) -> Result<()> {
    let agents: Vec<AgentView> = client.get("/api/v1/agents").await?;
    let Some(agent) = agents.iter().find(|a| a.name == args.agent) else {
        bail!(
            "there is no agent {:?} (add it with: airlock agent add {})",
            args.agent,
            args.agent
        );
    };
    let status: Status = client.get("/api/v1/status").await?;
    let run_as = match (&args.user, args.as_invoking_user) {
        (Some(user), _) => RunAs::User(user),
        (None, true) => RunAs::InvokingUser,
        (None, false) => RunAs::AgentUser,
    };
    let spec = airlock::intercept::run::RunSpec {
        agent: &agent.name,
        cgroup: &agent.cgroup,
        ca_cert: std::path::Path::new(&status.ca_cert),
        data_dir: std::path::Path::new(&status.data_dir),
        run_as,
        env: &args.env,
        cwd: args.cwd.as_deref(),
        command: &args.command,
    };
    // Returns only on failure.
    Err(airlock::intercept::run::exec(&spec).into())
}

/// `airlock stop [--release]`.
async fn stop(client: &AdminClient, release: bool) -> Result<()> {
    let data_dir = client
        .socket()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    match client.get::<Status>("/api/v1/status").await {
        Ok(s) => {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(s.pid).context("pid")?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .with_context(|| format!("cannot signal the daemon (pid {pid})"))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while process_alive(pid.as_raw()) {
                if std::time::Instant::now() > deadline {
                    bail!("the daemon (pid {pid}) did not exit within 60 s of SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!("stopped the daemon (pid {pid})");
        }
        Err(e) if !release => return Err(e.into()),
        Err(_) => println!("the daemon is not running"),
    }
    if release {
        let released = airlock::intercept::release(&data_dir)
            .context("cannot remove transparent interception")?;
        if released.is_empty() {
            println!("no transparent interception was left in place");
        } else {
            let table = released
                .nft_table
                .map(|t| format!(", the nftables table inet {t}"))
                .unwrap_or_default();
            println!(
                "released transparent interception (removed {} pinned objects{table}): agents \
                 now connect directly",
                released.pins.len()
            );
        }
    }
    Ok(())
}

/// Whether `pid` runs (a zombie waiting for its parent does not).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn trust_store(client: &AdminClient, cmd: CaCommand) -> Result<()> {
    use airlock::tls::trust_store;
    let data_dir = client
        .socket()
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    match cmd {
        CaCommand::Install => {
            let at = trust_store::install(&data_dir.join(airlock::tls::CA_CERT_FILE))?;
            println!(
                "installed the Airlock CA in the system trust store ({})",
                at.display()
            );
        }
        CaCommand::Uninstall => match trust_store::uninstall()? {
            Some(at) => println!(
                "removed the Airlock CA from the system trust store ({})",
                at.display()
            ),
            None => println!("the Airlock CA was not in the system trust store"),
        },
        CaCommand::Path => {}
    }
    Ok(())
}

fn install_service(
    unit_dir: std::path::PathBuf,
    bin_dir: std::path::PathBuf,
    no_reload: bool,
) -> Result<()> {
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
