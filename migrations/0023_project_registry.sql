-- Projects as the trading system and the counter register them (standard 5.2): the project with
-- its trading category and method (ids of the trading catalogue, catalogue/), tenderer, agent
-- and responsible service person (5.2.4), and its bid sections (标段/包), each with a small
-- lifecycle. The older `projects` table (0005) keeps the codes that had retention dates before
-- retention clocks; it is neither read nor written, and a registered project is joined to its
-- clocks (project_events) and sessions by `project_code`.
CREATE TABLE project_registry (
    project_code      TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    category          TEXT NOT NULL,
    method            TEXT NOT NULL,
    tenderer          TEXT NOT NULL,
    agent             TEXT NOT NULL DEFAULT '',
    -- users.id of the responsible service person (服务责任人).
    service_person_id TEXT NOT NULL,
    -- Who registered it (audit actor name) and whether from the counter or an integration.
    registered_by     TEXT NOT NULL,
    registered_at     BIGINT NOT NULL
);
CREATE INDEX project_registry_by_category ON project_registry (category, registered_at);
CREATE INDEX project_registry_by_time ON project_registry (registered_at);

-- A bid section: registered -> in_progress -> closed, and suspended / terminated. Bookings read
-- (project_code, section_code, state).
CREATE TABLE project_sections (
    project_code TEXT NOT NULL REFERENCES project_registry (project_code),
    section_code TEXT NOT NULL,
    name         TEXT NOT NULL,
    state        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (project_code, section_code)
);
CREATE INDEX project_sections_by_state ON project_sections (state);

-- Every state of every section, with who and why: the registration (from_state NULL) and each
-- change. Append-only.
CREATE TABLE project_section_history (
    id           TEXT PRIMARY KEY,
    project_code TEXT NOT NULL,
    section_code TEXT NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    actor        TEXT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX project_section_history_by_section ON project_section_history (project_code, section_code, at);

-- Guards, as in 0016: no registered project or section is deleted; a project's row does not
-- change; a section changes only its state (by an allowed transition) and updated_at; the
-- history is append-only. Allowed transitions:
--   registered  -> in_progress | suspended | terminated
--   in_progress -> closed | suspended | terminated
--   suspended   -> registered | in_progress | terminated
--   closed, terminated: final.

-- witness:dialect sqlite

CREATE TRIGGER project_registry_no_delete BEFORE DELETE ON project_registry
BEGIN SELECT RAISE(ABORT, 'project_registry: DELETE refused'); END;
CREATE TRIGGER project_registry_no_update BEFORE UPDATE ON project_registry
BEGIN SELECT RAISE(ABORT, 'project_registry: a registered project is not rewritten'); END;

CREATE TRIGGER project_sections_no_delete BEFORE DELETE ON project_sections
BEGIN SELECT RAISE(ABORT, 'project_sections: DELETE refused'); END;
CREATE TRIGGER project_sections_insert BEFORE INSERT ON project_sections
WHEN NEW.state IS NOT 'registered'
BEGIN SELECT RAISE(ABORT, 'project_sections: a section starts registered'); END;
CREATE TRIGGER project_sections_immutable BEFORE UPDATE ON project_sections
WHEN NEW.project_code IS NOT OLD.project_code OR NEW.section_code IS NOT OLD.section_code
    OR NEW.name IS NOT OLD.name OR NEW.created_at IS NOT OLD.created_at
BEGIN SELECT RAISE(ABORT, 'project_sections: codes, name and creation time are immutable'); END;
CREATE TRIGGER project_sections_state BEFORE UPDATE ON project_sections
WHEN NEW.state IS NOT OLD.state AND NOT (
       (OLD.state = 'registered' AND NEW.state IN ('in_progress', 'suspended', 'terminated'))
    OR (OLD.state = 'in_progress' AND NEW.state IN ('closed', 'suspended', 'terminated'))
    OR (OLD.state = 'suspended' AND NEW.state IN ('registered', 'in_progress', 'terminated')))
BEGIN SELECT RAISE(ABORT, 'project_sections: state change refused (registered -> in_progress -> closed, suspended, terminated)'); END;

CREATE TRIGGER project_section_history_no_update BEFORE UPDATE ON project_section_history
BEGIN SELECT RAISE(ABORT, 'project_section_history is append-only: UPDATE refused'); END;
CREATE TRIGGER project_section_history_no_delete BEFORE DELETE ON project_section_history
BEGIN SELECT RAISE(ABORT, 'project_section_history is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_project_registry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'project_registry: DELETE refused';
    END IF;
    RAISE EXCEPTION 'project_registry: a registered project is not rewritten';
END $$;
CREATE TRIGGER project_registry_guard BEFORE UPDATE OR DELETE ON project_registry
    FOR EACH ROW EXECUTE FUNCTION witness_guard_project_registry();
CREATE TRIGGER project_registry_no_truncate BEFORE TRUNCATE ON project_registry
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_project_sections() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'project_sections: DELETE refused';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.state IS DISTINCT FROM 'registered' THEN
            RAISE EXCEPTION 'project_sections: a section starts registered';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.project_code IS DISTINCT FROM OLD.project_code
        OR NEW.section_code IS DISTINCT FROM OLD.section_code
        OR NEW.name IS DISTINCT FROM OLD.name OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'project_sections: codes, name and creation time are immutable';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
           (OLD.state = 'registered' AND NEW.state IN ('in_progress', 'suspended', 'terminated'))
        OR (OLD.state = 'in_progress' AND NEW.state IN ('closed', 'suspended', 'terminated'))
        OR (OLD.state = 'suspended' AND NEW.state IN ('registered', 'in_progress', 'terminated'))) THEN
        RAISE EXCEPTION 'project_sections: state change refused (registered -> in_progress -> closed, suspended, terminated)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER project_sections_guard BEFORE INSERT OR UPDATE OR DELETE ON project_sections
    FOR EACH ROW EXECUTE FUNCTION witness_guard_project_sections();
CREATE TRIGGER project_sections_no_truncate BEFORE TRUNCATE ON project_sections
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_project_section_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'project_section_history is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER project_section_history_append_only BEFORE UPDATE OR DELETE ON project_section_history
    FOR EACH ROW EXECUTE FUNCTION witness_guard_project_section_history();
CREATE TRIGGER project_section_history_no_truncate BEFORE TRUNCATE ON project_section_history
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
