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
use crate::service::org::{SweepSettings, HALT_REASON_MAX};
use crate::service::{Caller, Error};
use crate::state::AppState;
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

/// Signals computed from the read models (contract 10.5), red first.
async fn signals(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<SignalQuery>,
) -> Result<Json<Value>, Error> {
    let out = state
        .service
        .signals(&caller, q.agent_id.as_deref())
        .await?;
    let red = out.iter().filter(|s| s.red).count();
    let signals: Vec<Value> = out.iter().map(wire::signal_row).collect();
    Ok(Json(json!({
        "signals": signals,
        "muted": [],
        "counts": {"red": red, "amber": out.len() - red, "total": out.len()},
        "lastUpdated": wire::ts(state.service.clock().now()),
    })))
}
