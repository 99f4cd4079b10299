//! Webhooks (contract section 17): list (secrets masked), register (admin; the secret is
//! shown once), delete (admin), send a test delivery (admin), and the recorded attempts
//! (`service::webhooks::registrations`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// A webhook registration (contract 17).
#[derive(Serialize, ToSchema)]
pub struct WebhookRow {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub events: Vec<String>,
    /// The signing secret: whole once, when registered; masked when listed.
    pub secret: Option<String>,
    /// Always 1.
    pub active: u8,
    pub created_at: String,
}

impl WebhookRow {
    fn new(
        org: &str,
        id: &str,
        url: &str,
        events: &[String],
        secret: Option<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            org_id: org.to_owned(),
            url: url.to_owned(),
            events: events.to_vec(),
            secret,
            active: 1,
            created_at: wire::ts(at),
        }
    }
}

/// `GET /api/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookRow>,
}

/// The org's webhooks, secrets masked.
#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    responses((status = 200, description = "The webhooks", body = WebhookList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, Error> {
    let org = caller.org.as_str();
    let webhooks = state
        .service
        .webhooks_of(&caller)
        .await?
        .iter()
        .map(|w| {
            let secret = w.masked_secret.clone();
            WebhookRow::new(org, &w.id, &w.url, &w.events, secret, w.created_at)
        })
        .collect();
    Ok(Json(WebhookList { webhooks }))
}

/// `POST /api/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct RegisteredWebhook {
    pub webhook: WebhookRow,
}

/// Register a webhook (admin keys); the answer shows its signing secret, once.
#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks",
    request_body = crate::rest::requests::WebhookBody,
    responses((status = 201, description = "Registered", body = RegisteredWebhook)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<RegisteredWebhook>), Error> {
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
    let webhook = WebhookRow::new(
        caller.org.as_str(),
        record.id.as_str(),
        &record.url,
        &record.events,
        Some(secret),
        record.created_at,
    );
    Ok((StatusCode::CREATED, Json(RegisteredWebhook { webhook })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// The webhook to delete.
    id: Option<String>,
}

/// `DELETE /api/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct DeletedWebhook {
    /// Always true.
    pub success: bool,
    pub deleted: String,
}

/// Delete a webhook (admin keys).
#[utoipa::path(delete, path = "/api/webhooks", tag = "webhooks", params(DeleteQuery),
    responses((status = 200, description = "Deleted", body = DeletedWebhook)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<DeletedWebhook>, Error> {
    let id = q.id.unwrap_or_default();
    let deleted = state.service.delete_webhook(&caller, &id).await?;
    Ok(Json(DeletedWebhook {
        success: true,
        deleted: deleted.as_str().to_owned(),
    }))
}

/// `POST /api/webhooks/:id/test`: the attempt's result, or `queued` when it did not finish
/// within the wait.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TestDelivery {
    Attempted {
        success: bool,
        delivery_id: String,
        /// Null when no HTTP answer came back.
        status_code: Option<u16>,
        error: Option<String>,
        duration_ms: i32,
    },
    Queued {
        /// Always false.
        success: bool,
        delivery_id: String,
        /// Always true.
        queued: bool,
    },
}

/// Send a test delivery to a webhook (admin keys).
#[utoipa::path(post, path = "/api/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, description = "The attempt", body = TestDelivery)))]
pub(crate) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<TestDelivery>, Error> {
    let test = state.service.test_webhook(&caller, &id).await?;
    let delivery_id = test.delivery_id.to_string();
    Ok(Json(match test.attempt {
        Some(a) => TestDelivery::Attempted {
            success: a.success,
            delivery_id,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        },
        None => TestDelivery::Queued {
            success: false,
            delivery_id,
            queued: true,
        },
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveriesQuery {
    /// 1-500, default 50.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

/// `GET /api/webhooks/:id/deliveries`.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryRow>,
    pub total: i64,
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryRow {
    pub id: i64,
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub ledger_seq: Option<i64>,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub success: bool,
    pub duration_ms: i32,
    pub attempted_at: String,
    /// The delivery's state now: pending, delivered, failed or cancelled.
    pub delivery_state: String,
}

/// A webhook's delivery attempts, newest first.
#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, description = "The attempts", body = DeliveryList)))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 500, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let (hook, attempts, total) = state
        .service
        .webhook_deliveries(&caller, &id, limit, offset)
        .await?;
    let deliveries = attempts
        .iter()
        .map(|a| DeliveryRow {
            id: a.id,
            delivery_id: a.delivery_id.clone(),
            webhook_id: hook.as_str().to_owned(),
            event_type: a.event_type.clone(),
            ledger_seq: a.ledger_seq,
            attempt: a.attempt,
            status_code: a.status_code,
            error: a.error.clone(),
            success: a.success,
            duration_ms: a.duration_ms,
            attempted_at: wire::ts(a.attempted_at),
            delivery_state: a.state.clone(),
        })
        .collect();
    Ok(Json(DeliveryList { deliveries, total }))
}
