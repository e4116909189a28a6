//! End-to-end tests of the store: the embedded PostgreSQL and its
//! supervisor, migrations, restarts and crashes, a database shared by two
//! daemons, start-up refusals (newer schema, unreachable database, wrong
//! master key, second daemon, unusable data directory), how the vault's
//! ciphertexts land in the database, and the audit writer's batch COPY
//! read back column by column (`store/audit_batch.rs`).

mod support;

#[path = "store/audit_batch.rs"]
mod audit_batch;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::process::{pid_alive, wait_for_exit};
use support::*;

const TABLES: &[&str] = &[
    "agents",
    "secrets",
    "grants",
    "rules",
    "approvals",
    "audit_events",
    "vault_keys",
    "policy_defaults",
    "access_requests",
];

/// Puts one of everything into a daemon's configuration.
fn seed(d: &Daemon, tag: &str) {
    d.cli_stdin(
        &[
            "secret",
            "add",
            &format!("key-{tag}"),
            "--host",
            "api.example.com",
            "--header",
            "Authorization",
        ],
        format!("sk-seed-{tag}-{}\n", random_hex(8)),
    )
    .ok();
    d.cli(&[
        "agent",
        "add",
        &format!("bot-{tag}"),
        "--grant",
        &format!("key-{tag}"),
    ])
    .ok();
    d.cli(&["rule", "add", "--host", "*.evil.com", "--block"])
        .ok();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The versions named by the files in migrations/, the schema's only source.
fn migration_versions() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version = name.split('_').next()?;
            (name.ends_with(".sql") && version.bytes().all(|b| b.is_ascii_digit()))
                .then(|| version.to_owned())
        })
        .collect()
}

#[test]
fn a_fresh_data_dir_is_initialised_and_migrated() {
    let d = Daemon::start();
    let db = d.db();

    let tables: BTreeSet<String> = db
        .psql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        .lines()
        .map(str::to_owned)
        .collect();
    for table in TABLES.iter().chain(&["_sqlx_migrations"]) {
        assert!(tables.contains(*table), "table {table} missing: {tables:?}");
    }
    let applied: BTreeSet<String> = db
        .rows("SELECT version, success FROM _sqlx_migrations")
        .into_iter()
        .map(|r| {
            assert_eq!(r[1], "t", "migration {} did not succeed", r[0]);
            r[0].clone()
        })
        .collect();
    assert_eq!(applied, migration_versions(), "applied migrations");
    assert_eq!(db.psql("SELECT count(*) FROM agents"), "0");

    let status = d.status_json();
    assert_eq!(status["database"]["kind"], "embedded");
    let pg = d.postgres_pid().expect("the embedded PostgreSQL runs");
    assert_eq!(
        status["database"]["postgres_pid"].as_i64(),
        Some(i64::from(pg))
    );
    assert_eq!(status["data_dir"], d.data_dir().to_str().unwrap());
    for count in ["agents", "secrets", "rules"] {
        assert_eq!(status["snapshot"][count], 0, "{status:#}");
    }
    assert_eq!(status["audit_events"], 0);
    assert_eq!(
        db.psql("SELECT key_id FROM vault_keys"),
        status["key_id"].as_str().unwrap(),
        "the master key is registered once"
    );

    // Private files, and a server that is not root and has no TCP socket.
    assert_eq!(mode(d.data_dir()), 0o711);
    assert_eq!(mode(&d.data_dir().join("master.key")), 0o600);
    assert_eq!(mode(&d.data_dir().join("admin.sock")) & 0o777, 0o600);
    let pgdata = d.data_dir().join("postgres/data");
    assert_eq!(mode(&pgdata), 0o700);
    assert_ne!(std::fs::metadata(&pgdata).unwrap().uid(), 0);
    let proc_status = std::fs::read_to_string(format!("/proc/{pg}/status")).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id != "0"),
        "PostgreSQL runs as root: {uid_line}"
    );
    assert_eq!(db.psql("SHOW listen_addresses"), "");
}

#[test]
fn data_survives_a_clean_restart_and_kill_9() {
    let mut d = Daemon::start();
    seed(&d, "a");
    let before = d.state();

    // Clean stop: exit 0, PostgreSQL stopped, socket removed.
    let pg = d.postgres_pid().expect("postgres runs");
    assert_eq!(d.stop(), 0, "log:\n{}", d.log());
    assert!(!pid_alive(pg), "PostgreSQL outlived a clean stop");
    assert!(!d.data_dir().join("admin.sock").exists());
    d.cli(&["status"])
        .fails_with(&["not running", "airlock serve"]);
    d.restart();
    assert_eq!(d.state(), before, "data changed across a clean restart");

    // kill -9 of the daemon: its PostgreSQL goes away by itself, and the
    // next start finds no stale lock or server in its way.
    let pg = d.postgres_pid().expect("postgres runs");
    d.kill9();
    assert!(
        wait_for_exit(pg, Duration::from_secs(15)),
        "PostgreSQL (pid {pg}) still runs 15 s after its daemon was killed"
    );
    d.cli(&["agent", "list"])
        .fails_with(&["not running", "airlock serve"]);
    d.restart();
    assert_eq!(d.state(), before, "data changed across kill -9");

    // kill -9 and restart at once, while the old server may still be up.
    let old_pg = d.postgres_pid().expect("postgres runs");
    d.kill9();
    d.restart();
    assert_eq!(d.state(), before, "data changed across kill -9 + restart");
    assert!(!pid_alive(old_pg), "the old PostgreSQL still runs");
    assert_ne!(d.postgres_pid(), Some(old_pg));

    // And it still takes writes.
    d.cli(&["agent", "add", "after-crash"]).ok();
    assert_eq!(d.status_json()["snapshot"]["agents"], 2);
}

#[test]
fn the_supervisor_restarts_a_killed_postgres() {
    let d = Daemon::start();
    seed(&d, "a");
    let before = d.state();
    let pg = d.status_json()["database"]["postgres_pid"]
        .as_i64()
        .expect("status shows the postgres pid");
    assert_eq!(Some(pg), d.postgres_pid().map(i64::from));

    kill(Pid::from_raw(pg as i32), Signal::SIGKILL).unwrap();
    let mut failures = Vec::new();
    let recovered = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let out = d.cli(&["agent", "list", "--json"]);
        if out.success() {
            Some(())
        } else {
            failures.push(out);
            None
        }
    });
    assert!(
        recovered.is_some(),
        "CLI still failing 15 s after PostgreSQL was killed; last: {:#?}\nlog:\n{}",
        failures.last(),
        d.log()
    );
    // While it was down, errors were one clear line, not a crash.
    for out in &failures {
        assert_eq!(out.code, 1, "{out:#?}");
        assert!(out.stderr.starts_with("airlock: error: "), "{out:#?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:#?}");
    }

    assert_eq!(d.state(), before, "data lost when PostgreSQL was killed");
    let new_pg = d.status_json()["database"]["postgres_pid"]
        .as_i64()
        .expect("status shows the new postgres pid");
    assert_ne!(new_pg, pg);
    assert_eq!(Some(new_pg), d.postgres_pid().map(i64::from));
    d.cli(&["agent", "add", "after-restart"]).ok();
    assert_eq!(d.status_json()["snapshot"]["agents"], 2);
}

/// Polls `d`'s snapshot until it holds `n` agents; returns how long after
/// `since` that was seen.
fn agents_seen(d: &Daemon, n: u64, since: Instant) -> Option<Duration> {
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let out = d.cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        (v["snapshot"]["agents"].as_u64() == Some(n)).then(|| since.elapsed())
    })
}

#[test]
fn two_daemons_on_one_database_see_each_others_changes() {
    let key = random_master_key();
    let a = Daemon::builder().env("SECRET_ENCRYPTION_KEY", &key).start();
    let b = Daemon::builder()
        .env("DATABASE_URL", a.db().url())
        .env("SECRET_ENCRYPTION_KEY", &key)
        .start();
    let sa = a.status_json();
    let sb = b.status_json();
    assert_eq!(sb["database"]["kind"], "external");
    assert!(sb["database"]["postgres_pid"].is_null(), "{sb:#}");
    assert!(!b.data_dir().join("postgres").exists());
    assert_eq!(sa["key_id"], sb["key_id"]);
    assert_eq!(sb["snapshot"]["agents"], 0);

    // A → B.
    a.cli(&["agent", "add", "alpha"]).ok();
    let added = Instant::now();
    let seen = agents_seen(&b, 1, added).expect("B never saw A's agent");
    eprintln!("B saw A's agent after {seen:?}");
    assert!(
        seen < Duration::from_secs(1),
        "B saw A's agent after {seen:?}"
    );

    // B → A.
    b.cli(&["agent", "add", "beta"]).ok();
    let added = Instant::now();
    let seen = agents_seen(&a, 2, added).expect("A never saw B's agent");
    eprintln!("A saw B's agent after {seen:?}");
    assert!(
        seen < Duration::from_secs(1),
        "A saw B's agent after {seen:?}"
    );

    // A default set on A is in B's snapshot (its hot path) within the same bound.
    a.cli_ok(&["default", "deny"]);
    let set = Instant::now();
    let seen = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let v = b.status_json();
        (v["defaults"]["global"] == "deny").then(|| set.elapsed())
    })
    .expect("B never saw A's default");
    eprintln!("B saw A's default after {seen:?}");
    assert!(
        seen < Duration::from_secs(1),
        "B saw A's default after {seen:?}"
    );
    a.cli_ok(&["default", "allow"]);

    // Secrets sealed by one are listed, with the same key id, by the other.
    b.cli_stdin(
        &[
            "secret",
            "add",
            "shared",
            "--host",
            "api.example.com",
            "--query",
            "key",
        ],
        "sk-shared-value\n",
    )
    .ok();
    let listed = a.cli_ok(&["secret", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "shared");
    assert_eq!(listed[0]["key_id"], sa["key_id"]);
    assert_eq!(a.state(), b.state(), "the two daemons disagree");

    // A third gateway with another key is refused and changes nothing.
    let before = a.state();
    let c_dir = temp_data_dir();
    let out = serve_expect_exit(
        c_dir.path(),
        &[
            ("DATABASE_URL", &a.db().url()),
            ("SECRET_ENCRYPTION_KEY", &random_master_key()),
        ],
    );
    out.fails_with(&["master key", "SECRET_ENCRYPTION_KEY"]);
    assert_eq!(a.state(), before);
    assert_eq!(a.db().psql("SELECT count(*) FROM vault_keys"), "1");

    // Both write to the audit trail at once: the hash chain stays one
    // chain, in id order, whichever gateway appended.
    std::thread::scope(|s| {
        for (d, who) in [(&a, "a"), (&b, "b")] {
            s.spawn(move || {
                for i in 0..10 {
                    d.cli_ok(&["agent", "add", &format!("{who}-{i}")]);
                }
            });
        }
    });
    for d in [&a, &b] {
        let verified = d.cli_ok(&["audit", "verify"]);
        assert!(verified.starts_with("audit trail intact: "), "{verified}");
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let mut a = Daemon::start();
    seed(&a, "a");
    let before = a.state();
    let key_file = std::fs::read_to_string(a.data_dir().join("master.key")).unwrap();
    a.db().psql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999999999999, 'from a newer airlock', true, '\\x00', 0)",
    );

    // A second gateway on this database refuses it, and A is unaffected.
    let b_dir = temp_data_dir();
    let out = serve_expect_exit(
        b_dir.path(),
        &[
            ("DATABASE_URL", &a.db().url()),
            ("SECRET_ENCRYPTION_KEY", key_file.trim()),
        ],
    );
    out.fails_with(&["newer", "99999999999999", "upgrade airlock"]);
    assert_eq!(a.state(), before);

    // The daemon that owns it refuses to restart on it, leaves no server
    // running and no lock held: a second attempt gives the same answer.
    assert_eq!(a.stop(), 0);
    for _ in 0..2 {
        a.serve_expect_exit(&[])
            .fails_with(&["newer", "99999999999999"]);
        assert_eq!(a.postgres_pid(), None);
    }
    assert_eq!(
        a.db().psql_output("SELECT 1").code,
        2,
        "the database should be down"
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let dir = temp_data_dir();
    // A socket directory with no server.
    let out = serve_expect_exit(
        dir.path(),
        &[(
            "DATABASE_URL",
            "postgresql://airlock@localhost/airlock?host=/nonexistent-airlock-test",
        )],
    );
    out.fails_with(&["cannot reach the database", "/nonexistent-airlock-test"]);
    // A TCP port with no server; the password never appears.
    let out = serve_expect_exit(
        dir.path(),
        &[(
            "DATABASE_URL",
            "postgresql://airlock:hunter2-pw@127.0.0.1:1/airlock",
        )],
    );
    let message = out.fails_with(&["cannot reach the database", "127.0.0.1:1"]);
    assert!(!message.contains("hunter2-pw"), "password shown: {message}");
    // Not a PostgreSQL URL at all.
    serve_expect_exit(dir.path(), &[("DATABASE_URL", "mysql://db/airlock")])
        .fails_with(&["DATABASE_URL", "postgres://"]);

    // Nothing was left behind that looks like a running daemon.
    assert!(!dir.path().join("admin.sock").exists());
    assert!(!dir.path().join("postgres").exists());
    let mut status = hermetic_command(dir.path());
    status.arg("status");
    run(&mut status, None, Duration::from_secs(30)).fails_with(&["not running"]);
}

#[test]
fn a_wrong_master_key_is_refused_and_changes_nothing() {
    let k1 = random_master_key();
    let k2 = random_master_key();
    let mut d = Daemon::builder().env("SECRET_ENCRYPTION_KEY", &k1).start();
    seed(&d, "a");
    let before = d.state();
    let sealed_sql = "SELECT id, encode(ciphertext, 'hex'), encode(nonce, 'hex'), key_id, version \
                      FROM secrets ORDER BY id";
    let keys_sql = "SELECT key_id, encode(check_nonce, 'hex'), encode(check_ciphertext, 'hex') \
                    FROM vault_keys";
    let sealed_before = d.db().psql(sealed_sql);
    let keys_before = d.db().psql(keys_sql);
    assert!(
        !d.data_dir().join("master.key").exists(),
        "a key file was written although the key came from the environment"
    );
    assert_eq!(d.stop(), 0);

    d.set_env("SECRET_ENCRYPTION_KEY", &k2);
    let out = d.serve_expect_exit(&[]);
    let message = out.fails_with(&["master key", "SECRET_ENCRYPTION_KEY"]);
    assert!(
        !message.contains(&k1) && !message.contains(&k2),
        "key material shown"
    );
    // Malformed keys get their own messages.
    d.serve_expect_exit(&[("SECRET_ENCRYPTION_KEY", "not base64!")])
        .fails_with(&["SECRET_ENCRYPTION_KEY", "base64"]);
    d.serve_expect_exit(&[("SECRET_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAA==")])
        .fails_with(&["SECRET_ENCRYPTION_KEY", "32 bytes"]);
    assert_eq!(
        d.postgres_pid(),
        None,
        "a refused start left PostgreSQL running"
    );

    d.set_env("SECRET_ENCRYPTION_KEY", &k1);
    d.restart();
    assert_eq!(d.state(), before);
    assert_eq!(d.db().psql(sealed_sql), sealed_before);
    assert_eq!(d.db().psql(keys_sql), keys_before);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let mut d = Daemon::start();
    seed(&d, "a");
    let before = d.state();
    let pid = d.pid().unwrap();
    let pg = d.postgres_pid().unwrap();

    let out = d.serve_expect_exit(&[]);
    out.fails_with(&[
        "already running",
        &format!("pid {pid}"),
        d.data_dir().to_str().unwrap(),
    ]);

    assert_eq!(d.status_json()["pid"].as_i64(), Some(i64::from(pid)));
    assert_eq!(d.postgres_pid(), Some(pg));
    assert_eq!(d.state(), before);
}

#[test]
fn an_unusable_data_dir_is_refused() {
    let out = serve_expect_exit(Path::new("/proc/airlock-x"), &[]);
    out.fails_with(&["cannot create data directory", "/proc/airlock-x"]);

    let dir = temp_data_dir();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    serve_expect_exit(&file, &[]).fails_with(&["cannot create data directory"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");

    let mut relative = hermetic_command(Path::new("relative/dir"));
    relative.arg("serve");
    run(&mut relative, None, Duration::from_secs(30)).fails_with(&["absolute path"]);
}

#[test]
fn secret_values_are_sealed_with_fresh_nonces() {
    let d = Daemon::start();
    let db = d.db();
    let key_id = d.status_json()["key_id"].as_str().unwrap().to_owned();

    // The generated key file: 0600, base64 of 32 bytes.
    let key_path = d.data_dir().join("master.key");
    assert_eq!(mode(&key_path), 0o600);
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_text.trim())
        .expect("the key file is base64");
    assert_eq!(key.len(), 32);

    let value = format!("sk-same-{}", random_hex(12));
    for name in ["one", "two"] {
        d.cli_stdin(
            &[
                "secret",
                "add",
                name,
                "--host",
                "api.example.com",
                "--header",
                "x-api-key",
            ],
            &value,
        )
        .ok();
    }
    let sql = "SELECT name, encode(nonce, 'hex'), encode(ciphertext, 'hex'), \
               length(nonce), length(ciphertext), key_id, version FROM secrets ORDER BY name";
    let rows = db.rows(sql);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r[3], "12", "nonce length: {r:?}");
        assert_eq!(
            r[4],
            (value.len() + 16).to_string(),
            "ciphertext + tag: {r:?}"
        );
        assert_eq!(r[5], key_id, "key id: {r:?}");
        assert_eq!(r[6], "1");
        assert!(
            !r[2].contains(&hex::encode(&value)),
            "plaintext stored: {r:?}"
        );
    }
    assert_ne!(rows[0][1], rows[1][1], "the same nonce twice");
    assert_ne!(rows[0][2], rows[1][2], "equal values, equal ciphertexts");

    // Rotating to the same value seals it anew.
    d.cli_stdin(&["secret", "rotate", "one"], &value).ok();
    let rotated = db.rows(sql);
    assert_eq!(rotated[0][6], "2");
    assert_ne!(rotated[0][1], rows[0][1], "rotation reused the nonce");
    assert_ne!(rotated[0][2], rows[0][2], "rotation reused the ciphertext");
    assert_eq!(rotated[1], rows[1], "rotating one secret changed another");

    let check =
        db.rows("SELECT key_id, length(check_nonce), length(check_ciphertext) FROM vault_keys");
    assert_eq!(check.len(), 1);
    assert_eq!(check[0][0], key_id);
    assert_eq!(check[0][1], "12");
    assert!(!db.pg_dump().contains(&value));
}

#[test]
fn a_tampered_key_check_is_refused_at_start() {
    // The stored key check is the one sealed value the daemon opens today
    // (at start); a second gateway on the same database shows what a
    // restart would do, while the first keeps the database up.
    let key = random_master_key();
    let a = Daemon::builder().env("SECRET_ENCRYPTION_KEY", &key).start();
    let b_dir = temp_data_dir();
    let env = [
        ("DATABASE_URL", a.db().url()),
        ("SECRET_ENCRYPTION_KEY", key.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let original = a
        .db()
        .psql("SELECT encode(check_ciphertext, 'hex') FROM vault_keys");

    a.db().psql(
        "UPDATE vault_keys SET check_ciphertext = \
         set_byte(check_ciphertext, 0, get_byte(check_ciphertext, 0) # 1)",
    );
    serve_expect_exit(b_dir.path(), &env).fails_with(&["does not decrypt"]);

    a.db().psql(&format!(
        "UPDATE vault_keys SET check_ciphertext = decode('{original}', 'hex')"
    ));
    let b = Daemon::builder()
        .env("DATABASE_URL", a.db().url())
        .env("SECRET_ENCRYPTION_KEY", &key)
        .start();
    assert_eq!(b.status_json()["key_id"], a.status_json()["key_id"]);
}

#[test]
fn a_corrupt_row_is_reported_clearly() {
    let d = Daemon::start();
    seed(&d, "a");
    let id = d.db().psql("SELECT id FROM secrets WHERE name = 'key-a'");
    d.db()
        .psql("UPDATE secrets SET host_pattern = 'not a host!' WHERE name = 'key-a'");

    let message = d
        .cli(&["secret", "list"])
        .fails_with(&["corrupt row in secrets", &id])
        .to_owned();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    // What does not read that row still works.
    d.cli(&["rule", "list"]).ok();
    d.cli(&["status"]).ok();

    d.db()
        .psql("UPDATE secrets SET host_pattern = 'api.example.com' WHERE name = 'key-a'");
    assert!(d.cli_ok(&["secret", "list"]).contains("key-a"));
}

/// One corrupt row must not freeze the configuration: later changes still
/// reach the snapshot the gateway enforces.
#[test]
fn a_corrupt_row_does_not_freeze_the_configuration() {
    let d = Daemon::start();
    seed(&d, "a");
    d.db()
        .psql("UPDATE secrets SET host_pattern = 'not a host!' WHERE name = 'key-a'");
    let out = d.cli(&["rule", "add", "--host", "*.other.com", "--block"]);
    if out.success() {
        let applied = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            (d.status_json()["snapshot"]["rules"] == 2).then_some(())
        });
        assert!(
            applied.is_some(),
            "`rule add` said {:?} but the rule never reached the snapshot",
            out.stdout
        );
    } else {
        out.fails_with(&["corrupt row in secrets"]);
    }
}

/// A start refused for a missing key writes no `master.key` (which the next
/// start without the variable would then use).
#[test]
fn a_start_refused_for_a_missing_key_writes_no_key_file() {
    let mut d = Daemon::builder()
        .env("SECRET_ENCRYPTION_KEY", random_master_key())
        .start();
    assert_eq!(d.stop(), 0);
    d.remove_env("SECRET_ENCRYPTION_KEY");
    d.serve_expect_exit(&[]).fails_with(&["master key"]);
    assert!(
        !d.data_dir().join("master.key").exists(),
        "a refused start wrote a key file"
    );
}
