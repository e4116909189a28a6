//! The explicit proxy (`HTTPS_PROXY=http://agent:TOKEN@127.0.0.1:10255`).
//!
//! Each connection speaks HTTP/1.1 to the proxy itself. A `CONNECT
//! host:port` with a valid token is answered 200, then the tunnel is
//! intercepted: TLS with a leaf for `host` (the client's SNI must be that
//! host), and every request inside goes through the pipeline. A plain
//! `http://` request (absolute form) is forwarded through the same
//! pipeline but never gets a credential: no secrets over plaintext.
//! Refused CONNECTs (bad token, forbidden destination) are audited too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers::MAX_HEADER_BYTES;
use super::record::AuditGuard;
use super::session;
use super::{Gateway, Session, auth, pipeline, tls_name_for};
use crate::model::AgentName;
use crate::shutdown::Shutdown;
use crate::token::TokenHash;

/// Accepts proxy clients until shutdown.
pub async fn run(gw: Arc<Gateway>, listener: TcpListener, shutdown: Shutdown) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accepting a proxy connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(front(gw, peer, req).await) }
            });
            let conn = http1::Builder::new()
                .max_buf_size(MAX_HEADER_BYTES)
                .max_headers(session::MAX_HEADERS)
                .timer(TokioTimer::new())
                // Also ends connections that never send a request: hyper
                // runs this timer while it waits for any head.
                .header_read_timeout(session::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "proxy client connection ended");
            }
        });
    }
}

/// The proxy's own request: CONNECT, an absolute `http://` URL, or a mistake.
async fn front(gw: Arc<Gateway>, peer: SocketAddr, req: Request<Incoming>) -> Response<ProxyBody> {
    let target = req
        .uri()
        .authority()
        .map(|a| (a.host().to_owned(), a.port_u16()));
    let Some((host, port)) = target else {
        return ProxyError::BadRequest(
            "this is a proxy: send CONNECT host:port, or a request with an absolute http:// URL"
                .into(),
        )
        .into_response();
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let connect = req.method() == Method::CONNECT;
    let port = match (port, connect) {
        (Some(p), _) => p,
        (None, false) => 80,
        (None, true) => {
            return ProxyError::BadRequest("CONNECT needs host:port".into()).into_response();
        }
    };
    if !connect && req.uri().scheme_str() != Some("http") {
        return ProxyError::BadRequest(
            "only http:// URLs may be sent to the proxy in the clear; use CONNECT for https".into(),
        )
        .into_response();
    }
    let mut audit = AuditGuard::start(
        gw.audit.clone(),
        None,
        req.method().as_str(),
        &host,
        req.uri(),
    );
    if let Err(e) = super::headers::check_size(req.headers(), MAX_HEADER_BYTES) {
        return pipeline::refuse(e, audit);
    }
    let agent = match authenticate(&gw, &req) {
        Ok(agent) => agent,
        Err(e) => return pipeline::refuse(e, audit),
    };
    audit.agent(agent.as_str());
    let addr = match gw.egress.resolve(&host, port).await {
        Ok(addr) => addr,
        Err(e) => return pipeline::refuse(e, audit),
    };
    let session = Session {
        agent,
        client: peer,
        tls_name: tls_name_for(&host),
        host,
        port,
        addr,
        tls: false,
        host_is_verified: true,
    };
    if connect {
        // Not a request of its own: what passes through the tunnel is.
        audit.dismiss();
        tunnel(gw, session, req)
    } else {
        // The pipeline audits the request itself.
        audit.dismiss();
        let session = Session {
            tls_name: None,
            ..session
        };
        pipeline::serve_request(&gw, &session, req).await
    }
}

fn tunnel(gw: Arc<Gateway>, session: Session, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT tunnel was not established");
                return;
            }
        };
        let host = super::record::display_host(&session.host, session.port);
        let agent = session.agent.clone();
        if let Err(e) = session::serve_tls(gw.clone(), session, TokioIo::new(upgraded)).await {
            tracing::info!(error = %e, %agent, %host, "intercepted connection refused");
            let mut audit = AuditGuard::start(
                gw.audit.clone(),
                Some(agent.as_str()),
                "CONNECT",
                &host,
                &http::Uri::default(),
            );
            audit.decision(
                match e {
                    session::SessionError::SniMismatch { .. } => "exfiltration",
                    _ => "tls_failed",
                },
                None,
            );
            audit.detail(e.to_string());
        }
    });
    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// The agent whose token is in `Proxy-Authorization`.
fn authenticate(gw: &Gateway, req: &Request<Incoming>) -> Result<AgentName, ProxyError> {
    let token = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .and_then(|v| auth::token_from_header(v.as_bytes()))
        .ok_or(ProxyError::AuthRequired)?;
    let snap = gw.snapshot.load();
    snap.agent_by_token(&TokenHash::of(&token))
        .map(|a| a.name.clone())
        .ok_or(ProxyError::AuthRequired)
}
