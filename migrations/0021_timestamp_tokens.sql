-- RFC 3161 timestamp tokens (`[signing] tsa_url`): one row per thing timestamped, once it has
-- its token. `kind` is `manifest` (subject: the session id; the token also lies in the store
-- beside the manifest, `manifest.json.tsr`, and travels in packages) or `audit_checkpoint`
-- (subject: the checkpoint's seq as text). `token` is the TSA's TimeStampResp, DER in hex, as
-- `openssl ts -verify -in` reads it; `gen_time` the TSA's time (Unix µs) and `tsa` its
-- certificate's subject, as checked before the row was written. Rows are only inserted.
CREATE TABLE timestamp_tokens (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    token TEXT NOT NULL,
    gen_time BIGINT NOT NULL,
    tsa TEXT NOT NULL,
    stamped_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

-- witness:dialect sqlite

CREATE TRIGGER timestamp_tokens_no_update BEFORE UPDATE ON timestamp_tokens
BEGIN SELECT RAISE(ABORT, 'timestamp_tokens is append-only: UPDATE refused'); END;
CREATE TRIGGER timestamp_tokens_no_delete BEFORE DELETE ON timestamp_tokens
BEGIN SELECT RAISE(ABORT, 'timestamp_tokens is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_timestamp_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'timestamp_tokens is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER timestamp_tokens_guard BEFORE UPDATE OR DELETE ON timestamp_tokens
    FOR EACH ROW EXECUTE FUNCTION witness_guard_timestamp_tokens();
CREATE TRIGGER timestamp_tokens_no_truncate BEFORE TRUNCATE ON timestamp_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
