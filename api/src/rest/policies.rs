//! Guard policies (contract 9.1-9.2): list, create, update, delete; the operations are
//! [`Service::create_policy`](crate::service::Service) and its siblings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::policy_set::StoredPolicy;
use dashclaw_domain::OrgId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// A guard policy as DashClaw's row shows it (contract 9.1).
#[derive(Serialize, ToSchema)]
pub struct PolicyRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub policy_type: String,
    /// The rules object, as a JSON string.
    pub rules: String,
    /// 0 or 1.
    pub active: u8,
    /// The agent ids, as a JSON string array; null: every agent.
    pub agent_ids: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Why the policy can never match, when it cannot.
    pub inert_warning: Option<String>,
}

impl PolicyRow {
    pub(crate) fn new(org: &OrgId, p: &StoredPolicy) -> Self {
        let policy = &p.policy;
        Self {
            id: policy.id.clone(),
            org_id: org.as_str().to_owned(),
            name: policy.name.clone(),
            policy_type: policy.policy_type.clone(),
            rules: serde_json::to_string(&policy.rules).unwrap_or_default(),
            active: u8::from(policy.active),
            agent_ids: policy
                .agent_ids
                .as_ref()
                .map(|a| serde_json::to_string(a).unwrap_or_default()),
            created_by: p.created_by.clone(),
            created_at: wire::ts(p.created_at),
            updated_at: wire::ts(p.updated_at),
            inert_warning: policy.inert_warning(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only the policies that apply to this agent.
    agent_id: Option<String>,
}

/// `GET /api/policies`.
#[derive(Serialize, ToSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyRow>,
}

/// The org's guard policies.
#[utoipa::path(get, path = "/api/policies", tag = "policies", params(ListQuery),
    responses((status = 200, description = "The policies", body = PolicyList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<PolicyList>, Error> {
    let policies = state
        .service
        .policies(&caller, q.agent_id.as_deref())
        .await?;
    Ok(Json(PolicyList {
        policies: policies
            .iter()
            .map(|p| PolicyRow::new(&caller.org, p))
            .collect(),
    }))
}

/// `POST /api/policies`.
#[derive(Serialize, ToSchema)]
pub struct CreatedPolicy {
    pub policy: PolicyRow,
    pub policy_id: String,
}

/// Create a guard policy (admin keys).
#[utoipa::path(post, path = "/api/policies", tag = "policies",
    request_body = crate::rest::requests::NewPolicyBody,
    responses((status = 201, description = "Created", body = CreatedPolicy)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<CreatedPolicy>), Error> {
    caller.require_admin("Admin access required")?;
    let new = crate::input::policies::new_policy(&object(&body)?)?;
    let stored = state.service.create_policy(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPolicy {
            policy: PolicyRow::new(&caller.org, &stored),
            policy_id: stored.policy.id.clone(),
        }),
    ))
}

/// `PATCH /api/policies`.
#[derive(Serialize, ToSchema)]
pub struct UpdatedPolicy {
    pub policy: PolicyRow,
}

/// Change a guard policy (admin keys).
#[utoipa::path(patch, path = "/api/policies", tag = "policies",
    request_body = crate::rest::requests::PolicyChangeBody,
    responses((status = 200, description = "Changed", body = UpdatedPolicy)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<UpdatedPolicy>, Error> {
    caller.require_admin("Admin access required")?;
    let (id, changes) = crate::input::policies::policy_change(&object(&body)?)?;
    let stored = state.service.update_policy(&caller, &id, changes).await?;
    Ok(Json(UpdatedPolicy {
        policy: PolicyRow::new(&caller.org, &stored),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// One policy.
    id: Option<String>,
    /// Several, comma-separated.
    ids: Option<String>,
}

/// `DELETE /api/policies`: `{deleted: true, id}` for `?id=`, `{deleted: n, ids}` for `?ids=`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum DeletedPolicies {
    One { deleted: bool, id: String },
    Several { deleted: usize, ids: Vec<String> },
}

/// Delete guard policies (admin keys).
#[utoipa::path(delete, path = "/api/policies", tag = "policies", params(DeleteQuery),
    responses((status = 200, description = "Deleted", body = DeletedPolicies)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<DeletedPolicies>, Error> {
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
    Ok(Json(match (single, ids.first()) {
        (true, Some(id)) => DeletedPolicies::One {
            deleted: true,
            id: id.clone(),
        },
        _ => DeletedPolicies::Several {
            deleted: ids.len(),
            ids,
        },
    }))
}
