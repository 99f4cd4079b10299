-- Analytics read models (projections/src/analytics.rs), folded with their sources: action
-- counters per day, agent, action type and model by `governance`; decided approvals with
-- their time to decision by `governance`; guard decisions per day, agent and verdict by
-- `decisions`. Counters are sums of each action's contribution, so they are exact.
CREATE TABLE analytics_actions
(
    org_id                  text COLLATE "C" NOT NULL,
    day                     date             NOT NULL, -- of the action's start, UTC
    agent_id                text COLLATE "C" NOT NULL,
    action_type             text COLLATE "C" NOT NULL,
    model                   text COLLATE "C" NOT NULL, -- '' when the action named none
    actions                 bigint           NOT NULL,
    completed               bigint           NOT NULL,
    failed                  bigint           NOT NULL,
    blocked                 bigint           NOT NULL,
    held                    bigint           NOT NULL, -- guard required an approval
    approved                bigint           NOT NULL,
    denied                  bigint           NOT NULL,
    expired                 bigint           NOT NULL,
    tokens_in               bigint           NOT NULL,
    tokens_out              bigint           NOT NULL,
    unpriced_tokens_in      bigint           NOT NULL, -- of actions that reported no cost
    unpriced_tokens_out     bigint           NOT NULL,
    cost_reported_micro_usd bigint           NOT NULL, -- sum of reported cost_estimate
    PRIMARY KEY (org_id, day, agent_id, action_type, model)
);

CREATE TABLE analytics_approvals
(
    org_id      text COLLATE "C" NOT NULL,
    action_id   text COLLATE "C" NOT NULL,
    day         date             NOT NULL,
    agent_id    text COLLATE "C" NOT NULL,
    action_type text COLLATE "C" NOT NULL,
    seconds     double precision NOT NULL, -- from the action's start to the approve / deny
    PRIMARY KEY (org_id, action_id)
);
CREATE INDEX analytics_approvals_by_day ON analytics_approvals (org_id, day);

CREATE TABLE analytics_decisions
(
    org_id    text COLLATE "C" NOT NULL,
    day       date             NOT NULL,
    agent_id  text COLLATE "C" NOT NULL, -- '' when the request named none
    decision  text COLLATE "C" NOT NULL,
    decisions bigint           NOT NULL,
    PRIMARY KEY (org_id, day, agent_id, decision)
);

-- Existing read models are refolded from the first event so that the new tables count
-- everything (API keys are kept: refolding them converges to the same rows).
TRUNCATE action_records, guard_decisions, assumptions;
DELETE FROM projection_checkpoints WHERE projection IN ('governance', 'decisions');
