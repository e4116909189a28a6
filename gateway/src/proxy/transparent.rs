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
//! checked) → TLS and the requests ([`super::connection::intercept`]),
//! dialling the original address and verifying the upstream certificate
//! for that name. These are the connection stage's phases
//! ([`super::connection`]); every refusal goes to its funnel
//! ([`super::connection::refuse`]) and the connection is closed: nothing
//! goes out without identity.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::connection::{self, Listener, NotTls, Refusal};
use super::{Gateway, Session, Transport};
use crate::intercept::agents::AgentMap;
use crate::intercept::redirect::{Redirected, Redirector};
use crate::model::AgentName;
use crate::model::net::{ClientAddr, OrigDst};
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
    connection::accept(
        listener,
        Listener::Transparent,
        shutdown,
        move |stream, client| {
            let (gw, agents, redirector) = (gw.clone(), agents.clone(), redirector.clone());
            async move {
                match open(&gw, &agents, &redirector, &stream, client).await {
                    Ok(session) => {
                        let host = session.host.clone();
                        connection::intercept(gw, session, stream, host).await;
                    }
                    Err(refusal) => connection::refuse(&gw, &refusal),
                }
            }
        },
    )
    .await;
}

/// Identify → egress check → SNI: the session a redirected connection
/// opens, or why it is refused.
async fn open(
    gw: &Gateway,
    agents: &AgentMap,
    redirector: &Redirector,
    stream: &TcpStream,
    client: ClientAddr,
) -> Result<Session, Refusal> {
    let conn = redirected(redirector, stream, client)?;
    let agent = identify(agents, &conn, client)?;
    let orig = conn.orig;
    gw.egress
        .check(orig.get())
        .map_err(|error| Refusal::Destination {
            agent: agent.clone(),
            orig,
            error,
        })?;
    let host = server_name(stream, orig)
        .await
        .map_err(|why| Refusal::NotTls {
            agent: agent.clone(),
            orig,
            why,
        })?;
    tracing::debug!(%agent, %host, %orig, pid = conn.pid, uid = conn.uid, "transparent connection");
    Ok(Session::new(
        agent,
        client,
        host,
        orig.port(),
        orig.into(),
        Transport::Tls,
    ))
}

/// What the redirect says about the connection: its original destination
/// and cgroups.
fn redirected(
    redirector: &Redirector,
    stream: &TcpStream,
    client: ClientAddr,
) -> Result<Redirected, Refusal> {
    let local = stream.local_addr().unwrap_or(client.get());
    redirector
        .identify(stream, client, local)
        .map_err(|why| Refusal::Unidentified { client, why })
}

/// The agent of the record's cgroup, if the client socket's own cgroup is
/// that agent's too.
fn identify(
    agents: &AgentMap,
    conn: &Redirected,
    client: ClientAddr,
) -> Result<AgentName, Refusal> {
    let Some(agent) = agents.lookup(conn.cgroup_id) else {
        return Err(Refusal::UnknownCgroup {
            orig: conn.orig,
            cgroup: conn.cgroup_id,
            pid: conn.pid,
            uid: conn.uid,
        });
    };
    if conn.socket_cgroup_id != conn.cgroup_id
        && agents.lookup(conn.socket_cgroup_id).as_ref() != Some(&agent)
    {
        return Err(Refusal::ForeignSocket {
            client,
            agent,
            record: conn.cgroup_id,
            socket: conn.socket_cgroup_id,
        });
    }
    Ok(agent)
}

/// The session's host: the ClientHello's SNI, or without one the original
/// IP (requests must then name it, and it is the authority that goes
/// upstream: see `proxy::target`).
async fn server_name(stream: &TcpStream, orig: OrigDst) -> Result<String, NotTls> {
    Ok(match peek_sni(stream).await? {
        Some(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        None => orig.ip().to_string(),
    })
}

/// The SNI of the ClientHello waiting on `stream`, read without consuming
/// it. `Ok(None)`: a ClientHello without a name.
async fn peek_sni(stream: &TcpStream) -> Result<Option<String>, NotTls> {
    let mut buf = vec![0u8; MAX_CLIENT_HELLO_LEN];
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let mut last = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .map_err(|_| NotTls::Timeout(HELLO_TIMEOUT))?
            .map_err(NotTls::Read)?;
        if n == 0 {
            return Err(NotTls::Closed);
        }
        match parse_client_hello_sni(&buf[..n]) {
            Sni::Name(name) => return Ok(Some(name)),
            Sni::Absent => return Ok(None),
            Sni::NotTls => return Err(NotTls::NotHello),
            Sni::Incomplete if n == buf.len() => {
                return Err(NotTls::TooLarge);
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
