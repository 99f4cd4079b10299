-- A guard decision's row no longer copies its record: the record is its one ledger event, read
-- by (org_id, ledger_seq) when a decision is shown. The projection then only maintains the
-- columns lists filter on, which makes folding (and `dashclaw replay`) much cheaper.
ALTER TABLE guard_decisions DROP COLUMN doc;
