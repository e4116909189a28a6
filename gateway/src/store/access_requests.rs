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
//!
//! Reading and deciding them is [`super::access_decisions`].

use super::StoreError;
use super::audit::NewRequestEvent;
use crate::audit::Decision;
use crate::model::word_enum;
use crate::policy::suggest_path;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
        /// An operator allowed it: with the allow rule it made (`rule_id`)
        /// or the grant.
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

#[cfg(test)]
#[path = "access_requests_tests.rs"]
mod tests;
