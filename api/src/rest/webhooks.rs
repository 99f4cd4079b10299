//! Webhooks (contract section 17): list (secrets masked), register (admin; the secret is
//! shown once), delete (admin), send a test delivery (admin), and the recorded attempts.
//! Registrations go through the `Webhook` aggregate; deliveries come from the ledger through
//! the outbox (`dashclaw_projections::webhooks`) and the worker (`crate::webhooks`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_domain::ids::WebhookId;
use dashclaw_domain::webhook::{self, Webhook, WebhookCommand, WebhookError, WebhookRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::extract::{Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::server::AppState;
use crate::service::random;
use crate::service::webhooks::target;
use crate::service::Caller;
use crate::service::{Actor, CommandError};
use crate::service::{Error, ErrorCode};
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks", get(list).post(create).delete(delete))
        .route("/api/webhooks/{id}/test", post(test))
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
}

const ADMIN_ONLY: &str = "Admin access required to manage webhooks";
/// Most event types one registration may list.
const MAX_EVENTS: usize = 32;

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Webhook not found")
}

/// The secret as lists show it: enough to recognise, not to use.
fn masked(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("****{tail}")
}

fn row(
    org: &str,
    id: &str,
    url: &str,
    events: &[String],
    secret: Value,
    created_at: DateTime<Utc>,
) -> Value {
    json!({
        "id": id,
        "org_id": org,
        "url": url,
        "events": events,
        "secret": secret,
        "active": 1,
        "created_at": wire::ts(created_at),
    })
}

/// A live webhook of the caller's org (deleted, foreign and malformed ids are not found).
async fn live_webhook(state: &AppState, caller: &Caller, id: &str) -> Result<WebhookRecord, Error> {
    let Ok(id) = WebhookId::parse(id) else {
        return Err(not_found());
    };
    let hook: Webhook = state
        .service
        .aggregates()
        .load(&caller.org, id.as_str())
        .await?;
    hook.record
        .filter(|r| r.deleted_at.is_none())
        .ok_or_else(not_found)
}

/// Folds the org's ledger into registrations and the outbox (read-your-writes for lists and
/// the worker), waking the worker if that queued deliveries.
async fn catch_up(state: &AppState, caller: &Caller) -> Result<(), Error> {
    if state.service.outbox().catch_up(&caller.org).await? > 0 {
        state.service.webhooks().wake();
    }
    Ok(())
}

// ---- GET /api/webhooks -------------------------------------------------------------------

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    catch_up(&state, &caller).await?;
    type Row = (String, String, Vec<String>, DateTime<Utc>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT w.webhook_id, w.url, w.events, w.created_at, s.secret
           FROM webhooks w LEFT JOIN webhook_secrets s
             ON s.org_id = w.org_id AND s.webhook_id = w.webhook_id
          WHERE w.org_id = $1 AND w.deleted_at IS NULL
          ORDER BY w.created_at DESC, w.webhook_id",
    )
    .bind(caller.org.as_str())
    .fetch_all(state.service.pool())
    .await?;
    let webhooks: Vec<Value> = rows
        .iter()
        .map(|(id, url, events, at, secret)| {
            let secret = json!(secret.as_deref().map(masked));
            row(caller.org.as_str(), id, url, events, secret, *at)
        })
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

// ---- POST /api/webhooks ------------------------------------------------------------------

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::Body(body): crate::extract::Body,
) -> Result<Response, Error> {
    caller.require_admin(ADMIN_ONLY)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let url = f.required_string("url", target::MAX_URL);
    let events_given = f.present("events");
    let mut events = f.strings("events", MAX_EVENTS, 64);
    for (i, e) in events.iter().enumerate() {
        if !webhook::is_known_event(e) {
            let mut known = vec![webhook::ALL];
            known.extend(webhook::DELIVERED);
            known.extend(webhook::ACCEPTED_ONLY);
            f.errors
                .push(format!("events[{i}] must be one of: {}", known.join(", ")));
        }
    }
    if events_given && events.is_empty() && f.errors.is_empty() {
        f.errors.push("events cannot be empty".into());
    }
    if let Some(url) = &url {
        if let Err(why) = target::check(url, state.service.webhooks().config().allow_private) {
            f.errors.push(why);
        }
    }
    f.finish()?;
    let url = url.unwrap_or_default();
    if events.is_empty() {
        events.push(webhook::ALL.to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| seen.insert(e.clone()));

    let id = WebhookId::random(random()?);
    let secret = hex::encode(random::<32>()?);
    let now = state.service.clock().now();
    let record = WebhookRecord {
        id: id.clone(),
        url,
        events,
        secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        created_by: caller.principal.clone(),
        created_at: now,
        deleted_at: None,
    };
    // The secret is kept first: a registration that reached the ledger can always sign. If
    // the command then fails, the secret names no webhook and stays unused (it is not
    // removed: a failure after the commit would leave a webhook without its secret).
    sqlx::query("INSERT INTO webhook_secrets (org_id, webhook_id, secret) VALUES ($1, $2, $3)")
        .bind(caller.org.as_str())
        .bind(id.as_str())
        .bind(&secret)
        .execute(state.service.pool())
        .await?;
    let result = state
        .service
        .aggregates()
        .execute::<Webhook>(
            &caller.org,
            id.as_str(),
            WebhookCommand::Register(Box::new(record.clone())),
            &Actor::of(&caller.principal, None),
        )
        .await;
    if let Err(e) = result {
        return Err(match e {
            CommandError::Failed(e) => e,
            CommandError::Rejected(e) => Error::internal(e),
        });
    }
    let body = row(
        caller.org.as_str(),
        id.as_str(),
        &record.url,
        &record.events,
        json!(secret),
        record.created_at,
    );
    Ok((StatusCode::CREATED, Json(json!({ "webhook": body }))).into_response())
}

// ---- DELETE /api/webhooks?id= ------------------------------------------------------------

#[derive(Deserialize)]
struct DeleteQuery {
    id: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<Value>, Error> {
    caller.require_admin(ADMIN_ONLY)?;
    let Some(id) = q.id.filter(|id| !id.is_empty()) else {
        return Err(Error::validation(vec!["id is required".into()]));
    };
    let hook = live_webhook(&state, &caller, &id).await?;
    let command = WebhookCommand::Delete {
        by: caller.principal.clone(),
        now: state.service.clock().now(),
    };
    match state
        .service
        .aggregates()
        .execute::<Webhook>(
            &caller.org,
            hook.id.as_str(),
            command,
            &Actor::of(&caller.principal, None),
        )
        .await
    {
        Ok(_) => {}
        Err(CommandError::Rejected(WebhookError::NotFound | WebhookError::AlreadyDeleted)) => {
            return Err(not_found())
        }
        Err(CommandError::Rejected(e)) => return Err(Error::internal(e)),
        Err(CommandError::Failed(e)) => return Err(e),
    }
    // Fold the deletion now, so that the list and the worker stop seeing the webhook.
    catch_up(&state, &caller).await?;
    Ok(Json(
        json!({ "success": true, "deleted": hook.id.as_str() }),
    ))
}

// ---- POST /api/webhooks/:id/test ---------------------------------------------------------

async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    caller.require_admin(ADMIN_ONLY)?;
    let hook = live_webhook(&state, &caller, &id).await?;
    // The worker reads the registration from the read model.
    catch_up(&state, &caller).await?;
    let delivery_id = format!("whd_test_{}", hex::encode(random::<16>()?));
    let now = state.service.clock().now();
    let data = json!({
        "webhook_id": hook.id.as_str(),
        "message": "Test delivery from dashclaw",
    });
    let body =
        dashclaw_projections::webhooks::body(&delivery_id, "test", &caller.org, None, now, &data);
    // Not due by itself: attempted right here, and retried like any other if it fails.
    sqlx::query(
        "INSERT INTO webhook_outbox
           (delivery_id, org_id, webhook_id, event_type, ledger_seq, body, next_attempt_at)
         VALUES ($1, $2, $3, 'test', NULL, $4, 'infinity')",
    )
    .bind(&delivery_id)
    .bind(caller.org.as_str())
    .bind(hook.id.as_str())
    .bind(&body)
    .execute(state.service.pool())
    .await?;
    let attempt = state.service.webhooks().attempt_now(&delivery_id).await?;
    Ok(Json(match attempt {
        Some(a) => json!({
            "success": a.success,
            "delivery_id": delivery_id,
            "status_code": a.status_code,
            "error": a.error,
            "duration_ms": a.duration_ms,
        }),
        None => json!({ "success": false, "delivery_id": delivery_id, "queued": true }),
    }))
}

// ---- GET /api/webhooks/:id/deliveries ----------------------------------------------------

#[derive(Deserialize)]
struct DeliveriesQuery {
    limit: Option<String>,
    offset: Option<String>,
}

async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Json<Value>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 500, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let hook = live_webhook(&state, &caller, &id).await?;
    type Row = (
        i64,
        String,
        String,
        Option<i64>,
        i32,
        Option<i32>,
        Option<String>,
        bool,
        i32,
        DateTime<Utc>,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.delivery_id, o.event_type, o.ledger_seq, a.attempt, a.status_code,
                a.error, a.success, a.duration_ms, a.attempted_at, o.state
           FROM webhook_attempts a JOIN webhook_outbox o ON o.delivery_id = a.delivery_id
          WHERE a.org_id = $1 AND a.webhook_id = $2
          ORDER BY a.id DESC LIMIT $3 OFFSET $4",
    )
    .bind(caller.org.as_str())
    .bind(hook.id.as_str())
    .bind(limit)
    .bind(offset)
    .fetch_all(state.service.pool())
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_attempts WHERE org_id = $1 AND webhook_id = $2",
    )
    .bind(caller.org.as_str())
    .bind(hook.id.as_str())
    .fetch_one(state.service.pool())
    .await?;
    let deliveries: Vec<Value> = rows
        .into_iter()
        .map(
            |(id, delivery, event, seq, attempt, status, error, success, ms, at, st)| {
                json!({
                    "id": id,
                    "delivery_id": delivery,
                    "webhook_id": hook.id.as_str(),
                    "event_type": event,
                    "ledger_seq": seq,
                    "attempt": attempt,
                    "status_code": status,
                    "error": error,
                    "success": success,
                    "duration_ms": ms,
                    "attempted_at": wire::ts(at),
                    "delivery_state": st,
                })
            },
        )
        .collect();
    Ok(Json(json!({ "deliveries": deliveries, "total": total })))
}
