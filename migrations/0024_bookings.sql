-- Rooms with an area, bookings that drive recording, and sessions that say whether they are
-- confidential and which booking they record.
--
-- rooms.area: `public` or `confidential` (the evaluation area behind the access control,
--   6.2.3.2). Existing evaluation (评标) rooms become confidential, the others public.
-- sessions.confidential: 1 when the session was started in a confidential room (or typed as an
--   evaluation), fixed at start; sessions.booking_id: the booking it records, if any. Both are
--   part of a session's immutable identity (guarded below, beside 0016's guard).
-- bookings: one room, one project section and activity, one time slot. Times and room change
--   (with a reason), the state goes booked -> cancelled once; what was booked (project, section,
--   activity, category, who, when) never changes; no booking is deleted. alarmed_at is set once,
--   when the booking's not-recording alarm was first audited.
-- booking_history: every creation, change and cancellation (who, when, before -> after, why);
--   only inserted into.

ALTER TABLE rooms ADD COLUMN area TEXT NOT NULL DEFAULT 'public';
UPDATE rooms SET area = 'confidential' WHERE kind = 'evaluation';

ALTER TABLE sessions ADD COLUMN confidential BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN booking_id TEXT;
UPDATE sessions SET confidential = 1 WHERE kind = 'evaluation';

CREATE TABLE bookings (
    id           TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    project_code TEXT NOT NULL,
    section_code TEXT NOT NULL,
    activity     TEXT NOT NULL,
    category     TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT NOT NULL,
    state        TEXT NOT NULL,
    note         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    alarmed_at   BIGINT
);
CREATE INDEX bookings_by_room ON bookings (room_id, starts_at);
CREATE INDEX bookings_by_time ON bookings (starts_at);
CREATE INDEX bookings_by_project ON bookings (project_code, starts_at);

CREATE TABLE booking_history (
    id         TEXT PRIMARY KEY,
    booking_id TEXT NOT NULL REFERENCES bookings(id),
    action     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    at         BIGINT NOT NULL,
    before     TEXT NOT NULL,
    after      TEXT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX booking_history_by_booking ON booking_history (booking_id, at);

-- witness:dialect sqlite

CREATE TRIGGER sessions_booking_immutable BEFORE UPDATE ON sessions
WHEN NEW.confidential IS NOT OLD.confidential OR NEW.booking_id IS NOT OLD.booking_id
BEGIN SELECT RAISE(ABORT, 'sessions: confidentiality and booking are immutable'); END;

CREATE TRIGGER bookings_no_delete BEFORE DELETE ON bookings
BEGIN SELECT RAISE(ABORT, 'bookings: DELETE refused'); END;
CREATE TRIGGER bookings_guard BEFORE UPDATE ON bookings
WHEN NEW.id IS NOT OLD.id OR NEW.project_code IS NOT OLD.project_code
    OR NEW.section_code IS NOT OLD.section_code OR NEW.activity IS NOT OLD.activity
    OR NEW.category IS NOT OLD.category OR NEW.created_by IS NOT OLD.created_by
    OR NEW.created_at IS NOT OLD.created_at
    OR (OLD.alarmed_at IS NOT NULL AND NEW.alarmed_at IS NOT OLD.alarmed_at)
    OR (OLD.state = 'cancelled' AND (NEW.state IS NOT OLD.state
        OR NEW.room_id IS NOT OLD.room_id OR NEW.starts_at IS NOT OLD.starts_at
        OR NEW.ends_at IS NOT OLD.ends_at))
    OR (NEW.state IS NOT OLD.state AND NOT (OLD.state = 'booked' AND NEW.state = 'cancelled'))
BEGIN SELECT RAISE(ABORT, 'bookings: what was booked never changes; only times and room of a live booking, and booked -> cancelled once'); END;

CREATE TRIGGER booking_history_no_update BEFORE UPDATE ON booking_history
BEGIN SELECT RAISE(ABORT, 'booking_history is append-only: UPDATE refused'); END;
CREATE TRIGGER booking_history_no_delete BEFORE DELETE ON booking_history
BEGIN SELECT RAISE(ABORT, 'booking_history is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_sessions_booking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.confidential IS DISTINCT FROM OLD.confidential
        OR NEW.booking_id IS DISTINCT FROM OLD.booking_id THEN
        RAISE EXCEPTION 'sessions: confidentiality and booking are immutable';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sessions_booking_guard BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION witness_guard_sessions_booking();

CREATE OR REPLACE FUNCTION witness_guard_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'bookings: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.project_code IS DISTINCT FROM OLD.project_code
        OR NEW.section_code IS DISTINCT FROM OLD.section_code
        OR NEW.activity IS DISTINCT FROM OLD.activity OR NEW.category IS DISTINCT FROM OLD.category
        OR NEW.created_by IS DISTINCT FROM OLD.created_by
        OR NEW.created_at IS DISTINCT FROM OLD.created_at
        OR (OLD.alarmed_at IS NOT NULL AND NEW.alarmed_at IS DISTINCT FROM OLD.alarmed_at)
        OR (OLD.state = 'cancelled' AND (NEW.state IS DISTINCT FROM OLD.state
            OR NEW.room_id IS DISTINCT FROM OLD.room_id
            OR NEW.starts_at IS DISTINCT FROM OLD.starts_at
            OR NEW.ends_at IS DISTINCT FROM OLD.ends_at))
        OR (NEW.state IS DISTINCT FROM OLD.state
            AND NOT (OLD.state = 'booked' AND NEW.state = 'cancelled')) THEN
        RAISE EXCEPTION 'bookings: what was booked never changes; only times and room of a live booking, and booked -> cancelled once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bookings_guard BEFORE UPDATE OR DELETE ON bookings
    FOR EACH ROW EXECUTE FUNCTION witness_guard_bookings();
CREATE TRIGGER bookings_no_truncate BEFORE TRUNCATE ON bookings
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_booking_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'booking_history is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER booking_history_guard BEFORE UPDATE OR DELETE ON booking_history
    FOR EACH ROW EXECUTE FUNCTION witness_guard_booking_history();
CREATE TRIGGER booking_history_no_truncate BEFORE TRUNCATE ON booking_history
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
