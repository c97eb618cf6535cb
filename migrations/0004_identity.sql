-- Identity: users with one role each (separated duties), browser login sessions, API tokens.
-- Secrets are never stored: passwords as Argon2id hashes, session ids and token secrets as
-- SHA-256. Sessions gain the trading category that scopes regulators.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL UNIQUE,
    display_name         TEXT NOT NULL,
    role                 TEXT NOT NULL,
    -- Comma-separated trading categories a regulator may see; empty for other roles.
    categories           TEXT NOT NULL DEFAULT '',
    password_hash        TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 1,
    password_changed_at  BIGINT NOT NULL,
    totp_secret          TEXT,
    totp_enabled         BIGINT NOT NULL DEFAULT 0,
    -- The last TOTP time step accepted: a code is good once.
    totp_last_step       BIGINT NOT NULL DEFAULT 0,
    failed_logins        BIGINT NOT NULL DEFAULT 0,
    locked_until         BIGINT NOT NULL DEFAULT 0,
    disabled             BIGINT NOT NULL DEFAULT 0,
    created_at           BIGINT NOT NULL
);

CREATE TABLE login_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    address    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX login_sessions_by_user ON login_sessions (user_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    -- Comma-separated permissions, a subset of the owner's role's.
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

ALTER TABLE sessions ADD COLUMN category TEXT NOT NULL DEFAULT 'other';
