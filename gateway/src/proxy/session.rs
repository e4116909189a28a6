//! One intercepted TLS connection: terminate TLS with a leaf for the server
//! name, then serve HTTP/1.1 or HTTP/2 (by ALPN) into the pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use super::headers::MAX_HEADER_BYTES;
use super::{Gateway, Session, pipeline};
use crate::tls::LeafName;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONCURRENT_STREAMS: u32 = 256;

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

/// Accepts TLS from the agent (checking its SNI against the session's
/// host when `sni_must_match`), then serves HTTP until the agent leaves.
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
    session.tls = true;
    serve_http(gw, Arc::new(session), tls).await;
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 on an established stream.
pub async fn serve_http<IO>(gw: Arc<Gateway>, session: Arc<Session>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let gw = gw.clone();
        let session = session.clone();
        async move { Ok::<_, Infallible>(pipeline::serve_request(&gw, &session, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEADER_BYTES)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .timer(hyper_util::rt::TokioTimer::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "agent connection ended");
    }
}
