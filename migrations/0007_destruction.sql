-- Lawful destruction (档案法 Art 21, 实施条例 Art 24): a proposal with its appraisal record (鉴定),
-- approvals by two people other than the proposer, and a permanent register of every object
-- destroyed (what, its hash, under which rule and basis, approved by whom, when).
CREATE TABLE destruction_requests (
    id                   TEXT PRIMARY KEY,
    session_ids          TEXT NOT NULL,
    appraisal_committee  TEXT NOT NULL,
    appraisal_conclusion TEXT NOT NULL,
    appraisal_reference  TEXT NOT NULL,
    proposed_by          TEXT NOT NULL,
    proposed_at          BIGINT NOT NULL,
    -- proposed | approved | rejected | executed
    state                TEXT NOT NULL,
    executed_by          TEXT,
    executed_at          BIGINT
);

CREATE TABLE destruction_approvals (
    request_id TEXT NOT NULL,
    approver   TEXT NOT NULL,
    role       TEXT NOT NULL,
    decision   TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE destruction_register (
    id             TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    project_code   TEXT NOT NULL,
    recording_id   TEXT NOT NULL,
    source         TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    object_key     TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    bytes          BIGINT NOT NULL,
    rule_id        TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    basis          TEXT NOT NULL,
    approvers      TEXT NOT NULL,
    executed_at    BIGINT NOT NULL
);
CREATE INDEX destruction_register_by_session ON destruction_register (session_id);
