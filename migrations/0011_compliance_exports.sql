-- Each compliance export of an org (`dashclaw export`, `GET /api/compliance/export`), so that
-- the next export's manifest can carry a consistency proof from this one's signed tree head
-- (docs/evidence-format.md). Append-only like the ledger: an export, once made, was made.
CREATE TABLE compliance_exports
(
    org_id           text        NOT NULL,
    exported_at      timestamptz NOT NULL,
    first_ledger_seq bigint      NOT NULL CHECK (first_ledger_seq >= 0),
    last_ledger_seq  bigint      NOT NULL CHECK (last_ledger_seq >= first_ledger_seq),
    tree_size        bigint      NOT NULL CHECK (tree_size >= last_ledger_seq),
    kid              text        NOT NULL,
    PRIMARY KEY (org_id, exported_at, tree_size)
);

CREATE TRIGGER compliance_exports_append_only BEFORE UPDATE OR DELETE ON compliance_exports
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER compliance_exports_no_truncate BEFORE TRUNCATE ON compliance_exports
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE compliance_exports ENABLE ALWAYS TRIGGER compliance_exports_append_only;
ALTER TABLE compliance_exports ENABLE ALWAYS TRIGGER compliance_exports_no_truncate;
