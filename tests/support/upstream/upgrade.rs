//! The endpoints that leave HTTP: a WebSocket echo (`/ws`) and a 101 to
//! h2c whether asked or not (`/switch`).
//!
//! `/ws` answers each text or binary message with the same message, and
//! records it as the request's body (so a test sees what the upstream
//! got); the text message `authorization?` is answered with the
//! handshake's `Authorization` header instead (an API quoting the
//! credential it was sent).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{RespBody, empty};
use super::endpoints::text;
use super::log::State;
use super::{STALL_CAP, TLS_HANDSHAKE_TIMEOUT};

const WS_MAX_MESSAGE: usize = 16 << 20;

pub(super) fn websocket(
    mut req: Request<Incoming>,
    id: u64,
    state: Arc<State>,
) -> Response<RespBody> {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade = req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (upgrade, key) else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected an HTTP/1.1 WebSocket upgrade",
        );
    };
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned());

    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, on_upgrade).await {
            Ok(Ok(u)) => u,
            _ => return,
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(WS_MAX_MESSAGE))
            .max_frame_size(Some(WS_MAX_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let echo = ws_echo(ws, &authorization, |m| state.message_received(id, m));
        let _ = tokio::time::timeout(STALL_CAP, echo).await;
    });

    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        );
    if let Some(p) = protocol.filter(|p| !p.is_empty()) {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp.body(empty()).expect("response")
}

/// `/switch`: a 101 to `h2c` whether or not the client asked to switch
/// (a server that ignores what it was asked), then echoes raw bytes.
pub(super) fn switch(mut req: Request<Incoming>) -> Response<RespBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(Ok(upgraded)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, on_upgrade).await else {
            return;
        };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::time::timeout(STALL_CAP, tokio::io::copy(&mut r, &mut w)).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "h2c")
        .header(header::CONNECTION, "Upgrade")
        .body(empty())
        .expect("response")
}

async fn ws_echo<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    authorization: &str,
    received: impl Fn(&[u8]),
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // Pings are answered and Close is acknowledged by tungstenite itself on
    // the next read; the loop ends once the stream closes.
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                received(&m.clone().into_data());
                let answer = match &m {
                    Message::Text(t) if t.as_str() == "authorization?" => {
                        Message::text(authorization)
                    }
                    _ => m,
                };
                if ws.send(answer).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
