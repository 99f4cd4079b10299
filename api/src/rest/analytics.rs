//! `GET /api/analytics`: volume, tokens and cost (from the model pricing table when an
//! action reported none), enforcement counts, and approval rates and time-to-decision, per
//! day, agent and action type, from the analytics read models (projections/src/analytics.rs).
//! Days are UTC calendar days: `days=N` covers the N days up to today.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use dashclaw_domain::pricing;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::Params;
use crate::rest::clamp_param;
use crate::server::AppState;
use crate::service::Caller;
use crate::service::Error;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/analytics", get(analytics))
}

#[derive(Deserialize, Default)]
pub struct AnalyticsQuery {
    pub days: Option<String>,
    pub agent_id: Option<String>,
    pub action_type: Option<String>,
}

/// One (day, agent, action type, model) group of actions.
#[derive(sqlx::FromRow)]
struct Group {
    day: NaiveDate,
    agent_id: String,
    action_type: String,
    model: Option<String>,
    actions: i64,
    completed: i64,
    failed: i64,
    blocked: i64,
    held: i64,
    approved: i64,
    denied: i64,
    expired: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_reported: f64,
    unpriced_tokens_in: i64,
    unpriced_tokens_out: i64,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    actions: i64,
    completed: i64,
    failed: i64,
    blocked: i64,
    held: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_usd: f64,
    unpriced_tokens: i64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.actions += o.actions;
        self.completed += o.completed;
        self.failed += o.failed;
        self.blocked += o.blocked;
        self.held += o.held;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_usd += o.cost_usd;
        self.unpriced_tokens += o.unpriced_tokens;
    }

    fn json(&self) -> Value {
        json!({
            "actions": self.actions, "completed": self.completed, "failed": self.failed,
            "blocked": self.blocked, "approvals_requested": self.held,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "cost_usd": (self.cost_usd * 1e6).round() / 1e6,
            "unpriced_tokens": self.unpriced_tokens,
        })
    }
}

fn rate(part: i64, whole: i64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!((part as f64 / whole as f64 * 1e4).round() / 1e4)
    }
}

async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AnalyticsQuery>,
) -> Result<Json<Value>, Error> {
    Ok(Json(analytics_of(&state, &caller, &q).await?))
}

/// The org's analytics (REST and GraphQL).
pub async fn analytics_of(
    state: &AppState,
    caller: &Caller,
    q: &AnalyticsQuery,
) -> Result<Value, Error> {
    let days = clamp_param(q.days.as_deref(), 30, 1, 365, "days")?;
    let since = (state.service.clock().now() - chrono::Duration::days(days - 1)).date_naive();
    state.service.projections().catch_up(&caller.org).await?;
    let org = caller.org.as_str();

    let groups: Vec<Group> = sqlx::query_as(
        "SELECT day, agent_id, action_type, NULLIF(model, '') AS model,
                sum(actions)::int8 AS actions, sum(completed)::int8 AS completed,
                sum(failed)::int8 AS failed, sum(blocked)::int8 AS blocked,
                sum(held)::int8 AS held, sum(approved)::int8 AS approved,
                sum(denied)::int8 AS denied, sum(expired)::int8 AS expired,
                sum(tokens_in)::int8 AS tokens_in, sum(tokens_out)::int8 AS tokens_out,
                (sum(cost_reported_micro_usd) / 1e6)::float8 AS cost_reported,
                sum(unpriced_tokens_in)::int8 AS unpriced_tokens_in,
                sum(unpriced_tokens_out)::int8 AS unpriced_tokens_out
           FROM analytics_actions
          WHERE org_id = $1 AND day >= $2
            AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR action_type = $4)
          GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3",
    )
    .bind(org)
    .bind(since)
    .bind(&q.agent_id)
    .bind(&q.action_type)
    .fetch_all(state.service.pool())
    .await?;

    let mut total = Totals::default();
    let mut by_day: BTreeMap<(NaiveDate, String, String), Totals> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_type: BTreeMap<String, Totals> = BTreeMap::new();
    let (mut requested, mut approved, mut denied, mut expired) = (0, 0, 0, 0);
    for g in groups {
        requested += g.held;
        approved += g.approved;
        denied += g.denied;
        expired += g.expired;
        // Actions that reported no cost are priced from their tokens and model.
        let (uin, uout) = (g.unpriced_tokens_in, g.unpriced_tokens_out);
        let priced = g
            .model
            .as_deref()
            .and_then(|m| pricing::cost(m, uin.max(0) as u64, uout.max(0) as u64));
        let t = Totals {
            actions: g.actions,
            completed: g.completed,
            failed: g.failed,
            blocked: g.blocked,
            held: g.held,
            tokens_in: g.tokens_in,
            tokens_out: g.tokens_out,
            cost_usd: g.cost_reported + priced.unwrap_or(0.0),
            unpriced_tokens: if priced.is_some() { 0 } else { uin + uout },
        };
        let (day, agent, kind) = (g.day, g.agent_id, g.action_type);
        total.add(&t);
        by_day
            .entry((day, agent.clone(), kind.clone()))
            .or_default()
            .add(&t);
        by_agent.entry(agent).or_default().add(&t);
        by_type.entry(kind).or_default().add(&t);
    }

    let enforcement: Vec<(String, i64)> = sqlx::query_as(
        "SELECT decision, sum(decisions)::int8 FROM analytics_decisions
          WHERE org_id = $1 AND day >= $2 AND ($3::text IS NULL OR agent_id = $3)
          GROUP BY 1",
    )
    .bind(org)
    .bind(since)
    .bind(&q.agent_id)
    .fetch_all(state.service.pool())
    .await?;
    let count = |d: &str| {
        enforcement
            .iter()
            .find(|(k, _)| k == d)
            .map_or(0, |(_, n)| *n)
    };

    type Percentiles = (Option<f64>, Option<f64>, Option<f64>);
    let (p50, p90, p99): Percentiles = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds)
           FROM analytics_approvals
          WHERE org_id = $1 AND day >= $2
            AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR action_type = $4)",
    )
    .bind(org)
    .bind(since)
    .bind(&q.agent_id)
    .bind(&q.action_type)
    .fetch_one(state.service.pool())
    .await?;
    let decided = approved + denied + expired;

    let series: Vec<Value> = by_day
        .iter()
        .map(|((day, agent, kind), t)| {
            let mut v = t.json();
            v["day"] = json!(day.to_string());
            v["agent_id"] = json!(agent);
            v["action_type"] = json!(kind);
            v
        })
        .collect();
    let keyed = |m: &BTreeMap<String, Totals>, key: &str| -> Vec<Value> {
        m.iter()
            .map(|(k, t)| {
                let mut v = t.json();
                v[key] = json!(k);
                v
            })
            .collect()
    };
    Ok(json!({
        "window_days": days,
        "totals": total.json(),
        "enforcement": {
            "decisions": enforcement.iter().map(|(_, n)| n).sum::<i64>(),
            "allowed": count("allow"), "warnings": count("warn"),
            "approvals_required": count("require_approval"), "blocked": count("block"),
        },
        "approvals": {
            "requested": requested, "approved": approved, "denied": denied, "expired": expired,
            "pending": requested - decided,
            "approve_rate": rate(approved, decided), "deny_rate": rate(denied, decided),
            "expiry_rate": rate(expired, decided),
            "time_to_decision_seconds": {"p50": p50, "p90": p90, "p99": p99},
        },
        "series": series,
        "by_agent": keyed(&by_agent, "agent_id"),
        "by_action_type": keyed(&by_type, "action_type"),
        "pricing": "USD list prices per model (domain/src/pricing.rs); actions that report cost_estimate keep it",
        "generated_at": wire::ts(state.service.clock().now()),
    }))
}
