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
use crate::tls::LeafName;
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
    let ProxyTarget {
        host,
        port,
        connect,
    } = match proxy_target(req.method(), req.uri()) {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
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

/// Where the proxy's own request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// A DNS name or IP literal as the client wrote it, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// `CONNECT host:port` (a tunnel), not an absolute `http://` URL.
    pub connect: bool,
}

/// Reads the destination from the request line: `CONNECT host:port`, or an
/// absolute `http://host[:port]/...` URL (port 80 by default). A pure
/// function of what hyper parsed, so the fuzz target `connect` drives it.
pub fn proxy_target(method: &Method, uri: &http::Uri) -> Result<ProxyTarget, ProxyError> {
    let Some(authority) = uri.authority() else {
        return Err(ProxyError::BadRequest(
            "this is a proxy: send CONNECT host:port, or a request with an absolute http:// URL"
                .into(),
        ));
    };
    // http's authority parser lets through what no server has a name for
    // (`:443`, `[zz]`, `a.[::1]b`, `[fe80::1%eth0]`): refuse here, with a
    // 400 saying why, what the certificate and the policy could not use.
    // RFC 9110 §4.2.4: userinfo in an http(s) authority is an error, a way
    // to disguise the host (`api.example.com@evil.test`).
    if authority.as_str().contains('@') {
        return Err(ProxyError::BadRequest(
            "the proxy target must be host:port, without user@".into(),
        ));
    }
    let written = authority.host();
    LeafName::parse(written)
        .map_err(|e| ProxyError::BadRequest(format!("bad proxy target: {e}")))?;
    let host = written
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(written)
        .to_owned();
    let connect = method == Method::CONNECT;
    let port = match (authority.port_u16(), connect) {
        (Some(0), _) => {
            return Err(ProxyError::BadRequest(
                "the proxy target's port must be from 1 to 65535".into(),
            ));
        }
        (Some(p), _) => p,
        (None, false) => 80,
        (None, true) => return Err(ProxyError::BadRequest("CONNECT needs host:port".into())),
    };
    if !connect && uri.scheme_str() != Some("http") {
        return Err(ProxyError::BadRequest(
            "only http:// URLs may be sent to the proxy in the clear; use CONNECT for https".into(),
        ));
    }
    Ok(ProxyTarget {
        host,
        port,
        connect,
    })
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
                    session::SessionError::SniMismatch { .. } => {
                        crate::audit::Decision::Exfiltration
                    }
                    _ => crate::audit::Decision::TlsFailed,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, uri: &str) -> Result<ProxyTarget, ProxyError> {
        proxy_target(&method, &uri.parse().unwrap())
    }

    #[test]
    fn connect_and_absolute_urls() {
        assert_eq!(
            target(Method::CONNECT, "api.example.com:443").unwrap(),
            ProxyTarget {
                host: "api.example.com".into(),
                port: 443,
                connect: true
            }
        );
        let v6 = target(Method::CONNECT, "[::1]:8443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        let plain = target(Method::GET, "http://example.test/x?y=1").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.connect),
            ("example.test", 80, false)
        );
    }

    #[test]
    fn what_a_proxy_cannot_serve_is_a_bad_request() {
        for (method, uri) in [
            (Method::CONNECT, "api.example.com"),
            (Method::GET, "/v1/models"),
            (Method::GET, "https://api.example.com/"),
            // Found by the `connect` fuzz target: http's authority parser
            // accepts these, and the gateway went on to resolve them.
            (Method::CONNECT, "api.example.[::1]test:443"),
            (Method::CONNECT, ":443"),
            (Method::CONNECT, "[]:443"),
            (Method::CONNECT, "[zz]:443"),
            (Method::CONNECT, "[2001:db8::1%1]:443"),
            (Method::CONNECT, "api.example.com:0"),
            (Method::GET, "http://:80/"),
            (Method::CONNECT, "[::ff@f:127.0.0.1]api.example.test:443"),
            (Method::GET, "http://api.example.com@evil.test/"),
        ] {
            let err = target(method.clone(), uri).unwrap_err();
            assert!(
                matches!(err, ProxyError::BadRequest(_)),
                "{method} {uri}: {err}"
            );
        }
    }
}
