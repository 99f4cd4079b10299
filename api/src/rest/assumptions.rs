//! Assumptions (contract 10.1-10.4): what an agent believed when it acted, validated or
//! invalidated later.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::action::Action;
use dashclaw_domain::assumption::{
    Assumption, AssumptionCommand, AssumptionError, AssumptionRecord,
};
use dashclaw_domain::ids::{ActionId, AssumptionId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::server::AppState;
use crate::service::random;
use crate::service::Caller;
use crate::service::{Actor, CommandError};
use crate::service::{Error, ErrorCode};
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/assumptions", get(list).post(register))
        .route("/api/actions/assumptions", get(list).post(register))
        .route("/api/assumptions/{id}", get(read).patch(update))
        .route("/api/actions/assumptions/{id}", get(read).patch(update))
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Assumption not found")
}

fn row(a: &AssumptionRecord) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("validated".into(), json!(u8::from(a.validated)));
        m.insert("invalidated".into(), json!(u8::from(a.invalidated)));
    }
    v
}

fn security() -> Value {
    json!({"clean": true, "findings_count": 0, "critical_count": 0, "categories": []})
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), Error> {
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
    let parent = match ActionId::parse(&action_id) {
        Ok(id) => {
            state
                .service
                .aggregates()
                .load::<Action>(&caller.org, id.as_str())
                .await?
                .record
        }
        Err(_) => None,
    };
    let Some(parent) = parent else {
        return Err(Error::new(ErrorCode::NotFound, "Parent action not found"));
    };
    let id = match assumption_id {
        Some(id) => AssumptionId::parse(&id).map_err(|e| Error::validation(vec![e.to_string()]))?,
        None => AssumptionId::random(random()?),
    };
    let record = AssumptionRecord {
        assumption_id: id.clone(),
        action_id: parent.action_id,
        assumption,
        basis,
        validated: false,
        invalidated: false,
        invalidated_reason: None,
        validated_at: None,
        invalidated_at: None,
        created_at: state.service.clock().now(),
    };
    let actor = Actor::of(&caller.principal, Some(&parent.agent_id));
    match state
        .service
        .aggregates()
        .execute::<Assumption>(
            &caller.org,
            id.as_str(),
            AssumptionCommand::Register(Box::new(record)),
            &actor,
        )
        .await
    {
        Ok(a) => {
            let r = a.record.ok_or_else(not_found)?;
            Ok((
                StatusCode::CREATED,
                Json(
                    json!({"assumption": row(&r), "assumption_id": r.assumption_id, "security": security()}),
                ),
            ))
        }
        Err(CommandError::Rejected(AssumptionError::AlreadyExists)) => Err(Error::new(
            ErrorCode::Conflict,
            "Assumption with this assumption_id already exists",
        )),
        Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
        Err(CommandError::Failed(e)) => Err(e),
    }
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<AssumptionRecord, Error> {
    let Ok(id) = AssumptionId::parse(id) else {
        return Err(not_found());
    };
    let a: Assumption = state
        .service
        .aggregates()
        .load(&caller.org, id.as_str())
        .await?;
    a.record.ok_or_else(not_found)
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let a = load(&state, &caller, &id).await?;
    let action: Action = state
        .service
        .aggregates()
        .load(&caller.org, a.action_id.as_str())
        .await?;
    let mut v = row(&a);
    if let (Value::Object(m), Some(act)) = (&mut v, action.record) {
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
    let now = state.service.clock().now();
    let command = if *validated {
        AssumptionCommand::Validate { now }
    } else {
        let Some(reason) = reason.filter(|r| !r.is_empty()) else {
            return Err(Error::bad_request(
                "invalidated_reason is required when invalidating an assumption",
            ));
        };
        AssumptionCommand::Invalidate { reason, now }
    };
    let a = load(&state, &caller, &id).await?;
    let actor = Actor::of(&caller.principal, None);
    match state
        .service
        .aggregates()
        .execute::<Assumption>(&caller.org, a.assumption_id.as_str(), command, &actor)
        .await
    {
        Ok(a) => {
            let r = a.record.ok_or_else(not_found)?;
            let mut body = json!({ "assumption": row(&r) });
            if !*validated {
                body["security"] = security();
            }
            Ok(Json(body))
        }
        Err(CommandError::Rejected(AssumptionError::AlreadyInvalidated)) => Err(Error::new(
            ErrorCode::Conflict,
            "Assumption is already invalidated",
        )),
        Err(CommandError::Rejected(AssumptionError::NotFound)) => Err(not_found()),
        Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
        Err(CommandError::Failed(e)) => Err(e),
    }
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
    state.service.projections().catch_up(&caller.org).await?;
    let docs: Vec<Value> = sqlx::query_scalar(
        "SELECT a.doc FROM assumptions a
           LEFT JOIN action_records r ON r.org_id = a.org_id AND r.action_id = a.action_id
          WHERE a.org_id = $1 AND ($2::text IS NULL OR a.action_id = $2)
            AND ($3::text IS NULL OR r.agent_id = $3)
            AND ($4::bool IS NULL OR (a.doc->>'validated')::bool = $4)
          ORDER BY a.created_at DESC LIMIT $5 OFFSET $6",
    )
    .bind(caller.org.as_str())
    .bind(&q.action_id)
    .bind(&q.agent_id)
    .bind(validated)
    .bind(limit)
    .bind(offset)
    .fetch_all(state.service.pool())
    .await?;
    let items: Vec<Value> = docs
        .into_iter()
        .filter_map(|d| serde_json::from_value::<AssumptionRecord>(d).ok())
        .map(|a| row(&a))
        .collect();
    Ok(Json(
        json!({"assumptions": items, "total": items.len(), "lastUpdated": wire::ts(state.service.clock().now())}),
    ))
}
