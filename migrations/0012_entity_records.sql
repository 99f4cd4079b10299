-- The read model of the governance loop's smaller aggregates (sessions first; plans, pairings
-- and agent identities later): one row per entity, its state exactly as the domain folds it
-- (`doc`, the aggregate serialized), folded by the `governance` projection. Lists filter on
-- `doc` fields: these entities number in the thousands per org, not millions.
CREATE TABLE entity_records
(
    org_id         text COLLATE "C" NOT NULL,
    aggregate_type text COLLATE "C" NOT NULL,
    entity_id      text COLLATE "C" NOT NULL,
    doc            jsonb            NOT NULL,
    ledger_seq     bigint           NOT NULL,
    PRIMARY KEY (org_id, aggregate_type, entity_id)
);
-- Lists read newest change first.
CREATE INDEX entity_records_by_change ON entity_records (org_id, aggregate_type, ledger_seq DESC);

-- Actions name their session (`session_id`) as a column, so that a session's aggregates are
-- an index lookup; the partial index costs nothing for the actions without one.
ALTER TABLE action_records ADD COLUMN session_id text COLLATE "C";
UPDATE action_records SET session_id = doc::json ->> 'session_id'
 WHERE doc::json ->> 'session_id' IS NOT NULL;
CREATE INDEX action_records_by_session ON action_records (org_id, session_id)
    WHERE session_id IS NOT NULL;
