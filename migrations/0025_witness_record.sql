-- The witness record (见证记录, 5.5.5): time-coded entries the session's witness adds while the
-- session records (remarks, anomalies, objections raised at bid opening, procedure deviations,
-- device problems), hash-chained per session (docs/chain-format.md, "Witness record"), and the
-- witness's signature that closes it. Both tables are only inserted into, and only while the
-- session is recording; no entry after the record is signed.
--
-- `sessions.started_by`: the person who started the session (its witness); never changed once
-- written (NULL for sessions started before this migration: they have no witness who may write).

ALTER TABLE sessions ADD COLUMN started_by TEXT;

CREATE TABLE witness_entries (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    seq         BIGINT NOT NULL,
    at_us       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    corrects    TEXT REFERENCES witness_entries(id),
    author      TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    prev_hash   TEXT NOT NULL,
    entry_hash  TEXT NOT NULL,
    UNIQUE (session_id, seq)
);

CREATE TABLE witness_signatures (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    signed_by  TEXT NOT NULL,
    signed_at  BIGINT NOT NULL,
    entries    BIGINT NOT NULL,
    sha256     TEXT NOT NULL
);

-- witness:dialect sqlite

CREATE TRIGGER sessions_started_by_immutable BEFORE UPDATE ON sessions
WHEN NEW.started_by IS NOT OLD.started_by
BEGIN SELECT RAISE(ABORT, 'sessions: started_by is immutable'); END;

CREATE TRIGGER witness_entries_no_update BEFORE UPDATE ON witness_entries
BEGIN SELECT RAISE(ABORT, 'witness_entries is append-only: UPDATE refused'); END;
CREATE TRIGGER witness_entries_no_delete BEFORE DELETE ON witness_entries
BEGIN SELECT RAISE(ABORT, 'witness_entries is append-only: DELETE refused'); END;
CREATE TRIGGER witness_entries_insert_live BEFORE INSERT ON witness_entries
WHEN NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = NEW.session_id AND s.state = 'recording')
    OR EXISTS (SELECT 1 FROM witness_signatures w WHERE w.session_id = NEW.session_id)
BEGIN SELECT RAISE(ABORT, 'witness_entries: entries are added only while the session is recording and its record is unsigned'); END;

CREATE TRIGGER witness_signatures_no_update BEFORE UPDATE ON witness_signatures
BEGIN SELECT RAISE(ABORT, 'witness_signatures is append-only: UPDATE refused'); END;
CREATE TRIGGER witness_signatures_no_delete BEFORE DELETE ON witness_signatures
BEGIN SELECT RAISE(ABORT, 'witness_signatures is append-only: DELETE refused'); END;
CREATE TRIGGER witness_signatures_insert_live BEFORE INSERT ON witness_signatures
WHEN NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = NEW.session_id AND s.state = 'recording')
BEGIN SELECT RAISE(ABORT, 'witness_signatures: a record is signed only while its session is recording'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_sessions_started_by() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.started_by IS DISTINCT FROM OLD.started_by THEN
        RAISE EXCEPTION 'sessions: started_by is immutable';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sessions_started_by_guard BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION witness_guard_sessions_started_by();

CREATE OR REPLACE FUNCTION witness_guard_witness_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'witness_entries is append-only: % refused', TG_OP;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = NEW.session_id AND s.state = 'recording')
        OR EXISTS (SELECT 1 FROM witness_signatures w WHERE w.session_id = NEW.session_id) THEN
        RAISE EXCEPTION 'witness_entries: entries are added only while the session is recording and its record is unsigned';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER witness_entries_guard BEFORE INSERT OR UPDATE OR DELETE ON witness_entries
    FOR EACH ROW EXECUTE FUNCTION witness_guard_witness_entries();
CREATE TRIGGER witness_entries_no_truncate BEFORE TRUNCATE ON witness_entries
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_witness_signatures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'witness_signatures is append-only: % refused', TG_OP;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = NEW.session_id AND s.state = 'recording') THEN
        RAISE EXCEPTION 'witness_signatures: a record is signed only while its session is recording';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER witness_signatures_guard BEFORE INSERT OR UPDATE OR DELETE ON witness_signatures
    FOR EACH ROW EXECUTE FUNCTION witness_guard_witness_signatures();
CREATE TRIGGER witness_signatures_no_truncate BEFORE TRUNCATE ON witness_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
