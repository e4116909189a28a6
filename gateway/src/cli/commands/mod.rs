//! What each command does: build the request, call the daemon, print. One
//! file per command group of [`Command`]; this file dispatches and holds
//! what several groups share.

mod admin;
mod agent;
mod approval;
mod audit;
mod ca;
mod default;
mod docker;
mod doctor;
mod requests;
mod rule;
mod run;
mod secret;
mod serve;
mod status;
mod stop;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::{CaCommand, Cli, Command};
use airlock::admin::client::AdminClient;
use airlock::config::{Overrides, Settings};
use airlock::datadir::DataDir;

pub fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides {
        data_dir: cli.data_dir,
        config_file: cli.config,
        ..Overrides::default()
    };
    match cli.command {
        Command::Serve(args) => serve::serve(overrides, *args),
        Command::Doctor(args) => doctor::run(overrides, *args),
        Command::InstallService {
            unit_dir,
            bin_dir,
            no_reload,
        } => serve::install_service(unit_dir, bin_dir, no_reload),
        Command::Status { json } => with_client(overrides, async |c| status::show(c, json).await),
        Command::Secret(cmd) => with_client(overrides, async |c| secret::run(c, cmd).await),
        Command::Agent(cmd) => with_client(overrides, async |c| agent::run(c, cmd).await),
        Command::Rule(cmd) => with_client(overrides, async |c| rule::run(c, cmd).await),
        Command::Default(args) => with_client(overrides, async |c| default::run(c, args).await),
        Command::Audit(args) => with_client(overrides, async |c| audit::run(c, args).await),
        Command::Requests(args) => with_client(overrides, async |c| requests::run(c, args).await),
        Command::Approvals { follow, all, json } => with_client(overrides, async |c| {
            approval::list(c, follow, all, json).await
        }),
        Command::Approve { id } => with_client(overrides, async |c| {
            approval::decide(c, &id, approval::Verdict::Approve).await
        }),
        Command::Deny { id } => with_client(overrides, async |c| {
            approval::decide(c, &id, approval::Verdict::Deny).await
        }),
        Command::Run(args) => with_client(overrides, async |c| run::run(c, args).await),
        Command::Stop { release } => with_client(overrides, async |c| stop::run(c, release).await),
        Command::Docker(cmd) => with_client(overrides, async |c| docker::run(c, cmd).await),
        Command::Admin(cmd) => with_client(overrides, async |c| admin::run(c, cmd).await),
        Command::Ca(CaCommand::Path) => with_client(overrides, async |c| ca::path(c).await),
        // The trust store needs no daemon: the CA is a file in the data dir.
        Command::Ca(cmd) => with_client(overrides, async |c| ca::trust_store(c, cmd)),
    }
}

/// Runs `command` as a client of the daemon's admin API, on a runtime of
/// its own: every command but `serve` and `install-service` is one.
fn with_client(
    overrides: Overrides,
    command: impl AsyncFnOnce(&AdminClient) -> Result<()>,
) -> Result<()> {
    let settings = Settings::resolve(overrides)?;
    let client = AdminClient::new(DataDir::new(&settings.data_dir).admin_socket());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(command(&client))
}

/// The data directory the client's admin socket lives in, for the
/// commands that also touch files there (the CA, the first-start
/// password, the interception state).
fn data_dir(client: &AdminClient) -> &Path {
    client.socket().parent().unwrap_or(Path::new("/"))
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

/// A rule's or an approval's id as the daemon numbers them; `list` is the
/// command that shows them, for the message.
fn parse_id(id: &str, what: &str, list: &str) -> Result<i64> {
    id.parse()
        .map_err(|_| anyhow::anyhow!("{what} id {id:?} is not a number: see `{list}`"))
}

/// Between two polls of a `--follow`: half a second, or stop on Ctrl-C.
async fn next_poll() -> ControlFlow<()> {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(500)) => ControlFlow::Continue(()),
        _ = tokio::signal::ctrl_c() => ControlFlow::Break(()),
    }
}
