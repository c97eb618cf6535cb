-- The audit trail: one append-only table. The application only ever inserts; the identity issue
-- takes it over (hash chaining, signed checkpoints, database-level refusal of UPDATE/DELETE).
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    address    TEXT NOT NULL,
    action     TEXT NOT NULL,
    session_id TEXT,
    target     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    outcome    TEXT NOT NULL
);
CREATE INDEX audit_log_by_session ON audit_log (session_id, at);
