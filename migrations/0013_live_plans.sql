-- The guard looks up the plans of the requesting agent that may be in force (only for requests
-- that carry an act hash; it then reads each one's current state from the ledger): an index
-- over the plan documents' agent, for the statuses that can still grant or deny.
CREATE INDEX entity_records_live_plans
    ON entity_records (org_id, (doc #>> '{record,agent_id}'))
    WHERE aggregate_type = 'Plan'
      AND doc #>> '{record,status}' IN ('pending', 'approved', 'partially_approved', 'denied');
