//! The admin API's request and response bodies. The daemon and the CLI
//! (through [`crate::admin::client`]) share these definitions, so the two
//! sides cannot drift apart.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use crate::model::Injection;
use crate::policy::{BodyCondition, BodySpec, RuleAction};
use crate::store::agents::AgentRecord;
use crate::store::rules::RuleRecord;
use crate::store::secrets::SecretRecord;

pub use crate::store::audit::AuditEvent;

/// A secret value in transit from the CLI to the daemon: zeroized on drop,
/// redacted in `Debug`. Responses never contain one.
#[derive(Clone, Default)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretValue::new)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSecret {
    pub name: String,
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    pub injection: Injection,
    /// Write-only: no response ever contains it. For an OAuth2 secret,
    /// the client secret.
    #[schema(value_type = String, write_only)]
    pub value: SecretValue,
    /// An OAuth2 refresh-token grant's first refresh token. Write-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub refresh_token: Option<SecretValue>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Write-only: no response ever contains it. For an OAuth2 secret,
    /// the client secret.
    #[schema(value_type = String, write_only)]
    pub value: SecretValue,
    /// An OAuth2 refresh-token grant's new refresh token (a reconnection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, write_only)]
    pub refresh_token: Option<SecretValue>,
}

/// A secret as the API shows it: everything but the value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    pub name: String,
    pub host: String,
    pub path: String,
    pub injection: Injection,
    pub version: i32,
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// An OAuth2 secret's token state (never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2State>,
}

/// Where an OAuth2 secret's grant stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuth2State {
    /// `ok`, or `needs_reconnection` once the provider refused the grant.
    pub status: String,
    /// The provider's error code when it refused the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the access token held expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Token requests made for it so far, by every daemon.
    pub token_requests: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl From<&crate::store::oauth2::TokenState> for OAuth2State {
    fn from(t: &crate::store::oauth2::TokenState) -> Self {
        OAuth2State {
            status: t.status.as_str().to_owned(),
            detail: t.status_detail.clone(),
            access_expires_at: t.access_expires_at,
            token_requests: t.refreshes,
            refreshed_at: t.refreshed_at,
        }
    }
}

impl From<&SecretRecord> for SecretView {
    fn from(s: &SecretRecord) -> Self {
        SecretView {
            name: s.name().to_string(),
            host: s.host().to_string(),
            path: s.path().to_string(),
            injection: s.injection().clone(),
            version: s.version,
            key_id: s.key_id.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            oauth2: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAgent {
    pub name: String,
    #[serde(default)]
    pub grants: Vec<String>,
    /// Defaults to `agent-NAME` under the agents' parent cgroup
    /// (`airlock.slice/agent-NAME` unless configured otherwise).
    #[serde(default)]
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub name: String,
    pub cgroup: String,
    pub grants: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&AgentRecord> for AgentView {
    fn from(a: &AgentRecord) -> Self {
        AgentView {
            name: a.name.to_string(),
            cgroup: a.cgroup.clone(),
            grants: a.grants.iter().map(ToString::to_string).collect(),
            created_at: a.created_at,
        }
    }
}

/// The answer to creating an agent: the only time its token is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentCreated {
    pub agent: AgentView,
    /// The agent's token, shown only in this answer.
    #[schema(value_type = String)]
    pub token: SecretValue,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantResult {
    /// False when the agent already had the secret.
    pub added: bool,
}

// No deny_unknown_fields: serde does not support it beside `flatten`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AddRule {
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(flatten)]
    pub action: RuleAction,
    /// Match MCP messages in the body too ([`crate::policy::mcp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuleView {
    pub id: i64,
    pub position: i32,
    pub host: String,
    pub path: String,
    pub method: Option<String>,
    pub agent: Option<String>,
    #[serde(flatten)]
    pub action: RuleAction,
    /// The body condition, complete (its defaults spelled out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySpec>,
    pub created_at: DateTime<Utc>,
}

impl From<&RuleRecord> for RuleView {
    fn from(r: &RuleRecord) -> Self {
        RuleView {
            id: r.id,
            position: r.position,
            host: r.host.to_string(),
            path: r.path.to_string(),
            method: r.method.as_ref().map(|m| m.as_str().to_owned()),
            agent: r.agent.as_ref().map(ToString::to_string),
            action: r.action,
            body: r.body.as_ref().map(BodyCondition::spec),
            created_at: r.created_at,
        }
    }
}

/// Query parameters of `GET /api/v1/audit`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    pub agent: Option<String>,
    /// RFC 3339 time, or a duration back from now: `90s`, `15m`, `2h`, `7d`.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub after_id: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseStatus {
    /// `embedded` or `external`.
    pub kind: String,
    /// Where it is, without credentials.
    pub target: String,
    pub postgres_pid: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotStatus {
    pub generation: u64,
    pub loaded_at: Option<DateTime<Utc>>,
    pub agents: usize,
    pub secrets: usize,
    pub rules: usize,
    /// Rows that cannot be read (and so are not in effect).
    #[serde(default)]
    pub corrupt: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub data_dir: String,
    /// How agents' traffic reaches the gateway, and why.
    pub mode: String,
    pub listeners: Vec<String>,
    pub database: DatabaseStatus,
    pub key_id: String,
    /// The CA certificate agents must trust.
    pub ca_cert: String,
    /// Where the explicit proxy listens (`HTTPS_PROXY`).
    pub proxy_addr: String,
    /// Where the dashboard listens (`http://` + this); absent from older daemons.
    #[serde(default)]
    pub dashboard_addr: Option<String>,
    pub snapshot: SnapshotStatus,
    /// The defaults in effect; absent from older daemons.
    #[serde(default)]
    pub defaults: Option<crate::service::defaults::DefaultsView>,
    /// Rows in the audit trail; absent while the database cannot be asked.
    pub audit_events: Option<i64>,
    /// The audit writer since this daemon started.
    pub audit: AuditStatus,
}

/// How the audit writer is doing (counts since the daemon started).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditStatus {
    /// Requests are refused (503) rather than served unaudited.
    pub required: bool,
    /// Records can be stored neither in the database nor in the spool
    /// right now; with `required`, new requests are being refused.
    pub stalled: bool,
    /// Records made (one per request).
    pub recorded: u64,
    /// Rows written to the database, directly or replayed from the spool.
    pub written: u64,
    /// Records that went to the spool during database outages.
    pub spooled: u64,
    /// Bytes in the spool waiting for the database.
    pub spool_bytes: u64,
    /// Records lost (queue full, or unstorable without `required`).
    pub dropped: u64,
}

pub use crate::store::approvals::ApprovalRecord as ApprovalView;

/// Query parameters of `GET /api/v1/approvals`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// Also decided ones (the latest 200), not only pending.
    #[serde(default)]
    pub all: bool,
}

/// The body of every API error: what went wrong and, for bad input, which
/// field.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `DELETE /api/v1/agents/{name}` options (`airlock agent rm`).
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveAgent {
    /// Remove the agent even though processes are still in its `--cgroup`
    /// cgroup (they are left running, refused as an unknown cgroup). No
    /// effect on a cgroup Airlock made: its processes are always killed.
    #[serde(default)]
    pub force: bool,
}
