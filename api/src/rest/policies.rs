//! Guard policies (contract 9.1-9.2): list, create, update, delete; the operations are
//! [`Service::create_policy`](crate::service::Service) and its siblings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::policy_set::StoredPolicy;
use dashclaw_domain::OrgId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Params};
use crate::input::fields::object;
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/policies",
        get(list).post(create).patch(update).delete(remove),
    )
}

fn row(org: &OrgId, p: &StoredPolicy) -> Value {
    let policy = &p.policy;
    json!({
        "id": policy.id,
        "org_id": org.as_str(),
        "name": policy.name,
        "policy_type": policy.policy_type,
        "rules": serde_json::to_string(&policy.rules).unwrap_or_default(),
        "active": u8::from(policy.active),
        "agent_ids": policy.agent_ids.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default()),
        "created_by": p.created_by,
        "created_at": wire::ts(p.created_at),
        "updated_at": wire::ts(p.updated_at),
        "inert_warning": policy.inert_warning(),
    })
}

#[derive(Deserialize)]
struct ListQuery {
    agent_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, Error> {
    let policies = state
        .service
        .policies(&caller, q.agent_id.as_deref())
        .await?;
    let rows: Vec<Value> = policies.iter().map(|p| row(&caller.org, p)).collect();
    Ok(Json(json!({ "policies": rows })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), Error> {
    caller.require_admin("Admin access required")?;
    let new = crate::input::policies::new_policy(&object(&body)?)?;
    let stored = state.service.create_policy(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"policy": row(&caller.org, &stored), "policy_id": stored.policy.id})),
    ))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require_admin("Admin access required")?;
    let (id, changes) = crate::input::policies::policy_change(&object(&body)?)?;
    let stored = state.service.update_policy(&caller, &id, changes).await?;
    Ok(Json(json!({ "policy": row(&caller.org, &stored) })))
}

#[derive(Deserialize)]
struct DeleteQuery {
    id: Option<String>,
    ids: Option<String>,
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<Value>, Error> {
    caller.require_admin("Admin access required")?;
    let (ids, single) = match (&q.id, &q.ids) {
        (Some(id), _) => (vec![id.clone()], true),
        (None, Some(ids)) => (
            ids.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            false,
        ),
        (None, None) => (Vec::new(), false),
    };
    state.service.delete_policies(&caller, ids.clone()).await?;
    Ok(Json(if single {
        json!({"deleted": true, "id": ids[0]})
    } else {
        json!({"deleted": ids.len(), "ids": ids})
    }))
}
