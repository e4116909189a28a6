//! Self-test of the test upstream servers (tests/support/upstream/), driven
//! by real clients: system curl (HTTP/2 and HTTP/1.1 over TLS, plain HTTP,
//! h2c) and a tokio-tungstenite WebSocket client over TLS.
//!
//! One module per behaviour; [`curl`] runs the client they share.

#[allow(dead_code)]
#[path = "../support/upstream/mod.rs"]
mod upstream;

mod curl;

mod echo;
mod lifecycle;
mod protocols;
mod responses;
mod streaming;
mod websocket;
