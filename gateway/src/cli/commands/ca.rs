//! `airlock ca path|install|uninstall`: the local CA that agents must
//! trust.

use anyhow::Result;

use super::{data_dir, status};
use crate::cli::args::CaCommand;
use airlock::admin::client::AdminClient;
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
        CaCommand::Path => {}
    }
    Ok(())
}
