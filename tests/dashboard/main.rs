//! End-to-end tests of the dashboard: the real daemon, its pages and its
//! `/api/v1` over TCP (driven with curl), and a real browser (headless
//! Chromium through chromedriver) doing what an operator does.
//!
//! Screenshots of every page go to `target/dashboard-screenshots/`.
//!
//! One module per behaviour; [`harness`] holds what they share.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod access_requests;
mod api;
mod audit;
mod forms;
mod login;
mod oidc;
mod openapi;
mod operator_flow;
mod traffic;
