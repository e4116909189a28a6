//! A WebSocket echo over TLS and plain HTTP.

use crate::curl::*;
use crate::upstream::{Upstream, UpstreamOpts};

#[tokio::test]
async fn websocket_echo_over_tls_and_plain() {
    use futures_util::{SinkExt, StreamExt};
    use rustls_pki_types::ServerName;
    use tokio_tungstenite::tungstenite::Message;

    let up = Upstream::start(UpstreamOpts::default());
    let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(up.ca().client_config(&[b"http/1.1"]));
    let tls = connector
        .connect(ServerName::try_from("api.test.local").unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://api.test.local:{}/ws?room=1", up.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let bin = vec![0u8, 1, 2, 255];
    ws.send(Message::binary(bin.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(bin));
    ws.send(Message::Ping(vec![7u8].into())).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::Pong(vec![7u8].into())
    );
    let big = "x".repeat(300_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(big));
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    let reqs = up.requests_to("/ws");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/ws?room=1");
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.header("sec-websocket-key").is_some());
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));

    // Plain ws:// on a plain-HTTP upstream.
    let plain = Upstream::start(UpstreamOpts::plain_http());
    let tcp = tokio::net::TcpStream::connect(plain.addr()).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(plain.ip_url("/ws").replace("http", "ws"), tcp)
            .await
            .unwrap();
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("plain"));
    ws.close(None).await.unwrap();

    // A non-upgrade request to /ws is refused.
    let c = tokio::task::spawn_blocking(move || curl(&up, &["--http2", &up.url("/ws")]))
        .await
        .unwrap();
    assert_eq!(c.status, 400);
}
