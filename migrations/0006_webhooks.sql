-- Webhooks (ADR 0004). Registrations are ledger events (aggregate `Webhook`); `webhooks` is
-- their read model, folded by the `webhooks` tracking projection (projections/src/webhooks.rs)
-- together with the outbox: one `webhook_outbox` row per (ledger event, subscribed webhook),
-- inserted in the same transaction as the projection's checkpoint. Unlike the governance
-- read models, the outbox and the attempts are NOT disposable: `dashclaw replay` never
-- touches them (re-folding would deliver everything again).

-- The read model of registrations (rebuildable from the ledger).
CREATE TABLE webhooks
(
    org_id     text        NOT NULL,
    webhook_id text        NOT NULL,
    url        text        NOT NULL,
    events     text[]      NOT NULL,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL,
    deleted_at timestamptz,
    ledger_seq bigint      NOT NULL, -- the last event folded into this row
    PRIMARY KEY (org_id, webhook_id)
);

-- Signing secrets: kept beside the ledger (the `WebhookRegistered` event holds only the
-- secret's SHA-256), because deliveries must be signed with the secret itself.
CREATE TABLE webhook_secrets
(
    org_id     text        NOT NULL,
    webhook_id text        NOT NULL,
    secret     text        NOT NULL, -- 64 lowercase hex (32 random bytes)
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, webhook_id)
);

-- One row per delivery (an event for one webhook); retried until delivered or given up.
CREATE TABLE webhook_outbox
(
    delivery_id     text        PRIMARY KEY, -- sent as X-DashClaw-Delivery
    org_id          text        NOT NULL,
    webhook_id      text        NOT NULL,
    event_type      text        NOT NULL,
    ledger_seq      bigint,                  -- the event it reports; NULL for test deliveries
    body            text        NOT NULL,    -- the exact JSON bytes sent (and signed)
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE UNIQUE INDEX webhook_outbox_once ON webhook_outbox (org_id, webhook_id, ledger_seq, event_type)
    WHERE ledger_seq IS NOT NULL;

-- Every attempt, successful or not.
CREATE TABLE webhook_attempts
(
    id           bigserial PRIMARY KEY,
    delivery_id  text        NOT NULL REFERENCES webhook_outbox (delivery_id),
    org_id       text        NOT NULL,
    webhook_id   text        NOT NULL,
    attempt      int         NOT NULL,
    status_code  int,        -- NULL when no HTTP answer came back
    error        text,       -- why the attempt failed, if it did
    success      boolean     NOT NULL,
    duration_ms  int         NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (org_id, webhook_id, id DESC);
