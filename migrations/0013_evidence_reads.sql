-- Viewings of evidence (`evidence::access`): one caller's continuing read of one source of one
-- session, for one reason. The read that opens a viewing is audited; the reads that follow
-- while it is open (no pause longer than `[evidence] viewing_idle_minutes`) are covered by that
-- entry. A live view is opened only by `POST /rooms/{id}/live`, one row per source.
CREATE TABLE evidence_viewings (
    id           TEXT PRIMARY KEY,
    viewer       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    audit_id     TEXT NOT NULL,
    opened_at    BIGINT NOT NULL,
    last_read_at BIGINT NOT NULL
);
CREATE INDEX evidence_viewings_by_viewer ON evidence_viewings (viewer, session_id, source, kind);
