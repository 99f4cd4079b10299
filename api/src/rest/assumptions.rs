//! Assumptions (contract 10.1-10.4): what an agent believed when it acted, validated or
//! invalidated later.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::ids::AssumptionId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::service::assumptions::{AssumptionFilter, NewAssumption, Verdict};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/assumptions", get(list).post(register))
        .route("/api/actions/assumptions", get(list).post(register))
        .route("/api/assumptions/{id}", get(read).patch(update))
        .route("/api/actions/assumptions/{id}", get(read).patch(update))
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let action_id = f.required_string("action_id", 128);
    let assumption = f.required_string("assumption", 2000);
    let basis = f.string("basis", 2000);
    let assumption_id = f.string("assumption_id", 128);
    f.boolean("validated");
    f.boolean("invalidated");
    f.string("invalidated_reason", 2000);
    f.finish()?;
    let (Some(action_id), Some(assumption)) = (action_id, assumption) else {
        return Err(Error::validation(vec!["action_id is required".into()]));
    };
    let assumption_id = assumption_id
        .map(|id| AssumptionId::parse(&id).map_err(|e| Error::validation(vec![e.to_string()])))
        .transpose()?;
    let new = NewAssumption {
        action_id,
        assumption,
        basis,
        assumption_id,
    };
    let r = state.service.register_assumption(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"assumption": wire::assumption_row(&r), "assumption_id": r.assumption_id, "security": wire::security()}),
        ),
    ))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let (a, action) = state.service.assumption(&caller, &id).await?;
    let mut v = wire::assumption_row(&a);
    if let (Value::Object(m), Some(act)) = (&mut v, action) {
        m.insert("agent_id".into(), json!(act.agent_id));
        m.insert("agent_name".into(), json!(act.agent_name));
        m.insert("declared_goal".into(), json!(act.declared_goal));
        m.insert("action_type".into(), json!(act.action_type));
        m.insert("action_status".into(), json!(act.status.as_str()));
    }
    Ok(Json(json!({ "assumption": v })))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let Some(Value::Bool(validated)) = body.get("validated") else {
        return Err(Error::bad_request(
            "validated is required and must be a boolean",
        ));
    };
    let reason = match body.get("invalidated_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > 2000 => {
            return Err(Error::bad_request(
                "invalidated_reason exceeds max length of 2000",
            ))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::bad_request("invalidated_reason must be a string")),
    };
    let verdict = if *validated {
        Verdict::Validated
    } else {
        Verdict::Invalidated(reason.unwrap_or_default())
    };
    let r = state
        .service
        .judge_assumption(&caller, &id, verdict)
        .await?;
    let mut body = json!({ "assumption": wire::assumption_row(&r) });
    if !*validated {
        body["security"] = wire::security();
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct ListQuery {
    validated: Option<String>,
    action_id: Option<String>,
    agent_id: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let validated = match q.validated.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(Error::validation(vec![
                "validated must be true or false".into()
            ]))
        }
    };
    let filter = AssumptionFilter {
        limit,
        offset,
        validated,
        action_id: q.action_id,
        agent_id: q.agent_id,
    };
    let items: Vec<Value> = state
        .service
        .assumptions(&caller, &filter)
        .await?
        .iter()
        .map(wire::assumption_row)
        .collect();
    Ok(Json(
        json!({"assumptions": items, "total": items.len(), "lastUpdated": wire::ts(state.service.clock().now())}),
    ))
}
