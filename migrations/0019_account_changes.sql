-- Separated duties for accounts: a reset of another person's password or TOTP proposed by one
-- administrator takes effect only when a second, different administrator approves it. The
-- one-time password is made at approval and never stored in clear (only its hash, on the user).
CREATE TABLE account_resets (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    username    TEXT NOT NULL,
    -- 1: the TOTP second factor is cleared too.
    totp        BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    proposed_by TEXT NOT NULL,
    proposed_at BIGINT NOT NULL,
    -- proposed | approved | rejected
    state       TEXT NOT NULL,
    decided_by  TEXT,
    decided_at  BIGINT
);
CREATE INDEX account_resets_by_user ON account_resets (user_id, state);
