-- Retention: the business events that start retention clocks (per project), the policy version
-- and rule in force when each session was recorded, and legal holds.
CREATE TABLE projects (
    project_code          TEXT PRIMARY KEY,
    -- Set when the project is closed / the procurement ends; NULL while open (never expires).
    closed_at             BIGINT,
    procurement_ended_at  BIGINT,
    updated_at            BIGINT NOT NULL
);

ALTER TABLE sessions ADD COLUMN policy_version TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN retention_rule TEXT NOT NULL DEFAULT '';
-- The longest minimum ever in force for the session: a later policy never shortens it.
ALTER TABLE sessions ADD COLUMN retention_months BIGINT NOT NULL DEFAULT 0;

-- Each change of the policy set in force, noticed at start-up (and audited).
CREATE TABLE policy_versions (
    id         TEXT PRIMARY KEY,
    version    TEXT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    rules      TEXT NOT NULL
);

CREATE TABLE holds (
    id             TEXT PRIMARY KEY,
    -- project | session | range (a room's recordings between from_us and to_us)
    scope          TEXT NOT NULL,
    project_code   TEXT,
    session_id     TEXT,
    room_id        TEXT,
    from_us        BIGINT,
    to_us          BIGINT,
    reason         TEXT NOT NULL,
    authority      TEXT NOT NULL,
    reference      TEXT NOT NULL,
    placed_by      TEXT NOT NULL,
    placed_at      BIGINT NOT NULL,
    released_by    TEXT,
    released_at    BIGINT,
    release_reason TEXT
);
CREATE INDEX holds_by_project ON holds (project_code);
CREATE INDEX holds_by_session ON holds (session_id);
