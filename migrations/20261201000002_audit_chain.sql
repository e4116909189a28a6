-- The tamper-evident audit trail (see gateway/src/store/chain.rs).
--
-- Every row appended from now on carries `hash`: SHA-256 over the previous
-- row's hash and this row's own fields, computed by the gateway under a
-- lock on `audit_chain`, which holds the newest row's id and hash (so
-- removing rows at the end is caught too). `airlock audit verify` walks the
-- rows in id order and names the first one whose hash does not follow.
-- Rows written before this migration have no hash: the chain starts after
-- them.
--
-- `record_id` names a request's record from the moment the gateway made
-- it, so a record replayed from the audit spool after a database outage
-- is written once, however many times the replay is attempted.

ALTER TABLE audit_events ADD COLUMN record_id uuid UNIQUE;
ALTER TABLE audit_events ADD COLUMN hash bytea CHECK (hash IS NULL OR length(hash) = 32);

CREATE TABLE audit_chain (
    id       smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_id  bigint,
    head     bytea NOT NULL CHECK (length(head) = 32)
);
INSERT INTO audit_chain (id, last_id, head) VALUES (1, NULL, '\x0000000000000000000000000000000000000000000000000000000000000000');
