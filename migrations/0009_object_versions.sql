-- On Object Lock storage: each stored object's version id, the retain-until last set on it, and
-- whether an S3 legal hold is on it (mirroring the holds in SQL).
CREATE TABLE object_versions (
    object_key   TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    version_id   TEXT NOT NULL,
    retain_until BIGINT NOT NULL,
    legal_hold   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX object_versions_by_session ON object_versions (session_id);
