//! The service layer: the one place that validates configuration and
//! writes it. The admin API (and so the CLI) and the dashboard both call
//! it, so a rule is checked the same way whichever door it came through.
//!
//! After each write the local snapshot is reloaded at once; other daemons
//! on the same database follow through `LISTEN/NOTIFY`.

pub mod audit_search;
pub mod credentials;
pub mod insights;
pub mod probe;
pub mod rule_order;
mod rules;
pub mod types;

use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use uuid::Uuid;

use crate::model::{AgentName, Injection, SecretName};
use crate::policy::approvals::Approvals;
use crate::policy::{HostPattern, PathGlob};
use crate::snapshot::SnapshotHandle;
use crate::store::agents::NewAgent;
use crate::store::approvals::ApprovalStatus;
use crate::store::audit::AuditFilter;
use crate::store::secrets::{self, NewSecret};
use crate::store::{Store, StoreError};
use crate::token::Token;
use crate::vault::{Sealed, Vault, VaultError};
use types::*;

/// What went wrong, in terms an API client can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    fn invalid(field: &'static str, message: impl ToString) -> Self {
        ServiceError::Invalid {
            field,
            message: message.to_string(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => {
                ServiceError::NotFound(format!("{what} does not exist"))
            }
            StoreError::Conflict { what } => ServiceError::Conflict(format!(
                "{what} already exists: choose another name, or remove it first"
            )),
            StoreError::Unreachable { .. } => ServiceError::Unavailable(e.to_string()),
            StoreError::Query(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                ServiceError::Unavailable(format!("the database is unavailable: {e}"))
            }
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<VaultError> for ServiceError {
    fn from(e: VaultError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

/// Longest secret value accepted: far above any real API key, far below
/// anything that would strain a header.
const MAX_VALUE_LEN: usize = 16 * 1024;
const DEFAULT_AUDIT_LIMIT: i64 = 100;
const MAX_AUDIT_LIMIT: i64 = 10_000;

/// The configuration service.
#[derive(Clone)]
pub struct Service {
    store: Store,
    vault: Arc<Vault>,
    snapshot: Arc<SnapshotHandle>,
    approvals: Arc<Approvals>,
    /// The agents' parent cgroup: a new agent's cgroup is `PARENT/agent-NAME`.
    agents_cgroup: Arc<str>,
}

impl Service {
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        snapshot: Arc<SnapshotHandle>,
        approvals: Arc<Approvals>,
        agents_cgroup: &str,
    ) -> Self {
        Service {
            store,
            vault,
            snapshot,
            approvals,
            agents_cgroup: agents_cgroup.trim_matches('/').into(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn snapshot(&self) -> &Arc<SnapshotHandle> {
        &self.snapshot
    }

    /// Wakes whenever the set of pending approvals may have changed.
    pub fn approval_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.approvals.subscribe()
    }

    /// Applies a committed change locally without waiting for the
    /// notification round trip.
    async fn refresh(&self) {
        if let Err(e) = self.snapshot.reload(&self.store).await {
            tracing::error!(error = %e, "reloading configuration after a change failed");
        }
    }

    // ---- secrets ----

    pub async fn list_secrets(&self) -> Result<Vec<SecretView>, ServiceError> {
        Ok(self
            .store
            .list_secrets()
            .await?
            .iter()
            .map(SecretView::from)
            .collect())
    }

    pub async fn add_secret(&self, req: AddSecret) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(&req.name).map_err(|e| ServiceError::invalid("name", e))?;
        let host = HostPattern::parse(&req.host).map_err(|e| ServiceError::invalid("host", e))?;
        if host.is_wildcard_any() {
            return Err(ServiceError::invalid(
                "host",
                "a secret must name the host it belongs to; '*' would send it everywhere",
            ));
        }
        let path = PathGlob::parse(req.path.as_deref().unwrap_or(PathGlob::ANY))
            .map_err(|e| ServiceError::invalid("path", e))?;
        req.injection
            .validate()
            .map_err(|e| ServiceError::invalid("injection", e))?;
        check_value(&req.injection, &req.value)?;
        let id = Uuid::new_v4();
        let sealed = self.vault.seal(
            &secrets::aad(&id, &name, &host, &path, &req.injection),
            req.value.expose().as_bytes(),
        )?;
        self.store
            .insert_secret(NewSecret {
                id,
                name: &name,
                host: &host,
                path: &path,
                injection: &req.injection,
                sealed: &sealed,
                key_id: self.vault.key_id(),
            })
            .await?;
        self.refresh().await;
        Ok(SecretView::from(&self.store.get_secret(&name).await?))
    }

    pub async fn rotate_secret(
        &self,
        name: &str,
        req: RotateSecret,
    ) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let current = self.store.get_secret(&name).await?;
        check_value(&current.injection, &req.value)?;
        self.store
            .rotate_secret(&name, |aad| -> Result<(Sealed, String), ServiceError> {
                let sealed = self.vault.seal(aad, req.value.expose().as_bytes())?;
                Ok((sealed, self.vault.key_id().to_owned()))
            })
            .await?;
        self.refresh().await;
        Ok(SecretView::from(&self.store.get_secret(&name).await?))
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        self.store.delete_secret(&name).await?;
        self.refresh().await;
        Ok(())
    }

    // ---- agents ----

    pub async fn list_agents(&self) -> Result<Vec<AgentView>, ServiceError> {
        Ok(self
            .store
            .list_agents()
            .await?
            .iter()
            .map(AgentView::from)
            .collect())
    }

    /// The cgroup Airlock creates and owns for an agent given no `--cgroup`.
    fn default_cgroup(&self, name: &AgentName) -> String {
        crate::intercept::cgroup::owned_path(&self.agents_cgroup, name)
    }

    pub async fn add_agent(&self, req: AddAgent) -> Result<AgentCreated, ServiceError> {
        let name = AgentName::parse(&req.name).map_err(|e| ServiceError::invalid("name", e))?;
        let grants = req
            .grants
            .iter()
            .map(|g| SecretName::parse(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::invalid("grants", e))?;
        let cgroup = match req.cgroup {
            Some(path) => validate_cgroup(&path)?,
            None => self.default_cgroup(&name),
        };
        let token = Token::generate();
        self.store
            .insert_agent(NewAgent {
                name: &name,
                token_hash: token.hash(),
                cgroup: &cgroup,
                grants: &grants,
            })
            .await?;
        self.refresh().await;
        let agent = AgentView::from(&self.store.get_agent(&name).await?);
        Ok(AgentCreated {
            agent,
            token: SecretValue::new(token.expose().to_owned()),
        })
    }

    /// Deletes the agent. Its processes must not outlive it as anyone's
    /// identity:
    ///
    /// - the cgroup Airlock owns (the default `PARENT/agent-NAME`) is
    ///   emptied, every process in it killed, and removed; if its
    ///   processes cannot be stopped the agent is not removed (an error
    ///   says why). Anything that joins it while the agent is being removed
    ///   is killed by the second pass after the row is gone; if that fails
    ///   too, the cgroup keeps the removed agent's mark and is refused as
    ///   an unknown cgroup, even once the name is added again
    ///   ([`crate::intercept::agents`]);
    /// - a `--cgroup` one belongs to systemd or a container runtime: it is
    ///   never killed or removed, and while processes are in it the removal
    ///   is refused unless `busy` is [`BusyCgroup::Keep`] (`--force`); they
    ///   are then an unknown cgroup, until an agent is added with that
    ///   `--cgroup` again, which is the operator naming them.
    pub async fn delete_agent(&self, name: &str, busy: BusyCgroup) -> Result<(), ServiceError> {
        let name = AgentName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let rel = self.store.get_agent(&name).await?.cgroup;
        let rel = rel.trim_matches('/').to_owned();
        let dir = crate::intercept::cgroup::Cgroup2::find()
            .ok()
            .map(|cg| cg.path(&rel));
        let owned = rel == self.default_cgroup(&name);
        if owned && let Some(dir) = &dir {
            stop_processes(&name, dir.clone()).await.map_err(|e| {
                ServiceError::Conflict(format!(
                    "cannot stop the processes of agent {name}'s cgroup {}: {e}; the agent \
                         is not removed",
                    dir.display()
                ))
            })?;
        } else if busy == BusyCgroup::Refuse
            && let Some(dir) = &dir
            && crate::intercept::cgroup::populated(dir).unwrap_or(false)
        {
            return Err(ServiceError::Conflict(format!(
                "agent {name}'s cgroup {rel} (given with --cgroup, so not Airlock's to stop) \
                 still has processes: stop them first (e.g. systemctl stop the unit), or \
                 remove the agent anyway with --force (they are then refused as an unknown \
                 cgroup, until an agent is added with this cgroup again)"
            )));
        }
        self.store.delete_agent(&name).await?;
        // After the refresh no rebuild of the agent map recreates it.
        self.refresh().await;
        if owned
            && let Some(dir) = dir
            && let Err(e) = stop_processes(&name, dir.clone()).await
        {
            tracing::warn!(agent = %name, cgroup = %dir.display(), error = %e,
                "a process joined the removed agent's cgroup and cannot be stopped: the \
                 cgroup is kept, marked as the removed agent's, and refused");
        }
        Ok(())
    }

    pub async fn grant(&self, agent: &str, secret: &str) -> Result<GrantResult, ServiceError> {
        let agent = AgentName::parse(agent).map_err(|e| ServiceError::invalid("agent", e))?;
        let secret = SecretName::parse(secret).map_err(|e| ServiceError::invalid("secret", e))?;
        let added = self.store.grant(&agent, &secret).await?;
        self.refresh().await;
        Ok(GrantResult { added })
    }

    pub async fn revoke(&self, agent: &str, secret: &str) -> Result<(), ServiceError> {
        let agent = AgentName::parse(agent).map_err(|e| ServiceError::invalid("agent", e))?;
        let secret = SecretName::parse(secret).map_err(|e| ServiceError::invalid("secret", e))?;
        self.store.revoke(&agent, &secret).await?;
        self.refresh().await;
        Ok(())
    }

    // ---- rules ----

    pub async fn list_rules(&self) -> Result<Vec<RuleView>, ServiceError> {
        Ok(self
            .store
            .list_rules()
            .await?
            .iter()
            .map(RuleView::from)
            .collect())
    }

    pub async fn delete_rule(&self, id: i64) -> Result<(), ServiceError> {
        self.store.delete_rule(id).await?;
        self.refresh().await;
        Ok(())
    }

    // ---- approvals ----

    pub async fn list_approvals(
        &self,
        q: ApprovalQuery,
    ) -> Result<Vec<ApprovalView>, ServiceError> {
        Ok(self.store.list_approvals(q.all).await?)
    }

    /// Approves or denies a pending request. The waiting request is woken
    /// here at once, and on every other daemon through the notification.
    pub async fn decide_approval(
        &self,
        id: i64,
        approve: bool,
    ) -> Result<ApprovalView, ServiceError> {
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let record = self.store.decide_approval(id, status).await?;
        self.approvals.resolve(id, approve);
        Ok(record)
    }

    // ---- audit ----

    pub async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEvent>, ServiceError> {
        let since = q
            .since
            .as_deref()
            .map(|s| parse_since(s, Utc::now()))
            .transpose()?;
        let limit = q.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
        if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                format!("limit must be from 1 to {MAX_AUDIT_LIMIT}"),
            ));
        }
        let agent = q
            .agent
            .as_deref()
            .map(AgentName::parse)
            .transpose()
            .map_err(|e| ServiceError::invalid("agent", e))?;
        Ok(self
            .store
            .audit_events(&AuditFilter {
                agent: agent.map(String::from),
                since,
                after_id: q.after_id,
                limit,
            })
            .await?)
    }
}

/// A value must be non-empty, bounded, and fit where it will be injected.
fn check_value(injection: &Injection, value: &SecretValue) -> Result<(), ServiceError> {
    let v = value.expose();
    if v.is_empty() {
        return Err(ServiceError::invalid(
            "value",
            "the secret value is empty: pipe the value on standard input",
        ));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(ServiceError::invalid(
            "value",
            format!("the secret value is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    // Never echo the value: only say what kind of character is wrong.
    if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ServiceError::invalid(
            "value",
            "the secret value contains a line break or control character \
             (a trailing newline is removed for you; others are not allowed)",
        ));
    }
    if let Injection::AwsSigv4 { .. } = injection {
        let ok = v
            .split_once(':')
            .is_some_and(|(id, key)| !id.is_empty() && !key.is_empty());
        if !ok {
            return Err(ServiceError::invalid(
                "value",
                "an AWS SigV4 secret's value must be ACCESS_KEY_ID:SECRET_ACCESS_KEY",
            ));
        }
    }
    Ok(())
}

/// A cgroup path: relative to the agents' parent cgroup, or absolute from
/// the cgroup2 root. No `..`, no empty or hidden components.
fn validate_cgroup(path: &str) -> Result<String, ServiceError> {
    let trimmed = path.trim_matches('/');
    let ok = !trimmed.is_empty()
        && path.len() <= 512
        && trimmed.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
        });
    if ok {
        Ok(path.to_owned())
    } else {
        Err(ServiceError::invalid(
            "cgroup",
            format!(
                "cgroup {path:?} must be a path of names made of letters, digits and -_.@: \
                 (no '..' or empty parts)"
            ),
        ))
    }
}

/// `--since`: an RFC 3339 time, or a duration back from `now` such as
/// `90s`, `15m`, `2h`, `7d`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        ServiceError::invalid(
            "since",
            format!(
                "since {text:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) \
                 nor a duration like 90s, 15m, 2h or 7d"
            ),
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = text.split_at(digits);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => ChronoDuration::try_seconds(n),
        "m" => ChronoDuration::try_minutes(n),
        "h" => ChronoDuration::try_hours(n),
        "d" => ChronoDuration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(d).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-01-31T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("15m", now).unwrap().to_rfc3339(),
            "2026-01-31T11:45:00+00:00"
        );
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        for bad in ["", "15", "m", "15y", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_checked_without_being_echoed() {
        let header = Injection::header_from_spec("authorization").unwrap();
        let err = check_value(&header, &SecretValue::new("sk-abc\r\nX: y".into())).unwrap_err();
        assert!(!err.to_string().contains("sk-abc"));
        assert!(check_value(&header, &SecretValue::new(String::new())).is_err());
        assert!(check_value(&header, &SecretValue::new("sk-abc".into())).is_ok());
        let aws = Injection::aws_from_spec("us-east-1/s3").unwrap();
        assert!(check_value(&aws, &SecretValue::new("AKIA".into())).is_err());
        assert!(check_value(&aws, &SecretValue::new("AKIA:secret".into())).is_ok());
    }

    #[test]
    fn cgroup_paths_are_checked() {
        assert!(validate_cgroup("airlock.slice/agent-a").is_ok());
        assert!(validate_cgroup("/system.slice/my-agent.service").is_ok());
        for bad in ["", "/", "a/../b", "a//b", "a/.hidden", "a b"] {
            assert!(validate_cgroup(bad).is_err(), "{bad:?}");
        }
    }
}

/// Whether `agent rm` may leave processes in a `--cgroup` agent's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyCgroup {
    /// Refuse the removal while processes are in it.
    Refuse,
    /// Remove the agent anyway (`--force`); the processes stay, unknown.
    Keep,
}

/// Why an agent's cgroup could not be emptied and removed.
#[derive(Debug, thiserror::Error)]
enum StopError {
    #[error(transparent)]
    Cgroup(#[from] std::io::Error),
    /// The blocking task that waits for the processes did not finish
    /// (it panicked, or the runtime is shutting down).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Kills the processes of the Airlock-owned agent cgroup at `dir` and
/// removes it (off the async threads: it waits for them to exit).
async fn stop_processes(agent: &AgentName, dir: std::path::PathBuf) -> Result<(), StopError> {
    use crate::intercept::cgroup::{self, Removed};
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || cgroup::kill_and_remove(&dir)).await?? {
        Removed::Gone { killed } => {
            tracing::info!(%agent, cgroup = %shown, killed,
                "removed the agent's cgroup, killing the processes in it");
        }
        Removed::Absent => {}
    }
    Ok(())
}
