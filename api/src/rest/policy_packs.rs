//! Policy packs and proof: `POST /api/policies/import` (a pack shipped with the binary, or a
//! pack's YAML/JSON text; `?preview=true` writes nothing) and `GET /api/policies/proof`
//! (what each active policy guarantees, tested by its recipes and by replaying the org's
//! recorded traffic; `format=json|md`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::rest::policies::PolicyRow;
use crate::rest::policy_tools::{recipes, run_recipes, RecipeResult};
use crate::service::policy_packs::{PackSource, MAX_PACK_BYTES, PACKS};
use crate::service::policy_tools::PolicyTraffic;
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/policies/import", post(import))
        .route("/api/policies/proof", get(proof))
        .route("/api/policies/packs", get(packs))
}

/// `POST /api/policies/import`: one of `pack`, `yaml` or `policies`.
#[derive(ToSchema)]
#[schema(example = json!({"pack": "claude-code-starter"}))]
pub struct ImportBody {
    /// A pack shipped with the binary (`GET /api/policies/packs` lists them).
    pub pack: Option<String>,
    /// A pack's text, YAML or JSON: `{policies: [{id, description, policy_type, rules, tests?}]}`.
    pub yaml: Option<String>,
    /// A pack's policies inline, as JSON.
    #[schema(value_type = Option<Vec<Object>>)]
    pub policies: Option<Value>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportQuery {
    /// `true`: say what would be imported, write nothing.
    preview: Option<String>,
}

/// The import's answer.
#[derive(Serialize, ToSchema)]
pub struct Imported {
    pub imported: usize,
    pub skipped: usize,
    /// Policies that did not validate: `<name>: <problems>`.
    pub errors: Vec<String>,
    /// The policies created.
    pub policies: Vec<PolicyRow>,
    /// The names the org already had.
    pub skipped_names: Vec<String>,
}

/// One policy of a previewed import.
#[derive(Serialize, ToSchema)]
pub struct PreviewedPolicy {
    pub name: String,
    pub policy_type: String,
    /// The rules, as a JSON string.
    pub rules: String,
    pub conflict: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_reason: Option<String>,
}

/// `?preview=true` answered.
#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// Always true.
    pub preview: bool,
    pub would_create: usize,
    pub would_skip: usize,
    pub policies: Vec<PreviewedPolicy>,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ImportAnswer {
    Imported(Imported),
    Preview(Preview),
}

/// Import a policy pack (admin). Idempotent: names the org has are skipped.
#[utoipa::path(post, path = "/api/policies/import", tag = "policies", params(ImportQuery),
    request_body = ImportBody,
    responses((status = 201, description = "Imported (or previewed: 200)", body = ImportAnswer)))]
pub(crate) async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ImportQuery>,
    Body(body): Body,
) -> Result<Response, Error> {
    caller.require_admin("Admin access required")?;
    let preview = match q.preview.as_deref() {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => {
            return Err(Error::validation(vec![
                "preview must be true or false".into()
            ]))
        }
    };
    let source = source_of(&body)?;
    if preview {
        let entries = state.service.preview_pack(&caller, &source).await?;
        return Ok(Json(ImportAnswer::Preview(Preview::of(entries))).into_response());
    }
    let report = state.service.import_pack(&caller, &source).await?;
    Ok((
        StatusCode::CREATED,
        Json(ImportAnswer::Imported(Imported {
            imported: report.imported.len(),
            skipped: report.skipped.len(),
            errors: report.errors,
            policies: report
                .imported
                .iter()
                .map(|p| PolicyRow::new(&caller.org, p))
                .collect(),
            skipped_names: report.skipped,
        })),
    )
        .into_response())
}

/// Where an import's policies come from: exactly one of `pack`, `yaml` or `policies`.
fn source_of(body: &[u8]) -> Result<PackSource, Error> {
    let body = object(body)?;
    let mut f = Fields::new(&body);
    let pack = f.string("pack", 128);
    let yaml = f.string("yaml", MAX_PACK_BYTES);
    let inline = match f.raw("policies") {
        Some(Value::Array(_)) => f.raw("policies").cloned(),
        Some(_) => {
            f.errors.push("policies must be an array".into());
            None
        }
        None => None,
    };
    f.finish()?;
    let source = match (pack, yaml, inline) {
        (Some(pack), None, None) => PackSource::Named(pack),
        (None, Some(yaml), None) => PackSource::Text(yaml),
        (None, None, Some(policies)) => PackSource::Text(
            serde_json::to_string(&serde_json::Map::from_iter([(
                "policies".to_owned(),
                policies,
            )]))
            .unwrap_or_default(),
        ),
        (None, None, None) => return Err(Error::bad_request("Either pack or yaml is required")),
        _ => return Err(Error::bad_request("Give one of pack, yaml or policies")),
    };
    Ok(source)
}

impl Preview {
    fn of(entries: Vec<crate::service::policy_packs::PackEntry>) -> Self {
        let would_skip = entries.iter().filter(|e| e.conflict.is_some()).count();
        Self {
            preview: true,
            would_create: entries.len() - would_skip,
            would_skip,
            policies: entries
                .into_iter()
                .map(|e| PreviewedPolicy {
                    name: e.name,
                    policy_type: e.policy_type,
                    rules: serde_json::to_string(&e.rules).unwrap_or_default(),
                    conflict: e.conflict.is_some(),
                    conflict_reason: e.conflict,
                })
                .collect(),
        }
    }
}

/// A shipped pack.
#[derive(Serialize, ToSchema)]
pub struct PackRow {
    pub id: String,
    pub description: String,
    pub policies: usize,
}

#[derive(Serialize, ToSchema)]
pub struct PackList {
    pub packs: Vec<PackRow>,
}

/// The packs shipped with the binary.
#[utoipa::path(get, path = "/api/policies/packs", tag = "policies",
    responses((status = 200, description = "The packs", body = PackList)))]
pub(crate) async fn packs(_caller: Caller) -> Json<PackList> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        description: String,
        #[serde(default)]
        policies: Vec<serde::de::IgnoredAny>,
    }
    Json(PackList {
        packs: PACKS
            .iter()
            .map(|(id, text)| {
                let head: Option<Head> = serde_yaml_ng::from_str(text).ok();
                PackRow {
                    id: (*id).to_owned(),
                    description: head
                        .as_ref()
                        .map(|h| h.description.clone())
                        .unwrap_or_default(),
                    policies: head.map_or(0, |h| h.policies.len()),
                }
            })
            .collect(),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProofQuery {
    /// `json` or `md` (default).
    format: Option<String>,
    /// The traffic replayed: the last N days (1-90, default 30).
    #[param(value_type = Option<i64>)]
    days: Option<String>,
}

/// What one policy proves.
#[derive(Serialize, ToSchema)]
pub struct PolicyProof {
    pub policy_id: String,
    pub name: String,
    pub policy_type: String,
    /// What it guarantees of every decision it governs.
    pub guarantee: String,
    /// `proven` (every recipe passes and recorded traffic never contradicts it), `failing`
    /// (a recipe fails), `untested` (no recipes), `inert` (the type is not enforced).
    pub status: &'static str,
    pub recipes: Vec<RecipeResult>,
    pub traffic: TrafficProof,
}

/// The recorded traffic replayed through the policy alone.
#[derive(Serialize, ToSchema)]
pub struct TrafficProof {
    /// Requests recorded since the policy last changed.
    pub replayed: usize,
    /// How many the policy alone held, blocked or warned.
    pub fired: usize,
    /// Of those, how many were recorded at least as strictly.
    pub enforced: usize,
    /// Of those, how many a grant let through more mildly.
    pub overridden: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ProofSummary {
    pub policies: usize,
    pub proven: usize,
    pub failing: usize,
    pub untested: usize,
    pub inert: usize,
    pub recipes_total: usize,
    pub recipes_passed: usize,
    pub window_days: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ProofReport {
    pub summary: ProofSummary,
    pub policies: Vec<PolicyProof>,
}

/// The report: markdown text, or the structure.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProofContent {
    Json(ProofReport),
    Markdown(String),
}

#[derive(Serialize, ToSchema)]
pub struct ProofBody {
    pub report: ProofContent,
    pub format: &'static str,
    pub generated_at: String,
}

fn policy_proof(t: PolicyTraffic, now: chrono::DateTime<chrono::Utc>) -> PolicyProof {
    let p = &t.policy.policy;
    let recipes = run_recipes(p, &recipes(&p.rules, None), now);
    let fired = t.counts[1] + t.counts[2] + t.counts[3];
    let status = if !p.is_enforced() {
        "inert"
    } else if recipes.iter().any(|r| !r.passed) {
        "failing"
    } else if recipes.is_empty() {
        "untested"
    } else {
        "proven"
    };
    PolicyProof {
        policy_id: p.id.clone(),
        name: p.name.clone(),
        policy_type: p.policy_type.clone(),
        guarantee: p.guarantee(),
        status,
        recipes,
        traffic: TrafficProof {
            replayed: t.replayed,
            fired,
            enforced: t.enforced,
            overridden: t.overridden,
        },
    }
}

fn markdown(r: &ProofReport, generated_at: &str) -> String {
    let s = &r.summary;
    let mut out = format!(
        "# Policy proof report\n\nGenerated {generated_at}. {} active policies: {} proven, {} failing, {} untested, {} inert. Recipes: {} of {} pass. Traffic replayed: the last {} days.\n\n| Policy | Type | Status | Recipes | Fired | Enforced | Overridden |\n|---|---|---|---|---|---|---|\n",
        s.policies, s.proven, s.failing, s.untested, s.inert, s.recipes_passed, s.recipes_total, s.window_days
    );
    for p in &r.policies {
        let passed = p.recipes.iter().filter(|t| t.passed).count();
        out.push_str(&format!(
            "| {} | {} | {} | {passed}/{} | {} of {} | {} | {} |\n",
            p.name.replace('|', "\\|"),
            p.policy_type,
            p.status,
            p.recipes.len(),
            p.traffic.fired,
            p.traffic.replayed,
            p.traffic.enforced,
            p.traffic.overridden
        ));
    }
    for p in &r.policies {
        out.push_str(&format!("\n## {}\n\n{}.\n", p.name, p.guarantee));
        for t in &p.recipes {
            out.push_str(&format!(
                "\n- {} `{}`: expected {}, got {}",
                if t.passed { "PASS" } else { "FAIL" },
                t.name,
                t.expected,
                t.actual.as_deref().unwrap_or("(invalid input)")
            ));
        }
        if !p.recipes.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// What each active policy guarantees, tested by its recipes and by replaying the recorded
/// traffic through it.
#[utoipa::path(get, path = "/api/policies/proof", tag = "policies", params(ProofQuery),
    responses((status = 200, description = "The report", body = ProofBody)))]
pub(crate) async fn proof(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ProofQuery>,
) -> Result<Json<ProofBody>, Error> {
    let format = match q.format.as_deref() {
        None | Some("" | "md") => "md",
        Some("json") => "json",
        Some(_) => {
            return Err(Error::validation(vec![
                "format must be one of: json, md".into()
            ]))
        }
    };
    let days = clamp_param(q.days.as_deref(), 30, 1, 90, "days")?;
    let now = state.service.clock().now();
    let traffic = state.service.policy_traffic(&caller, days).await?;
    let policies: Vec<PolicyProof> = traffic.into_iter().map(|t| policy_proof(t, now)).collect();
    let count = |status: &str| policies.iter().filter(|p| p.status == status).count();
    let summary = ProofSummary {
        policies: policies.len(),
        proven: count("proven"),
        failing: count("failing"),
        untested: count("untested"),
        inert: count("inert"),
        recipes_total: policies.iter().map(|p| p.recipes.len()).sum(),
        recipes_passed: policies
            .iter()
            .flat_map(|p| &p.recipes)
            .filter(|t| t.passed)
            .count(),
        window_days: days,
    };
    let report = ProofReport { summary, policies };
    let generated_at = wire::ts(now);
    Ok(Json(ProofBody {
        report: match format {
            "json" => ProofContent::Json(report),
            _ => ProofContent::Markdown(markdown(&report, &generated_at)),
        },
        format,
        generated_at,
    }))
}
