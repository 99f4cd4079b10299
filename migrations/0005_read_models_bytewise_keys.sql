-- Read models compare their identifiers bytewise (COLLATE "C") whatever the database's
-- locale: ids are ASCII, and locale-aware comparison (strcoll) made every index insert and
-- lookup several times slower (measured while speeding up `dashclaw replay`, BENCHMARKS.md).
-- Action documents become `json` (stored as written): the projection writes each one as
-- text and reads it back whole; `jsonb`'s binary form only cost a conversion both ways.
ALTER TABLE action_records
    ALTER COLUMN org_id TYPE text COLLATE "C",
    ALTER COLUMN action_id TYPE text COLLATE "C",
    ALTER COLUMN agent_id TYPE text COLLATE "C",
    ALTER COLUMN swarm_id TYPE text COLLATE "C",
    ALTER COLUMN action_type TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C",
    ALTER COLUMN outcome_status TYPE text COLLATE "C",
    ALTER COLUMN doc TYPE json USING doc::json;

ALTER TABLE guard_decisions
    ALTER COLUMN org_id TYPE text COLLATE "C",
    ALTER COLUMN decision_id TYPE text COLLATE "C",
    ALTER COLUMN agent_id TYPE text COLLATE "C",
    ALTER COLUMN decision TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C";

ALTER TABLE assumptions
    ALTER COLUMN org_id TYPE text COLLATE "C",
    ALTER COLUMN assumption_id TYPE text COLLATE "C",
    ALTER COLUMN action_id TYPE text COLLATE "C";

ALTER TABLE projection_checkpoints
    ALTER COLUMN projection TYPE text COLLATE "C",
    ALTER COLUMN org_id TYPE text COLLATE "C";

-- The guard decision log became its own projection, `decisions`, with its own checkpoints
-- (it folds beside `governance`); everything up to governance's checkpoint is folded in.
INSERT INTO projection_checkpoints (projection, org_id, ledger_seq)
SELECT 'decisions', org_id, ledger_seq FROM projection_checkpoints WHERE projection = 'governance'
ON CONFLICT DO NOTHING;
