-- Segments a node had spooled but could not chain because it lost the room's lease (frozen,
-- cut off from the database): stored as objects under `{prefix}/late/` and listed here by that
-- node, then chained, hash re-checked, by the node that holds the lease. `chained_seq` is the
-- entry that took it in; NULL while it waits (or when its session had already stopped).
CREATE TABLE late_segments (
    object_key      TEXT PRIMARY KEY,
    recording_id    TEXT NOT NULL REFERENCES recordings(id),
    node_id         TEXT NOT NULL,
    wall_start_us   BIGINT NOT NULL,
    duration_us     BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    clock           TEXT NOT NULL,
    note            TEXT NOT NULL,
    published_at_us BIGINT NOT NULL,
    chained_seq     BIGINT
);
CREATE INDEX late_segments_by_recording ON late_segments (recording_id, chained_seq);
