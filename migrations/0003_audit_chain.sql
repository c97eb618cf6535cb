-- The audit trail becomes a hash chain (like a recording's): every entry has a sequence number
-- and the SHA-256 of its canonical text, which includes the previous entry's hash. Entries from
-- before this migration are chained at start-up in (at, id) order, before the database-level
-- guards against UPDATE and DELETE are installed (src/audit/guard.rs).
ALTER TABLE audit_log ADD COLUMN seq BIGINT;
ALTER TABLE audit_log ADD COLUMN actor_role TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN project_code TEXT;
ALTER TABLE audit_log ADD COLUMN flagged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN entry_hash TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX audit_log_by_seq ON audit_log (seq);
CREATE INDEX audit_log_by_at ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor, at);

-- Signed checkpoints of the chain head: an entry edited and re-hashed, or the tail cut off,
-- no longer matches a signature made before.
CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    entry_hash TEXT NOT NULL,
    at         BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
