-- Proposed password and TOTP resets (0019) are decided once and never deleted, like account
-- changes and confidential-access grants (0020): the proposal, who made it and why stay as
-- they were; only a `proposed` row moves, once, to approved or rejected with its decider.

-- witness:dialect sqlite

CREATE TRIGGER account_resets_no_delete BEFORE DELETE ON account_resets
BEGIN SELECT RAISE(ABORT, 'account_resets: DELETE refused'); END;
CREATE TRIGGER account_resets_decided_once BEFORE UPDATE ON account_resets
WHEN NEW.id IS NOT OLD.id OR NEW.user_id IS NOT OLD.user_id OR NEW.username IS NOT OLD.username
    OR NEW.totp IS NOT OLD.totp OR NEW.reason IS NOT OLD.reason
    OR NEW.proposed_by IS NOT OLD.proposed_by OR NEW.proposed_at IS NOT OLD.proposed_at
    OR OLD.state <> 'proposed'
BEGIN SELECT RAISE(ABORT, 'account_resets: only a proposed reset is decided, once'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_account_resets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'account_resets: DELETE refused';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.user_id IS DISTINCT FROM OLD.user_id
        OR NEW.username IS DISTINCT FROM OLD.username OR NEW.totp IS DISTINCT FROM OLD.totp
        OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.proposed_by IS DISTINCT FROM OLD.proposed_by
        OR NEW.proposed_at IS DISTINCT FROM OLD.proposed_at OR OLD.state <> 'proposed' THEN
        RAISE EXCEPTION 'account_resets: only a proposed reset is decided, once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER account_resets_guard BEFORE UPDATE OR DELETE ON account_resets
    FOR EACH ROW EXECUTE FUNCTION witness_guard_account_resets();
CREATE TRIGGER account_resets_no_truncate BEFORE TRUNCATE ON account_resets
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
