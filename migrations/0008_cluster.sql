-- Several nodes on one database: each room is recorded by exactly one node at a time, the
-- holder of its lease. A node renews its leases every few seconds; a lease that runs out
-- lets another node take the room over (the outage becomes a gap in the chain).
CREATE TABLE room_leases (
    room_id     TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);
