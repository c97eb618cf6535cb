-- A project's event history (0015) is append-only: reports, corrections and decisions are new
-- rows; none is ever updated or deleted (see 0016 for the dialect sections).

-- witness:dialect sqlite

CREATE TRIGGER project_events_no_update BEFORE UPDATE ON project_events
BEGIN SELECT RAISE(ABORT, 'project_events is append-only: UPDATE refused'); END;
CREATE TRIGGER project_events_no_delete BEFORE DELETE ON project_events
BEGIN SELECT RAISE(ABORT, 'project_events is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_project_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'project_events is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER project_events_append_only BEFORE UPDATE OR DELETE ON project_events
FOR EACH ROW EXECUTE FUNCTION witness_guard_project_events();
CREATE TRIGGER project_events_no_truncate BEFORE TRUNCATE ON project_events
FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
