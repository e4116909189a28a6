//! The gateway: where agents' HTTPS is intercepted, checked, given its
//! credentials and forwarded.
//!
//! How a connection flows, file by file:
//!
//! - [`connection`]: the connection stage both listeners run: accept →
//!   identify → egress check → TLS / SNI → the request driver; its
//!   [`connection::Refusal`] names every way a connection is refused, and
//!   one funnel logs and audits them.
//! - [`explicit`]: the `HTTPS_PROXY` listener's phases: `CONNECT` with the
//!   agent's token ([`auth`]), the destination resolved and checked
//!   ([`egress`]), then TLS; or one plain `http://` request.
//! - [`transparent`]: the transparent listener's phases, fed by eBPF or
//!   nftables: the original destination and the agent's cgroup
//!   ([`crate::intercept`]), the host from the ClientHello's SNI, then the
//!   same TLS session.
//! - [`session`]: TLS termination with a leaf for the server name from the
//!   local CA ([`crate::tls`]), then HTTP/1.1 or HTTP/2 to the agent.
//! - [`pipeline`]: the request path, phase by phase: identify → check the
//!   destination and read the target ([`target`]) → policy → prepare →
//!   inject ([`inject`], [`placeholder`], [`sigv4`]; the path, body and
//!   WebSocket placements in [`inject_path`], [`inject_body`],
//!   [`ws_relay`] and [`substitute`]) → forward ([`upstream`]), the
//!   response head, body, trailers and WebSocket messages scrubbed of
//!   injected values ([`scrub`], [`scrub_body`], [`ws_relay`] over
//!   [`ws_frame`], one matcher in [`scrub_spelling`]) → audit
//!   ([`record`]).
//! - [`error`]: the one funnel from failures to status codes and bodies.
//! - [`body`], [`headers`]: streamed bodies and hop-by-hop headers.
//!
//! The request path reads only the in-memory snapshot: no database I/O
//! except to record a request held for approval (which waits for a person
//! anyway); audit records go to a channel.

pub mod approval_detail;
pub mod auth;
pub mod body;
pub mod body_prefix;
pub mod connection;
mod denial;
pub mod egress;
pub mod error;
pub mod explicit;
pub mod headers;
pub mod inject;
pub mod inject_body;
pub mod inject_oauth2;
pub mod inject_path;
pub mod pipeline;
pub mod placeholder;
pub mod record;
pub mod scrub;
pub mod scrub_body;
mod scrub_spelling;
pub mod session;
pub mod sigv4;
pub mod substitute;
pub mod target;
pub mod transparent;
pub mod upstream;
pub mod ws_frame;
pub mod ws_relay;

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;

use crate::audit::AuditSink;
use crate::model::AgentName;
use crate::model::net::{ClientAddr, UpstreamAddr};
use crate::policy::RateLimiter;
use crate::policy::approvals::Approvals;
use crate::snapshot::SnapshotHandle;
use crate::tls::LeafCache;
use crate::vault::Vault;

/// Everything the request path needs, shared by every connection. It
/// holds no database handle: a gateway can be built and driven in process
/// (tests/pipeline.rs) with in-memory parts.
pub struct Gateway {
    /// The configuration (agents, sealed secrets, rules) requests are
    /// judged by: one lock-free load per request, swapped on every change.
    pub snapshot: Arc<SnapshotHandle>,
    /// Opens a secret's sealed value at the moment it is injected, so
    /// plaintext exists only for the request that carries it.
    pub vault: Arc<Vault>,
    /// Rate-limit buckets per (rule, agent); kept here, not in the
    /// snapshot, so a reload does not refill them.
    pub limiter: RateLimiter,
    /// Where a request held for a person waits, and how its approval is
    /// recorded (the database in the daemon, memory in tests).
    pub approvals: Arc<Approvals>,
    /// Where every request's audit record goes; also says whether records
    /// can be stored now, since with `[audit] required` none is served
    /// otherwise.
    pub audit: AuditSink,
    /// Pooled upstream connections per (address, TLS name), and the roots
    /// the upstreams' certificates are verified against.
    pub upstreams: upstream::Upstreams,
    /// Leaf certificates minted by the local CA for the names agents
    /// connect to, cached so a handshake does not sign one each time.
    /// Shared with `/metrics`, which reports its counters.
    pub leaves: Arc<LeafCache>,
    /// Which destinations may be dialed (no loopback, metadata services or
    /// the daemon's own ports unless allowed), and fixed name resolutions.
    pub egress: egress::Egress,
    /// How long a response body may stall before the gateway gives up.
    pub idle_timeout: Duration,
    /// OAuth2 access tokens: cached, renewed single-flight (the only part
    /// of the request path that may touch the database, on a renewal).
    pub credentials: Arc<crate::credentials::Credentials>,
}

/// One agent connection (or one plain-HTTP proxy request), once the
/// connection stage ([`connection`]) knows the agent and the destination:
/// what every request on it is checked against.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who every request on this connection is, as identified when it was
    /// accepted (token or cgroup); the pipeline checks it still exists.
    pub agent: AgentName,
    /// Where the connection came from. The request path does not read it:
    /// it is what names the connection to the operator apart from its
    /// agent (one agent may hold many).
    pub client: ClientAddr,
    /// The host the agent asked for: the TLS server name or `CONNECT` host,
    /// or the original IP when a transparent client sent no SNI. Requests
    /// must name it, policy matches it, and the upstream gets it.
    pub host: String,
    /// The destination port: requests must name it (or their scheme's
    /// default), and policy and injection match on it.
    pub port: u16,
    /// The address the gateway dials, already checked by the egress rules.
    pub addr: UpstreamAddr,
    /// TLS or plain HTTP to the agent: sets the default port requests may
    /// omit, and no secret is ever injected into plain HTTP.
    pub transport: Transport,
    /// The name the upstream certificate must be valid for; `None` for
    /// plain HTTP. Shared, so each request's upstream key takes it
    /// without copying the name.
    pub tls_name: Option<Arc<ServerName<'static>>>,
}

impl Session {
    /// A session for `agent` to `host:port`, dialled at `addr`; the
    /// upstream certificate name follows from the host (none for plain
    /// HTTP).
    pub fn new(
        agent: AgentName,
        client: ClientAddr,
        host: String,
        port: u16,
        addr: UpstreamAddr,
        transport: Transport,
    ) -> Session {
        let tls_name = match transport {
            Transport::Tls => tls_name_for(&host).map(Arc::new),
            Transport::Plain => None,
        };
        Session {
            agent,
            client,
            host,
            port,
            addr,
            transport,
            tls_name,
        }
    }
}

/// How an agent's requests reach the gateway on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Inside TLS the gateway terminated (a `CONNECT` tunnel or a
    /// transparent connection): HTTPS, default port 443.
    Tls,
    /// A plain `http://` request through the explicit proxy: default port
    /// 80, never a credential.
    Plain,
}

impl Transport {
    /// The port a request on this transport means when it names none.
    pub const fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 443,
            Transport::Plain => 80,
        }
    }
}

/// The upstream certificate name for `host` (a DNS name or IP literal).
pub fn tls_name_for(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).ok()
}
