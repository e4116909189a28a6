//! Access requests: what agents were refused and could be let do, for an
//! operator to allow or dismiss (docs/policy.md, "Access requests"). A
//! refusal by a default of deny asks for an allow rule, one request per
//! (agent, method, host, suggested path glob); a placeholder of a secret
//! the agent is not granted asks for the grant, one per (agent, secret).
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

use super::agents::grant_secret_in;
use super::audit::{NewRequestEvent, record_admin};
use super::rules::{NewRule, add_rule_in};
use super::{Change, Store, StoreError, commit_change};
use crate::audit::Decision;
use crate::model::{AgentName, SecretName, word_enum};
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
    /// What allowing an access request does; the `kind` column holds its
    /// word.
    pub enum AccessKind as "access request kind" {
        /// Adds an allow rule for the agent, method, host and path pattern.
        Rule => "rule",
        /// Grants the agent the secret its placeholder named.
        Grant => "grant",
    }
}

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
    #[schema(value_type = String, example = "rule")]
    pub kind: AccessKind,
    pub agent: String,
    /// For a grant: the secret the agent's placeholder named.
    pub secret: Option<String>,
    pub method: String,
    /// As the trail names the destination: `host`, or `host:port` when
    /// the port is not 443.
    pub host: String,
    /// The path glob the allow rule would carry ([`suggest_path`]); for a
    /// grant, that of its first refusal, shown for context.
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
    pub kind: AccessKind,
    pub agent: &'a str,
    /// For a grant: the secret. Its key is (agent, secret) alone.
    pub secret: Option<&'a str>,
    pub method: &'a str,
    pub host: &'a str,
    pub path_pattern: String,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What a refusal asks for, if anything: an allow rule (refused by
/// default), a grant (a placeholder of a secret not granted), or nothing.
fn asks_for(e: &NewRequestEvent) -> Option<(AccessKind, Option<&str>)> {
    match (e.decision, e.ungranted.as_deref()) {
        (Decision::DeniedByDefault, _) => Some((AccessKind::Rule, None)),
        (Decision::Exfiltration, Some(secret)) => Some((AccessKind::Grant, Some(secret))),
        _ => None,
    }
}

/// The batch's refusals that ask for something, one [`Sighting`] per key,
/// in the order each key first appears. A record that does not name its
/// agent, method, host and path (none such does) is skipped.
pub fn sightings<'a>(events: &[&'a NewRequestEvent]) -> Vec<Sighting<'a>> {
    let mut out: Vec<Sighting<'a>> = Vec::new();
    for e in events {
        let Some((kind, secret)) = asks_for(e) else {
            continue;
        };
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
        let same = |s: &&mut Sighting<'a>| match kind {
            AccessKind::Rule => {
                s.kind == kind
                    && s.agent == agent
                    && s.method == method
                    && s.host == host
                    && s.path_pattern == path_pattern
            }
            AccessKind::Grant => s.kind == kind && s.agent == agent && s.secret == secret,
        };
        match out.iter_mut().find(same) {
            Some(s) => {
                s.count += 1;
                s.first_seen = s.first_seen.min(e.at);
                s.last_seen = s.last_seen.max(e.at);
            }
            None => out.push(Sighting {
                kind,
                agent,
                secret,
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

/// Adds the batch's sightings to the access requests, inside the
/// transaction that appends `events` to the trail: one statement per kind
/// present, none for a batch without such refusals (the common case).
pub(super) async fn record_sightings(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    events: &[&NewRequestEvent],
) -> Result<(), StoreError> {
    let seen = sightings(events);
    for (kind, key) in [(AccessKind::Rule, RULE_KEY), (AccessKind::Grant, GRANT_KEY)] {
        let of_kind: Vec<&Sighting<'_>> = seen.iter().filter(|s| s.kind == kind).collect();
        if !of_kind.is_empty() {
            upsert(tx, kind, key, &of_kind).await?;
        }
    }
    Ok(())
}

/// The conflict targets: the partial unique indexes of each kind.
const RULE_KEY: &str = "(agent_id, method, host, path_pattern) WHERE kind = 'rule'";
const GRANT_KEY: &str = "(agent_id, secret_id) WHERE kind = 'grant'";

async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    kind: AccessKind,
    key: &str,
    seen: &[&Sighting<'_>],
) -> Result<(), StoreError> {
    let col = |f: fn(&Sighting<'_>) -> String| seen.iter().map(|s| f(s)).collect::<Vec<_>>();
    let same_key = match kind {
        AccessKind::Rule => {
            "r.method = s.method AND r.host = s.host AND r.path_pattern = s.path_pattern"
        }
        AccessKind::Grant => "r.secret_id = sec.id",
    };
    // An agent (or secret) removed since its request is skipped by the
    // join. New keys stop at OPEN_PER_AGENT_MAX open requests per agent.
    let sql = format!(
        "INSERT INTO access_requests
             (kind, agent_id, secret_id, method, host, path_pattern, count, first_seen, last_seen)
         SELECT $10, a.id, sec.id, s.method, s.host, s.path_pattern, s.count, s.first_seen,
                s.last_seen
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                     $7::timestamptz[], $8::timestamptz[])
              AS s(agent, secret, method, host, path_pattern, count, first_seen, last_seen)
         JOIN agents a ON a.name = s.agent
         LEFT JOIN secrets sec ON sec.name = s.secret
         WHERE (s.secret IS NULL) = (sec.id IS NULL)
           AND (EXISTS (SELECT 1 FROM access_requests r
                        WHERE r.kind = $10 AND r.agent_id = a.id AND {same_key})
                OR (SELECT count(*) FROM access_requests r
                    WHERE r.agent_id = a.id AND r.status = 'open') < $9)
         ON CONFLICT {key} DO UPDATE SET
             count = access_requests.count + excluded.count,
             first_seen = least(access_requests.first_seen, excluded.first_seen),
             last_seen = greatest(access_requests.last_seen, excluded.last_seen),
             status = CASE
                 WHEN access_requests.status = 'allowed'
                  AND excluded.last_seen > access_requests.decided_at
                                           + make_interval(secs => $11)
                 THEN 'open'
                 ELSE access_requests.status
             END"
    );
    sqlx::query(&sql)
        .bind(col(|s| s.agent.to_owned()))
        .bind(
            seen.iter()
                .map(|s| s.secret.map(str::to_owned))
                .collect::<Vec<_>>(),
        )
        .bind(col(|s| s.method.to_owned()))
        .bind(col(|s| s.host.to_owned()))
        .bind(col(|s| s.path_pattern.clone()))
        .bind(seen.iter().map(|s| s.count).collect::<Vec<_>>())
        .bind(seen.iter().map(|s| s.first_seen).collect::<Vec<_>>())
        .bind(seen.iter().map(|s| s.last_seen).collect::<Vec<_>>())
        .bind(OPEN_PER_AGENT_MAX)
        .bind(kind.as_str())
        .bind(REOPEN_GRACE_SECS)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SELECT: &str = "SELECT r.id, r.kind, a.name AS agent, sec.name AS secret, r.method, r.host,
                             r.path_pattern, r.count, r.first_seen, r.last_seen, r.status,
                             r.rule_id, r.decided_at
                      FROM access_requests r JOIN agents a ON a.id = r.agent_id
                           LEFT JOIN secrets sec ON sec.id = r.secret_id";

/// A word column the schema limits to `T`'s words.
fn word<T: std::str::FromStr>(row: &PgRow, column: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let word: String = row.try_get(column)?;
    word.parse().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: Box::new(e),
    })
}

fn request_from_row(row: &PgRow) -> Result<AccessRequest, sqlx::Error> {
    Ok(AccessRequest {
        id: row.try_get("id")?,
        kind: word(row, "kind")?,
        agent: row.try_get("agent")?,
        secret: row.try_get("secret")?,
        method: row.try_get("method")?,
        host: row.try_get("host")?,
        path_pattern: row.try_get("path_pattern")?,
        count: row.try_get("count")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
        status: word(row, "status")?,
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

/// Grants `req`'s secret to its agent inside `tx`, audited as
/// `agent.grant` like `airlock agent grant` (already granted: nothing to
/// add, and the request is answered all the same).
async fn grant_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    req: &AccessRequest,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "access_requests",
        id: req.id.to_string(),
        reason,
    };
    let agent = AgentName::parse(&req.agent).map_err(|e| corrupt(e.to_string()))?;
    let secret = req
        .secret
        .as_deref()
        .ok_or_else(|| corrupt("a grant request names no secret".into()))
        .and_then(|s| SecretName::parse(s).map_err(|e| corrupt(e.to_string())))?;
    if grant_secret_in(tx, &agent, &secret).await? {
        record_admin(
            tx,
            Some(agent.as_str()),
            "agent.grant",
            &format!("agent={agent} secret={secret}"),
        )
        .await?;
    }
    Ok(())
}

/// An access request in an audit event's detail.
fn describe(req: &AccessRequest) -> String {
    let asks = match (&req.rule_id, &req.secret) {
        (Some(rule), _) => format!(" rule={rule}"),
        (None, Some(secret)) => format!(" secret={secret}"),
        (None, None) => String::new(),
    };
    format!(
        "request={} kind={} method={} host={} path={} count={}{asks}",
        req.id, req.kind, req.method, req.host, req.path_pattern, req.count
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
        let (rule_id, what) = match req.kind {
            AccessKind::Rule => {
                let rule = AllowRule::of(&req)?;
                (Some(add_rule_in(&mut tx, &rule.as_new()).await?), "rules")
            }
            AccessKind::Grant => {
                grant_in(&mut tx, &req).await?;
                (None, "grants")
            }
        };
        let req = set_status(&mut tx, id, AccessStatus::Allowed, rule_id).await?;
        commit_change(
            tx,
            Change {
                agent: Some(&req.agent),
                action: "request.allowed",
                detail: &describe(&req),
                what,
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
    fn an_ungranted_placeholder_asks_for_its_grant_keyed_by_agent_and_secret() {
        let ungranted = |agent: &str, secret: &str, path: &str, secs| NewRequestEvent {
            decision: Decision::Exfiltration,
            ungranted: Some(secret.into()),
            ..refused(agent, "GET", "api.test", path, secs)
        };
        let events = [
            ungranted("bot", "github", "/repos/a", 2),
            // Another host, method or path: the same grant answers it.
            NewRequestEvent {
                method: Some("POST".into()),
                host: Some("uploads.test".into()),
                ..ungranted("bot", "github", "/x/y", 1)
            },
            ungranted("bot", "openai", "/v1/chat", 3),
            ungranted("other", "github", "/repos/a", 4),
            // Denied by default on the same request: a rule request too.
            refused("bot", "GET", "api.test", "/repos/a", 5),
        ];
        let refs: Vec<&NewRequestEvent> = events.iter().collect();
        let seen = sightings(&refs);
        let keys: Vec<(AccessKind, &str, Option<&str>, i64)> = seen
            .iter()
            .map(|s| (s.kind, s.agent, s.secret, s.count))
            .collect();
        assert_eq!(
            keys,
            [
                (AccessKind::Grant, "bot", Some("github"), 2),
                (AccessKind::Grant, "bot", Some("openai"), 1),
                (AccessKind::Grant, "other", Some("github"), 1),
                (AccessKind::Rule, "bot", None, 1),
            ]
        );
        // A grant request shows the first refusal's request.
        assert_eq!(
            (seen[0].method, seen[0].path_pattern.as_str()),
            ("GET", "/repos/**")
        );
    }

    #[test]
    fn only_refusals_that_ask_for_something_count() {
        let mut blocked = refused("bot", "GET", "a.test", "/x", 0);
        blocked.decision = Decision::Blocked;
        // Exfiltration for another reason than a missing grant (a secret
        // sent to another host, a Host header that differs): no grant
        // would make it right.
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
    fn statuses_and_kinds_have_their_stored_words() {
        let words: Vec<&str> = AccessStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(words, ["open", "allowed", "dismissed"]);
        let words: Vec<&str> = AccessKind::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(words, ["rule", "grant"]);
    }
}
