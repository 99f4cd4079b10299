-- Read models of the governance loop, folded from the ledger by the `governance` projection
-- (projections/src/governance.rs). Each row's `doc` is the aggregate state exactly as the
-- domain folds it; the other columns are copies kept for filtering and ordering.
-- These tables are disposable: `dashclaw replay` can rebuild them from the ledger.

CREATE TABLE projection_checkpoints
(
    projection text   NOT NULL,
    org_id     text   NOT NULL,
    ledger_seq bigint NOT NULL CHECK (ledger_seq >= 0), -- every event up to here is folded in
    PRIMARY KEY (projection, org_id)
);

CREATE TABLE action_records
(
    org_id              text        NOT NULL,
    action_id           text        NOT NULL,
    doc                 jsonb       NOT NULL, -- domain::action::ActionRecord
    agent_id            text        NOT NULL,
    swarm_id            text,
    action_type         text        NOT NULL,
    status              text        NOT NULL,
    outcome_status      text        NOT NULL,
    risk_score          int         NOT NULL,
    cost_estimate       double precision,
    timestamp_start     timestamptz NOT NULL,
    approval_expires_at timestamptz,
    ledger_seq          bigint      NOT NULL, -- the last event folded into this row
    PRIMARY KEY (org_id, action_id)
);
CREATE INDEX action_records_recent ON action_records (org_id, timestamp_start DESC);
CREATE INDEX action_records_by_status ON action_records (org_id, status, timestamp_start DESC);
CREATE INDEX action_records_by_agent ON action_records (org_id, agent_id, timestamp_start DESC);

CREATE TABLE guard_decisions
(
    org_id          text        NOT NULL,
    decision_id     text        NOT NULL,
    doc             jsonb       NOT NULL, -- domain::guard_decision::GuardDecisionRecord
    agent_id        text,
    decision        text        NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    ledger_seq      bigint      NOT NULL,
    PRIMARY KEY (org_id, decision_id)
);
CREATE INDEX guard_decisions_recent ON guard_decisions (org_id, created_at DESC);
CREATE INDEX guard_decisions_by_agent ON guard_decisions (org_id, agent_id, created_at DESC);
CREATE INDEX guard_decisions_by_key ON guard_decisions (org_id, idempotency_key, created_at DESC)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE assumptions
(
    org_id        text        NOT NULL,
    assumption_id text        NOT NULL,
    action_id     text        NOT NULL,
    doc           jsonb       NOT NULL, -- domain::assumption::AssumptionRecord
    created_at    timestamptz NOT NULL,
    ledger_seq    bigint      NOT NULL,
    PRIMARY KEY (org_id, assumption_id)
);
CREATE INDEX assumptions_by_action ON assumptions (org_id, action_id);

-- API keys become a read model of ApiKey events (the bootstrap key minted by `dashclaw up`
-- and `dashclaw keys create` go through the ledger too).
ALTER TABLE api_keys ADD COLUMN ledger_seq bigint NOT NULL DEFAULT 0;
