//! `airlock stop [--release]`: stop the daemon, and with `--release` also
//! remove the transparent interception it left in place.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{data_dir, status};
use airlock::admin::client::AdminClient;

/// How long the daemon has to drain and exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(60);

pub async fn run(client: &AdminClient, release: bool) -> Result<()> {
    match status::fetch(client).await {
        Ok(s) => {
            let pid = Pid::from_raw(i32::try_from(s.pid).context("pid")?);
            terminate(pid).await?;
            println!("stopped the daemon (pid {pid})");
        }
        Err(e) if !release => return Err(e.into()),
        Err(_) => println!("the daemon is not running"),
    }
    if release {
        release_interception(client)?;
    }
    Ok(())
}

/// SIGTERM, then wait for the process to be gone.
async fn terminate(pid: Pid) -> Result<()> {
    kill(pid, Signal::SIGTERM).with_context(|| format!("cannot signal the daemon (pid {pid})"))?;
    let deadline = Instant::now() + EXIT_WAIT;
    while process_alive(pid.as_raw()) {
        if Instant::now() > deadline {
            bail!("the daemon (pid {pid}) did not exit within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Detaches and unpins what transparent interception left in the kernel,
/// so agents connect directly while the daemon is down.
fn release_interception(client: &AdminClient) -> Result<()> {
    let released = airlock::intercept::release(data_dir(client))
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
