//! One append to the audit trail as one `COPY audit_events (...) FROM
//! STDIN (FORMAT binary)`: the batch's rows encoded by the gateway into
//! one reused buffer, in PostgreSQL's binary copy format, and sent as one
//! stream.
//!
//! Why COPY (issue 19, item 1; BENCHMARKS.md "Audit writer"): the
//! multi-row `VALUES` it replaced bound 17 parameters per row (8,500 for a
//! batch of 500), a new statement text for every batch size, each parsed
//! and planned by the server; an `INSERT ... SELECT FROM UNNEST` of one
//! array per column was measured too, and cost the server more than COPY
//! (the `text[]` of secret names has to be sliced per row out of one flat
//! array, which PostgreSQL does by walking it from the start). COPY takes
//! the rows through the server's bulk-insert path, and the binary format
//! is what its type receive functions read with no parsing of text.
//!
//! The format (PostgreSQL's "COPY", "Binary Format"): a signature, flags
//! and header extension; per row the field count, then each field as a
//! 32-bit length (-1 for NULL) and its bytes in the type's binary form;
//! a trailer of -1. The encoders below follow the table's column types
//! (`migrations/`): a column whose type changes must change here too, and
//! the round-trip test (`tests/store/audit_batch.rs`) says so.

use bytes::{BufMut, BytesMut};

use super::StoreError;
use super::chain::{Digest32, Entry};

const COPY: &str = "COPY audit_events (id, record_id, hash, at, kind, agent, method, host, path, \
                    decision, rule_id, secrets, status, bytes_up, bytes_down, duration_us, detail) \
                    FROM STDIN (FORMAT binary)";
const FIELDS: i16 = 17;
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// `text`'s type OID, which a binary array names for its elements.
const TEXT_OID: u32 = 25;
/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 UTC.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Sends the rows `ids[i]` holding `entries[i]` with hash `hashes[i]`,
/// encoded into `buf` (cleared first; kept by the caller so its capacity
/// is reused batch after batch).
pub(super) async fn copy_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    buf: &mut BytesMut,
    ids: &[i64],
    entries: &[Entry<'_>],
    hashes: &[Digest32],
) -> Result<(), StoreError> {
    encode(buf, ids, entries, hashes)?;
    let conn: &mut sqlx::PgConnection = tx;
    let mut copy = conn.copy_in_raw(COPY).await?;
    if let Err(e) = copy.send(&buf[..]).await {
        // Ends the COPY on the server too, so the connection is usable.
        let _ = copy.abort("the gateway failed sending the batch").await;
        return Err(e.into());
    }
    copy.finish().await?;
    Ok(())
}

fn encode(
    buf: &mut BytesMut,
    ids: &[i64],
    entries: &[Entry<'_>],
    hashes: &[Digest32],
) -> Result<(), StoreError> {
    buf.clear();
    buf.put_slice(SIGNATURE);
    buf.put_i32(0); // flags: no OIDs
    buf.put_i32(0); // no header extension
    for ((id, e), hash) in ids.iter().zip(entries).zip(hashes) {
        let mut row = Row(buf);
        row.0.put_i16(FIELDS);
        row.int8(Some(*id));
        row.bytes(Some(e.record_id.as_bytes()))?;
        row.bytes(Some(hash))?;
        row.int8(Some(e.at.timestamp_micros() - PG_EPOCH_US));
        row.text(Some(e.kind))?;
        row.text(e.agent)?;
        row.text(e.method)?;
        row.text(e.host)?;
        row.text(e.path)?;
        row.text(Some(e.decision))?;
        row.int8(e.rule_id);
        row.text_array(e.secrets)?;
        row.int4(e.status);
        row.int8(e.bytes_up);
        row.int8(e.bytes_down);
        row.int8(e.duration_us);
        row.text(e.detail)?;
    }
    buf.put_i16(-1);
    Ok(())
}

/// Appends one row's fields, each length-prefixed.
struct Row<'b>(&'b mut BytesMut);

impl Row<'_> {
    fn null(&mut self) {
        self.0.put_i32(-1);
    }

    fn int8(&mut self, v: Option<i64>) {
        match v {
            None => self.null(),
            Some(v) => {
                self.0.put_i32(8);
                self.0.put_i64(v);
            }
        }
    }

    fn int4(&mut self, v: Option<i32>) {
        match v {
            None => self.null(),
            Some(v) => {
                self.0.put_i32(4);
                self.0.put_i32(v);
            }
        }
    }

    /// `bytea`, `uuid` and `text` alike: the bytes as they are (`text` in
    /// the database's encoding, UTF-8).
    fn bytes(&mut self, v: Option<&[u8]>) -> Result<(), StoreError> {
        match v {
            None => self.null(),
            Some(b) => {
                self.0.put_i32(len32(b.len())?);
                self.0.put_slice(b);
            }
        }
        Ok(())
    }

    fn text(&mut self, v: Option<&str>) -> Result<(), StoreError> {
        self.bytes(v.map(str::as_bytes))
    }

    /// A one-dimensional `text[]` (or an empty one: no dimensions), its
    /// length written once the elements are.
    fn text_array(&mut self, items: &[String]) -> Result<(), StoreError> {
        let at = self.0.len();
        self.0.put_i32(0); // the field's length, filled in below
        let dims = i32::from(!items.is_empty());
        self.0.put_i32(dims);
        self.0.put_i32(0); // no NULL elements
        self.0.put_u32(TEXT_OID);
        if dims == 1 {
            self.0.put_i32(len32(items.len())?);
            self.0.put_i32(1); // lower bound
        }
        for s in items {
            self.text(Some(s))?;
        }
        let len = len32(self.0.len() - at - 4)?;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// A field's length as the format's 32-bit count. PostgreSQL takes at
/// most 1 GB in a field, so a longer one could never be stored anyway.
fn len32(n: usize) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Corrupt {
        table: "audit_events",
        id: "batch".into(),
        reason: format!("a field of {n} bytes, more than PostgreSQL stores"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_and_a_two_name_array_encode_as_postgresql_reads_them() {
        let mut buf = BytesMut::new();
        Row(&mut buf).text_array(&[]).unwrap();
        // Length 12: no dimensions, no NULLs, element type text.
        assert_eq!(&buf[..], [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
        buf.clear();
        Row(&mut buf)
            .text_array(&["a".to_owned(), "é".to_owned()])
            .unwrap();
        let mut want = vec![0, 0, 0, 31, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25];
        want.extend([0, 0, 0, 2, 0, 0, 0, 1]); // 2 elements from index 1
        want.extend([0, 0, 0, 1, b'a', 0, 0, 0, 2, 0xc3, 0xa9]);
        assert_eq!(&buf[..], want);
    }

    #[test]
    fn times_count_from_postgresqls_epoch() {
        let mut buf = BytesMut::new();
        let at = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:01.000002Z").unwrap();
        Row(&mut buf).int8(Some(at.timestamp_micros() - PG_EPOCH_US));
        assert_eq!(&buf[4..], 1_000_002_i64.to_be_bytes());
    }
}
