//! Issue #15, item 8: a secret's sealed value is bound to its host, path
//! and injection, against the daemon's real PostgreSQL. A row changed by
//! SQL (a database writer without the master key) is never injected: the
//! request fails closed with a clear error. A row sealed the old way (id
//! only) is re-sealed once at start-up; one flipped back afterwards fails
//! loudly.

mod support;

use airlock::vault::{MasterKey, Vault};
use base64::Engine;
use support::gw::Gw;
use support::upstream::UpstreamOpts;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a database writer does after editing rows: tell the gateways.
const NOTIFY: &str = "SELECT pg_notify('airlock_config', 'secrets')";

/// Waits until the daemon's snapshot has reloaded past `generation`.
fn reloaded_after(gw: &Gw, generation: u64) {
    support::wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || {
            let now = gw.daemon.status_json()["snapshot"]["generation"].as_u64()?;
            (now > generation).then_some(())
        },
    )
    .expect("the snapshot reloads after NOTIFY");
}

fn generation(gw: &Gw) -> u64 {
    gw.daemon.status_json()["snapshot"]["generation"]
        .as_u64()
        .expect("status shows the snapshot generation")
}

/// Before: the AAD was the row id, so pointing `up` at another host by SQL
/// made the gateway inject the key there. Now the row no longer opens:
/// every request it would apply to is refused (503, the reason in the
/// answer and the log), nothing is sent, and the old host gets no key.
#[test]
fn a_secret_pointed_at_another_host_by_sql_is_never_injected() {
    let gw = Gw::start();
    let other_host = format!("localhost:{}", gw.up.port());
    let before = generation(&gw);
    gw.daemon.db().psql(&format!(
        "UPDATE secrets SET host_pattern = '{other_host}' WHERE name = 'up'; {NOTIFY}"
    ));
    reloaded_after(&gw, before);

    let there = gw
        .up
        .url("/echo/there")
        .replace("api.test.local", "localhost");
    for args in [
        vec![there.as_str()],
        vec!["-H", "Authorization: Bearer airlock:up", &there],
    ] {
        let out = gw.curl(&args);
        assert_eq!(Gw::code(&out), 503, "{out:#?}");
        assert!(
            out.stdout.contains("secret up cannot be used")
                && out.stdout.contains("changed outside Airlock"),
            "{out:#?}"
        );
    }
    assert!(gw.up.requests().is_empty(), "{:#?}", gw.up.requests());
    assert!(!gw.up.saw(&gw.value));
    let log = gw.daemon.log();
    assert!(
        log.contains("secret up cannot be used") && log.contains("changed outside Airlock"),
        "the daemon log says nothing: {log}"
    );
    // The host it was added for is no longer named by the row: no key.
    let out = gw.curl(&[&gw.up.url("/echo/here")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert!(
        gw.up
            .last_request()
            .unwrap()
            .header("authorization")
            .is_none()
    );

    // Other bindings, likewise: the injected header and the path glob.
    for sql in [
        format!(
            "host_pattern = '{}', injection_target = 'x-echo'",
            gw.host()
        ),
        "injection_target = 'authorization', path_glob = '/echo/**'".to_owned(),
    ] {
        let before = generation(&gw);
        gw.daemon.db().psql(&format!(
            "UPDATE secrets SET {sql} WHERE name = 'up'; {NOTIFY}"
        ));
        reloaded_after(&gw, before);
        let out = gw.curl(&[&gw.up.url("/echo/here")]);
        assert_eq!(Gw::code(&out), 503, "{sql}: {out:#?}");
    }
    assert!(!gw.up.saw(&gw.value));
    let rows = gw.requests(5);
    assert_eq!(
        rows.iter().filter(|r| r["status"] == 503).count(),
        4,
        "{rows:#?}"
    );
}

/// A row as every row was before the binding (`seal_format` 1, sealed with
/// the row id alone, as the migration leaves them) is re-sealed at the next
/// start and then injected as before. A re-sealed row flipped back to
/// format 1 does not open as a legacy row: the start-up says so, and the
/// gateway refuses to use it.
#[test]
fn a_legacy_row_is_upgraded_once_and_a_flipped_back_one_fails_loudly() {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let mut gw = Gw::start_with(
        UpstreamOpts::default(),
        &[("SECRET_ENCRYPTION_KEY", key_b64.as_str())],
    );
    let vault = Vault::new(&MasterKey::from_bytes(key));
    let db = gw.daemon.db();
    let id = db.psql("SELECT id FROM secrets WHERE name = 'up'");
    assert_eq!(
        db.psql("SELECT seal_format FROM secrets WHERE name = 'up'"),
        "2"
    );
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let legacy = vault.seal(uuid.as_bytes(), gw.value.as_bytes()).unwrap();
    db.psql(&format!(
        "UPDATE secrets SET ciphertext = '\\x{}', nonce = '\\x{}', seal_format = 1 \
         WHERE name = 'up'",
        hex(&legacy.ciphertext),
        hex(&legacy.nonce)
    ));

    gw.restart();
    assert_eq!(
        db.psql("SELECT seal_format FROM secrets WHERE name = 'up'"),
        "2"
    );
    let stored = db.psql("SELECT encode(ciphertext, 'hex') FROM secrets WHERE name = 'up'");
    assert_ne!(stored, hex(&legacy.ciphertext), "the row was not re-sealed");
    assert!(
        gw.daemon.log().contains("secrets re-sealed"),
        "{}",
        gw.daemon.log()
    );
    let out = gw.curl(&[&gw.up.url("/echo/upgraded")]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    assert_eq!(
        gw.up.last_request().unwrap().header("authorization"),
        Some(format!("Bearer {}", gw.value).as_str())
    );
    // The id alone no longer opens it.
    let nonce = db.psql("SELECT encode(nonce, 'hex') FROM secrets WHERE name = 'up'");
    let bytes = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let sealed = airlock::vault::Sealed::from_parts(&bytes(&nonce), bytes(&stored)).unwrap();
    assert!(vault.open(uuid.as_bytes(), &sealed).is_err());

    // Flipped back by SQL: loud at start, refused on use.
    db.psql("UPDATE secrets SET seal_format = 1 WHERE name = 'up'");
    gw.restart();
    assert_eq!(
        db.psql("SELECT seal_format FROM secrets WHERE name = 'up'"),
        "1"
    );
    let log = gw.daemon.log();
    assert!(
        log.contains("secret up is marked as sealed in the old format but does not open as one"),
        "{log}"
    );
    gw.up.clear_requests();
    let out = gw.curl(&[&gw.up.url("/echo/flipped")]);
    assert_eq!(Gw::code(&out), 503, "{out:#?}");
    assert!(out.stdout.contains("old format"), "{out:#?}");
    assert!(gw.up.requests().is_empty(), "{:#?}", gw.up.requests());
}
