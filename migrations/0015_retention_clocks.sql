-- Retention clocks nobody can backdate. A project's events (closed, procurement ended) become an
-- append-only history: the first report of an event, each proposed correction and each decision
-- on a correction is a new row; no row here is ever updated or deleted. The date in force is the
-- most recently approved correction's, else the report's.
CREATE TABLE project_events (
    id           TEXT PRIMARY KEY,
    project_code TEXT NOT NULL,
    -- closed | procurement_ended
    event        TEXT NOT NULL,
    -- report | correction | approve | reject
    step         TEXT NOT NULL,
    -- The date reported or proposed (report, correction); NULL for a decision.
    at_us        BIGINT,
    -- The correction a decision (approve, reject) is about; NULL otherwise.
    decides      TEXT,
    reason       TEXT NOT NULL DEFAULT '',
    actor        TEXT NOT NULL,
    recorded_at  BIGINT NOT NULL
);
CREATE INDEX project_events_by_project ON project_events (project_code, recorded_at);
-- One first report per event of a project; one decision per correction.
CREATE UNIQUE INDEX project_events_one_report ON project_events (project_code, event) WHERE step = 'report';
CREATE UNIQUE INDEX project_events_one_decision ON project_events (decides) WHERE decides IS NOT NULL;

-- Dates recorded before this history existed become its first reports (projects' columns are
-- no longer read or written).
INSERT INTO project_events (id, project_code, event, step, at_us, decides, reason, actor, recorded_at)
SELECT 'legacy-closed-' || project_code, project_code, 'closed', 'report', closed_at, NULL,
       'recorded before retention clocks were checked', 'system', updated_at
FROM projects WHERE closed_at IS NOT NULL;
INSERT INTO project_events (id, project_code, event, step, at_us, decides, reason, actor, recorded_at)
SELECT 'legacy-procurement-' || project_code, project_code, 'procurement_ended', 'report',
       procurement_ended_at, NULL, 'recorded before retention clocks were checked', 'system', updated_at
FROM projects WHERE procurement_ended_at IS NOT NULL;

-- The latest retain-until ever computed for a session: what it shows never moves earlier.
ALTER TABLE sessions ADD COLUMN retain_until_max BIGINT;
