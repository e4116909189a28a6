//! Access requests: what agents were refused by a default of deny, one
//! row per (agent, method, host, suggested path glob), for an operator to
//! allow (which makes the rule) or dismiss (docs/policy.md, "Access
//! requests").
//!
//! The request path never writes here. The audit writer already appends
//! every refusal to the trail in batches; [`record_sightings`] runs in the
//! same transaction, on the records that transaction appends, so a
//! refusal is counted exactly once: a batch replayed from the spool skips
//! the records already written, and their sightings with them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::audit::{NewRequestEvent, record_admin};
use super::rules::{NewRule, add_rule_in};
use super::{Change, Store, StoreError, commit_change};
use crate::audit::Decision;
use crate::model::{AgentName, word_enum};
use crate::policy::{HostPattern, Method, PathGlob, RuleAction, suggest_path};

/// New keys an agent may open while it already has this many open
/// requests are not recorded (their refusals still are, in the trail): an
/// agent that walks random hosts or paths cannot grow the table without
/// bound. Keys already present keep counting.
pub const OPEN_PER_AGENT_MAX: i64 = 1000;

/// A refusal more than this long after its request was allowed reopens
/// it: the rule was removed or changed since (a new rule reaches every
/// daemon within 100 ms, so refusals in flight at the moment of the
/// allow do not count).
const REOPEN_GRACE_SECS: f64 = 1.0;

word_enum! {
    /// Where an access request stands; the `status` column holds its word.
    pub enum AccessStatus as "access request status" {
        /// Refused and not yet decided: listed for an operator.
        Open => "open",
        /// An operator allowed it: `rule_id` is the allow rule it made.
        Allowed => "allowed",
        /// An operator silenced it: it is not listed again, however often
        /// the agent is refused (the count still grows).
        Dismissed => "dismissed",
    }
}

/// An access request as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessRequest {
    /// What `airlock requests allow ID` names.
    pub id: i64,
    pub agent: String,
    pub method: String,
    /// As the trail names the destination: `host`, or `host:port` when
    /// the port is not 443.
    pub host: String,
    /// The path glob the allow rule would carry ([`suggest_path`]).
    pub path_pattern: String,
    /// Refusals counted, including those after a dismissal.
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[schema(value_type = String, example = "open")]
    pub status: AccessStatus,
    /// The allow rule it made, while that rule exists.
    pub rule_id: Option<i64>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Refusals of one key within a batch of audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting<'a> {
    pub agent: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path_pattern: String,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// The batch's refusals by default, one [`Sighting`] per key, in the
/// order each key first appears. A record that does not name its agent,
/// method, host and path (none does when denied by default) is skipped.
pub fn sightings<'a>(events: &[&'a NewRequestEvent]) -> Vec<Sighting<'a>> {
    let mut out: Vec<Sighting<'a>> = Vec::new();
    for e in events {
        if e.decision != Decision::DeniedByDefault {
            continue;
        }
        let (Some(agent), Some(method), Some(host), Some(path)) = (
            e.agent.as_deref(),
            e.method.as_deref(),
            e.host.as_deref(),
            e.path.as_deref(),
        ) else {
            continue;
        };
        let path_pattern = suggest_path(path);
        // A batch holds at most a few hundred records, and refusals by
        // default are few among them: a scan beats a map here.
        let same = |s: &&mut Sighting<'a>| {
            s.agent == agent
                && s.method == method
                && s.host == host
                && s.path_pattern == path_pattern
        };
        match out.iter_mut().find(same) {
            Some(s) => {
                s.count += 1;
                s.first_seen = s.first_seen.min(e.at);
                s.last_seen = s.last_seen.max(e.at);
            }
            None => out.push(Sighting {
                agent,
                method,
                host,
                path_pattern,
                count: 1,
                first_seen: e.at,
                last_seen: e.at,
            }),
        }
    }
    out
}

/// Adds the batch's refusals by default to the access requests, inside
/// the transaction that appends `events` to the trail. One statement, and
/// none when the batch has no such refusal (the common case).
pub(super) async fn record_sightings(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    events: &[&NewRequestEvent],
) -> Result<(), StoreError> {
    let seen = sightings(events);
    if seen.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Sighting<'_>) -> String| seen.iter().map(f).collect::<Vec<_>>();
    // An agent removed since its request is skipped by the join.
    sqlx::query(
        "INSERT INTO access_requests
             (agent_id, method, host, path_pattern, count, first_seen, last_seen)
         SELECT a.id, s.method, s.host, s.path_pattern, s.count, s.first_seen, s.last_seen
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                     $6::timestamptz[], $7::timestamptz[])
              AS s(agent, method, host, path_pattern, count, first_seen, last_seen)
         JOIN agents a ON a.name = s.agent
         WHERE EXISTS (SELECT 1 FROM access_requests r
                       WHERE r.agent_id = a.id AND r.method = s.method
                         AND r.host = s.host AND r.path_pattern = s.path_pattern)
            OR (SELECT count(*) FROM access_requests r
                WHERE r.agent_id = a.id AND r.status = 'open') < $8
         ON CONFLICT (agent_id, method, host, path_pattern) DO UPDATE SET
             count = access_requests.count + excluded.count,
             first_seen = least(access_requests.first_seen, excluded.first_seen),
             last_seen = greatest(access_requests.last_seen, excluded.last_seen),
             status = CASE
                 WHEN access_requests.status = 'allowed'
                  AND excluded.last_seen > access_requests.decided_at
                                           + make_interval(secs => $9)
                 THEN 'open'
                 ELSE access_requests.status
             END",
    )
    .bind(col(|s| s.agent.to_owned()))
    .bind(col(|s| s.method.to_owned()))
    .bind(col(|s| s.host.to_owned()))
    .bind(col(|s| s.path_pattern.clone()))
    .bind(seen.iter().map(|s| s.count).collect::<Vec<_>>())
    .bind(seen.iter().map(|s| s.first_seen).collect::<Vec<_>>())
    .bind(seen.iter().map(|s| s.last_seen).collect::<Vec<_>>())
    .bind(OPEN_PER_AGENT_MAX)
    .bind(REOPEN_GRACE_SECS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SELECT: &str = "SELECT r.id, a.name AS agent, r.method, r.host, r.path_pattern, r.count,
                             r.first_seen, r.last_seen, r.status, r.rule_id, r.decided_at
                      FROM access_requests r JOIN agents a ON a.id = r.agent_id";

fn request_from_row(row: &PgRow) -> Result<AccessRequest, sqlx::Error> {
    let word: String = row.try_get("status")?;
    Ok(AccessRequest {
        id: row.try_get("id")?,
        agent: row.try_get("agent")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path_pattern: row.try_get("path_pattern")?,
        count: row.try_get("count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        status: word.parse().map_err(|e| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: Box::new(e),
        })?,
        rule_id: row.try_get("rule_id")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// The rule allowing `req` would add: for its agent only, its method,
/// exactly its host (and port), its suggested paths.
struct AllowRule {
    host: HostPattern,
    path: PathGlob,
    method: Method,
    agent: AgentName,
}

impl AllowRule {
    fn of(req: &AccessRequest) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "access_requests",
            id: req.id.to_string(),
            reason,
        };
        Ok(AllowRule {
            host: HostPattern::parse(&req.host).map_err(|e| corrupt(e.to_string()))?,
            path: PathGlob::parse(&req.path_pattern).map_err(|e| corrupt(e.to_string()))?,
            method: Method::parse(&req.method).map_err(|e| corrupt(e.to_string()))?,
            agent: AgentName::parse(&req.agent).map_err(|e| corrupt(e.to_string()))?,
        })
    }

    fn as_new(&self) -> NewRule<'_> {
        NewRule {
            host: &self.host,
            path: &self.path,
            method: Some(&self.method),
            agent: Some(&self.agent),
            action: RuleAction::Allow,
        }
    }
}

/// An access request in an audit event's detail.
fn describe(req: &AccessRequest) -> String {
    format!(
        "request={} method={} host={} path={} count={}",
        req.id, req.method, req.host, req.path_pattern, req.count
    )
}

impl Store {
    /// Access requests, most recently refused first: the open ones, or
    /// with `all` every one.
    pub async fn list_access_requests(&self, all: bool) -> Result<Vec<AccessRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE $1 OR r.status = 'open' ORDER BY r.last_seen DESC, r.id DESC"
        ))
        .bind(all)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(request_from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    /// Allows access request `id`: adds the allow rule and marks the
    /// request allowed in one transaction, audited as `rule.add` and
    /// `request.allowed`, announced like any rule change. A dismissed
    /// request may still be allowed; an allowed one is a conflict.
    pub async fn allow_access_request(&self, id: i64) -> Result<AccessRequest, StoreError> {
        let mut tx = self.pool().begin().await?;
        let req = locked(&mut tx, id).await?;
        if req.status == AccessStatus::Allowed {
            return Err(StoreError::Decided(format!(
                "access request {id} is already allowed{}",
                req.rule_id
                    .map(|r| format!(" by rule {r}"))
                    .unwrap_or_default()
            )));
        }
        let rule = AllowRule::of(&req)?;
        let rule_id = add_rule_in(&mut tx, &rule.as_new()).await?;
        let req = set_status(&mut tx, id, AccessStatus::Allowed, Some(rule_id)).await?;
        commit_change(
            tx,
            Change {
                agent: Some(&req.agent),
                action: "request.allowed",
                detail: &format!("{} rule={rule_id}", describe(&req)),
                what: "rules",
            },
        )
        .await?;
        Ok(req)
    }

    /// Dismisses access request `id`: it is no longer listed, and later
    /// refusals of the same key do not reopen it. Audited as
    /// `request.dismissed`. Dismissing a dismissed request changes nothing;
    /// an allowed one is a conflict (remove its rule instead).
    pub async fn dismiss_access_request(&self, id: i64) -> Result<AccessRequest, StoreError> {
        let mut tx = self.pool().begin().await?;
        let req = locked(&mut tx, id).await?;
        match req.status {
            AccessStatus::Dismissed => return Ok(req),
            AccessStatus::Allowed => {
                return Err(StoreError::Decided(format!(
                    "access request {id} is already allowed: remove its rule (airlock rule rm) \
                     to take the access back"
                )));
            }
            AccessStatus::Open => {}
        }
        let req = set_status(&mut tx, id, AccessStatus::Dismissed, None).await?;
        // Nothing in the snapshot changes: audited, not announced.
        record_admin(
            &mut tx,
            Some(&req.agent),
            "request.dismissed",
            &describe(&req),
        )
        .await?;
        tx.commit().await?;
        Ok(req)
    }
}

/// Reads request `id` and locks its row until the transaction ends, so
/// two operators deciding at once decide in turn.
async fn locked(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
) -> Result<AccessRequest, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE r.id = $1 FOR UPDATE OF r"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("access request {id}"),
        })?;
    Ok(request_from_row(&row)?)
}

async fn set_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    status: AccessStatus,
    rule_id: Option<i64>,
) -> Result<AccessRequest, StoreError> {
    sqlx::query(
        "UPDATE access_requests SET status = $2, rule_id = coalesce($3, rule_id),
                                    decided_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(rule_id)
    .execute(&mut **tx)
    .await?;
    locked(tx, id).await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn refused(agent: &str, method: &str, host: &str, path: &str, secs: i64) -> NewRequestEvent {
        NewRequestEvent {
            at: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
            agent: Some(agent.into()),
            method: Some(method.into()),
            host: Some(host.into()),
            path: Some(path.into()),
            decision: Decision::DeniedByDefault,
            status: Some(403),
            ..NewRequestEvent::default()
        }
    }

    #[test]
    fn refusals_are_keyed_by_agent_method_host_and_suggested_path() {
        let events = [
            refused("bot", "GET", "api.test", "/v1/models", 3),
            refused("bot", "GET", "api.test", "/v1/chat?page=", 1),
            refused("bot", "POST", "api.test", "/v1/chat", 2),
            refused("bot", "GET", "api.test:8443", "/v1/models", 4),
            refused("other", "GET", "api.test", "/v1/models", 5),
            refused("bot", "GET", "api.test", "/v2/models", 6),
            refused("bot", "GET", "api.test", "/v1/x/y", 0),
        ];
        let refs: Vec<&NewRequestEvent> = events.iter().collect();
        let seen = sightings(&refs);
        let keys: Vec<(&str, &str, &str, &str, i64)> = seen
            .iter()
            .map(|s| (s.agent, s.method, s.host, s.path_pattern.as_str(), s.count))
            .collect();
        assert_eq!(
            keys,
            [
                ("bot", "GET", "api.test", "/v1/**", 3),
                ("bot", "POST", "api.test", "/v1/**", 1),
                ("bot", "GET", "api.test:8443", "/v1/**", 1),
                ("other", "GET", "api.test", "/v1/**", 1),
                ("bot", "GET", "api.test", "/v2/**", 1),
            ]
        );
        // First and last seen span the key's refusals, whatever their order.
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap();
        assert_eq!((seen[0].first_seen, seen[0].last_seen), (at(0), at(3)));
    }

    #[test]
    fn only_refusals_by_default_that_name_their_request_count() {
        let mut blocked = refused("bot", "GET", "a.test", "/x", 0);
        blocked.decision = Decision::Blocked;
        let mut exfiltration = refused("bot", "GET", "a.test", "/x", 0);
        exfiltration.decision = Decision::Exfiltration;
        let mut anonymous = refused("bot", "GET", "a.test", "/x", 0);
        anonymous.agent = None;
        let allowed = NewRequestEvent {
            decision: Decision::Allowed,
            ..refused("bot", "GET", "a.test", "/x", 0)
        };
        let events = [blocked, exfiltration, anonymous, allowed];
        let refs: Vec<&NewRequestEvent> = events.iter().collect();
        assert!(sightings(&refs).is_empty());
    }

    #[test]
    fn statuses_have_their_stored_words() {
        let words: Vec<&str> = AccessStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(words, ["open", "allowed", "dismissed"]);
    }
}
