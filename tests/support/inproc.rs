//! [`InProc`]: a whole gateway in the test's own process, without root,
//! PostgreSQL or the `airlock` binary: the explicit proxy on
//! `127.0.0.1:0`, an in-memory snapshot (agent `bot`, secret `up` injected
//! as `Authorization` for the test upstream), a vault under a fixed key,
//! in-memory approvals the test decides, and an audit sink whose records
//! the test reads. The upstream is the end-to-end tests' own
//! ([`super::upstream`]), trusted the way the daemon trusts
//! `AIRLOCK_UPSTREAM_CA`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use airlock::audit::{AuditRecord, AuditSettings};
use airlock::model::net::{ClientAddr, UpstreamAddr};
use airlock::model::{AgentName, Injection, SecretName};
use airlock::policy::approvals::{Approvals, MemoryApproval, MemoryApprovals};
use airlock::policy::{HostPattern, PathGlob, RateLimiter, RuleAction};
use airlock::proxy::egress::Egress;
use airlock::proxy::upstream::Upstreams;
use airlock::proxy::{Gateway, Session, Transport, explicit, pipeline};
use airlock::shutdown::ShutdownTrigger;
use airlock::snapshot::{Snapshot, SnapshotHandle};
use airlock::store::agents::AgentRecord;
use airlock::store::rules::RuleRecord;
use airlock::store::secrets::{Binding, SealFormat, SecretRecord};
use airlock::tls::{CertificateAuthority, LeafCache, upstream_client_config};
use airlock::token::Token;
use airlock::vault::{MasterKey, Vault};

use super::proxied::{airlock_client_config, read_head, status_of};
use super::upstream::{Upstream, UpstreamOpts};

/// Longest wait for an answer or an audit record: they come in
/// milliseconds, this only bounds a broken test.
const WAIT: Duration = Duration::from_secs(10);

/// A rule of the snapshot: `action` on the upstream's `path` glob.
pub struct RuleSpec {
    pub path: &'static str,
    pub action: RuleAction,
}

/// The gateway and what the test looks at.
pub struct InProc {
    pub gw: Arc<Gateway>,
    pub up: Upstream,
    /// The explicit proxy's address.
    pub proxy: SocketAddr,
    /// `bot`'s proxy token.
    pub token: String,
    /// The secret's real value: the upstream must see it, the agent never.
    pub value: String,
    pub approvals: Arc<MemoryApprovals>,
    /// `bot`, secret `up` and the rules as configured; tests change the
    /// configuration by installing a variant of it.
    pub agents: Vec<AgentRecord>,
    pub secrets: Vec<SecretRecord>,
    pub rules: Vec<RuleRecord>,
    audit: Mutex<mpsc::Receiver<AuditRecord>>,
    agent_tls: Arc<rustls::ClientConfig>,
    stop: ShutdownTrigger,
    _ca_dir: tempfile::TempDir,
}

/// One answer the agent got.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `error` of the gateway's JSON refusal body.
    pub fn kind(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["error"].as_str().map(str::to_owned)
    }

    /// Whether `needle` occurs in any header or the body.
    pub fn contains(&self, needle: &str) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.as_str().contains(needle)
                || v.as_bytes()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
        }) || self
            .body
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }
}

impl InProc {
    /// Starts a gateway with `rules` (ids from 1, in this order) and
    /// approvals that time out after `approval_timeout`.
    pub async fn start(rules: Vec<RuleSpec>, approval_timeout: Duration) -> InProc {
        let up = Upstream::start(UpstreamOpts::https());
        let vault = Arc::new(Vault::new(&MasterKey::from_bytes([7; 32])));
        let value = format!("sk-inproc-{}", super::random_hex(12));
        let token = Token::generate();
        let secret = secret(&vault, &format!("{}:{}", up.host(), up.port()), &value);
        let agents = vec![AgentRecord {
            id: uuid::Uuid::new_v4(),
            name: AgentName::parse("bot").expect("agent name"),
            token_hash: token.hash(),
            cgroup: String::new(),
            grants: vec![secret.name().clone()],
            default: None,
            created_at: chrono::Utc::now(),
        }];
        let rules: Vec<RuleRecord> = rules
            .into_iter()
            .enumerate()
            .map(|(i, spec)| RuleRecord {
                id: i64::try_from(i).expect("rule id") + 1,
                position: i32::try_from(i).expect("rule position"),
                host: HostPattern::parse("*").expect("host pattern"),
                path: PathGlob::parse(spec.path).expect("path glob"),
                method: None,
                agent: None,
                action: spec.action,
                body: None,
                created_at: chrono::Utc::now(),
            })
            .collect();
        let snapshot = Arc::new(SnapshotHandle::default());
        let secrets = vec![secret];
        snapshot.install(Snapshot::from_records(
            agents.clone(),
            secrets.clone(),
            rules.clone(),
        ));

        let memory = Arc::new(MemoryApprovals::default());
        let (audit, audit_rx) = airlock::audit::channel(&AuditSettings::default());
        let ca_dir = tempfile::tempdir().expect("a CA directory");
        let ca = Arc::new(CertificateAuthority::load_or_create(ca_dir.path()).expect("the CA"));
        let agent_tls = airlock_client_config(ca.cert_path(), &[b"http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let proxy = listener.local_addr().expect("the proxy address");
        let upstream_tls = upstream_client_config(Some(up.ca_pem_path())).expect("upstream trust");
        // No database: OAuth2 secrets fail here (tests/oauth covers them).
        let credentials = Arc::new(airlock::credentials::Credentials::new(
            vault.clone(),
            None,
            airlock::credentials::TokenClient::new(&upstream_tls).expect("a token client"),
        ));
        let gw = Arc::new(Gateway {
            snapshot,
            vault,
            limiter: RateLimiter::default(),
            approvals: Arc::new(Approvals::new(approval_timeout, memory.clone())),
            audit,
            upstreams: Upstreams::new(upstream_tls, Duration::from_secs(5)),
            credentials,
            leaves: Arc::new(LeafCache::with_defaults(ca).expect("the leaf cache")),
            egress: Egress {
                allow: vec!["127.0.0.0/8".parse().expect("a network")],
                resolve: vec![(up.host().to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
                own_ports: vec![proxy.port()],
            },
            idle_timeout: Duration::from_secs(30),
        });
        let (stop, shutdown) = airlock::shutdown::channel();
        tokio::spawn(explicit::run(gw.clone(), listener, shutdown));
        InProc {
            gw,
            up,
            proxy,
            token: token.expose().to_owned(),
            value,
            approvals: memory,
            agents,
            secrets,
            rules,
            audit: Mutex::new(audit_rx),
            agent_tls,
            stop,
            _ca_dir: ca_dir,
        }
    }

    /// `host:port` of the upstream as the secret names it.
    pub fn target(&self) -> String {
        format!("{}:{}", self.up.host(), self.up.port())
    }

    /// Sends `CONNECT target` with `token`; returns the stream and the
    /// proxy's answer head.
    pub async fn connect(&self, target: &str, token: &str) -> (TcpStream, String) {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{token}"));
        let mut tcp = TcpStream::connect(self.proxy).await.expect("the proxy");
        let connect = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
        );
        tcp.write_all(connect.as_bytes()).await.expect("CONNECT");
        let head = tokio::time::timeout(WAIT, read_head(&mut tcp))
            .await
            .expect("the CONNECT answer in time")
            .expect("the CONNECT answer");
        (tcp, head)
    }

    /// An HTTP/1.1 connection to `target` as `bot`: CONNECT, then TLS
    /// with the gateway's leaf for the upstream's name.
    pub async fn agent(&self, target: &str) -> SendRequest<Full<Bytes>> {
        let (tcp, head) = self.connect(target, &self.token).await;
        assert_eq!(status_of(&head), Some(200), "CONNECT {target}: {head}");
        let name = rustls_pki_types::ServerName::try_from(self.up.host().to_owned())
            .expect("a server name");
        let tls = tokio_rustls::TlsConnector::from(self.agent_tls.clone())
            .connect(name, tcp)
            .await
            .expect("TLS with the gateway");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 with the gateway");
        tokio::spawn(conn);
        sender
    }

    /// A connection straight into the request driver
    /// (`pipeline::serve_request`) for a session of `bot` with the
    /// upstream, over hyper with a buffer far larger than the proxy's:
    /// for what the pipeline checks itself behind hyper's own limits.
    pub async fn pipeline_only(&self) -> SendRequest<Full<Bytes>> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let session = Arc::new(Session::new(
            AgentName::parse("bot").expect("agent name"),
            ClientAddr::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            self.up.host().to_owned(),
            self.up.port(),
            UpstreamAddr::new(self.up.addr()),
            Transport::Tls,
        ));
        let gw = self.gw.clone();
        let service = hyper::service::service_fn(move |req| {
            let (gw, session) = (gw.clone(), session.clone());
            async move {
                Ok::<_, std::convert::Infallible>(pipeline::serve_request(&gw, &session, req).await)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .max_buf_size(4 << 20)
                .serve_connection(TokioIo::new(server), service),
        );
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .expect("HTTP/1.1 with the pipeline");
        tokio::spawn(conn);
        sender
    }

    /// `GET path` with the upstream's `Host`, on `sender`.
    pub fn get(&self, path: &str) -> Request<Full<Bytes>> {
        Request::get(path)
            .header(http::header::HOST, self.target())
            .body(Full::default())
            .expect("a request")
    }

    /// Sends `req` on `sender` and reads the whole answer.
    pub async fn send(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Answer {
        let answer = async {
            sender.ready().await.expect("the connection is ready");
            let resp: Response<_> = sender.send_request(req).await.expect("an answer");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("the body").to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(WAIT, answer)
            .await
            .expect("an answer in time")
    }

    /// `GET path` on a connection of its own to the upstream.
    pub async fn fetch(&self, path: &str) -> Answer {
        let mut agent = self.agent(&self.target()).await;
        Self::send(&mut agent, self.get(path)).await
    }

    /// `GET path`, sent on a task of its own, and the approval it is held
    /// for: the test decides it (or not) and then awaits the answer.
    pub async fn held(&self, path: &str) -> (JoinHandle<Answer>, MemoryApproval) {
        let mut agent = self.agent(&self.target()).await;
        let req = self.get(path);
        let answer = tokio::spawn(async move { Self::send(&mut agent, req).await });
        (answer, self.approvals.next_pending().await)
    }

    /// The next audit record.
    pub async fn audit(&self) -> AuditRecord {
        tokio::time::timeout(WAIT, self.audit.lock().await.recv())
            .await
            .expect("an audit record in time")
            .expect("the audit channel is open")
    }

    /// Whether an audit record comes within `wait`.
    pub async fn audit_within(&self, wait: Duration) -> Option<AuditRecord> {
        tokio::time::timeout(wait, self.audit.lock().await.recv())
            .await
            .ok()
            .flatten()
    }

    /// Replaces the configuration.
    pub fn install(
        &self,
        agents: Vec<AgentRecord>,
        secrets: Vec<SecretRecord>,
        rules: Vec<RuleRecord>,
    ) {
        self.gw
            .snapshot
            .install(Snapshot::from_records(agents, secrets, rules));
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        self.stop.fire();
    }
}

/// Secret `up` for `host`, as `Authorization: Bearer VALUE`, sealed the
/// way the store seals it.
fn secret(vault: &Vault, host: &str, value: &str) -> SecretRecord {
    let id = uuid::Uuid::new_v4();
    let name = SecretName::parse("up").expect("secret name");
    let host = HostPattern::parse(host).expect("secret host");
    let path = PathGlob::parse("/**").expect("secret path");
    let injection = Injection::header_from_spec("Authorization").expect("injection");
    let aad = airlock::store::secrets::aad(&id, &name, &host, &path, &injection);
    let sealed = vault.seal(&aad, value.as_bytes()).expect("sealing");
    SecretRecord {
        binding: Binding::new(id, name, host, path, injection),
        sealed,
        seal_format: SealFormat::Bound,
        key_id: vault.key_id().to_owned(),
        version: 1,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}
