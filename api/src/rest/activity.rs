//! `GET /api/activity`: the org's activity log (contract 17; DashClaw's demo shape), answered
//! from the ledger itself: every event is an activity, newest first, with its actor, the
//! entity it changed and its payload as details.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_store::chain::{ActivityFilter, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::Params;
use crate::rest::clamp_param;
use crate::service::{Caller, Error};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/activity", get(activity))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityQuery {
    /// Only events whose metadata names this agent.
    agent_id: Option<String>,
    /// Only events of this kind: an entity type (`action`, `guard_decision`, `policy_set`,
    /// `assumption`, `api_key`, `org_settings`, `webhook`) or an event type
    /// (`ActionApprovalGranted`).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Default 50, at most 200.
    limit: Option<String>,
    /// Default 0.
    offset: Option<String>,
}

/// One event as an activity.
#[derive(Serialize, ToSchema)]
pub struct ActivityLog {
    /// The event's `ledger_seq`, as text.
    pub id: String,
    pub ledger_seq: i64,
    /// The event type, e.g. `ActionApprovalGranted`.
    pub action: String,
    /// The entity type, e.g. `Action`.
    pub resource_type: String,
    /// The entity's id, e.g. `act_…`.
    pub resource_id: String,
    /// Who caused it: a key (`key_…`), the bootstrap operator, or a sweep.
    pub actor_id: Option<String>,
    pub agent_id: Option<String>,
    /// The event's payload.
    #[schema(value_type = Object)]
    pub details: Value,
    /// The event's chain hash.
    pub hash: String,
    pub created_at: DateTime<Utc>,
}

impl ActivityLog {
    fn of(e: StoredEvent) -> Self {
        let metadata: Value = serde_json::from_str(&e.metadata).unwrap_or(Value::Null);
        let text = |key: &str| metadata[key].as_str().map(str::to_owned);
        Self {
            id: e.ledger_seq.to_string(),
            ledger_seq: e.ledger_seq,
            resource_id: e
                .aggregate_id
                .split_once('/')
                .map_or(e.aggregate_id.clone(), |(_, id)| id.to_owned()),
            resource_type: e.aggregate_type,
            action: e.event_type,
            actor_id: text("actor"),
            agent_id: text("agent_id"),
            details: serde_json::from_str(&e.payload).unwrap_or(Value::String(e.payload)),
            hash: e.hash,
            created_at: e.recorded_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ActivityStats {
    /// Events matching the filters.
    pub total: u64,
    /// Of those, recorded since midnight UTC.
    pub today: u64,
    /// Distinct actors among them.
    pub unique_actors: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ActivityPagination {
    pub limit: i64,
    pub offset: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ActivityBody {
    pub logs: Vec<ActivityLog>,
    pub stats: ActivityStats,
    pub pagination: ActivityPagination,
}

/// `guard_decision` -> `GuardDecision`; an event type (already capitalised) stays as it is.
fn kind(raw: &str) -> String {
    if raw.starts_with(|c: char| c.is_ascii_uppercase()) {
        return raw.to_owned();
    }
    raw.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The org's activity log, newest first: every event on its chain.
#[utoipa::path(get, path = "/api/activity", tag = "ledger",
    params(ActivityQuery),
    responses((status = 200, description = "One page of the activity log", body = ActivityBody)))]
pub(crate) async fn activity(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ActivityQuery>,
) -> Result<Json<ActivityBody>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let filter = ActivityFilter {
        agent_id: q.agent_id.filter(|a| !a.is_empty()),
        kind: q.kind.as_deref().filter(|k| !k.is_empty()).map(kind),
    };
    let page = state
        .service
        .activity(&caller, &filter, limit, offset)
        .await?;
    Ok(Json(ActivityBody {
        logs: page.events.into_iter().map(ActivityLog::of).collect(),
        stats: ActivityStats {
            total: page.total,
            today: page.today,
            unique_actors: page.unique_actors,
        },
        pagination: ActivityPagination { limit, offset },
    }))
}
