-- The ledger: postgres-es's `events` table (same columns, same primary key, so its read queries
-- work unchanged) plus the chain columns, the per-org chain heads, signed checkpoints and the
-- server's signing keys. Format: docs/ledger-format.md.

CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL, -- "<org_id>/<entity id>"
    sequence       bigint CHECK (sequence >= 1)  NOT NULL, -- per-stream, 1, 2, 3, ...
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        json                          NOT NULL, -- RFC 8785 canonical text, as hashed
    metadata       json                          NOT NULL, -- RFC 8785 canonical text, as hashed
    org_id         text                          NOT NULL,
    ledger_seq     bigint CHECK (ledger_seq >= 1) NOT NULL, -- per-org, gap-free
    prev_hash      text                          NOT NULL,
    hash           text                          NOT NULL,
    recorded_at    timestamptz                   NOT NULL, -- = metadata.recorded_at, for queries
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    UNIQUE (org_id, ledger_seq)
);

-- One row per org: the chain head. Appends lock it FOR UPDATE, which serializes one org's
-- appends (across every node) and leaves other orgs alone.
CREATE TABLE ledger_heads
(
    org_id     text PRIMARY KEY,
    size       bigint NOT NULL CHECK (size >= 0),
    head_hash  text   NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE checkpoints
(
    org_id    text   NOT NULL,
    size      bigint NOT NULL CHECK (size >= 0),
    head_hash text   NOT NULL,
    signed_at text   NOT NULL, -- exactly the string that was signed
    kid       text   NOT NULL,
    signature text   NOT NULL,
    PRIMARY KEY (org_id, size)
);

-- Every key that ever signed stays here (public part), so old checkpoints stay verifiable.
-- private_jwk is NULL for keys supplied by DASHCLAW_SIGNING_KEY_JWK.
CREATE TABLE signing_keys
(
    kid         text PRIMARY KEY,
    public_jwk  json        NOT NULL,
    private_jwk json,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys
(
    id         text PRIMARY KEY,
    org_id     text        NOT NULL,
    key_hash   text        NOT NULL UNIQUE, -- hex SHA-256 of the key; the key itself is never stored
    role       text        NOT NULL CHECK (role IN ('admin', 'member', 'readonly')),
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Stored events and checkpoints are never rewritten. Tampering with superuser rights is still
-- possible (disable the trigger), which is why `dashclaw verify` exists.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- ALWAYS: fire even under session_replication_role = replica.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;
ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_append_only;
ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_truncate;

-- Privileges: the role that runs these migrations owns the tables and so keeps UPDATE/DELETE
-- (and can disable triggers). Deployments that want the database itself to deny the server's
-- role run the server as a non-owner role granted only SELECT, INSERT on events/checkpoints.
