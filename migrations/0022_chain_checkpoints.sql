-- Chain checkpoints stored while recording (docs/chain-format.md, "Chain checkpoints"): one row
-- per checkpoint object, inserted by the chain writer once the object is stored, so that the
-- timestamp job (`[signing] tsa_url`) finds the checkpoints that still lack their RFC 3161
-- token without listing the store. `object_key` is `{project}/{session}/{source}/{seq:08}.checkpoint.json`
-- (also the token's subject in `timestamp_tokens`, kind `chain_checkpoint`), `sha256` the hex
-- SHA-256 of exactly the bytes the writer stored (the job stamps only those), `at_us` the
-- checkpoint's signing time (Unix µs). The checkpoint itself is evidence in the store; this
-- list is not, but rows are only inserted, like the other ledger tables.
CREATE TABLE chain_checkpoints (
    recording_id TEXT NOT NULL REFERENCES recordings(id),
    seq BIGINT NOT NULL,
    object_key TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
CREATE INDEX chain_checkpoints_at ON chain_checkpoints (at_us);

-- witness:dialect sqlite

CREATE TRIGGER chain_checkpoints_no_update BEFORE UPDATE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain_checkpoints is append-only: UPDATE refused'); END;
CREATE TRIGGER chain_checkpoints_no_delete BEFORE DELETE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain_checkpoints is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_chain_checkpoints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'chain_checkpoints is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER chain_checkpoints_guard BEFORE UPDATE OR DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION witness_guard_chain_checkpoints();
CREATE TRIGGER chain_checkpoints_no_truncate BEFORE TRUNCATE ON chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
