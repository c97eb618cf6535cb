-- Separated duties (等保 三员分立). The administrator is split in three roles:
-- system_administrator (rooms and their configuration), security_administrator (accounts,
-- roles, resets) and audit_administrator (reads the audit trail). Existing administrators become
-- security administrators, who keep the accounts they managed; an operator creates the system
-- and audit administrators (on the host with `witness user add`, or over the API with a second
-- security administrator's approval). The audit trail keeps the role each actor had when acting.
UPDATE users SET role = 'security_administrator' WHERE role = 'administrator';

-- Who could know an account's credentials, and who gave it its role: the people named here are
-- not independent of the account for two-person rules (`identity::duties`). Comma-separated
-- user names; `cli` and `system` (the host's authority) are not people. Empty for accounts made
-- before this migration.
--   credentials_by: who received its last one-time password (the approver of its creation or
--     reset; `cli` for the command line).
--   role_by: who last set its role (proposer and approver of its creation or role change).
ALTER TABLE users ADD COLUMN credentials_by TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN role_by TEXT NOT NULL DEFAULT '';

-- An account created, or a role or scope changed, over the API: it waits here until a second,
-- different and independent security administrator approves it. Nothing changes before.
CREATE TABLE account_changes (
    id           TEXT PRIMARY KEY,
    -- create | change
    kind         TEXT NOT NULL,
    -- The account changed; for a creation, set when approved.
    user_id      TEXT,
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    -- Comma-separated trading categories (regulators).
    categories   TEXT NOT NULL,
    -- What changes, before → after, as the trail says it.
    summary      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    proposed_by  TEXT NOT NULL,
    proposed_at  BIGINT NOT NULL,
    -- proposed | approved | rejected
    state        TEXT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT
);
CREATE INDEX account_changes_by_state ON account_changes (state, proposed_at);

-- Confidential (评标) replay takes two people: a regulator or discipline officer asks, with a
-- reason; a different one approves. The grant is for that person and session until expires_at.
CREATE TABLE confidential_grants (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    -- The person (user name) the grant is for.
    grantee      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    -- requested | approved | rejected
    state        TEXT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    expires_at   BIGINT
);
CREATE INDEX confidential_grants_by_grantee ON confidential_grants (grantee, session_id, state);

-- Both tables are records of decisions: never deleted, decided once (an approved creation gets
-- the new account's id once, just after).

-- witness:dialect sqlite

CREATE TRIGGER account_changes_no_delete BEFORE DELETE ON account_changes
BEGIN SELECT RAISE(ABORT, 'account_changes: DELETE refused'); END;
CREATE TRIGGER account_changes_decided_once BEFORE UPDATE ON account_changes
WHEN NEW.id IS NOT OLD.id OR NEW.kind IS NOT OLD.kind OR NEW.username IS NOT OLD.username
    OR NEW.display_name IS NOT OLD.display_name OR NEW.role IS NOT OLD.role
    OR NEW.categories IS NOT OLD.categories OR NEW.summary IS NOT OLD.summary
    OR NEW.reason IS NOT OLD.reason OR NEW.proposed_by IS NOT OLD.proposed_by
    OR NEW.proposed_at IS NOT OLD.proposed_at
    OR (OLD.user_id IS NOT NULL AND NEW.user_id IS NOT OLD.user_id)
    OR (OLD.state <> 'proposed' AND NOT (OLD.user_id IS NULL AND NEW.state IS OLD.state
        AND NEW.decided_by IS OLD.decided_by AND NEW.decided_at IS OLD.decided_at))
BEGIN SELECT RAISE(ABORT, 'account_changes: only a proposed change is decided, once'); END;

CREATE TRIGGER confidential_grants_no_delete BEFORE DELETE ON confidential_grants
BEGIN SELECT RAISE(ABORT, 'confidential_grants: DELETE refused'); END;
CREATE TRIGGER confidential_grants_decided_once BEFORE UPDATE ON confidential_grants
WHEN NEW.id IS NOT OLD.id OR NEW.session_id IS NOT OLD.session_id
    OR NEW.grantee IS NOT OLD.grantee OR NEW.reason IS NOT OLD.reason
    OR NEW.requested_at IS NOT OLD.requested_at OR OLD.state <> 'requested'
BEGIN SELECT RAISE(ABORT, 'confidential_grants: only a requested grant is decided, once'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_account_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'account_changes: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.kind IS DISTINCT FROM OLD.kind
        OR NEW.username IS DISTINCT FROM OLD.username
        OR NEW.display_name IS DISTINCT FROM OLD.display_name OR NEW.role IS DISTINCT FROM OLD.role
        OR NEW.categories IS DISTINCT FROM OLD.categories OR NEW.summary IS DISTINCT FROM OLD.summary
        OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.proposed_by IS DISTINCT FROM OLD.proposed_by
        OR NEW.proposed_at IS DISTINCT FROM OLD.proposed_at
        OR (OLD.user_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM OLD.user_id)
        OR (OLD.state <> 'proposed' AND NOT (OLD.user_id IS NULL
            AND NEW.state IS NOT DISTINCT FROM OLD.state
            AND NEW.decided_by IS NOT DISTINCT FROM OLD.decided_by
            AND NEW.decided_at IS NOT DISTINCT FROM OLD.decided_at)) THEN
        RAISE EXCEPTION 'account_changes: only a proposed change is decided, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER account_changes_guard BEFORE UPDATE OR DELETE ON account_changes
    FOR EACH ROW EXECUTE FUNCTION witness_guard_account_changes();
CREATE TRIGGER account_changes_no_truncate BEFORE TRUNCATE ON account_changes
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();

CREATE OR REPLACE FUNCTION witness_guard_confidential_grants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'confidential_grants: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.session_id IS DISTINCT FROM OLD.session_id
        OR NEW.grantee IS DISTINCT FROM OLD.grantee OR NEW.reason IS DISTINCT FROM OLD.reason
        OR NEW.requested_at IS DISTINCT FROM OLD.requested_at OR OLD.state <> 'requested' THEN
        RAISE EXCEPTION 'confidential_grants: only a requested grant is decided, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER confidential_grants_guard BEFORE UPDATE OR DELETE ON confidential_grants
    FOR EACH ROW EXECUTE FUNCTION witness_guard_confidential_grants();
CREATE TRIGGER confidential_grants_no_truncate BEFORE TRUNCATE ON confidential_grants
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
