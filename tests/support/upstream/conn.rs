//! Connections: accept, TLS, then HTTP/1.1 or HTTP/2 (as ALPN
//! negotiated, or both on plain TCP), with upgrades; `/reset`'s RST.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::endpoints::handle;
use super::log::State;
use super::opts::Protocols;
use super::{CONN_CAP, TLS_HANDSHAKE_TIMEOUT};

pub(super) struct Server {
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) protocols: Protocols,
    pub(super) state: Arc<State>,
    pub(super) conn_limit: Arc<Semaphore>,
}

pub(super) struct ConnInfo {
    pub(super) conn_id: u64,
    pub(super) peer: SocketAddr,
    pub(super) tls: bool,
    pub(super) alpn: Option<String>,
    pub(super) sni: Option<String>,
    /// Set by `/reset`: abort the connection (with an RST).
    pub(super) kill: Notify,
    pub(super) reset: Arc<AtomicBool>,
}

pub(super) async fn accept_loop(listener: tokio::net::TcpListener, server: Arc<Server>) {
    loop {
        let Ok(permit) = server.conn_limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(CONN_CAP, server.serve(stream, peer)).await;
        });
    }
}

impl Server {
    async fn serve(&self, stream: TcpStream, peer: SocketAddr) {
        let conn_id = self.state.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let reset = Arc::new(AtomicBool::new(false));
        let io = ResetOnDrop {
            inner: stream,
            reset: reset.clone(),
        };
        match &self.tls {
            Some(acceptor) => {
                let tls =
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                let (_, session) = tls.get_ref();
                let info = ConnInfo {
                    conn_id,
                    peer,
                    tls: true,
                    alpn: session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    sni: session.server_name().map(str::to_owned),
                    kill: Notify::new(),
                    reset,
                };
                self.serve_http(TokioIo::new(tls), Arc::new(info)).await;
            }
            None => {
                let info = ConnInfo {
                    conn_id,
                    peer,
                    tls: false,
                    alpn: None,
                    sni: None,
                    kill: Notify::new(),
                    reset,
                };
                self.serve_http(TokioIo::new(io), Arc::new(info)).await;
            }
        }
    }

    async fn serve_http<I>(&self, io: TokioIo<I>, info: Arc<ConnInfo>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(256 << 10);
        // Enforce what ALPN negotiated, like a real server.
        let builder = match (self.protocols, info.alpn.as_deref()) {
            (Protocols::Http1Only, _) | (_, Some("http/1.1")) => builder.http1_only(),
            (Protocols::Http2Only, _) | (_, Some("h2")) => builder.http2_only(),
            _ => builder,
        };
        let state = self.state.clone();
        let svc_info = info.clone();
        let service =
            hyper::service::service_fn(move |req| handle(req, state.clone(), svc_info.clone()));
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::select! {
            _ = conn => {}
            _ = info.kill.notified() => {}
        }
    }
}

/// The TCP stream under TLS/HTTP; if `/reset` was hit, dropping it sends an
/// RST (zero linger) instead of a FIN.
struct ResetOnDrop {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
