-- The Merkle tree over each org's chain (RFC 9162; docs/proofs.md), kept beside the chain by
-- `store::tree::integrate` off the request path, and signed tree heads (ADR 0010).
--
-- The tree is stored as its complete subtrees of 16 leaves and more: the node at
-- (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level), i.e. the events with
-- ledger_seq idx * 2^level + 1 .. (idx + 1) * 2^level. Smaller subtrees are hashed from the
-- events' own hashes when a proof needs them (at most 16 leaves per subtree), which keeps
-- this table at about one row per 8 events. A node never changes once written.
CREATE TABLE merkle_subtrees
(
    org_id text     NOT NULL,
    level  smallint NOT NULL CHECK (level >= 4 AND level < 63),
    idx    bigint   NOT NULL CHECK (idx >= 0),
    hash   bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, level, idx)
);

-- How far each org's tree is integrated: its size, root and the chain hash of its last leaf.
-- The row lock serializes integration across nodes.
CREATE TABLE merkle_trees
(
    org_id     text   PRIMARY KEY,
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea  NOT NULL CHECK (length(root) = 32),
    head_hash  text   NOT NULL
);

CREATE TRIGGER merkle_subtrees_append_only BEFORE UPDATE OR DELETE ON merkle_subtrees
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER merkle_subtrees_no_truncate BEFORE TRUNCATE ON merkle_subtrees
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE merkle_subtrees ENABLE ALWAYS TRIGGER merkle_subtrees_append_only;
ALTER TABLE merkle_subtrees ENABLE ALWAYS TRIGGER merkle_subtrees_no_truncate;

-- A checkpoint signed from now on is also a tree head: the Merkle root at its size (hex) and
-- the C2SP signed note (tlog-checkpoint) that binds size, root, chain head and signing time.
-- Checkpoints signed by earlier versions have neither.
ALTER TABLE checkpoints ADD COLUMN root_hash text, ADD COLUMN note text;
