//! Webhook registrations as lists show them, their secrets, and the delivery bookkeeping of
//! the outbox (`webhook_outbox`, `webhook_attempts`): what the REST handlers and the delivery
//! worker do with those tables. The outbox rows of ledger events are inserted by the
//! `webhooks` projection ([`crate::webhooks`]); everything else written here is not folded
//! from the ledger (secrets, test deliveries, attempts and retry states).
//!
//! The worker's functions take a connection: claiming, attempting and recording are one
//! transaction (see the worker), so that a process that dies mid-pass releases its claims.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dashclaw_domain::OrgId;
use sqlx::{PgConnection, PgPool};

use super::Page;
use crate::ProjectionError;

/// A live registration as `GET /api/webhooks` lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookListing {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// `None` if its secret is missing.
    pub secret: Option<String>,
}

/// The org's live (not deleted) webhooks, newest first (ties by id).
pub async fn live_webhooks(
    pool: &PgPool,
    org: &OrgId,
) -> Result<Vec<WebhookListing>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT w.webhook_id, w.url, w.events, w.created_at, s.secret
           FROM webhooks w LEFT JOIN webhook_secrets s
             ON s.org_id = w.org_id AND s.webhook_id = w.webhook_id
          WHERE w.org_id = $1 AND w.deleted_at IS NULL
          ORDER BY w.created_at DESC, w.webhook_id",
    )
    .bind(org.as_str())
    .fetch_all(pool)
    .await?)
}

/// Keeps the signing secret of the org's webhook `webhook_id` (before the registration is
/// committed, so that a registered webhook can always sign). A second secret for the same
/// webhook is refused by the table's key.
pub async fn store_secret(
    pool: &PgPool,
    org: &OrgId,
    webhook_id: &str,
    secret: &str,
) -> Result<(), ProjectionError> {
    sqlx::query("INSERT INTO webhook_secrets (org_id, webhook_id, secret) VALUES ($1, $2, $3)")
        .bind(org.as_str())
        .bind(webhook_id)
        .bind(secret)
        .execute(pool)
        .await?;
    Ok(())
}

/// Queues a test delivery (event type `test`, no ledger event) of `body` to the org's webhook,
/// never due by itself: it is attempted at once by whoever queued it
/// ([`claim`] with its id), and retried like any other if that fails.
pub async fn queue_test_delivery(
    pool: &PgPool,
    org: &OrgId,
    webhook_id: &str,
    delivery_id: &str,
    body: &str,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO webhook_outbox
           (delivery_id, org_id, webhook_id, event_type, ledger_seq, body, next_attempt_at)
         VALUES ($1, $2, $3, 'test', NULL, $4, 'infinity')",
    )
    .bind(delivery_id)
    .bind(org.as_str())
    .bind(webhook_id)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// One recorded attempt, with its delivery, as `GET /api/webhooks/:id/deliveries` lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptListing {
    pub id: i64,
    pub delivery_id: String,
    pub event_type: String,
    /// The event it reports; `None` for a test delivery.
    pub ledger_seq: Option<i64>,
    pub attempt: i32,
    /// `None` when no HTTP answer came back.
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub success: bool,
    pub duration_ms: i32,
    pub attempted_at: DateTime<Utc>,
    /// The delivery's state now: `pending`, `delivered`, `failed` or `cancelled`.
    pub state: String,
}

/// The attempts to deliver to the org's webhook, newest first, one page of them.
pub async fn attempts(
    pool: &PgPool,
    org: &OrgId,
    webhook_id: &str,
    page: Page,
) -> Result<Vec<AttemptListing>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.delivery_id, o.event_type, o.ledger_seq, a.attempt, a.status_code,
                a.error, a.success, a.duration_ms, a.attempted_at, o.state
           FROM webhook_attempts a JOIN webhook_outbox o ON o.delivery_id = a.delivery_id
          WHERE a.org_id = $1 AND a.webhook_id = $2
          ORDER BY a.id DESC LIMIT $3 OFFSET $4",
    )
    .bind(org.as_str())
    .bind(webhook_id)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?)
}

/// How many attempts to deliver to the org's webhook were recorded (every page).
pub async fn attempts_total(
    pool: &PgPool,
    org: &OrgId,
    webhook_id: &str,
) -> Result<i64, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM webhook_attempts WHERE org_id = $1 AND webhook_id = $2",
    )
    .bind(org.as_str())
    .bind(webhook_id)
    .fetch_one(pool)
    .await?)
}

/// How long until the next pending delivery of any org is due, by the database's clock
/// (`Duration::ZERO` if one is overdue); `None` when nothing is pending.
pub async fn next_due(pool: &PgPool) -> Result<Option<Duration>, ProjectionError> {
    // min() of no rows is NULL, which says "nothing pending" (GREATEST would turn it into 0).
    let ms: Option<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM (min(next_attempt_at) - clock_timestamp())) * 1000)::float8
           FROM webhook_outbox WHERE state = 'pending'",
    )
    .fetch_one(pool)
    .await?;
    Ok(ms.map(|ms| Duration::from_millis(ms.max(0.0) as u64)))
}

/// A pending delivery claimed by a worker, with what it needs to attempt it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_type: String,
    /// The exact JSON bytes to send (and sign).
    pub body: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// The webhook's URL; `None` if its registration is not in the read model.
    pub url: Option<String>,
    /// Its signing secret; `None` if missing.
    pub secret: Option<String>,
    /// Whether the webhook is registered and not deleted (if not, nothing is delivered).
    pub live: bool,
}

/// Which pending deliveries a pass claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim<'a> {
    /// Those due now (database clock), earliest first.
    Due,
    /// The one with this id, due or not (a test delivery attempted at once).
    Only(&'a str),
}

/// Claims up to `limit` pending deliveries (`FOR UPDATE SKIP LOCKED`: rows another
/// transaction holds are left to it), for the rest of the caller's transaction.
pub async fn claim(
    conn: &mut PgConnection,
    which: Claim<'_>,
    limit: i64,
) -> Result<Vec<ClaimedDelivery>, ProjectionError> {
    let only = match which {
        Claim::Due => None,
        Claim::Only(id) => Some(id),
    };
    Ok(sqlx::query_as(
        "SELECT o.delivery_id, o.webhook_id, o.event_type, o.body, o.attempts,
                w.url, s.secret, (w.webhook_id IS NOT NULL AND w.deleted_at IS NULL) AS live
           FROM webhook_outbox o
           LEFT JOIN webhooks w ON w.org_id = o.org_id AND w.webhook_id = o.webhook_id
           LEFT JOIN webhook_secrets s ON s.org_id = o.org_id AND s.webhook_id = o.webhook_id
          WHERE o.state = 'pending'
            AND CASE WHEN $1::text IS NULL THEN o.next_attempt_at <= clock_timestamp()
                     ELSE o.delivery_id = $1 END
          ORDER BY o.next_attempt_at
          LIMIT $2
          FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(only)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Ends a claimed delivery whose webhook is gone: nothing more will be attempted.
pub async fn cancel(conn: &mut PgConnection, delivery_id: &str) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE webhook_outbox
            SET state = 'cancelled', finished_at = clock_timestamp()
          WHERE delivery_id = $1",
    )
    .bind(delivery_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// One attempt to deliver, as made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptMade<'a> {
    pub delivery_id: &'a str,
    /// Its number (1 for the first).
    pub attempt: i32,
    /// The receiver's HTTP status; `None` when no answer came back.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
    pub success: bool,
    pub duration_ms: i32,
    /// When it started.
    pub at: DateTime<Utc>,
}

/// Where a delivery stands after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// To be attempted again after the wait.
    Pending,
    Delivered,
    /// Given up.
    Failed,
}

impl DeliveryState {
    /// The stored `state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// Records an attempt of a claimed delivery and moves the delivery to `state`, due again
/// `retry_in` from now (database clock; it matters only while `Pending`), in the caller's
/// transaction.
pub async fn record_attempt(
    conn: &mut PgConnection,
    attempt: &AttemptMade<'_>,
    state: DeliveryState,
    retry_in: Duration,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO webhook_attempts
           (delivery_id, org_id, webhook_id, attempt, status_code, error, success, duration_ms,
            attempted_at)
         SELECT delivery_id, org_id, webhook_id, $2, $3, $4, $5, $6, $7
           FROM webhook_outbox WHERE delivery_id = $1",
    )
    .bind(attempt.delivery_id)
    .bind(attempt.attempt)
    .bind(attempt.status_code.map(i32::from))
    .bind(attempt.error)
    .bind(attempt.success)
    .bind(attempt.duration_ms)
    .bind(attempt.at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE webhook_outbox
            SET attempts = $2, state = $3,
                next_attempt_at = clock_timestamp() + make_interval(secs => $4),
                finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END
          WHERE delivery_id = $1",
    )
    .bind(attempt.delivery_id)
    .bind(attempt.attempt)
    .bind(state.as_str())
    .bind(retry_in.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(())
}
