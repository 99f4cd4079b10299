//! Org-wide surfaces: the halt switch (`/api/halt`), the sweeps' per-org timeouts
//! (`/api/settings/sweeps`), decision-integrity signals (`/api/signals`) and the
//! prompt-injection scanner (`/api/security/prompt-injection`).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::guard::scan_prompt_injection;
use dashclaw_domain::org_settings::HaltState;
use dashclaw_sweeps::settings::format_duration;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Params};
use crate::input::fields::{object, Fields};
use crate::service::org::{SweepSettings, HALT_REASON_MAX};
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire::{self, SignalRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/halt", get(halt).post(set_halt))
        .route("/api/settings/sweeps", get(sweeps).put(set_sweeps))
        .route("/api/signals", get(signals))
        .route("/api/actions/signals", get(signals))
        .route("/api/security/prompt-injection", post(scan))
}

/// `GET` and `POST /api/halt`.
#[derive(Serialize, ToSchema)]
pub struct HaltAnswer {
    pub halt: HaltStatus,
}

/// Whether the org is halted, by whom, why and since when.
#[derive(Serialize, ToSchema)]
pub struct HaltStatus {
    pub halted: bool,
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub at: Option<String>,
}

fn halt_body(halt: Option<&HaltState>) -> HaltAnswer {
    HaltAnswer {
        halt: match halt {
            Some(h) => HaltStatus {
                halted: h.halted,
                actor: Some(h.actor.clone()),
                reason: h.reason.clone(),
                at: Some(wire::ts(h.at)),
            },
            None => HaltStatus {
                halted: false,
                actor: None,
                reason: None,
                at: None,
            },
        },
    }
}

/// Whether the org's agents are halted.
#[utoipa::path(get, path = "/api/halt", tag = "org",
    responses((status = 200, description = "The halt switch", body = HaltAnswer)))]
pub(crate) async fn halt(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<HaltAnswer>, Error> {
    let halt = state.service.halt(&caller).await?;
    Ok(Json(halt_body(halt.as_ref())))
}

/// Halt (every guard call blocks) or resume the org's agents (admin keys).
#[utoipa::path(post, path = "/api/halt", tag = "org",
    request_body = crate::rest::requests::HaltBody,
    responses((status = 200, description = "The halt switch", body = HaltAnswer)))]
pub(crate) async fn set_halt(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<HaltAnswer>, Error> {
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

/// `GET` and `PUT /api/settings/sweeps`: the org's overrides (null: the server's default)
/// and the settings in effect.
#[derive(Serialize, ToSchema)]
pub struct SweepSettingsBody {
    pub overrides: SweepOverridesView,
    pub effective: EffectiveSweeps,
}

#[derive(Serialize, ToSchema)]
pub struct SweepOverridesView {
    pub lost_confirmation_timeout: Option<String>,
    pub approval_grace: Option<String>,
    pub checkpoint_every_events: Option<u64>,
    pub checkpoint_interval: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EffectiveSweeps {
    /// How long a claimed action may go without an outcome before it is lost.
    pub lost_confirmation_timeout: String,
    /// How long past its expiry a held action waits before the sweep expires it.
    pub approval_grace: String,
    pub checkpoint_every_events: u64,
    pub checkpoint_interval: String,
    /// How often the sweeps run.
    pub cadence: String,
}

fn sweeps_body(s: &SweepSettings) -> SweepSettingsBody {
    let secs = |v: Option<u64>| v.map(|s| format_duration(std::time::Duration::from_secs(s)));
    let (o, e) = (&s.overrides, &s.effective);
    SweepSettingsBody {
        overrides: SweepOverridesView {
            lost_confirmation_timeout: secs(o.lost_confirmation_timeout_secs),
            approval_grace: secs(o.approval_grace_secs),
            checkpoint_every_events: o.checkpoint_every_events,
            checkpoint_interval: secs(o.checkpoint_interval_secs),
        },
        effective: EffectiveSweeps {
            lost_confirmation_timeout: format_duration(e.lost_confirmation_timeout),
            approval_grace: format_duration(e.approval_grace),
            checkpoint_every_events: e.checkpoint_every_events,
            checkpoint_interval: format_duration(e.checkpoint_interval),
            cadence: format_duration(s.cadence),
        },
    }
}

/// The sweeps' settings for the org.
#[utoipa::path(get, path = "/api/settings/sweeps", tag = "org",
    responses((status = 200, description = "The settings", body = SweepSettingsBody)))]
pub(crate) async fn sweeps(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SweepSettingsBody>, Error> {
    let settings = state.service.sweep_settings(&caller).await?;
    Ok(Json(sweeps_body(&settings)))
}

/// Replaces the org's overrides (admin keys): durations are human-readable (`"30m"`,
/// `"90s"`); a field left out or null falls back to the server's setting.
#[utoipa::path(put, path = "/api/settings/sweeps", tag = "org",
    request_body = crate::rest::requests::SweepOverridesBody,
    responses((status = 200, description = "The settings", body = SweepSettingsBody)))]
pub(crate) async fn set_sweeps(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<SweepSettingsBody>, Error> {
    caller.require_admin("Admin access required")?;
    let overrides = crate::input::org::sweep_overrides(&object(&body)?)?;
    let settings = state
        .service
        .set_sweep_overrides(&caller, overrides)
        .await?;
    Ok(Json(sweeps_body(&settings)))
}

/// `POST /api/security/prompt-injection`.
#[derive(Serialize, ToSchema)]
pub struct ScanReport {
    pub clean: bool,
    /// none, low, medium, high or critical.
    pub risk_level: &'static str,
    /// allow, warn or block.
    pub recommendation: &'static str,
    pub findings_count: usize,
    pub critical_count: usize,
    pub categories: Vec<&'static str>,
    pub findings: Vec<ScanFinding>,
    pub source: Option<String>,
}

/// One match of one pattern (never the whole matched text).
#[derive(Serialize, ToSchema)]
pub struct ScanFinding {
    pub pattern: &'static str,
    pub category: &'static str,
    /// low, medium, high or critical.
    pub severity: &'static str,
    /// The first 20 characters of the match.
    pub matched: String,
    /// In characters from the start of the text.
    pub position: usize,
}

/// Scan a text for prompt injection.
#[utoipa::path(post, path = "/api/security/prompt-injection", tag = "org",
    request_body = crate::rest::requests::ScanBody,
    responses((status = 200, description = "The findings", body = ScanReport)))]
pub(crate) async fn scan(caller: Caller, Body(body): Body) -> Result<Json<ScanReport>, Error> {
    let _ = caller;
    let body = object(&body)?;
    let text = match body.get("text") {
        None | Some(Value::Null) => return Err(Error::bad_request("text is required")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::bad_request("text must be a string")),
    };
    let source = body
        .get("source")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let scan = scan_prompt_injection(&text);
    Ok(Json(ScanReport {
        clean: scan.clean,
        risk_level: scan.risk_level,
        recommendation: scan.recommendation,
        findings_count: scan.findings.len(),
        critical_count: scan.critical_count(),
        categories: scan.categories.clone(),
        findings: scan
            .findings
            .iter()
            .map(|f| ScanFinding {
                pattern: f.pattern,
                category: f.category,
                severity: f.severity.as_str(),
                matched: f.matched.clone(),
                position: f.position,
            })
            .collect(),
        source,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignalQuery {
    agent_id: Option<String>,
}

/// `GET /api/signals`.
#[derive(Serialize, ToSchema)]
pub struct SignalList {
    pub signals: Vec<SignalRow>,
    /// Always empty: signals cannot be muted.
    pub muted: Vec<String>,
    pub counts: SignalCounts,
    #[serde(rename = "lastUpdated")]
    pub last_updated: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignalCounts {
    pub red: usize,
    pub amber: usize,
    pub total: usize,
}

/// Signals computed from the read models (contract 10.5), red first.
#[utoipa::path(get, path = "/api/signals", tag = "org", params(SignalQuery),
    responses((status = 200, description = "The signals", body = SignalList)))]
pub(crate) async fn signals(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<SignalQuery>,
) -> Result<Json<SignalList>, Error> {
    let out = state
        .service
        .signals(&caller, q.agent_id.as_deref())
        .await?;
    let red = out.iter().filter(|s| s.red).count();
    Ok(Json(SignalList {
        signals: out.iter().map(SignalRow::from).collect(),
        muted: Vec::new(),
        counts: SignalCounts {
            red,
            amber: out.len() - red,
            total: out.len(),
        },
        last_updated: wire::ts(state.service.clock().now()),
    }))
}
