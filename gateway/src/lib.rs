//! Airlock: a credential vault and egress gateway for AI agents.
//!
//! Agents never hold real API keys. Their outbound HTTPS reaches Airlock's
//! gateway, which checks it against policy, injects the real credential and
//! forwards it. This crate is the daemon (`airlock serve`) and the CLI that
//! manages it; both live in the one `airlock` binary.
//!
//! # Layout
//!
//! - [`config`]: where settings come from (flags, then environment, then the
//!   TOML file) and what they default to.
//! - [`datadir`]: the data directory, its files and the lock that keeps a
//!   second daemon off it.
//! - [`logging`]: the daemon's `tracing` output, lines or JSON.
//! - [`metrics`]: `GET /metrics` (Prometheus), counted off the request path.
//! - [`model`]: validated names and the ways a secret is injected.
//! - [`policy`]: host patterns, path globs and rules.
//! - [`vault`]: the master key and AES-256-GCM sealing of secret values.
//! - [`credentials`]: credentials obtained at run time (OAuth2 access
//!   tokens): renewal, single flight, the token endpoint client.
//! - [`tls`]: the local CA and its per-host leaf certificates, upstream
//!   trust (OS roots plus `AIRLOCK_UPSTREAM_CA`) and the ClientHello SNI reader.
//! - [`store`]: PostgreSQL (sqlx): the embedded server's supervisor,
//!   migrations, queries and change notifications.
//! - [`snapshot`]: the in-memory view of agents, secrets and rules that the
//!   request path reads; swapped atomically on every change.
//! - [`proxy`]: the gateway: interception, the request path, forwarding.
//! - [`service`]: the one place that validates and writes configuration;
//!   the admin API and the dashboard both call it.
//! - [`audit`]: the batched writer of the audit trail.
//! - [`token`]: agents' proxy tokens, kept only as their SHA-256.
//! - [`admin`]: the JSON API on the root-only Unix socket, and its client.
//! - [`dashboard`]: the operator's web pages and the same JSON API over TCP,
//!   behind a password (pages) or an API token (scripts).
//! - [`doctor`]: `airlock doctor`: what works on this host, and what to do.
//! - [`daemon`]: `airlock serve`: start-up, supervision and shutdown;
//!   [`shutdown`] is the signal every task watches.
//! - [`install`]: `airlock install-service`: the binary and systemd units.
//! - [`sysuser`]: the system users Airlock creates (the embedded
//!   PostgreSQL's, each agent's), one `useradd` at a time host-wide.
//! - [`ebpf`]: the eBPF object embedded in the binary.
//! - [`intercept`]: transparent interception: cgroups, loading and pinning
//!   the eBPF programs, cgroup id → agent, `airlock run`.
//!
//! # Lints
//!
//! The workspace's lint table (`Cargo.toml`, docs/architecture.md "Lints")
//! applies to every target. The lints against panics (`unwrap`, `expect`,
//! a `Duration` or `Instant` subtraction that can underflow) are denied
//! here and in `main.rs` instead, so that they do not reach the
//! integration tests in `tests/`: crates of their own, in which a panic is
//! how a test fails (clippy's `allow-unwrap-in-tests` covers `#[test]`
//! functions and `#[cfg(test)]` modules, not the tests' support code).
//! The library prints nothing either: the daemon's output is its
//! `tracing` log (filtered, and JSON when asked); only the binary's
//! `cli` writes to the terminal.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unchecked_time_subtraction
)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod dashboard;
pub mod datadir;
pub mod doctor;
pub mod ebpf;
pub mod install;
pub mod intercept;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod proxy;
pub mod service;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod sysuser;
pub mod tls;
pub mod token;
pub mod vault;
