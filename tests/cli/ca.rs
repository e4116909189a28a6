//! `airlock ca install|uninstall` against the system trust store.

use crate::support::*;

/// `airlock ca install` puts the CA in the system bundle that clients read
/// by default; `uninstall` takes it out. Runs against the real trust store,
/// so a guard uninstalls even when the test fails.
#[test]
fn ca_install_and_uninstall_change_the_system_trust_store() {
    const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
    if !std::path::Path::new("/usr/sbin/update-ca-certificates").exists() {
        eprintln!("skipped: no update-ca-certificates on this system");
        return;
    }
    struct Uninstall<'a>(&'a Daemon);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = self.0.cli(&["ca", "uninstall"]);
        }
    }
    let d = Daemon::start();
    let ca = std::fs::read_to_string(d.data_dir().join("ca.crt")).unwrap();
    // A line from the middle of the base64 body identifies the certificate.
    let body_line = ca.lines().nth(3).unwrap().to_owned();
    let _guard = Uninstall(&d);
    let out = d.cli_ok(&["ca", "install"]);
    assert!(out.contains("installed"), "{out}");
    assert!(
        std::fs::read_to_string(BUNDLE)
            .unwrap()
            .contains(&body_line)
    );
    let out = d.cli_ok(&["ca", "uninstall"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !std::fs::read_to_string(BUNDLE)
            .unwrap()
            .contains(&body_line)
    );
    assert!(d.cli_ok(&["ca", "uninstall"]).contains("was not in"));
}
