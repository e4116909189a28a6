//! The audit writer's batch COPY (gateway/src/store/audit_batch.rs)
//! against a real PostgreSQL: what goes in as binary COPY rows reads back as
//! written, every column, NULLs and unicode included; the chain verifies;
//! a batch written again adds nothing; an edited row is still caught.

use chrono::DateTime;
use uuid::Uuid;

use airlock::audit::{AuditRecord, Decision};
use airlock::store::audit::AuditFilter;
use airlock::store::{Store, Target};

use crate::support::pg::Pg;

/// Record `i` of a batch: every nullable column absent in some rows and
/// present in others, text in several scripts and with the characters an
/// array literal would have to quote, 0 to 3 secret names.
fn record(i: usize) -> AuditRecord {
    let some = |n: usize| !i.is_multiple_of(n);
    let names = ["openai", "clé \"é\", {x}", "日本語\\", "emoji-🚀"];
    AuditRecord {
        record_id: Uuid::from_u128(0xA11C_0000 + i as u128),
        at: DateTime::from_timestamp_micros(1_765_000_000_000_000 + i as i64 * 1_001).unwrap(),
        agent: some(3).then(|| format!("agent-{i}-ünïcødé")),
        method: some(4).then(|| ["GET", "POST", "CONNECT"][i % 3].to_owned()),
        host: some(5).then(|| format!("api{i}.例え.example")),
        path: some(6).then(|| format!("/v1/{i}?key=&q=Ωμέγα,{{}}\"")),
        decision: [Decision::Allowed, Decision::Blocked, Decision::Exfiltration][i % 3],
        rule_id: some(2).then_some(i as i64 * 1_000_000_007),
        secrets: names[..i % 4].iter().map(|s| (*s).to_owned()).collect(),
        status: some(7).then_some([200, 403, 502][i % 3]),
        bytes_up: i as i64,
        bytes_down: i64::MAX - i as i64,
        duration_us: i as i64 * 17,
        // Absent, empty and present are three different values.
        detail: match i % 3 {
            0 => None,
            1 => Some(String::new()),
            _ => Some(format!("línea {i}\nzweite Zeile\ttab 💥")),
        },
        ..AuditRecord::default()
    }
}

#[test]
fn a_batch_reads_back_as_written_and_its_chain_verifies() {
    let pg = Pg::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&Target::from_url(&pg.url()).unwrap())
            .await
            .unwrap();
        let records: Vec<AuditRecord> = (0..1_000).map(record).collect();
        let mut buf = bytes::BytesMut::new();
        // One row alone, then the rest in one statement.
        store
            .insert_request_events(&records[..1], &mut buf)
            .await
            .unwrap();
        store
            .insert_request_events(&records[1..], &mut buf)
            .await
            .unwrap();
        // Written again (a replay after a lost acknowledgement), and a
        // batch half old, half new: only the new rows are added.
        store
            .insert_request_events(&records[1..], &mut buf)
            .await
            .unwrap();
        let more: Vec<AuditRecord> = (1_000..1_010).map(record).collect();
        let mixed: Vec<AuditRecord> = records[990..].iter().chain(&more).cloned().collect();
        store.insert_request_events(&mixed, &mut buf).await.unwrap();
        let all: Vec<AuditRecord> = records.into_iter().chain(more).collect();

        let rows = store
            .audit_events(&AuditFilter {
                limit: 10_000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), all.len(), "one row per record, no duplicate");
        let record_ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT record_id FROM audit_events ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap();
        for ((row, rec), record_id) in rows.iter().zip(&all).zip(&record_ids) {
            let what = format!("row {} (record {})", row.id, rec.record_id);
            assert_eq!(*record_id, rec.record_id, "{what}: order or record id");
            assert_eq!(row.at, rec.at, "{what}");
            assert_eq!(row.kind, "request", "{what}");
            assert_eq!(row.agent, rec.agent, "{what}");
            assert_eq!(row.method, rec.method, "{what}");
            assert_eq!(row.host, rec.host, "{what}");
            assert_eq!(row.path, rec.path, "{what}");
            assert_eq!(row.decision, rec.decision.as_str(), "{what}");
            assert_eq!(row.rule_id, rec.rule_id, "{what}");
            assert_eq!(row.secrets, rec.secrets, "{what}");
            assert_eq!(row.status, rec.status, "{what}");
            assert_eq!(row.bytes_up, Some(rec.bytes_up), "{what}");
            assert_eq!(row.bytes_down, Some(rec.bytes_down), "{what}");
            assert_eq!(row.duration_us, Some(rec.duration_us), "{what}");
            assert_eq!(row.detail, rec.detail, "{what}");
        }

        let report = store.verify_audit_chain().await.unwrap();
        assert_eq!(report.broken, None, "{report:?}");
        assert_eq!(report.verified, all.len() as i64);
        let (last_id, head): (i64, Vec<u8>) =
            sqlx::query_as("SELECT last_id, head FROM audit_chain")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(last_id, rows.last().unwrap().id);
        assert_eq!(hex::encode(head), report.head);

        // An edited row in the middle of a batch is named.
        let victim = rows[500].id;
        sqlx::query("UPDATE audit_events SET secrets = '{}', detail = 'x' WHERE id = $1")
            .bind(victim)
            .execute(store.pool())
            .await
            .unwrap();
        let report = store.verify_audit_chain().await.unwrap();
        assert_eq!(report.broken.map(|b| b.row), Some(Some(victim)));
        store.close().await;
    });
}
