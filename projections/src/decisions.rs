//! The `decisions` projection: the guard decision log, one row of filter columns per
//! `GuardDecision` event (the record itself is read from that event when a decision is shown),
//! and the decisions counted per day, agent and verdict for analytics.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use dashclaw_domain::guard_decision::GuardDecision;
use dashclaw_domain::OrgId;
use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::tracker::{Event, Fold, Prepared, ProjectionError};

/// Folds guard decisions into `guard_decisions`.
pub struct Decisions;

/// The fields of a stored `GuardDecisionRecorded` event that the decision log filters on.
#[derive(serde::Deserialize)]
enum DecisionRecorded {
    Recorded(DecisionFields),
}

#[derive(serde::Deserialize)]
struct DecisionFields {
    decision_id: String,
    request: DecisionRequest,
    evaluation: DecisionEvaluation,
    #[serde(default)]
    idempotency_key: Option<String>,
    evaluated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(serde::Deserialize)]
struct DecisionRequest {
    #[serde(default)]
    agent_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct DecisionEvaluation {
    decision: String,
}

/// A window's decisions, column by column (inserted with one statement), and their counts.
#[derive(Default)]
struct Window {
    columns: Columns,
    counts: HashMap<(chrono::NaiveDate, String, String), i64>,
}

/// Guard decisions, column by column.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    agent_id: Vec<Option<String>>,
    decision: Vec<String>,
    idempotency_key: Vec<Option<String>>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    ledger_seq: Vec<i64>,
}

impl Fold for Decisions {
    fn name(&self) -> &'static str {
        "decisions"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[GuardDecision::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["guard_decisions", "analytics_decisions"]
    }

    fn prepare<'a>(
        &'a self,
        _pool: &'a PgPool,
        org: &'a OrgId,
        events: &'a [Event<'a>],
        _previous: Option<&'a Prepared>,
    ) -> BoxFuture<'a, Result<Prepared, ProjectionError>> {
        Box::pin(async move {
            let mut window = Window::default();
            for event in events {
                let DecisionRecorded::Recorded(d) = event.decode(org)?;
                let day = d.evaluated_at.date_naive();
                let agent = d.request.agent_id.clone().unwrap_or_default();
                *window
                    .counts
                    .entry((day, agent, d.evaluation.decision.clone()))
                    .or_insert(0) += 1;
                let c = &mut window.columns;
                c.id.push(d.decision_id);
                c.agent_id.push(d.request.agent_id);
                c.decision.push(d.evaluation.decision);
                c.idempotency_key.push(d.idempotency_key);
                c.created_at.push(d.evaluated_at);
                c.ledger_seq.push(event.ledger_seq);
            }
            Ok(Box::new(window) as Prepared)
        })
    }

    fn write<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        org: &'a OrgId,
        prepared: &'a Prepared,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(window) = prepared.downcast_ref::<Window>() else {
                return Ok(());
            };
            let c = &window.columns;
            if c.id.is_empty() {
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO guard_decisions
                   (org_id, decision_id, agent_id, decision, idempotency_key, created_at, ledger_seq)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[],
                                          $6::timestamptz[], $7::int8[])",
            )
            .bind(org.as_str())
            .bind(&c.id)
            .bind(&c.agent_id)
            .bind(&c.decision)
            .bind(&c.idempotency_key)
            .bind(&c.created_at)
            .bind(&c.ledger_seq)
            .execute(&mut *conn)
            .await?;
            crate::analytics::write_decisions(conn, org, &window.counts).await?;
            Ok(())
        })
    }
}
