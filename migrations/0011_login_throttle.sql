-- Logins are throttled, never locked: failure counters per account name (as typed, whether the
-- account exists or not, so that the answers do not tell), per client address (IPv6 by /64)
-- and per name and address, each with the time before which the next attempt is refused
-- unchecked. Failed and refused attempts are written to the audit trail summarised: at most
-- one entry per key and window, carrying how many attempts it stands for.
-- users.failed_logins and users.locked_until are no longer used.
CREATE TABLE login_throttle (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL DEFAULT 0,
    last_failure  BIGINT NOT NULL DEFAULT 0,
    blocked_until BIGINT NOT NULL DEFAULT 0,
    -- Attempts not yet in the audit trail, the time of the last entry written for this key,
    -- and who made the latest of them (name, role, address, why refused).
    unaudited     BIGINT NOT NULL DEFAULT 0,
    audited_at    BIGINT NOT NULL DEFAULT 0,
    username      TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT '',
    address       TEXT NOT NULL DEFAULT '',
    why           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX login_sessions_by_address ON login_sessions (address);
