//! End-to-end tests of signed-JWT secrets (issue #18, item 3): the real
//! daemon, a token endpoint on loopback over TLS with the test CA that
//! verifies each RS256 assertion with the public key the way GitHub and
//! Google do (tests/jwt/issuer.py, PyJWT), and an API beside it that
//! accepts only the tokens it issued. Keys are made by openssl for each
//! test; tokens live seconds, so renewal happens inside the tests.
//!
//! One module per behaviour; [`harness`] holds what they share.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod bad_input;
mod failures;
mod github;
mod google;
