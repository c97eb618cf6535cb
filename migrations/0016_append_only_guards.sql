-- Append-only where the law needs it: the database itself refuses to rewrite a chain, to change
-- what a session or recording is, to move a session's state backwards, to delete projects,
-- holds, destruction requests or late segments, and to change them other than by the one-time
-- transitions the application makes. Someone with write access to the tables (but not their
-- owner's rights) can no longer rewrite a stopped session and have the server re-sign it.
--
-- Trigger syntax differs between SQLite and PostgreSQL, so this one file holds a section per
-- database; `db::open` keeps the common part and the section of the database it migrates
-- (`-- witness:dialect NAME` lines). sqlx's migrator applies it under its lock: on PostgreSQL
-- `pg_advisory_lock` for the whole run, on SQLite `db::open` holds an exclusive lock on a file
-- beside the database. What may still change, and why:
--   sessions: state (recording -> stopping -> stopped -> destroyed; recording/stopping ->
--     failed), stopped_at, manifest_key and error from NULL once, and the retention columns
--     (rule, policy version, months, clocks) that the retention code keeps up to date.
--   recordings: url (start-up moves camera credentials out of stored URLs,
--     capture::rooms::move_inline_credentials) and transport.
--   chain_entries: inserts only; an entry other than a tombstone only while its session is
--     recording or stopping; a tombstone only on a stopped session with a destruction register
--     entry of an executed request for that recording.
--   projects: closed_at and procurement_ended_at from NULL once; updated_at.
--   holds: released_by, released_at and release_reason from NULL once.
--   destruction_requests: state proposed -> approved | rejected, approved -> executed (claim),
--     executed -> approved (claim given back after a store failure), with executed_by/at.
--   late_segments: chained_seq from NULL once.
-- The audit trail, its checkpoints, fixity reports and the destruction register and approvals
-- are guarded by audit::guard at every start.

-- witness:dialect sqlite

CREATE TRIGGER chain_entries_no_update BEFORE UPDATE ON chain_entries
BEGIN SELECT RAISE(ABORT, 'chain_entries is append-only: UPDATE refused'); END;
CREATE TRIGGER chain_entries_no_delete BEFORE DELETE ON chain_entries
BEGIN SELECT RAISE(ABORT, 'chain_entries is append-only: DELETE refused'); END;
CREATE TRIGGER chain_entries_insert_live BEFORE INSERT ON chain_entries
WHEN NEW.kind <> 'tombstone' AND NOT EXISTS (
    SELECT 1 FROM recordings r JOIN sessions s ON s.id = r.session_id
    WHERE r.id = NEW.recording_id AND s.state IN ('recording', 'stopping'))
BEGIN SELECT RAISE(ABORT, 'chain_entries: entries are appended only while the session is recording or stopping'); END;
CREATE TRIGGER chain_entries_insert_tombstone BEFORE INSERT ON chain_entries
WHEN NEW.kind = 'tombstone' AND NOT (
    EXISTS (SELECT 1 FROM recordings r JOIN sessions s ON s.id = r.session_id
            WHERE r.id = NEW.recording_id AND s.state = 'stopped')
    AND EXISTS (SELECT 1 FROM destruction_register d
                JOIN destruction_requests q ON q.id = d.request_id
                WHERE d.recording_id = NEW.recording_id AND q.state = 'executed'))
BEGIN SELECT RAISE(ABORT, 'chain_entries: a tombstone needs a stopped session and a register entry of an executed destruction request'); END;

CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
BEGIN SELECT RAISE(ABORT, 'sessions: DELETE refused'); END;
CREATE TRIGGER sessions_immutable BEFORE UPDATE ON sessions
WHEN NEW.id IS NOT OLD.id OR NEW.room_id IS NOT OLD.room_id
    OR NEW.room_name IS NOT OLD.room_name OR NEW.room_kind IS NOT OLD.room_kind
    OR NEW.project_code IS NOT OLD.project_code OR NEW.session_code IS NOT OLD.session_code
    OR NEW.kind IS NOT OLD.kind OR NEW.note IS NOT OLD.note
    OR NEW.category IS NOT OLD.category OR NEW.started_at IS NOT OLD.started_at
    OR (OLD.stopped_at IS NOT NULL AND NEW.stopped_at IS NOT OLD.stopped_at)
    OR (OLD.manifest_key IS NOT NULL AND NEW.manifest_key IS NOT OLD.manifest_key)
    OR (OLD.error IS NOT NULL AND NEW.error IS NOT OLD.error)
BEGIN SELECT RAISE(ABORT, 'sessions: id, room, codes, kind, note, category, start and a set stop time, manifest key or error are immutable'); END;
CREATE TRIGGER sessions_state BEFORE UPDATE ON sessions
WHEN NEW.state IS NOT OLD.state AND NOT (
       (OLD.state = 'recording' AND NEW.state IN ('stopping', 'failed'))
    OR (OLD.state = 'stopping' AND NEW.state = 'failed')
    OR (OLD.state = 'stopping' AND NEW.state = 'stopped'
        AND NEW.manifest_key IS NOT NULL AND NEW.stopped_at IS NOT NULL)
    OR (OLD.state = 'stopped' AND NEW.state = 'destroyed'))
BEGIN SELECT RAISE(ABORT, 'sessions: state change refused (only recording -> stopping -> stopped -> destroyed, with a manifest to stop)'); END;

CREATE TRIGGER recordings_no_delete BEFORE DELETE ON recordings
BEGIN SELECT RAISE(ABORT, 'recordings: DELETE refused'); END;
CREATE TRIGGER recordings_immutable BEFORE UPDATE ON recordings
WHEN NEW.id IS NOT OLD.id OR NEW.session_id IS NOT OLD.session_id
    OR NEW.source_name IS NOT OLD.source_name OR NEW.media IS NOT OLD.media
    OR NEW.template IS NOT OLD.template
BEGIN SELECT RAISE(ABORT, 'recordings: id, session, source, media and template are immutable'); END;

CREATE TRIGGER projects_no_delete BEFORE DELETE ON projects
BEGIN SELECT RAISE(ABORT, 'projects: DELETE refused'); END;
CREATE TRIGGER projects_once BEFORE UPDATE ON projects
WHEN NEW.project_code IS NOT OLD.project_code
    OR (OLD.closed_at IS NOT NULL AND NEW.closed_at IS NOT OLD.closed_at)
    OR (OLD.procurement_ended_at IS NOT NULL AND NEW.procurement_ended_at IS NOT OLD.procurement_ended_at)
BEGIN SELECT RAISE(ABORT, 'projects: a recorded project event is never changed'); END;

CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds
BEGIN SELECT RAISE(ABORT, 'holds: DELETE refused'); END;
CREATE TRIGGER holds_release_once BEFORE UPDATE ON holds
WHEN NEW.id IS NOT OLD.id OR NEW.scope IS NOT OLD.scope
    OR NEW.project_code IS NOT OLD.project_code OR NEW.session_id IS NOT OLD.session_id
    OR NEW.room_id IS NOT OLD.room_id OR NEW.from_us IS NOT OLD.from_us
    OR NEW.to_us IS NOT OLD.to_us OR NEW.reason IS NOT OLD.reason
    OR NEW.authority IS NOT OLD.authority OR NEW.reference IS NOT OLD.reference
    OR NEW.placed_by IS NOT OLD.placed_by OR NEW.placed_at IS NOT OLD.placed_at
    OR OLD.released_at IS NOT NULL OR OLD.released_by IS NOT NULL
    OR OLD.release_reason IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'holds: only an unreleased hold may be released, once'); END;

CREATE TRIGGER destruction_requests_no_delete BEFORE DELETE ON destruction_requests
BEGIN SELECT RAISE(ABORT, 'destruction_requests: DELETE refused'); END;
CREATE TRIGGER destruction_requests_guard BEFORE UPDATE ON destruction_requests
WHEN NEW.id IS NOT OLD.id OR NEW.session_ids IS NOT OLD.session_ids
    OR NEW.appraisal_committee IS NOT OLD.appraisal_committee
    OR NEW.appraisal_conclusion IS NOT OLD.appraisal_conclusion
    OR NEW.appraisal_reference IS NOT OLD.appraisal_reference
    OR NEW.proposed_by IS NOT OLD.proposed_by OR NEW.proposed_at IS NOT OLD.proposed_at
    OR NOT ((NEW.state IS OLD.state AND NEW.executed_by IS OLD.executed_by
             AND NEW.executed_at IS OLD.executed_at)
        OR (OLD.state = 'proposed' AND NEW.state IN ('approved', 'rejected'))
        OR (OLD.state = 'approved' AND NEW.state = 'executed')
        OR (OLD.state = 'executed' AND NEW.state = 'approved'))
BEGIN SELECT RAISE(ABORT, 'destruction_requests: only proposed -> approved | rejected -> executed'); END;

CREATE TRIGGER late_segments_no_delete BEFORE DELETE ON late_segments
BEGIN SELECT RAISE(ABORT, 'late_segments: DELETE refused'); END;
CREATE TRIGGER late_segments_chained_once BEFORE UPDATE ON late_segments
WHEN NEW.object_key IS NOT OLD.object_key OR NEW.recording_id IS NOT OLD.recording_id
    OR NEW.node_id IS NOT OLD.node_id OR NEW.wall_start_us IS NOT OLD.wall_start_us
    OR NEW.duration_us IS NOT OLD.duration_us OR NEW.bytes IS NOT OLD.bytes
    OR NEW.sha256 IS NOT OLD.sha256 OR NEW.clock IS NOT OLD.clock OR NEW.note IS NOT OLD.note
    OR NEW.published_at_us IS NOT OLD.published_at_us
    OR (OLD.chained_seq IS NOT NULL AND NEW.chained_seq IS NOT OLD.chained_seq)
BEGIN SELECT RAISE(ABORT, 'late_segments: only chained_seq may be set, once'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
END $$;

CREATE OR REPLACE FUNCTION witness_guard_chain_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'chain_entries is append-only: % refused', TG_OP;
    END IF;
    IF NEW.kind = 'tombstone' THEN
        IF NOT (EXISTS (SELECT 1 FROM recordings r JOIN sessions s ON s.id = r.session_id
                        WHERE r.id = NEW.recording_id AND s.state = 'stopped')
                AND EXISTS (SELECT 1 FROM destruction_register d
                            JOIN destruction_requests q ON q.id = d.request_id
                            WHERE d.recording_id = NEW.recording_id AND q.state = 'executed')) THEN
            RAISE EXCEPTION 'chain_entries: a tombstone needs a stopped session and a register entry of an executed destruction request';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM recordings r JOIN sessions s ON s.id = r.session_id
                      WHERE r.id = NEW.recording_id AND s.state IN ('recording', 'stopping')) THEN
        RAISE EXCEPTION 'chain_entries: entries are appended only while the session is recording or stopping';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chain_entries_guard BEFORE INSERT OR UPDATE OR DELETE ON chain_entries
    FOR EACH ROW EXECUTE FUNCTION witness_guard_chain_entries();
CREATE TRIGGER chain_entries_no_truncate BEFORE TRUNCATE ON chain_entries
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'sessions: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.room_id IS DISTINCT FROM OLD.room_id
        OR NEW.room_name IS DISTINCT FROM OLD.room_name OR NEW.room_kind IS DISTINCT FROM OLD.room_kind
        OR NEW.project_code IS DISTINCT FROM OLD.project_code
        OR NEW.session_code IS DISTINCT FROM OLD.session_code
        OR NEW.kind IS DISTINCT FROM OLD.kind OR NEW.note IS DISTINCT FROM OLD.note
        OR NEW.category IS DISTINCT FROM OLD.category OR NEW.started_at IS DISTINCT FROM OLD.started_at
        OR (OLD.stopped_at IS NOT NULL AND NEW.stopped_at IS DISTINCT FROM OLD.stopped_at)
        OR (OLD.manifest_key IS NOT NULL AND NEW.manifest_key IS DISTINCT FROM OLD.manifest_key)
        OR (OLD.error IS NOT NULL AND NEW.error IS DISTINCT FROM OLD.error) THEN
        RAISE EXCEPTION 'sessions: id, room, codes, kind, note, category, start and a set stop time, manifest key or error are immutable';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
           (OLD.state = 'recording' AND NEW.state IN ('stopping', 'failed'))
        OR (OLD.state = 'stopping' AND NEW.state = 'failed')
        OR (OLD.state = 'stopping' AND NEW.state = 'stopped'
            AND NEW.manifest_key IS NOT NULL AND NEW.stopped_at IS NOT NULL)
        OR (OLD.state = 'stopped' AND NEW.state = 'destroyed')) THEN
        RAISE EXCEPTION 'sessions: state change refused (only recording -> stopping -> stopped -> destroyed, with a manifest to stop)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sessions_guard BEFORE UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION witness_guard_sessions();
CREATE TRIGGER sessions_no_truncate BEFORE TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_recordings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'recordings: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.session_id IS DISTINCT FROM OLD.session_id
        OR NEW.source_name IS DISTINCT FROM OLD.source_name OR NEW.media IS DISTINCT FROM OLD.media
        OR NEW.template IS DISTINCT FROM OLD.template THEN
        RAISE EXCEPTION 'recordings: id, session, source, media and template are immutable';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER recordings_guard BEFORE UPDATE OR DELETE ON recordings
    FOR EACH ROW EXECUTE FUNCTION witness_guard_recordings();
CREATE TRIGGER recordings_no_truncate BEFORE TRUNCATE ON recordings
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_projects() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'projects: DELETE refused';
    END IF;
    IF NEW.project_code IS DISTINCT FROM OLD.project_code
        OR (OLD.closed_at IS NOT NULL AND NEW.closed_at IS DISTINCT FROM OLD.closed_at)
        OR (OLD.procurement_ended_at IS NOT NULL
            AND NEW.procurement_ended_at IS DISTINCT FROM OLD.procurement_ended_at) THEN
        RAISE EXCEPTION 'projects: a recorded project event is never changed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER projects_guard BEFORE UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION witness_guard_projects();
CREATE TRIGGER projects_no_truncate BEFORE TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_holds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'holds: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.scope IS DISTINCT FROM OLD.scope
        OR NEW.project_code IS DISTINCT FROM OLD.project_code
        OR NEW.session_id IS DISTINCT FROM OLD.session_id OR NEW.room_id IS DISTINCT FROM OLD.room_id
        OR NEW.from_us IS DISTINCT FROM OLD.from_us OR NEW.to_us IS DISTINCT FROM OLD.to_us
        OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.authority IS DISTINCT FROM OLD.authority
        OR NEW.reference IS DISTINCT FROM OLD.reference OR NEW.placed_by IS DISTINCT FROM OLD.placed_by
        OR NEW.placed_at IS DISTINCT FROM OLD.placed_at
        OR OLD.released_at IS NOT NULL OR OLD.released_by IS NOT NULL
        OR OLD.release_reason IS NOT NULL THEN
        RAISE EXCEPTION 'holds: only an unreleased hold may be released, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER holds_guard BEFORE UPDATE OR DELETE ON holds
    FOR EACH ROW EXECUTE FUNCTION witness_guard_holds();
CREATE TRIGGER holds_no_truncate BEFORE TRUNCATE ON holds
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_destruction_requests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'destruction_requests: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.session_ids IS DISTINCT FROM OLD.session_ids
        OR NEW.appraisal_committee IS DISTINCT FROM OLD.appraisal_committee
        OR NEW.appraisal_conclusion IS DISTINCT FROM OLD.appraisal_conclusion
        OR NEW.appraisal_reference IS DISTINCT FROM OLD.appraisal_reference
        OR NEW.proposed_by IS DISTINCT FROM OLD.proposed_by
        OR NEW.proposed_at IS DISTINCT FROM OLD.proposed_at
        OR NOT ((NEW.state IS NOT DISTINCT FROM OLD.state
                 AND NEW.executed_by IS NOT DISTINCT FROM OLD.executed_by
                 AND NEW.executed_at IS NOT DISTINCT FROM OLD.executed_at)
            OR (OLD.state = 'proposed' AND NEW.state IN ('approved', 'rejected'))
            OR (OLD.state = 'approved' AND NEW.state = 'executed')
            OR (OLD.state = 'executed' AND NEW.state = 'approved')) THEN
        RAISE EXCEPTION 'destruction_requests: only proposed -> approved | rejected -> executed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER destruction_requests_guard BEFORE UPDATE OR DELETE ON destruction_requests
    FOR EACH ROW EXECUTE FUNCTION witness_guard_destruction_requests();
CREATE TRIGGER destruction_requests_no_truncate BEFORE TRUNCATE ON destruction_requests
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_late_segments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'late_segments: DELETE refused';
    END IF;
    IF NEW.object_key IS DISTINCT FROM OLD.object_key
        OR NEW.recording_id IS DISTINCT FROM OLD.recording_id
        OR NEW.node_id IS DISTINCT FROM OLD.node_id OR NEW.wall_start_us IS DISTINCT FROM OLD.wall_start_us
        OR NEW.duration_us IS DISTINCT FROM OLD.duration_us OR NEW.bytes IS DISTINCT FROM OLD.bytes
        OR NEW.sha256 IS DISTINCT FROM OLD.sha256 OR NEW.clock IS DISTINCT FROM OLD.clock
        OR NEW.note IS DISTINCT FROM OLD.note
        OR NEW.published_at_us IS DISTINCT FROM OLD.published_at_us
        OR (OLD.chained_seq IS NOT NULL AND NEW.chained_seq IS DISTINCT FROM OLD.chained_seq) THEN
        RAISE EXCEPTION 'late_segments: only chained_seq may be set, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER late_segments_guard BEFORE UPDATE OR DELETE ON late_segments
    FOR EACH ROW EXECUTE FUNCTION witness_guard_late_segments();
CREATE TRIGGER late_segments_no_truncate BEFORE TRUNCATE ON late_segments
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
