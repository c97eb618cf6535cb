-- Recording core. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Times are Unix microseconds (BIGINT); hashes are lowercase hex (TEXT).

CREATE TABLE rooms (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    location   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE room_sources (
    room_id  TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name     TEXT NOT NULL,
    url      TEXT NOT NULL,
    media    TEXT NOT NULL,
    template TEXT NOT NULL,
    PRIMARY KEY (room_id, name)
);

-- A session outlives its room: room name and kind are copied, not referenced.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    room_name    TEXT NOT NULL,
    room_kind    TEXT NOT NULL,
    project_code TEXT NOT NULL,
    session_code TEXT NOT NULL,
    kind         TEXT NOT NULL,
    note         TEXT NOT NULL,
    state        TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    stopped_at   BIGINT,
    manifest_key TEXT,
    error        TEXT
);
CREATE INDEX sessions_by_project ON sessions (project_code, started_at);
-- The database itself refuses a second live session in one room.
CREATE UNIQUE INDEX sessions_one_live_per_room ON sessions (room_id)
    WHERE state IN ('recording', 'stopping');

-- One recording = one source of one session = one hash chain.
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    source_name TEXT NOT NULL,
    url         TEXT NOT NULL,
    media       TEXT NOT NULL,
    template    TEXT NOT NULL,
    UNIQUE (session_id, source_name)
);

-- The chain. A media row exists only after its object is stored and its hash checked.
CREATE TABLE chain_entries (
    recording_id  TEXT NOT NULL REFERENCES recordings(id),
    seq           BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    wall_start_us BIGINT NOT NULL,
    duration_us   BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    clock         TEXT NOT NULL,
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    entry_hash    TEXT NOT NULL,
    indexed_at    BIGINT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
