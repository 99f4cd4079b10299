//! Webhooks (contract section 17): list (secrets masked), register (admin; the secret is
//! shown once), delete (admin), send a test delivery (admin), and the recorded attempts
//! (`service::webhooks::registrations`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::service::webhooks::registrations::{registration_problems, MAX_EVENTS};
use crate::service::webhooks::target;
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhooks", get(list).post(create).delete(delete))
        .route("/api/webhooks/{id}/test", post(test))
        .route("/api/webhooks/{id}/deliveries", get(deliveries))
}

const ADMIN_ONLY: &str = "Admin access required to manage webhooks";

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

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let org = caller.org.as_str();
    let webhooks: Vec<Value> = state
        .service
        .webhooks_of(&caller)
        .await?
        .iter()
        .map(|w| {
            row(
                org,
                &w.id,
                &w.url,
                &w.events,
                json!(w.masked_secret),
                w.created_at,
            )
        })
        .collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Response, Error> {
    caller.require_admin(ADMIN_ONLY)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let url = f.required_string("url", target::MAX_URL);
    let events_given = f.present("events");
    let events = f.strings("events", MAX_EVENTS, 64);
    let allow_private = state.service.webhooks().config().allow_private;
    let problems =
        registration_problems(url.as_deref().unwrap_or_default(), &events, allow_private);
    let (event_problems, url_problems): (Vec<_>, Vec<_>) =
        problems.into_iter().partition(|p| p.starts_with("events"));
    f.errors.extend(event_problems);
    if events_given && events.is_empty() && f.errors.is_empty() {
        f.errors.push("events cannot be empty".into());
    }
    if url.is_some() {
        f.errors.extend(url_problems);
    }
    f.finish()?;
    let (record, secret) = state
        .service
        .register_webhook(&caller, url.unwrap_or_default(), events)
        .await?;
    let body = row(
        caller.org.as_str(),
        record.id.as_str(),
        &record.url,
        &record.events,
        json!(secret),
        record.created_at,
    );
    Ok((StatusCode::CREATED, Json(json!({ "webhook": body }))).into_response())
}

#[derive(Deserialize)]
struct DeleteQuery {
    id: Option<String>,
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<Value>, Error> {
    let id = q.id.unwrap_or_default();
    let deleted = state.service.delete_webhook(&caller, &id).await?;
    Ok(Json(
        json!({ "success": true, "deleted": deleted.as_str() }),
    ))
}

async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let test = state.service.test_webhook(&caller, &id).await?;
    let delivery_id = test.delivery_id;
    Ok(Json(match test.attempt {
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
    let (hook, attempts, total) = state
        .service
        .webhook_deliveries(&caller, &id, limit, offset)
        .await?;
    let deliveries: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "delivery_id": a.delivery_id,
                "webhook_id": hook.as_str(),
                "event_type": a.event_type,
                "ledger_seq": a.ledger_seq,
                "attempt": a.attempt,
                "status_code": a.status_code,
                "error": a.error,
                "success": a.success,
                "duration_ms": a.duration_ms,
                "attempted_at": wire::ts(a.attempted_at),
                "delivery_state": a.state,
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries, "total": total })))
}
