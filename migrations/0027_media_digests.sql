-- The SM3 digest (GB/T 32905) of each media segment, computed by the chain writer from the same
-- bytes it hashes with SHA-256 when it seals the segment, and inserted in the same transaction
-- as the segment's chain entry. Evidence packages list SM3 beside SHA-256 for every payload
-- file; with the digest kept here an export reads each object once and checks only its SHA-256
-- (against the chain entry), instead of computing SM3 (five times slower) at export.
-- The digest is not part of the chain link (`entry_hash` covers SHA-256 only): a wrong row
-- cannot make bytes look chained, and the package verifiers recompute SM3 of every file, so a
-- row changed behind the guards gives a package that fails verification, not one that passes.
-- Segments indexed before this table (and late segments, chained from the store) have no row;
-- an export computes theirs. Rows are only inserted.
CREATE TABLE media_digests (
    recording_id TEXT NOT NULL REFERENCES recordings(id),
    seq BIGINT NOT NULL,
    sm3 TEXT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);

-- witness:dialect sqlite

CREATE TRIGGER media_digests_no_update BEFORE UPDATE ON media_digests
BEGIN SELECT RAISE(ABORT, 'media_digests is append-only: UPDATE refused'); END;
CREATE TRIGGER media_digests_no_delete BEFORE DELETE ON media_digests
BEGIN SELECT RAISE(ABORT, 'media_digests is append-only: DELETE refused'); END;

-- witness:dialect postgres

CREATE OR REPLACE FUNCTION witness_guard_media_digests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'media_digests is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER media_digests_guard BEFORE UPDATE OR DELETE ON media_digests
    FOR EACH ROW EXECUTE FUNCTION witness_guard_media_digests();
CREATE TRIGGER media_digests_no_truncate BEFORE TRUNCATE ON media_digests
    FOR EACH STATEMENT EXECUTE FUNCTION witness_refuse_truncate();
