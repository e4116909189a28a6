//! The audit trail's hash chain: what makes an edited, removed or inserted
//! row detectable.
//!
//! Each row's `hash` is SHA-256 over the previous row's hash and the row's
//! own fields (its id included, so rows cannot be reordered), in the
//! length-prefixed encoding of [`link`]. Rows are appended only through
//! [`append`], which holds the lock on the one `audit_chain` row while it
//! allocates ids, hashes and inserts, so the chain order is the id order
//! even with several gateways writing to one database. `audit_chain` also
//! keeps the newest row's id and hash: dropping rows from the end shows as
//! a head that names a row the trail no longer ends with.
//!
//! What this does not stop: someone who can write to the database and
//! knows the encoding can rewrite every row from the edit onward and the
//! head with them. Recording the head elsewhere from time to time
//! (`airlock audit verify` prints it) turns that into a detectable change.

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use ring::digest;
use sqlx::Row;
use uuid::Uuid;

use super::StoreError;
use super::audit_batch;

/// A 32-byte SHA-256 value.
pub type Digest32 = [u8; 32];

/// The hash before the first row.
pub const GENESIS: Digest32 = [0; 32];

/// One row's fields as they are hashed and stored. Borrowed, so a request
/// record, an admin change and a row read back all hash through the same
/// function.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub record_id: Uuid,
    /// Stored with microsecond precision, as PostgreSQL keeps it: see
    /// [`to_stored_precision`].
    pub at: DateTime<Utc>,
    pub kind: &'a str,
    pub agent: Option<&'a str>,
    pub method: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
    pub decision: &'a str,
    pub rule_id: Option<i64>,
    pub secrets: &'a [String],
    pub status: Option<i32>,
    pub bytes_up: Option<i64>,
    pub bytes_down: Option<i64>,
    pub duration_us: Option<i64>,
    pub detail: Option<&'a str>,
}

/// The time as PostgreSQL's `timestamptz` stores it (microseconds), so the
/// value hashed before the insert is the value read back.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The hash of the row `id` holding `e`, after the row whose hash is `prev`.
pub fn link(prev: &Digest32, id: i64, e: &Entry<'_>) -> Digest32 {
    let mut h = Encoder::new();
    h.put(b"airlock-audit-v1");
    h.put(prev);
    h.int(id);
    h.put(e.record_id.as_bytes());
    h.int(e.at.timestamp_micros());
    h.text(Some(e.kind));
    h.text(e.agent);
    h.text(e.method);
    h.text(e.host);
    h.text(e.path);
    h.text(Some(e.decision));
    h.opt_int(e.rule_id);
    h.int(i64::try_from(e.secrets.len()).unwrap_or(i64::MAX));
    for s in e.secrets {
        h.text(Some(s));
    }
    h.opt_int(e.status.map(i64::from));
    h.opt_int(e.bytes_up);
    h.opt_int(e.bytes_down);
    h.opt_int(e.duration_us);
    h.text(e.detail);
    h.finish()
}

/// Feeds fields into the hash so that no two different rows encode alike:
/// every value is tagged (absent or present) and text is length-prefixed.
/// ring's SHA-256 (assembly, the one rustls already uses): the software
/// one cost the writer a sixth of the gateway's instructions per request.
/// The fields, ~20 small ones per row, are gathered in `pending` and
/// hashed a few hundred bytes at a time: each call into the hash has a
/// fixed cost of its own. The bytes hashed are the same either way.
struct Encoder {
    ctx: digest::Context,
    pending: [u8; 256],
    len: usize,
}

impl Encoder {
    fn new() -> Self {
        Encoder {
            ctx: digest::Context::new(&digest::SHA256),
            pending: [0; 256],
            len: 0,
        }
    }

    fn put(&mut self, b: &[u8]) {
        if self.len + b.len() > self.pending.len() {
            self.flush();
            if b.len() > self.pending.len() {
                self.ctx.update(b);
                return;
            }
        }
        self.pending[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn flush(&mut self) {
        self.ctx.update(&self.pending[..self.len]);
        self.len = 0;
    }

    fn finish(mut self) -> Digest32 {
        self.flush();
        let mut out = [0; 32];
        out.copy_from_slice(self.ctx.finish().as_ref());
        out
    }

    fn int(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }

    fn opt_int(&mut self, v: Option<i64>) {
        match v {
            None => self.put(&[0]),
            Some(v) => {
                self.put(&[1]);
                self.int(v);
            }
        }
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            None => self.put(&[0]),
            Some(s) => {
                self.put(&[1]);
                self.put(&(s.len() as u64).to_be_bytes());
                self.put(s.as_bytes());
            }
        }
    }
}

/// Appends `entries` to the trail in this transaction, chained after the
/// current head, encoding the rows into `buf` (see [`audit_batch`]). The
/// lock on the head is held until the transaction ends, so the caller
/// should commit soon.
pub(super) async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    buf: &mut BytesMut,
    entries: &[Entry<'_>],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let head: Vec<u8> = sqlx::query_scalar("SELECT head FROM audit_chain WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut **tx)
        .await?;
    let mut prev = digest_of(&head, "audit_chain")?;
    let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    // Allocated under the lock, so they are ordered as the chain is.
    // The sequence is looked up once, not once per id.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(seq) FROM \
         (SELECT pg_get_serial_sequence('audit_events', 'id')::regclass AS seq) s, \
         generate_series(1, $1)",
    )
    .bind(count)
    .fetch_all(&mut **tx)
    .await?;
    ids.sort_unstable();

    // The chain is computed here, once per batch, in id order; the rows
    // then go in one COPY, and the head moves after them.
    let mut hashes = Vec::with_capacity(entries.len());
    for (id, e) in ids.iter().zip(entries) {
        prev = link(&prev, *id, e);
        hashes.push(prev);
    }
    audit_batch::copy_rows(tx, buf, &ids, entries, &hashes).await?;

    sqlx::query("UPDATE audit_chain SET last_id = $1, head = $2 WHERE id = 1")
        .bind(ids.last().copied())
        .bind(prev.as_slice())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The chain head as stored: the newest row's id and hash.
pub(super) async fn head(
    conn: impl sqlx::PgExecutor<'_>,
) -> Result<(Option<i64>, Digest32), StoreError> {
    let row = sqlx::query("SELECT last_id, head FROM audit_chain WHERE id = 1")
        .fetch_one(conn)
        .await?;
    let head: Vec<u8> = row.try_get("head")?;
    Ok((row.try_get("last_id")?, digest_of(&head, "audit_chain")?))
}

pub(super) fn digest_of(bytes: &[u8], table: &'static str) -> Result<Digest32, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        table,
        id: "hash".into(),
        reason: format!("a hash of {} bytes, not 32", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail: Option<&str>) -> Entry<'_> {
        Entry {
            record_id: Uuid::from_u128(7),
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            kind: "request",
            agent: Some("coder"),
            method: Some("GET"),
            host: Some("api.example.com"),
            path: Some("/v1/x"),
            decision: "allowed",
            rule_id: None,
            secrets: &[],
            status: Some(200),
            bytes_up: Some(0),
            bytes_down: Some(12),
            duration_us: Some(900),
            detail,
        }
    }

    #[test]
    fn every_field_and_the_position_change_the_hash() {
        let base = link(&GENESIS, 1, &entry(None));
        assert_eq!(base, link(&GENESIS, 1, &entry(None)), "deterministic");
        assert_ne!(base, link(&GENESIS, 2, &entry(None)), "the id");
        assert_ne!(base, link(&[1; 32], 1, &entry(None)), "the previous hash");
        assert_ne!(base, link(&GENESIS, 1, &entry(Some(""))), "absent vs empty");
        let mut e = entry(None);
        e.status = Some(201);
        assert_ne!(base, link(&GENESIS, 1, &e));
        let secrets = ["openai".to_owned()];
        let mut e = entry(None);
        e.secrets = &secrets;
        assert_ne!(base, link(&GENESIS, 1, &e));
    }

    /// The encoding is the chain's format: rows already stored must still
    /// verify. The expected value was computed outside Rust (Python's
    /// hashlib over the documented encoding), so a change to how the
    /// fields are fed in, buffered or not, cannot change it unnoticed.
    #[test]
    fn the_encoding_is_the_documented_one() {
        let secrets = ["openai".to_owned(), "clé".to_owned()];
        let mut e = entry(Some("línea"));
        e.secrets = &secrets;
        assert_eq!(
            hex::encode(link(&GENESIS, 1, &e)),
            "5b33969ab2b997d42251aa5218e96ed474448bf6a0ad67839160ec751b6bb4e7"
        );
        // A text longer than the buffer goes to the hash directly.
        let long = "x".repeat(1000);
        assert_eq!(
            hex::encode(link(&GENESIS, 1, &entry(Some(&long)))),
            "535ac31d00b39acb8bb27a2cbd4de8d5cdc1e33bbef649d7f4db9702d7c2b836"
        );
    }

    #[test]
    fn text_boundaries_are_unambiguous() {
        // "ab" + "c" must not hash like "a" + "bc".
        let mut a = entry(None);
        a.host = Some("ab");
        a.path = Some("c");
        let mut b = entry(None);
        b.host = Some("a");
        b.path = Some("bc");
        assert_ne!(link(&GENESIS, 1, &a), link(&GENESIS, 1, &b));
    }

    #[test]
    fn times_are_kept_to_the_microsecond() {
        let t = DateTime::from_timestamp_nanos(1_700_000_000_123_456_789);
        assert_eq!(
            to_stored_precision(t).timestamp_nanos_opt(),
            Some(1_700_000_000_123_456_000)
        );
    }
}
