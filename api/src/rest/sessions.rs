//! Agent sessions (contract section 11; the SDK's `create_session`, `get_session`,
//! `update_session`, `list_sessions`, `get_session_events`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::session::{SessionChanges, SessionStatus, BRANCH_FRESHNESS, GREEN_LEVELS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::service::sessions::{NewSession, SessionFilter, SessionView};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::ts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", get(list).post(create))
        .route("/api/sessions/{id}", get(read).patch(update))
        .route("/api/sessions/{id}/events", get(events))
}

/// A session, with what its actions add up to.
#[derive(Serialize, ToSchema)]
pub struct SessionRow {
    pub id: String,
    pub org_id: String,
    pub agent_id: String,
    pub workspace: Option<String>,
    pub branch: Option<String>,
    /// running, idle, blocked, finished, completed, failed, cancelled or closed.
    pub status: String,
    pub status_since: String,
    pub blocked_reason: Option<String>,
    pub green_level: Option<String>,
    pub branch_freshness: Option<String>,
    pub commits_behind: Option<u32>,
    pub summary: Option<String>,
    /// The later of the last change and the last action.
    pub last_activity: String,
    pub created_at: String,
    pub updated_at: String,
    /// Actions that name the session, or (naming none) are its agent's within its lifetime.
    pub action_count: i64,
    pub last_action_at: Option<String>,
    pub total_cost: f64,
    pub max_risk: Option<i32>,
    pub last_outcome_status: Option<String>,
    pub last_status: Option<String>,
    pub last_declared_goal: Option<String>,
    /// Status changes, the start included.
    pub event_count: usize,
}

impl SessionRow {
    fn new(caller: &Caller, v: &SessionView) -> Self {
        let (r, a) = (&v.record, &v.activity);
        let last_activity = a
            .last_action_at
            .map_or(r.updated_at, |t| t.max(r.updated_at));
        Self {
            id: r.session_id.to_string(),
            org_id: caller.org.to_string(),
            agent_id: r.agent_id.clone(),
            workspace: r.workspace.clone(),
            branch: r.branch.clone(),
            status: r.status.as_str().to_owned(),
            status_since: ts(r.status_since),
            blocked_reason: r.blocked_reason.clone(),
            green_level: r.green_level.clone(),
            branch_freshness: r.branch_freshness.clone(),
            commits_behind: r.commits_behind,
            summary: r.summary.clone(),
            last_activity: ts(last_activity),
            created_at: ts(r.created_at),
            updated_at: ts(r.updated_at),
            action_count: a.action_count,
            last_action_at: a.last_action_at.map(ts),
            total_cost: a.total_cost,
            max_risk: a.max_risk,
            last_outcome_status: a.last_outcome_status.clone(),
            last_status: a.last_status.clone(),
            last_declared_goal: a.last_declared_goal.clone(),
            event_count: r.history.len(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    pub session: SessionRow,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionRow>,
}

/// One status change of a session.
#[derive(Serialize, ToSchema)]
pub struct SessionEventRow {
    /// `<session id>:<seq>`.
    pub id: String,
    pub session_id: String,
    pub org_id: String,
    pub seq: u32,
    /// The status entered.
    pub kind: String,
    /// The blocked reason, or the summary of a terminal status.
    pub detail: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionEvents {
    pub events: Vec<SessionEventRow>,
}

/// `POST /api/sessions`.
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "claude-code", "workspace": "/repo", "branch": "main"}))]
pub struct NewSessionBody {
    pub agent_id: String,
    pub workspace: Option<String>,
    pub branch: Option<String>,
}

/// `PATCH /api/sessions/:id`: at least one field.
#[derive(ToSchema)]
#[schema(example = json!({"status": "blocked", "blocked_reason": "waiting for CI"}))]
pub struct UpdateSessionBody {
    /// running, idle, blocked, finished, completed, failed, cancelled or closed (final).
    pub status: Option<String>,
    /// none, targeted, package, workspace or merge_ready.
    pub green_level: Option<String>,
    /// fresh, stale, diverged or unknown.
    pub branch_freshness: Option<String>,
    pub commits_behind: Option<u32>,
    pub blocked_reason: Option<String>,
    pub summary: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    agent_id: Option<String>,
    /// A session status.
    status: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// Start a session (status `running`).
#[utoipa::path(post, path = "/api/sessions", tag = "sessions", request_body = NewSessionBody,
    responses((status = 201, description = "Started", body = SessionBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<SessionBody>), Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let agent_id = f.string("agent_id", 128).filter(|a| !a.is_empty());
    let workspace = f.string("workspace", 1024);
    let branch = f.string("branch", 256);
    f.finish()?;
    let Some(agent_id) = agent_id else {
        return Err(Error::bad_request("agent_id is required"));
    };
    let new = NewSession {
        agent_id,
        workspace,
        branch,
    };
    let view = state.service.start_session(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionBody {
            session: SessionRow::new(&caller, &view),
        }),
    ))
}

/// One session with its aggregates.
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions", params(("id" = String, Path)),
    responses((status = 200, description = "The session", body = SessionBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<SessionBody>, Error> {
    let view = state.service.session(&caller, &id).await?;
    Ok(Json(SessionBody {
        session: SessionRow::new(&caller, &view),
    }))
}

/// Update a session; a status change is a session event; a closed session refuses (409).
#[utoipa::path(patch, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path)), request_body = UpdateSessionBody,
    responses((status = 200, description = "Updated", body = SessionBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<SessionBody>, Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let status = f.one_of("status", SessionStatus::ALL);
    let changes = SessionChanges {
        status: status.as_deref().and_then(SessionStatus::parse),
        green_level: f.one_of("green_level", GREEN_LEVELS),
        branch_freshness: f.one_of("branch_freshness", BRANCH_FRESHNESS),
        commits_behind: f.integer("commits_behind", 0, 1_000_000).map(|n| n as u32),
        blocked_reason: f.string("blocked_reason", 2000),
        summary: f.string("summary", 4000),
    };
    f.finish()?;
    let view = state.service.update_session(&caller, &id, changes).await?;
    Ok(Json(SessionBody {
        session: SessionRow::new(&caller, &view),
    }))
}

/// The org's sessions, most recently changed first.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions", params(ListQuery),
    responses((status = 200, description = "The sessions", body = SessionList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<SessionList>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(SessionStatus::parse(s).ok_or_else(|| {
            Error::validation(vec![format!(
                "status must be one of: {}",
                SessionStatus::ALL.join(", ")
            )])
        })?),
    };
    let filter = SessionFilter {
        agent_id: q.agent_id.filter(|a| !a.is_empty()),
        status,
        limit,
    };
    let views = state.service.sessions(&caller, &filter).await?;
    Ok(Json(SessionList {
        sessions: views.iter().map(|v| SessionRow::new(&caller, v)).collect(),
    }))
}

/// A session's status history (its start included), oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path)),
    responses((status = 200, description = "The events", body = SessionEvents)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<SessionEvents>, Error> {
    let r = state.service.load_session(&caller, &id).await?;
    Ok(Json(SessionEvents {
        events: r
            .history
            .iter()
            .map(|h| SessionEventRow {
                id: format!("{}:{}", r.session_id, h.seq),
                session_id: r.session_id.to_string(),
                org_id: caller.org.to_string(),
                seq: h.seq,
                kind: h.kind.as_str().to_owned(),
                detail: h.detail.clone(),
                created_at: ts(h.at),
            })
            .collect(),
    }))
}
