-- Which associated data a secret's value is sealed with (issue #15):
--   1: the row id only (every row written before this migration);
--   2: the id, name, host pattern, path glob and injection, so that a row
--      pointed at another host or injection by SQL no longer opens.
-- The daemon re-seals format-1 rows as format 2 at start-up, before it
-- serves anything, and never opens a format-1 row on the request path
-- (gateway/src/store/secrets.rs).
ALTER TABLE secrets
    ADD COLUMN seal_format smallint NOT NULL DEFAULT 1 CHECK (seal_format IN (1, 2));
