//! One intercepted TLS connection: terminate TLS with a leaf for the server
//! name, then serve HTTP/1.1 or HTTP/2 (by ALPN) into the pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_rustls::LazyConfigAcceptor;

use super::headers::MAX_HEADER_BYTES;
use super::{Gateway, Session, Transport, pipeline};
use crate::tls::LeafName;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a whole request head; also how long
/// a connection may stay without its first request (which hyper's own
/// timer does not cover: the HTTP/1-or-2 detection and the HTTP/2 preface
/// wait forever). Slow-header clients (slowloris) are cut off by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/1.1 header fields per request (hyper's default, made explicit):
/// more gets 431.
pub const MAX_HEADERS: usize = 100;
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// HTTP/2 streams the client may reset before the gateway has even
/// accepted them (rapid reset, CVE-2023-44487): more and the connection
/// gets GOAWAY ENHANCE_YOUR_CALM.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2 streams the gateway may reset because of the client's protocol
/// errors (MadeYouReset) before it closes the connection.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// Why a connection ended before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the client did not complete the TLS handshake: {0}")]
    Handshake(String),
    #[error("the TLS server name {sni:?} does not match the CONNECT host {host:?}")]
    SniMismatch { sni: String, host: String },
    #[error("no certificate can be made for {0:?}: {1}")]
    Certificate(String, String),
}

/// Accepts TLS from the agent (a server name, if the ClientHello has
/// one, must be the session's host), then serves HTTP until the agent
/// leaves.
pub async fn serve_tls<IO>(
    gw: Arc<Gateway>,
    mut session: Session,
    io: IO,
) -> Result<(), SessionError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor)
        .await
        .map_err(|_| SessionError::Handshake("timed out".into()))?
        .map_err(|e| SessionError::Handshake(e.to_string()))?;
    let sni = start.client_hello().server_name().map(str::to_owned);
    if let Some(sni) = &sni
        && !sni
            .trim_end_matches('.')
            .eq_ignore_ascii_case(session.host.trim_end_matches('.'))
    {
        return Err(SessionError::SniMismatch {
            sni: sni.clone(),
            host: session.host.clone(),
        });
    }
    let name = LeafName::parse(&session.host)
        .map_err(|e| SessionError::Certificate(session.host.clone(), e.to_string()))?;
    let config = gw
        .leaves
        .server_config(&name)
        .await
        .map_err(|e| SessionError::Certificate(session.host.clone(), e.to_string()))?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config))
        .await
        .map_err(|_| SessionError::Handshake("timed out".into()))?
        .map_err(|e| SessionError::Handshake(e.to_string()))?;
    // Whatever the caller built, requests on it are HTTPS now.
    session.transport = Transport::Tls;
    serve_http(gw, Arc::new(session), tls).await;
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 on an established stream, dropping it if
/// no request arrives within [`HEADER_READ_TIMEOUT`].
pub async fn serve_http<IO>(gw: Arc<Gateway>, session: Arc<Session>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first_request = Arc::new(Notify::new());
    let arrived = first_request.clone();
    let service = service_fn(move |req| {
        arrived.notify_one();
        let gw = gw.clone();
        let session = session.clone();
        async move { Ok::<_, Infallible>(pipeline::serve_request(&gw, &session, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .timer(hyper_util::rt::TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let no_request = async {
        if tokio::time::timeout(HEADER_READ_TIMEOUT, first_request.notified())
            .await
            .is_ok()
        {
            // It came: from now on hyper's own limits apply.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        ended = conn => if let Err(e) = ended {
            tracing::debug!(error = %e, "agent connection ended");
        },
        () = no_request => tracing::debug!(
            timeout = ?HEADER_READ_TIMEOUT,
            "no request on an agent connection in time: closed"
        ),
    }
}
