//! `GET /api/posture`: the posture score of the org's real traffic under its current
//! policies (`domain::posture`), its findings worst first, and a daily trend.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_domain::posture::{assess, Sample};
use serde_json::{json, Value};

use crate::server::AppState;
use crate::service::Caller;
use crate::service::Error;
use crate::wire;

/// The traffic a score looks at.
const WINDOW_DAYS: i64 = 30;
/// At most this many recorded requests are replayed.
const SAMPLE: i64 = 5_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/posture", get(posture))
}

async fn posture(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    Ok(Json(posture_of(&state, &caller).await?))
}

/// The org's posture (REST and GraphQL); records today's snapshot.
pub async fn posture_of(state: &AppState, caller: &Caller) -> Result<Value, Error> {
    let now = state.service.clock().now();
    let since = now - chrono::Duration::days(WINDOW_DAYS);
    let records = state
        .service
        .recorded_requests(&caller.org, since, SAMPLE)
        .await?;
    let samples: Vec<Sample<'_>> = records
        .iter()
        .map(|r| Sample {
            request: &r.request,
            risk_score: r.evaluation.risk_score,
            action_id: r.action_id.as_ref().map(|a| a.as_str()),
        })
        .collect();
    let view = state
        .service
        .tail()
        .views()
        .get(state.service.aggregates(), &caller.org)
        .await?;
    let result = assess(&samples, &view.policies, now);

    sqlx::query(
        "INSERT INTO posture_snapshots (org_id, day, score, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, day) DO UPDATE SET score = EXCLUDED.score, created_at = EXCLUDED.created_at",
    )
    .bind(caller.org.as_str())
    .bind(now.date_naive())
    .bind(i32::from(result.score))
    .bind(now)
    .execute(state.service.pool())
    .await?;
    let snapshots: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT score, created_at FROM posture_snapshots WHERE org_id = $1
          ORDER BY day DESC LIMIT 30",
    )
    .bind(caller.org.as_str())
    .fetch_all(state.service.pool())
    .await?;

    let covered = result.units.iter().filter(|u| u.grade >= 1.0).count();
    let recoverable: u32 = result
        .findings
        .iter()
        .map(|f| u32::from(f.score_delta))
        .sum();
    let findings: Vec<Value> = result
        .findings
        .iter()
        .map(|f| {
            json!({
                "key": f.key, "dimension": "enforcement", "severity": f.severity, "title": f.title,
                "evidence": {"observedCount": f.observed, "exampleActionIds": f.example_action_ids},
                "scoreDelta": f.score_delta, "fix": f.fix, "status": "open",
            })
        })
        .collect();
    Ok(json!({
        "score": result.score,
        "status": result.status,
        "cappedBy": null,
        "dimensions": [{"dimension": "enforcement", "score": result.score, "weight": 1}],
        "findings": findings,
        "summary": {
            "totalUnits": result.units.len(), "coveredUnits": covered,
            "pointsRecoverable": recoverable, "openFindings": result.findings.len(),
        },
        "units": result.units,
        "window_days": WINDOW_DAYS,
        "sample_size": samples.len(),
        "snapshots": snapshots.iter().map(|(s, at)| json!({"score": s, "createdAt": wire::ts(*at)})).collect::<Vec<_>>(),
        "snapshotTs": wire::ts(now),
    }))
}
