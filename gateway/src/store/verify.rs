//! `airlock audit verify`: walks the audit trail in id order, recomputes
//! each row's hash from its fields and the row before it, and names the
//! first row where the chain breaks.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::audit::{AuditEvent, event_from_row};
use super::chain::{self, Digest32, Entry, GENESIS};
use super::{Store, StoreError};

/// Rows read per query, so a long trail is checked in bounded memory.
const PAGE: i64 = 5_000;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// Rows whose hash was checked.
    pub verified: i64,
    /// Rows from before the chain existed (written by an older airlock).
    pub unchained: i64,
    /// The newest row's hash (hex): record it elsewhere to make a rewrite
    /// of the whole chain detectable too.
    pub head: String,
    /// `None` when the chain is intact.
    pub broken: Option<ChainBreak>,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainBreak {
    /// The first row that cannot be trusted (`None`: rows are missing at
    /// the end of the trail).
    pub row: Option<i64>,
    pub reason: String,
}

/// One stored row: the event as every reader sees it, and the chain's
/// columns.
struct StoredRow {
    event: AuditEvent,
    record_id: Option<Uuid>,
    hash: Option<Vec<u8>>,
}

impl StoredRow {
    fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(StoredRow {
            event: event_from_row(row)?,
            record_id: row.try_get("record_id")?,
            hash: row.try_get("hash")?,
        })
    }

    fn entry(&self, record_id: Uuid) -> Entry<'_> {
        let e = &self.event;
        Entry {
            record_id,
            at: e.at,
            kind: &e.kind,
            agent: e.agent.as_deref(),
            method: e.method.as_deref(),
            host: e.host.as_deref(),
            path: e.path.as_deref(),
            decision: &e.decision,
            rule_id: e.rule_id,
            secrets: &e.secrets,
            status: e.status,
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration_us: e.duration_us,
            detail: e.detail.as_deref(),
        }
    }
}

/// The walk's state between rows; pure, so it is tested without a database.
#[derive(Debug, Default)]
struct Walk {
    prev: Option<Digest32>,
    last_id: Option<i64>,
    verified: i64,
    unchained: i64,
}

impl Walk {
    /// Checks one row; `Err` is the break it shows.
    fn step(&mut self, row: &StoredRow) -> Result<(), ChainBreak> {
        let broken = |reason: &str| ChainBreak {
            row: Some(row.event.id),
            reason: reason.to_owned(),
        };
        let (Some(hash), Some(record_id)) = (&row.hash, row.record_id) else {
            if self.prev.is_some() {
                return Err(broken("the row has no hash although the chain had begun"));
            }
            self.unchained += 1;
            return Ok(());
        };
        let stored = chain::digest_of(hash, "audit_events")
            .map_err(|_| broken("the row's hash is not 32 bytes"))?;
        let expected = chain::link(
            &self.prev.unwrap_or(GENESIS),
            row.event.id,
            &row.entry(record_id),
        );
        if stored != expected {
            return Err(broken(
                "the row's hash does not match its contents and the row before it: the row was \
                 changed, or a row before it was removed or inserted",
            ));
        }
        self.prev = Some(stored);
        self.last_id = Some(row.event.id);
        self.verified += 1;
        Ok(())
    }

    /// Compares the end of the walk with the stored head.
    fn finish(&self, head_id: Option<i64>, head: Digest32) -> Option<ChainBreak> {
        let ends = self.prev.unwrap_or(GENESIS);
        (head_id != self.last_id || head != ends).then(|| ChainBreak {
            row: None,
            reason: format!(
                "the chain head names row {} but the trail ends at row {}: rows were removed \
                 from the end, or the head was altered",
                head_id.map_or("none".into(), |i| i.to_string()),
                self.last_id.map_or("none".into(), |i| i.to_string()),
            ),
        })
    }
}

impl Store {
    /// Walks the whole trail. Reads in pages, without holding the chain
    /// lock: rows appended meanwhile are past the head read first, so the
    /// walk stops at that head.
    pub async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        let (head_id, head) = chain::head(self.pool()).await?;
        let mut walk = Walk::default();
        let mut after = 0_i64;
        let limit = head_id.unwrap_or(i64::MAX);
        loop {
            let rows = sqlx::query(
                "SELECT id, record_id, hash, at, kind, agent, method, host, path, decision, \
                 rule_id, secrets, status, bytes_up, bytes_down, duration_us, detail \
                 FROM audit_events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            )
            .bind(after)
            .bind(limit)
            .bind(PAGE)
            .fetch_all(self.pool())
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in &rows {
                let row = StoredRow::read(row)?;
                if let Err(b) = walk.step(&row) {
                    return Ok(report(&walk, Some(b)));
                }
            }
        }
        let broken = walk.finish(head_id, head);
        Ok(report(&walk, broken))
    }
}

fn report(walk: &Walk, broken: Option<ChainBreak>) -> ChainReport {
    ChainReport {
        verified: walk.verified,
        unchained: walk.unchained,
        head: hex::encode(walk.prev.unwrap_or(GENESIS)),
        broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, prev: &Digest32, detail: &str) -> StoredRow {
        let mut r = StoredRow {
            event: AuditEvent {
                id,
                at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000 + id).unwrap(),
                kind: "admin".into(),
                agent: None,
                method: None,
                host: None,
                path: None,
                decision: "agent.add".into(),
                rule_id: None,
                secrets: vec![],
                status: None,
                bytes_up: None,
                bytes_down: None,
                duration_us: None,
                detail: Some(detail.into()),
            },
            record_id: Some(Uuid::from_u128(id as u128)),
            hash: None,
        };
        r.hash = Some(chain::link(prev, id, &r.entry(Uuid::from_u128(id as u128))).to_vec());
        r
    }

    fn chain_of(n: i64) -> Vec<StoredRow> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|id| {
                let r = row(id, &prev, "x");
                prev = r.hash.clone().unwrap().try_into().unwrap();
                r
            })
            .collect()
    }

    fn walk(rows: &[StoredRow]) -> (Walk, Option<ChainBreak>) {
        let mut w = Walk::default();
        for r in rows {
            if let Err(b) = w.step(r) {
                return (w, Some(b));
            }
        }
        (w, None)
    }

    #[test]
    fn an_intact_chain_verifies_up_to_its_head() {
        let rows = chain_of(5);
        let (w, b) = walk(&rows);
        assert!(b.is_none());
        assert_eq!(w.verified, 5);
        let head: Digest32 = rows[4].hash.clone().unwrap().try_into().unwrap();
        assert!(w.finish(Some(5), head).is_none());
    }

    #[test]
    fn an_edited_row_is_named() {
        let mut rows = chain_of(5);
        rows[2].event.detail = Some("y".into());
        assert_eq!(walk(&rows).1.unwrap().row, Some(3));
    }

    #[test]
    fn a_removed_row_breaks_the_next_one() {
        let mut rows = chain_of(5);
        rows.remove(1);
        assert_eq!(walk(&rows).1.unwrap().row, Some(3));
    }

    #[test]
    fn rows_removed_from_the_end_show_against_the_head() {
        let rows = chain_of(5);
        let head: Digest32 = rows[4].hash.clone().unwrap().try_into().unwrap();
        let (w, b) = walk(&rows[..3]);
        assert!(b.is_none());
        let b = w.finish(Some(5), head).unwrap();
        assert_eq!(b.row, None);
        assert!(b.reason.contains("row 5"), "{}", b.reason);
    }

    #[test]
    fn old_rows_before_the_chain_are_counted_not_failed() {
        let mut legacy = row(1, &GENESIS, "old");
        legacy.hash = None;
        legacy.record_id = None;
        let mut rows = vec![legacy];
        let mut prev = GENESIS;
        for id in 2..4 {
            let r = row(id, &prev, "x");
            prev = r.hash.clone().unwrap().try_into().unwrap();
            rows.push(r);
        }
        let (w, b) = walk(&rows);
        assert!(b.is_none());
        assert_eq!((w.unchained, w.verified), (1, 2));
        // But a row without a hash after the chain began is a break.
        let mut stripped = row(4, &prev, "x");
        stripped.hash = None;
        rows.push(stripped);
        assert_eq!(walk(&rows).1.unwrap().row, Some(4));
    }
}
