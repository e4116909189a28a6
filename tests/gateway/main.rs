//! End-to-end tests of the gateway through the explicit proxy: the real
//! daemon, real upstream servers on loopback (tests/support/upstream/)
//! and real clients (curl, Python requests, Node's fetch, a Rust
//! WebSocket client).
//!
//! One module per behaviour; [`harness`] holds what several share.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod access_requests;
mod audit_export;
mod clients;
mod graphql;
mod injection;
mod leaks;
mod mcp;
mod metrics;
mod names;
mod placements;
mod policy;
mod refusals;
mod scrubbing;
mod sigv4;
mod streaming;
