//! `airlock ca path|install|uninstall|systemd-dropin`: the local CA that
//! agents must trust.

use anyhow::Result;

use super::{data_dir, status};
use crate::cli::args::CaCommand;
use airlock::admin::client::AdminClient;
use airlock::intercept::trust_view;
use airlock::tls::trust_store;

/// `airlock ca path`: where the running daemon keeps its CA certificate.
pub async fn path(client: &AdminClient) -> Result<()> {
    println!("{}", status::fetch(client).await?.ca_cert);
    Ok(())
}

/// `airlock ca install|uninstall`: needs no daemon, the CA is a file in
/// the data directory.
pub fn trust_store(client: &AdminClient, cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::Install => {
            let ca = data_dir(client).join(airlock::tls::CA_CERT_FILE);
            let at = trust_store::install(&ca)?;
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
        CaCommand::SystemdDropin => print!("{}", systemd_dropin(data_dir(client))),
        CaCommand::Path => {}
    }
    Ok(())
}

/// The drop-in for an agent unit (docs/trust-view.md): the unit starts
/// after the daemon, which writes the view's files at start-up, and binds
/// them over each trust store path this host has.
fn systemd_dropin(data_dir: &std::path::Path) -> String {
    let files = trust_view::TrustFiles::in_dir(data_dir);
    let mut out = String::from(
        "# Airlock: the agent's view of the system trust store (airlock ca systemd-dropin)\n\
         [Unit]\nAfter=airlock.service\n\n[Service]\n",
    );
    for line in trust_view::systemd_lines(&files) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dropin_orders_after_the_daemon_and_binds_the_data_dirs_files() {
        let text = systemd_dropin(std::path::Path::new("/var/lib/airlock"));
        assert!(text.contains("[Unit]\nAfter=airlock.service\n"), "{text}");
        let binds: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("BindReadOnlyPaths="))
            .collect();
        // This host has at least the Debian bundle the tests run on.
        assert!(
            binds
                .iter()
                .any(|l| l.ends_with(":/etc/ssl/certs/ca-certificates.crt")),
            "{text}"
        );
        assert!(
            binds
                .iter()
                .all(|l| l.starts_with("BindReadOnlyPaths=-/var/lib/airlock/agent-"))
        );
    }
}
