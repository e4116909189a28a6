//! The transparent listener (`127.0.0.1:10256` and `[::1]:10256`): agents'
//! connections redirected by the eBPF programs or the nftables fallback
//! ([`crate::intercept`]).
//!
//! accept → original destination and agent cgroup (eBPF: one
//! `getsockopt` answered by the kernel program; nftables: conntrack's
//! `SO_ORIGINAL_DST` and the client socket's cgroup from sock_diag, see
//! [`crate::intercept::redirect`]) → agent (cgroup id → agent; none →
//! refused and audited as `unknown_agent`; the client socket's own cgroup
//! must be the same agent's, or the connection is refused and audited as
//! `unknown_connection`: an eBPF record found by a reused 4-tuple lends
//! no identity) → the destination checked like
//! the explicit proxy's ([`super::egress`]: the gateway dials with its own
//! identity, not the agent's, so the same rules apply; loopback is allowed
//! only through `AIRLOCK_ALLOW_UPSTREAMS`) → the ClientHello's SNI, peeked,
//! names the host (no SNI: the original IP, and Host headers are then not
//! checked) → [`super::session::serve_tls`], dialling the original address
//! and verifying the upstream certificate for that name. A connection that
//! cannot be identified is closed: nothing goes out without identity.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::record::AuditGuard;
use super::session::{self, SessionError};
use super::{Gateway, Session, tls_name_for};
use crate::audit::Decision;
use crate::intercept::agents::AgentMap;
use crate::intercept::redirect::Redirector;
use crate::shutdown::Shutdown;
use crate::tls::sni::{MAX_CLIENT_HELLO_LEN, Sni, parse_client_hello_sni};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts redirected agent connections until shutdown.
pub async fn run(
    gw: Arc<Gateway>,
    agents: Arc<AgentMap>,
    redirector: Redirector,
    listener: TcpListener,
    shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a transparent connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let agents = agents.clone();
        tokio::spawn(async move { handle(gw, agents, redirector, stream, peer).await });
    }
}

/// A refusal before any request: one audit record, then the connection
/// is dropped.
fn refuse(gw: &Gateway, agent: Option<&str>, host: &str, decision: Decision, detail: String) {
    tracing::info!(agent, host, decision = decision.as_str(), %detail, "transparent connection refused");
    let mut audit = AuditGuard::start(
        gw.audit.clone(),
        agent,
        "CONNECT",
        host,
        &http::Uri::default(),
    );
    audit.decision(decision, None);
    audit.detail(detail);
}

async fn handle(
    gw: Arc<Gateway>,
    agents: Arc<AgentMap>,
    redirector: Redirector,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let conn = match redirector.identify(&stream, peer, local) {
        Ok(conn) => conn,
        Err(e) => {
            refuse(
                &gw,
                None,
                &peer.to_string(),
                Decision::UnknownConnection,
                format!("a connection from {peer} reached the transparent listener: {e}"),
            );
            return;
        }
    };
    let orig = conn.orig;
    let Some(agent) = agents.lookup(conn.cgroup_id) else {
        let pid = conn.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
        refuse(
            &gw,
            None,
            &orig.to_string(),
            Decision::UnknownAgent,
            format!(
                "cgroup id {} ({pid}uid {}) is not an agent's cgroup: connection to {orig} \
                 refused",
                conn.cgroup_id, conn.uid
            ),
        );
        return;
    };
    if conn.socket_cgroup_id != conn.cgroup_id
        && agents.lookup(conn.socket_cgroup_id).as_ref() != Some(&agent)
    {
        refuse(
            &gw,
            None,
            &peer.to_string(),
            Decision::UnknownConnection,
            format!(
                "a connection from {peer} carries agent {agent}'s record (cgroup id {}) but its \
                 socket is in cgroup id {}, not that agent's: refused",
                conn.cgroup_id, conn.socket_cgroup_id
            ),
        );
        return;
    }
    if let Err(e) = gw.egress.check(orig) {
        refuse(
            &gw,
            Some(agent.as_str()),
            &orig.ip().to_string(),
            e.decision(),
            e.to_string(),
        );
        return;
    }
    // Without SNI the original IP is the host: requests must name it and
    // it is the authority that goes upstream (see `proxy::target`).
    let host = match peek_sni(&stream).await {
        Ok(Some(name)) => name.trim_end_matches('.').to_ascii_lowercase(),
        Ok(None) => orig.ip().to_string(),
        Err(why) => {
            refuse(
                &gw,
                Some(agent.as_str()),
                &orig.to_string(),
                Decision::TlsFailed,
                format!("the connection to {orig} is not TLS: {why}"),
            );
            return;
        }
    };
    let session = Session {
        agent: agent.clone(),
        client: peer,
        tls_name: tls_name_for(&host),
        host: host.clone(),
        port: orig.port(),
        addr: orig,
        tls: false,
    };
    tracing::debug!(%agent, %host, %orig, pid = conn.pid, uid = conn.uid, "transparent connection");
    if let Err(e) = session::serve_tls(gw.clone(), session, stream).await {
        let decision = match e {
            SessionError::SniMismatch { .. } => Decision::Exfiltration,
            _ => Decision::TlsFailed,
        };
        refuse(&gw, Some(agent.as_str()), &host, decision, e.to_string());
    }
}

/// The SNI of the ClientHello waiting on `stream`, read without consuming
/// it. `Ok(None)`: a ClientHello without a name.
async fn peek_sni(stream: &TcpStream) -> Result<Option<String>, String> {
    let mut buf = vec![0u8; MAX_CLIENT_HELLO_LEN];
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut last = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .map_err(|_| "no ClientHello within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the client closed the connection".into());
        }
        match parse_client_hello_sni(&buf[..n]) {
            Sni::Name(name) => return Ok(Some(name)),
            Sni::Absent => return Ok(None),
            Sni::NotTls => return Err("not a TLS ClientHello".into()),
            Sni::Incomplete if n == buf.len() => {
                return Err("the ClientHello is too large".into());
            }
            Sni::Incomplete => {
                // peek returns at once while bytes wait: give the rest time
                // to arrive instead of spinning.
                if n == last {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                last = n;
            }
        }
    }
}
