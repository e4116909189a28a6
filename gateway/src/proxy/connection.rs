//! The connection stage: what happens to an agent's connection before its
//! first request, whichever listener accepted it.
//!
//! Both listeners run the same phases, in this order; each listener's file
//! supplies the phases that differ and this file the ones they share:
//!
//! 1. **accept** ([`accept`]): one loop for both listeners, backing off
//!    when `accept` fails (out of descriptors) and ending at shutdown.
//! 2. **identify**: explicit ([`super::explicit`]): the token in
//!    `Proxy-Authorization`; transparent ([`super::transparent`]): the
//!    redirect's record ([`crate::intercept::redirect`]), its cgroup →
//!    agent ([`crate::intercept::agents`]), and the client socket's own
//!    cgroup, which must be the same agent's.
//! 3. **egress check** ([`super::egress`]): the explicit proxy resolves the
//!    `CONNECT` host and checks every address; the transparent listener
//!    checks the original destination. The gateway dials with its own
//!    identity, so the same rules apply to both.
//! 4. **TLS / SNI**: the transparent listener peeks the ClientHello's SNI
//!    for the host; then [`intercept`] terminates TLS
//!    ([`super::session::serve_tls`]), the explicit proxy's after its
//!    `200` to the `CONNECT`.
//! 5. **hand over** to the request driver: [`super::session::serve_http`]
//!    runs every request through [`super::pipeline`].
//!
//! Phases 2 to 4 end in a [`Session`] or a refusal, which goes to one of
//! two funnels by what can still be said to the agent. A refused proxy
//! request (explicit, before any tunnel: no token, a bad or forbidden
//! destination) is a [`ProxyError`], answered with its status and recorded
//! by the request path's funnel ([`super::pipeline::refuse`]). A refused
//! connection (transparent, or a tunnel whose TLS failed) is a
//! [`Refusal`] and has no HTTP to answer in: [`refuse`] logs it, records
//! it, and the connection is closed. Nothing goes out without an identity.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::error::ProxyError;
use super::record::AuditGuard;
use super::session::{self, SessionError};
use super::{Gateway, Session};
use crate::audit::Decision;
use crate::intercept::redirect::Unidentified;
use crate::model::AgentName;
use crate::model::net::{CgroupId, ClientAddr, OrigDst};
use crate::shutdown::Shutdown;

/// How long the accept loop waits after a failed `accept` (out of file
/// descriptors and the like) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Which listener a connection came in on: for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `HTTPS_PROXY` (`CONNECT` and plain `http://`).
    Explicit,
    /// Connections redirected by eBPF or nftables.
    Transparent,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Listener::Explicit => "proxy",
            Listener::Transparent => "transparent",
        })
    }
}

/// Phase 1: accepts connections on `listener` until shutdown and runs
/// `serve` for each on a task of its own.
pub async fn accept<F, Fut>(listener: TcpListener, kind: Listener, shutdown: Shutdown, serve: F)
where
    F: Fn(TcpStream, ClientAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a {kind} connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.wait() => return,
        };
        // Requests and answers are small and interactive: no Nagle delay.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, ClientAddr::new(peer)));
    }
}

/// Phases 4 and 5 for a session whose agent and destination are known:
/// TLS with a leaf for the session's host, then its requests. A failed
/// handshake or a server name other than the host is refused;
/// `audit_host` is how the refusal's record names the destination.
pub async fn intercept<IO>(gw: Arc<Gateway>, session: Session, io: IO, audit_host: String)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let agent = session.agent.clone();
    if let Err(error) = session::serve_tls(gw.clone(), session, io).await {
        refuse(
            &gw,
            &Refusal::Tls {
                agent,
                host: audit_host,
                error,
            },
        );
    }
}

/// Why a connection was closed before its first request. Each variant
/// carries what its audit record and log line say.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Transparent: no redirect explains the connection (it came
    /// directly, or its record is missing or stale).
    #[error("a connection from {client} reached the transparent listener: {why}")]
    Unidentified {
        client: ClientAddr,
        why: Unidentified,
    },
    /// Transparent: the redirect names a cgroup that is no agent's.
    #[error(
        "cgroup id {cgroup} ({}uid {uid}) is not an agent's cgroup: connection to {orig} refused",
        pid_note(*.pid)
    )]
    UnknownCgroup {
        orig: OrigDst,
        cgroup: CgroupId,
        pid: Option<u32>,
        uid: u32,
    },
    /// Transparent: the record's cgroup is an agent's but the client
    /// socket's own is not that agent's (a reused 4-tuple met an old
    /// record). The agent is named in the detail only: it lends no
    /// identity.
    #[error(
        "a connection from {client} carries agent {agent}'s record (cgroup id {record}) but its \
         socket is in cgroup id {socket}, not that agent's: refused"
    )]
    ForeignSocket {
        client: ClientAddr,
        agent: AgentName,
        record: CgroupId,
        socket: CgroupId,
    },
    /// Transparent: the egress rules refuse the original destination.
    #[error("{error}")]
    Destination {
        agent: AgentName,
        orig: OrigDst,
        error: ProxyError,
    },
    /// Transparent: what the agent sent first is no ClientHello.
    #[error("the connection to {orig} is not TLS: {why}")]
    NotTls {
        agent: AgentName,
        orig: OrigDst,
        why: NotTls,
    },
    /// Either listener: the TLS session could not be established.
    #[error("{error}")]
    Tls {
        agent: AgentName,
        /// The destination as the listener's records name it.
        host: String,
        error: SessionError,
    },
}

/// Why the first bytes of a transparent connection are not a usable
/// ClientHello.
#[derive(Debug, thiserror::Error)]
pub enum NotTls {
    #[error("no ClientHello within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("{0}")]
    Read(std::io::Error),
    #[error("the client closed the connection")]
    Closed,
    #[error("not a TLS ClientHello")]
    NotHello,
    #[error("the ClientHello is too large")]
    TooLarge,
}

fn pid_note(pid: Option<u32>) -> String {
    pid.map(|p| format!("pid {p}, ")).unwrap_or_default()
}

impl Refusal {
    /// The audit trail's decision for this refusal: the one place a
    /// refused connection is named.
    pub fn decision(&self) -> Decision {
        match self {
            Refusal::Unidentified { .. } | Refusal::ForeignSocket { .. } => {
                Decision::UnknownConnection
            }
            Refusal::UnknownCgroup { .. } => Decision::UnknownAgent,
            Refusal::Destination { error, .. } => error.decision(),
            Refusal::NotTls { .. } => Decision::TlsFailed,
            Refusal::Tls {
                error: SessionError::SniMismatch { .. },
                ..
            } => Decision::Exfiltration,
            Refusal::Tls { .. } => Decision::TlsFailed,
        }
    }

    /// The agent the record is filed under: only once the connection is
    /// known to be that agent's.
    fn agent(&self) -> Option<&AgentName> {
        match self {
            Refusal::Unidentified { .. }
            | Refusal::UnknownCgroup { .. }
            | Refusal::ForeignSocket { .. } => None,
            Refusal::Destination { agent, .. }
            | Refusal::NotTls { agent, .. }
            | Refusal::Tls { agent, .. } => Some(agent),
        }
    }

    /// How the record names the destination: the client when no agent
    /// is known to have meant any, else where it was going.
    fn host(&self) -> String {
        match self {
            Refusal::Unidentified { client, .. } | Refusal::ForeignSocket { client, .. } => {
                client.to_string()
            }
            Refusal::UnknownCgroup { orig, .. } | Refusal::NotTls { orig, .. } => orig.to_string(),
            Refusal::Destination { orig, .. } => orig.ip().to_string(),
            Refusal::Tls { host, .. } => host.clone(),
        }
    }
}

/// The funnel for refused connections: one log line, one audit record
/// (method `CONNECT`, no path or status: there was no request); the
/// caller then drops the connection.
pub fn refuse(gw: &Gateway, refusal: &Refusal) {
    let decision = refusal.decision();
    let agent = refusal.agent().map(AgentName::as_str);
    let host = refusal.host();
    let detail = refusal.to_string();
    tracing::info!(agent, %host, decision = decision.as_str(), %detail, "connection refused");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentName {
        AgentName::parse("bot").unwrap()
    }

    #[test]
    fn each_refusal_has_its_decision_detail_and_host() {
        let client = ClientAddr::new("127.0.0.1:40000".parse().unwrap());
        let orig = OrigDst::new("10.1.2.3:443".parse().unwrap());
        let unknown = Refusal::UnknownCgroup {
            orig,
            cgroup: CgroupId::new(7),
            pid: Some(42),
            uid: 1000,
        };
        assert_eq!(unknown.decision().as_str(), "unknown_agent");
        assert_eq!(
            unknown.to_string(),
            "cgroup id 7 (pid 42, uid 1000) is not an agent's cgroup: connection to 10.1.2.3:443 \
             refused"
        );
        assert_eq!(unknown.host(), "10.1.2.3:443");
        assert!(unknown.agent().is_none());
        let nft = Refusal::UnknownCgroup {
            orig,
            cgroup: CgroupId::new(7),
            pid: None,
            uid: 1000,
        };
        assert!(nft.to_string().starts_with("cgroup id 7 (uid 1000) is not"));
        let crossed = Refusal::ForeignSocket {
            client,
            agent: agent(),
            record: CgroupId::new(7),
            socket: CgroupId::new(8),
        };
        assert_eq!(crossed.decision().as_str(), "unknown_connection");
        assert!(crossed.agent().is_none());
        assert_eq!(crossed.host(), "127.0.0.1:40000");
        assert!(crossed.to_string().contains("carries agent bot's record"));
        let egress = Refusal::Destination {
            agent: agent(),
            orig,
            error: ProxyError::DestinationRefused("no".into()),
        };
        assert_eq!(egress.decision().as_str(), "destination_refused");
        assert_eq!(egress.host(), "10.1.2.3");
        let sni = Refusal::Tls {
            agent: agent(),
            host: "a.test".into(),
            error: SessionError::SniMismatch {
                sni: "b.test".into(),
                host: "a.test".into(),
            },
        };
        assert_eq!(sni.decision().as_str(), "exfiltration");
        let slow = Refusal::NotTls {
            agent: agent(),
            orig,
            why: NotTls::Timeout(Duration::from_secs(10)),
        };
        assert_eq!(slow.decision().as_str(), "tls_failed");
        assert_eq!(
            slow.to_string(),
            "the connection to 10.1.2.3:443 is not TLS: no ClientHello within 10 s"
        );
    }
}
