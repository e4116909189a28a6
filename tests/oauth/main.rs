//! End-to-end tests of OAuth2 secrets (issue #18, item 1): the real
//! daemon, a real OAuth2 authorization server (npm's `oidc-provider`,
//! tests/node/oauth_server.mjs) on loopback over TLS with the test CA,
//! and a resource server that accepts only the provider's live access
//! tokens. Access tokens live a few seconds, so renewal happens inside
//! each test.
//!
//! One module per behaviour; [`harness`] holds what they share.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod bad_input;
mod connect;
mod echo;
mod grants;
mod revocation;
mod single_flight;
