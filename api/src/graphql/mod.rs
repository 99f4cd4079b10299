//! GraphQL at `/graphql` (async-graphql 7.2): queries over the read models and the ledger for
//! dashboards and auditors, with GraphiQL on GET from a browser. Authenticated with the same
//! API keys as REST (readonly keys may query). Depth and complexity are limited. The SDL is
//! committed as `api/schema.graphql`; a test fails when it drifts.

use async_graphql::connection::{query, Connection, Edge};
use async_graphql::{
    ComplexObject, Context, Data, Enum, ErrorExtensions, InputObject, Json, Object, Schema,
    SimpleObject,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};

use dashclaw_domain::action::{Action, ActionRecord, ActionStatus, OutcomeStatus};
use dashclaw_domain::guard_decision::{GuardDecision, GuardDecisionRecord};
use dashclaw_domain::ids::ActionId;
use dashclaw_domain::policy_set::{PolicySet, POLICY_SET_ID};
use futures_util::Stream;
use serde_json::Value;

use crate::service::insight::{AnalyticsFilter, ANALYTICS_DAYS};
use crate::service::policies::NewPolicy;
use crate::service::Caller;
use crate::service::Error;
use crate::state::AppState;
use crate::wire::{self, AnalyticsBody, PostureBody, SimulationBody};
use dashclaw_domain::guard::Verdict;
use dashclaw_projections::read::actions::ActionFilter;
use dashclaw_projections::read::decisions::DecisionFilter as GuardDecisionFilter;
use dashclaw_projections::read::Page;
use dashclaw_store::chain::StoredEvent;

/// The schema type.
pub mod http;
mod integrity;
mod storable;

pub type DashclawSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted.
const MAX_DEPTH: usize = 10;
/// Costliest query accepted (one point per field; connections multiply by `first`).
const MAX_COMPLEXITY: usize = 2_000;
/// Largest page.
const MAX_PAGE: usize = 200;

/// The schema, without per-request data (the caller is added per request).
pub fn schema(state: AppState) -> DashclawSchema {
    Schema::build(Query::default(), Mutation, Subscription)
        .data(state)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(storable::StorableText)
        .finish()
}

/// The SDL of the schema (what `api/schema.graphql` must contain).
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation, Subscription)
        .finish()
        .sdl()
}

pub fn router(state: &AppState) -> Router<AppState> {
    let schema = schema(state.clone());
    let for_ws = schema.clone();
    Router::new()
        .route(
            "/graphql",
            get(http::graphiql).post(move |caller, headers, body| {
                http::execute(caller, headers, schema.clone(), body)
            }),
        )
        .route(
            "/graphql/ws",
            get(move |state, headers, protocol, upgrade| {
                subscribe(state, headers, protocol, upgrade, for_ws.clone())
            }),
        )
}

#[utoipa::path(get, path = "/graphql/ws", tag = "graphql",
    responses((status = 101, description = "Switching to a WebSocket of GraphQL subscriptions")))]
/// Subscriptions over WebSocket (graphql-ws and the older subscriptions-transport-ws). The
/// API key comes in the upgrade request's `x-api-key` header, or in the `connection_init`
/// payload (`{"x-api-key": "..."}`) for browsers, which cannot set headers on WebSockets.
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
    schema: DashclawSchema,
) -> Response {
    let from_header = match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(key) => match state.service.authenticate(key).await {
            Ok(caller) => Some(caller),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let caller = match from_header {
                        Some(caller) => caller,
                        None => {
                            let key = payload
                                .get("x-api-key")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            state.service.authenticate(key).await.map_err(gql)?
                        }
                    };
                    let mut data = Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

pub(crate) fn parts<'a>(ctx: &Context<'a>) -> async_graphql::Result<(&'a AppState, &'a Caller)> {
    Ok((ctx.data::<AppState>()?, ctx.data::<Caller>()?))
}

/// An API error as a GraphQL error, its code in `extensions.code` (the same closed set as
/// REST's `code`).
pub(crate) fn gql(e: Error) -> async_graphql::Error {
    let code = serde_json::to_value(e.code)
        .ok()
        .and_then(|c| c.as_str().map(str::to_owned))
        .unwrap_or_default();
    let details = e
        .details
        .map(|d| async_graphql::Value::from_json(d).unwrap_or_default());
    async_graphql::Error::new(e.error).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(details) = details {
            ext.set("details", details);
        }
    })
}

/// Lifecycle status of an action.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "snake_case")]
pub enum DecisionStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
    Pending,
    PendingApproval,
    Blocked,
    Expired,
    Unknown,
}

impl From<DecisionStatus> for ActionStatus {
    fn from(s: DecisionStatus) -> Self {
        match s {
            DecisionStatus::Running => Self::Running,
            DecisionStatus::Completed => Self::Completed,
            DecisionStatus::Failed => Self::Failed,
            DecisionStatus::Cancelled => Self::Cancelled,
            DecisionStatus::Pending => Self::Pending,
            DecisionStatus::PendingApproval => Self::PendingApproval,
            DecisionStatus::Blocked => Self::Blocked,
            DecisionStatus::Expired => Self::Expired,
            DecisionStatus::Unknown => Self::Unknown,
        }
    }
}

/// Filters of the decisions ledger; all optional, combined with AND.
#[derive(InputObject, Default)]
pub struct DecisionFilter {
    pub agent_id: Option<String>,
    pub action_type: Option<String>,
    pub status: Option<DecisionStatus>,
    /// completed, partial, failed, lost_confirmation or pending.
    pub outcome: Option<String>,
    pub risk_min: Option<i32>,
    pub risk_max: Option<i32>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One action record of the decisions ledger.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Decision {
    pub action_id: String,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub action_type: String,
    pub declared_goal: String,
    pub status: String,
    pub outcome_status: String,
    pub risk_score: i32,
    pub approved_by: Option<String>,
    pub timestamp_start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub guard_decision_id: String,
    /// The whole row, as `GET /api/actions/:id` shows it.
    pub record: wire::ActionRow,
    #[graphql(skip)]
    org: dashclaw_domain::OrgId,
}

impl Decision {
    fn new(org: &dashclaw_domain::OrgId, r: &ActionRecord) -> Self {
        Self {
            action_id: r.action_id.to_string(),
            agent_id: r.agent_id.clone(),
            agent_name: r.agent_name.clone(),
            action_type: r.action_type.clone(),
            declared_goal: r.declared_goal.clone(),
            status: r.status.as_str().to_owned(),
            outcome_status: r.outcome_status.as_str().to_owned(),
            risk_score: i32::from(r.risk_score),
            approved_by: r.approved_by.clone(),
            timestamp_start: r.timestamp_start,
            created_at: r.created_at,
            updated_at: r.updated_at,
            guard_decision_id: r.guard_decision_id.to_string(),
            record: wire::ActionRow::new(org, r),
            org: org.clone(),
        }
    }
}

#[ComplexObject]
impl Decision {
    /// Every ledger event of this action, in order.
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<LedgerEvent>> {
        let (state, caller) = parts(ctx)?;
        let rows = state
            .service
            .action_history(caller, &self.action_id)
            .await
            .map_err(gql)?;
        Ok(rows.into_iter().map(LedgerEvent::from).collect())
    }

    /// The guard decision the action was recorded under, with what a replay needs.
    async fn guard_decision(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<GuardDecisionObject>> {
        let (state, _) = parts(ctx)?;
        let d: GuardDecision = state
            .service
            .aggregates()
            .load(&self.org, &self.guard_decision_id)
            .await
            .map_err(gql)?;
        Ok(d.record.map(GuardDecisionObject::from))
    }
}

/// One guard evaluation.
#[derive(SimpleObject)]
pub struct GuardDecisionObject {
    pub decision_id: String,
    pub decision: String,
    pub risk_score: i32,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    pub matched_policies: Vec<String>,
    pub agent_id: Option<String>,
    pub action_type: String,
    /// SHA-256 of the policy set in force.
    pub policy_set_version: String,
    pub evaluated_at: DateTime<Utc>,
    /// The recorded inputs (replay data).
    pub request: GuardRequestObject,
    /// How the risk score was derived.
    pub risk_breakdown: RiskBreakdownObject,
}

/// A guard request as recorded: what a replay re-evaluates.
#[derive(SimpleObject)]
#[graphql(name = "GuardRequest")]
pub struct GuardRequestObject {
    pub action_type: String,
    pub declared_goal: Option<String>,
    /// Client-reported, 0-100; can only raise risk.
    pub risk_score: Option<i32>,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub systems_touched: Vec<String>,
    pub reversible: Option<bool>,
    pub target: Option<String>,
    pub write_paths: Vec<String>,
    pub client_capabilities: Vec<String>,
    /// SHA-256 of the act the decision is bound to.
    pub act_hash: Option<String>,
}

/// The derivation of a risk score: a base for the action type, additive modifiers, the
/// client's score (which can only raise it), and the score policies were judged on.
#[derive(SimpleObject)]
#[graphql(name = "RiskBreakdown")]
pub struct RiskBreakdownObject {
    pub base_action_type: String,
    pub base_score: i32,
    pub modifiers: Vec<RiskModifierObject>,
    /// clamp(base + the modifiers, 0, 100).
    pub server_total: i32,
    pub client_reported: Option<i32>,
    /// max(server total, client reported).
    pub effective: i32,
    /// The score policies are judged on.
    #[graphql(name = "final")]
    pub final_score: i32,
}

/// One additive term of a risk score.
#[derive(SimpleObject)]
#[graphql(name = "RiskModifier")]
pub struct RiskModifierObject {
    pub factor: String,
    pub delta: i32,
}

fn risk_breakdown(r: &dashclaw_domain::guard::RiskBreakdown) -> RiskBreakdownObject {
    RiskBreakdownObject {
        base_action_type: r.base.action_type.clone(),
        base_score: i32::from(r.base.score),
        modifiers: r
            .modifiers
            .iter()
            .map(|m| RiskModifierObject {
                factor: m.factor.clone(),
                delta: m.delta,
            })
            .collect(),
        server_total: i32::from(r.server_total),
        client_reported: r.client_reported.map(i32::from),
        effective: i32::from(r.effective),
        final_score: i32::from(r.final_score),
    }
}

impl From<GuardDecisionRecord> for GuardDecisionObject {
    fn from(d: GuardDecisionRecord) -> Self {
        Self {
            decision_id: d.decision_id.to_string(),
            decision: d.evaluation.decision.as_str().to_owned(),
            risk_score: i32::from(d.evaluation.risk_score),
            reasons: d.evaluation.reasons.clone(),
            warnings: d.evaluation.warnings.clone(),
            matched_policies: d.evaluation.matched_policies.clone(),
            agent_id: d.request.agent_id.clone(),
            action_type: d.request.action_type.clone(),
            policy_set_version: d.policy_set_version.clone(),
            evaluated_at: d.evaluated_at,
            risk_breakdown: risk_breakdown(&d.evaluation.risk_breakdown),
            request: GuardRequestObject {
                action_type: d.request.action_type,
                declared_goal: d.request.declared_goal,
                risk_score: d.request.risk_score.map(i32::from),
                agent_id: d.request.agent_id,
                agent_name: d.request.agent_name,
                systems_touched: d.request.systems_touched,
                reversible: d.request.reversible,
                target: d.request.target,
                write_paths: d.request.write_paths,
                client_capabilities: d.request.client_capabilities,
                act_hash: d.request.act_hash,
            },
        }
    }
}

/// One event of an org's chain, as stored (its inclusion proof in [`integrity`]).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct LedgerEvent {
    pub ledger_seq: i64,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_seq: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Json<Value>,
    pub metadata: Json<Value>,
    pub prev_hash: String,
    pub hash: String,
    pub recorded_at: DateTime<Utc>,
}

impl From<StoredEvent> for LedgerEvent {
    fn from(e: StoredEvent) -> Self {
        Self {
            ledger_seq: e.ledger_seq,
            stream_type: e.aggregate_type,
            stream_id: e.aggregate_id,
            stream_seq: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            // The stored JSON text as it is (PostgreSQL's jsonb could not hold every payload
            // an old server accepted; JSON output can).
            payload: Json(serde_json::from_str(&e.payload).unwrap_or(Value::String(e.payload))),
            metadata: Json(serde_json::from_str(&e.metadata).unwrap_or(Value::String(e.metadata))),
            prev_hash: e.prev_hash,
            hash: e.hash,
            recorded_at: e.recorded_at,
        }
    }
}

/// A guard policy of the org.
#[derive(SimpleObject)]
pub struct PolicyObject {
    pub id: String,
    pub name: String,
    pub policy_type: String,
    pub rules: Json<Value>,
    pub active: bool,
    pub agent_ids: Option<Vec<String>>,
    /// Set when the policy is active but its type is not enforced.
    pub inert_warning: Option<String>,
}

/// The org's kill switch.
#[derive(SimpleObject)]
pub struct HaltObject {
    pub halted: bool,
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// A new policy.
#[derive(InputObject)]
pub struct PolicyInput {
    pub name: String,
    pub policy_type: String,
    /// A JSON object; its shape depends on the policy type.
    pub rules: Json<Value>,
    pub active: Option<bool>,
    /// Agents the policy applies to (all when absent).
    pub agent_ids: Option<Vec<String>>,
}

/// Changes to a policy; absent fields stay as they are.
#[derive(InputObject)]
pub struct PolicyPatch {
    pub name: Option<String>,
    pub policy_type: Option<String>,
    pub rules: Option<Json<Value>>,
    pub active: Option<bool>,
    pub agent_ids: Option<Vec<String>>,
}

fn policy_object(p: dashclaw_domain::policy_set::StoredPolicy) -> PolicyObject {
    PolicyObject {
        inert_warning: p.policy.inert_warning(),
        id: p.policy.id,
        name: p.policy.name,
        policy_type: p.policy.policy_type,
        rules: Json(p.policy.rules),
        active: p.policy.active,
        agent_ids: p.policy.agent_ids,
    }
}

fn rules_of(v: &Value) -> async_graphql::Result<Value> {
    let mut errors = Vec::new();
    crate::input::policies::rules(v, &mut errors).ok_or_else(|| gql(Error::validation(errors)))
}

/// Operators' commands: the same commands as REST, so the same rules and the same events.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Releases a held action (admin; nobody approves their own action).
    async fn approve(
        &self,
        ctx: &Context<'_>,
        action_id: String,
        reasoning: Option<String>,
    ) -> async_graphql::Result<Decision> {
        let (state, caller) = parts(ctx)?;
        let r = state
            .service
            .decide_approval(caller, &action_id, true, reasoning)
            .await
            .map_err(gql)?;
        Ok(Decision::new(&caller.org, &r))
    }

    /// Refuses a held action (admin).
    async fn deny(
        &self,
        ctx: &Context<'_>,
        action_id: String,
        reasoning: Option<String>,
    ) -> async_graphql::Result<Decision> {
        let (state, caller) = parts(ctx)?;
        let r = state
            .service
            .decide_approval(caller, &action_id, false, reasoning)
            .await
            .map_err(gql)?;
        Ok(Decision::new(&caller.org, &r))
    }

    /// Halts (every guard call then blocks) or resumes the org (admin).
    async fn set_halt(
        &self,
        ctx: &Context<'_>,
        halted: bool,
        reason: Option<String>,
    ) -> async_graphql::Result<HaltObject> {
        let (state, caller) = parts(ctx)?;
        let halt = state
            .service
            .set_halt(caller, halted, reason)
            .await
            .map_err(gql)?;
        Ok(match halt {
            Some(h) => HaltObject {
                halted: h.halted,
                actor: Some(h.actor),
                reason: h.reason,
                at: Some(h.at),
            },
            None => HaltObject {
                halted: false,
                actor: None,
                reason: None,
                at: None,
            },
        })
    }

    /// Adds a policy (admin).
    async fn create_policy(
        &self,
        ctx: &Context<'_>,
        input: PolicyInput,
    ) -> async_graphql::Result<PolicyObject> {
        let (state, caller) = parts(ctx)?;
        caller.require_admin("Admin access required").map_err(gql)?;
        let new = NewPolicy {
            name: input.name,
            policy_type: input.policy_type,
            rules: rules_of(&input.rules.0)?,
            active: input.active.unwrap_or(true),
            agent_ids: input.agent_ids,
        };
        let stored = state
            .service
            .create_policy(caller, new)
            .await
            .map_err(gql)?;
        Ok(policy_object(stored))
    }

    /// Changes a policy (admin).
    async fn update_policy(
        &self,
        ctx: &Context<'_>,
        id: String,
        patch: PolicyPatch,
    ) -> async_graphql::Result<PolicyObject> {
        let (state, caller) = parts(ctx)?;
        caller.require_admin("Admin access required").map_err(gql)?;
        let changes = dashclaw_domain::policy_set::PolicyChanges {
            name: patch.name,
            policy_type: patch.policy_type,
            rules: patch.rules.map(|r| rules_of(&r.0)).transpose()?,
            active: patch.active,
            agent_ids: patch.agent_ids.map(|ids| (!ids.is_empty()).then_some(ids)),
        };
        let stored = state
            .service
            .update_policy(caller, &id, changes)
            .await
            .map_err(gql)?;
        Ok(policy_object(stored))
    }

    /// Removes a policy (admin).
    async fn delete_policy(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        let (state, caller) = parts(ctx)?;
        state
            .service
            .delete_policies(caller, vec![id])
            .await
            .map_err(gql)?;
        Ok(true)
    }
}

/// An agent seen in the org's actions.
#[derive(SimpleObject)]
pub struct AgentObject {
    pub agent_id: String,
    pub actions: i64,
    pub last_action_at: Option<DateTime<Utc>>,
    pub avg_risk: f64,
}

/// One live event of the org's ledger, as SSE shows it.
#[derive(SimpleObject, Clone)]
pub struct LiveEventObject {
    pub ledger_seq: i64,
    /// `action.created`, `action.updated`, `guard.decision.created`, `signal.detected`,
    /// `policy.updated`.
    pub name: String,
    pub data: Json<Value>,
}

/// The caller's org's live events, from the ledger tail (so from every node).
fn org_events(state: &AppState, caller: &Caller) -> impl Stream<Item = LiveEventObject> + use<> {
    let subscription = state.service.tail().subscribe(&caller.org);
    let org = caller.org.clone();
    futures_util::stream::unfold((subscription, org), |(mut sub, org)| async move {
        loop {
            match sub.receiver.recv().await {
                Ok(e) if e.org == org => {
                    let (name, data) = crate::wire::live_event(&e);
                    let item = LiveEventObject {
                        ledger_seq: e.ledger_seq as i64,
                        name: name.to_owned(),
                        data: Json(data),
                    };
                    return Some((item, (sub, org)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The approvals queue of the caller's org, oldest first.
async fn pending_approvals(
    state: &AppState,
    caller: &Caller,
) -> async_graphql::Result<Vec<Decision>> {
    let queue = state.service.approval_queue(caller).await.map_err(gql)?;
    Ok(queue
        .iter()
        .map(|r| Decision::new(&caller.org, r))
        .collect())
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// Every new event of the org's ledger, committed on any node.
    async fn ledger(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = LiveEventObject>> {
        let (state, caller) = parts(ctx)?;
        Ok(org_events(state, caller))
    }

    /// The approvals queue: sent at once, then again whenever an action of the org changes.
    async fn approvals_queue(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = Vec<Decision>>> {
        let (state, caller) = parts(ctx)?;
        let (state, caller) = (state.clone(), caller.clone());
        let changes = org_events(&state, &caller);
        let first = pending_approvals(&state, &caller).await?;
        let rest = futures_util::StreamExt::filter_map(changes, move |e| {
            let (state, caller) = (state.clone(), caller.clone());
            async move {
                if e.name.starts_with("action.") {
                    pending_approvals(&state, &caller).await.ok()
                } else {
                    None
                }
            }
        });
        Ok(futures_util::StreamExt::chain(
            futures_util::stream::iter([first]),
            rest,
        ))
    }
}

/// Every query: the read models and the ledger here, its proofs in [`integrity`].
#[derive(async_graphql::MergedObject, Default)]
pub struct Query(LedgerQuery, integrity::IntegrityQuery);

#[derive(Default)]
pub struct LedgerQuery;

#[Object]
impl LedgerQuery {
    /// The decisions ledger (action records), newest first, as a Relay connection.
    async fn decisions(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        filter: Option<DecisionFilter>,
    ) -> async_graphql::Result<Connection<usize, Decision>> {
        let (state, caller) = parts(ctx)?;
        let filter = filter.unwrap_or_default();
        query(after, None, first, None, |after, _, first, _| async move {
            let start = after.map_or(0, |a: usize| a + 1);
            let size = first.unwrap_or(50).min(MAX_PAGE);
            let read_filter = ActionFilter {
                agent_id: filter.agent_id.clone(),
                action_type: filter.action_type.clone(),
                status: filter.status.map(ActionStatus::from),
                outcome_status: filter.outcome.as_deref().and_then(OutcomeStatus::parse),
                risk_min: filter.risk_min,
                risk_max: filter.risk_max,
                since: filter.since,
                until: filter.until,
                ..Default::default()
            };
            if filter.outcome.is_some() && read_filter.outcome_status.is_none() {
                // An outcome that no action can have matches nothing.
                return Ok::<_, async_graphql::Error>(Connection::new(start > 0, false));
            }
            let page = Page {
                limit: size as i64 + 1,
                offset: start as i64,
            };
            let records = state
                .service
                .action_page(caller, read_filter, page)
                .await
                .map_err(gql)?;
            let has_next = records.len() > size;
            let mut connection = Connection::new(start > 0, has_next);
            connection.edges.extend(
                records
                    .iter()
                    .take(size)
                    .enumerate()
                    .map(|(i, r)| Edge::new(start + i, Decision::new(&caller.org, r))),
            );
            Ok::<_, async_graphql::Error>(connection)
        })
        .await
    }

    /// One action record, read from the ledger (exact even before projections catch up).
    async fn decision(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Decision>> {
        let (state, caller) = parts(ctx)?;
        let Ok(id) = ActionId::parse(&id) else {
            return Ok(None);
        };
        let action: Action = state
            .service
            .aggregates()
            .load(&caller.org, id.as_str())
            .await
            .map_err(gql)?;
        Ok(action.record.map(|r| Decision::new(&caller.org, &r)))
    }

    /// The approvals queue: actions waiting for a human, oldest first.
    async fn approvals(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Decision>> {
        let (state, caller) = parts(ctx)?;
        pending_approvals(state, caller).await
    }

    /// Guard decisions, newest first.
    async fn guard_decisions(
        &self,
        ctx: &Context<'_>,
        agent_id: Option<String>,
        decision: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<GuardDecisionObject>> {
        let (state, caller) = parts(ctx)?;
        let limit = first.unwrap_or(50).clamp(1, MAX_PAGE as i32);
        let verdict = decision.as_deref().map(Verdict::parse);
        if verdict == Some(None) {
            // A verdict no decision can have matches nothing.
            return Ok(Vec::new());
        }
        let filter = GuardDecisionFilter {
            agent_id,
            decision: verdict.flatten(),
            days: None,
        };
        let page = Page::first(i64::from(limit));
        let records = state
            .service
            .decision_page(caller, &filter, page)
            .await
            .map_err(gql)?;
        Ok(records.into_iter().map(GuardDecisionObject::from).collect())
    }

    /// The org's policy set.
    async fn policies(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PolicyObject>> {
        let (state, caller) = parts(ctx)?;
        let set: PolicySet = state
            .service
            .aggregates()
            .load(&caller.org, POLICY_SET_ID)
            .await
            .map_err(gql)?;
        Ok(set.policies.into_iter().map(policy_object).collect())
    }

    /// Events of the org's chain after `after` (a `ledgerSeq`), in order.
    async fn ledger_events(
        &self,
        ctx: &Context<'_>,
        after: Option<i64>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<LedgerEvent>> {
        let (state, caller) = parts(ctx)?;
        let after = after.unwrap_or(0).max(0) as u64;
        let limit = i64::from(first.unwrap_or(50).clamp(1, MAX_PAGE as i32));
        let rows = state
            .service
            .ledger_events(caller, after, limit)
            .await
            .map_err(gql)?;
        Ok(rows.into_iter().map(LedgerEvent::from).collect())
    }

    /// The posture score of the org's real traffic under its current policies, with findings
    /// (worst first) and the daily trend (the body of `GET /api/posture`).
    async fn posture(&self, ctx: &Context<'_>) -> async_graphql::Result<PostureBody> {
        let (state, caller) = parts(ctx)?;
        let report = state.service.posture(caller).await.map_err(gql)?;
        Ok(PostureBody::from(&report))
    }

    /// Replays a proposed policy (`policyType`, `rules`) over the guard requests recorded in
    /// the last `days` (default 7, at most 90) and reports what it alone would have decided;
    /// no side effects (the body of `POST /api/policies/simulate`).
    async fn simulate_policy(
        &self,
        ctx: &Context<'_>,
        policy_type: String,
        rules: Json<Value>,
        days: Option<i32>,
    ) -> async_graphql::Result<SimulationBody> {
        let (state, caller) = parts(ctx)?;
        let days = i64::from(days.unwrap_or(7));
        let report = state
            .service
            .simulate_policy(caller, &policy_type, rules.0, days)
            .await
            .map_err(gql)?;
        Ok(SimulationBody::from(&report))
    }

    /// Volume, cost, enforcement and approval analytics with per-day series (the body of
    /// `GET /api/analytics`; `days` 1-365, default 30).
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        days: Option<i32>,
        agent_id: Option<String>,
        action_type: Option<String>,
    ) -> async_graphql::Result<AnalyticsBody> {
        let (state, caller) = parts(ctx)?;
        let filter = AnalyticsFilter {
            days: i64::from(days.unwrap_or(30))
                .clamp(*ANALYTICS_DAYS.start(), *ANALYTICS_DAYS.end()),
            agent_id,
            action_type,
        };
        let report = state
            .service
            .analytics(caller, &filter)
            .await
            .map_err(gql)?;
        Ok(AnalyticsBody::from(&report))
    }

    /// The agents that have recorded actions, most active first.
    async fn agents(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AgentObject>> {
        let (state, caller) = parts(ctx)?;
        let agents = state.service.agents(caller).await.map_err(gql)?;
        Ok(agents
            .into_iter()
            .map(|a| AgentObject {
                agent_id: a.agent_id,
                actions: a.actions,
                last_action_at: a.last_action_at,
                avg_risk: a.avg_risk.unwrap_or(0.0),
            })
            .collect())
    }
}
