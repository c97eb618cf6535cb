-- Fixity reports: every scheduled (or requested) re-hash of the stored objects, kept.
CREATE TABLE fixity_reports (
    id          TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    objects     BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    -- JSON array of {session_id, source, seq, object_key, problem}
    failures    TEXT NOT NULL,
    intact      BIGINT NOT NULL,
    requested_by TEXT NOT NULL
);
CREATE INDEX fixity_reports_by_start ON fixity_reports (started_at);
