-- One posture score per org per day (the latest computed that day), for the trend shown by
-- `GET /api/posture`. Derived data: recomputable from the ledger and the policies.
CREATE TABLE posture_snapshots
(
    org_id     text        NOT NULL,
    day        date        NOT NULL,
    score      int         NOT NULL CHECK (score BETWEEN 0 AND 100),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, day)
);
