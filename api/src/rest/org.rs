//! Org-wide surfaces: the halt switch (`/api/halt`), the sweeps' per-org timeouts
//! (`/api/settings/sweeps`), decision-integrity signals (`/api/signals`) and the
//! prompt-injection scanner (`/api/security/prompt-injection`).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::guard::scan_prompt_injection;
use dashclaw_domain::org_settings::HaltState;
use dashclaw_sweeps::settings::format_duration;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Params};
use crate::input::fields::{object, Fields};
use crate::server::AppState;
use crate::service::org::{SweepSettings, HALT_REASON_MAX};
use crate::service::{Caller, Error};
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/halt", get(halt).post(set_halt))
        .route("/api/settings/sweeps", get(sweeps).put(set_sweeps))
        .route("/api/signals", get(signals))
        .route("/api/actions/signals", get(signals))
        .route("/api/security/prompt-injection", post(scan))
}

fn halt_body(halt: Option<&HaltState>) -> Value {
    match halt {
        Some(h) => {
            json!({"halt": {"halted": h.halted, "actor": h.actor, "reason": h.reason, "at": wire::ts(h.at)}})
        }
        None => json!({"halt": {"halted": false, "actor": null, "reason": null, "at": null}}),
    }
}

async fn halt(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let halt = state.service.halt(&caller).await?;
    Ok(Json(halt_body(halt.as_ref())))
}

async fn set_halt(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require_admin("Admin access required")?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let halted = f.boolean("halted");
    let reason = f.string("reason", HALT_REASON_MAX);
    if !f.present("halted") {
        f.errors.push("halted is required".into());
    }
    f.finish()?;
    let halt = state
        .service
        .set_halt(&caller, halted.unwrap_or(false), reason)
        .await?;
    Ok(Json(halt_body(halt.as_ref())))
}

/// The org's sweep overrides (null: the server's default) and the settings in effect.
fn sweeps_body(s: &SweepSettings) -> Value {
    let secs = |v: Option<u64>| v.map(|s| format_duration(std::time::Duration::from_secs(s)));
    let (o, e) = (&s.overrides, &s.effective);
    json!({
        "overrides": {
            "lost_confirmation_timeout": secs(o.lost_confirmation_timeout_secs),
            "approval_grace": secs(o.approval_grace_secs),
            "checkpoint_every_events": o.checkpoint_every_events,
            "checkpoint_interval": secs(o.checkpoint_interval_secs),
        },
        "effective": {
            "lost_confirmation_timeout": format_duration(e.lost_confirmation_timeout),
            "approval_grace": format_duration(e.approval_grace),
            "checkpoint_every_events": e.checkpoint_every_events,
            "checkpoint_interval": format_duration(e.checkpoint_interval),
            "cadence": format_duration(s.cadence),
        },
    })
}

async fn sweeps(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let settings = state.service.sweep_settings(&caller).await?;
    Ok(Json(sweeps_body(&settings)))
}

/// Replaces the org's overrides: durations are human-readable (`"30m"`, `"90s"`); a field
/// left out or null falls back to the server's setting.
async fn set_sweeps(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require_admin("Admin access required")?;
    let overrides = crate::input::org::sweep_overrides(&object(&body)?)?;
    let settings = state
        .service
        .set_sweep_overrides(&caller, overrides)
        .await?;
    Ok(Json(sweeps_body(&settings)))
}

async fn scan(caller: Caller, Body(body): Body) -> Result<Json<Value>, Error> {
    let _ = caller;
    let body = object(&body)?;
    let text = match body.get("text") {
        None | Some(Value::Null) => return Err(Error::bad_request("text is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::bad_request("text must be a string")),
    };
    let source = body.get("source").and_then(Value::as_str);
    let scan = scan_prompt_injection(&text);
    Ok(Json(json!({
        "clean": scan.clean,
        "risk_level": scan.risk_level,
        "recommendation": scan.recommendation,
        "findings_count": scan.findings.len(),
        "critical_count": scan.critical_count(),
        "categories": scan.categories,
        "findings": scan.findings,
        "source": source,
    })))
}

#[derive(Deserialize)]
struct SignalQuery {
    agent_id: Option<String>,
}

fn signal(kind: &str, red: bool, label: &str, detail: String, help: &str, extra: Value) -> Value {
    let mut s = json!({
        "type": kind, "severity": if red { "red" } else { "amber" }, "label": label,
        "detail": detail, "help": help,
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut s, extra) {
        m.extend(e);
    }
    s
}

/// Signals computed from the read models (contract 10.5), red first.
async fn signals(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<SignalQuery>,
) -> Result<Json<Value>, Error> {
    state.service.projections().catch_up(&caller.org).await?;
    let org = caller.org.as_str();
    let agent = q.agent_id.as_deref();
    let mut out = Vec::new();

    let failures: Vec<(String, i64)> = sqlx::query_as(
        "SELECT agent_id, count(*) FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'failed'
            AND timestamp_start > now() - interval '24 hours'
          GROUP BY agent_id HAVING count(*) > 3",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (agent_id, n) in failures {
        out.push(signal(
            "repeated_failures",
            n > 5,
            "Repeated failures",
            format!("{agent_id} failed {n} actions in 24 h"),
            "Look at the failing actions before letting the agent retry.",
            json!({"agent_id": agent_id}),
        ));
    }

    let lost: Vec<(String, String)> = sqlx::query_as(
        "SELECT action_id, agent_id FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2)
            AND outcome_status = 'lost_confirmation'
            AND timestamp_start > now() - interval '7 days'
          ORDER BY timestamp_start DESC LIMIT 50",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (action_id, agent_id) in lost {
        out.push(signal(
            "lost_confirmation",
            true,
            "Lost confirmation",
            format!("{action_id} never reported its outcome; it was reconciled to unknown"),
            "Find out whether it ran before retrying it: a retry could run it twice.",
            json!({"agent_id": agent_id, "action_id": action_id}),
        ));
    }

    let stale: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT action_id, agent_id, extract(epoch FROM now() - timestamp_start)::float8 / 3600
           FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'running'
            AND timestamp_start < now() - interval '4 hours'
          ORDER BY timestamp_start LIMIT 50",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (action_id, agent_id, hours) in stale {
        out.push(signal(
            "stale_running_action",
            hours > 24.0,
            "Stale running action",
            format!("{action_id} has been running for {hours:.1} h without an outcome"),
            "Report its outcome or reconcile it.",
            json!({"agent_id": agent_id, "action_id": action_id}),
        ));
    }

    let backlog: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT action_id, agent_id, extract(epoch FROM now() - timestamp_start)::float8 / 3600
           FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'pending_approval'
            AND timestamp_start < now() - interval '1 hour'
          ORDER BY timestamp_start LIMIT 50",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (action_id, agent_id, hours) in backlog {
        out.push(signal(
            "approval_backlog",
            hours >= 4.0,
            "Approval waiting",
            format!("{action_id} has waited {hours:.1} h for a decision"),
            "Approve or deny it.",
            json!({"agent_id": agent_id, "action_id": action_id}),
        ));
    }

    let drift: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.agent_id, count(*) FROM assumptions a
           JOIN action_records r ON r.org_id = a.org_id AND r.action_id = a.action_id
          WHERE a.org_id = $1 AND ($2::text IS NULL OR r.agent_id = $2)
            AND (a.doc->>'invalidated')::bool
            AND (a.doc->>'invalidated_at')::timestamptz > now() - interval '7 days'
          GROUP BY r.agent_id",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (agent_id, n) in drift {
        out.push(signal(
            "assumption_drift",
            n >= 4,
            "Assumption drift",
            format!("{n} of {agent_id}'s assumptions were invalidated in 7 days"),
            "Review what the agent believes before its next action.",
            json!({"agent_id": agent_id}),
        ));
    }

    let unsupervised: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT action_id, agent_id, risk_score FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'running'
            AND risk_score >= 90 AND doc::json->>'approved_by' IS NULL
          ORDER BY timestamp_start DESC LIMIT 50",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(state.service.pool())
    .await?;
    for (action_id, agent_id, risk) in unsupervised {
        out.push(signal(
            "high_impact_low_oversight",
            true,
            "High impact, low oversight",
            format!("{action_id} runs at risk {risk} without a human approval"),
            "Add a require_approval or risk_threshold policy for this action type.",
            json!({"agent_id": agent_id, "action_id": action_id}),
        ));
    }

    out.sort_by_key(|s| s["severity"] != "red");
    let red = out.iter().filter(|s| s["severity"] == "red").count();
    Ok(Json(json!({
        "signals": out,
        "muted": [],
        "counts": {"red": red, "amber": out.len() - red, "total": out.len()},
        "lastUpdated": wire::ts(state.service.clock().now()),
    })))
}
