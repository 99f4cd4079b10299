//! The `decisions` projection: the guard decision log, one row of filter columns per
//! `GuardDecision` event (the record itself is read from that event when a decision is shown),
//! and the decisions counted per day, agent and verdict for analytics.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use dashclaw_domain::guard_decision::GuardDecision;
use dashclaw_domain::OrgId;
use futures_util::future::BoxFuture;
use sqlx::PgConnection;

use crate::tracker::{Event, Fold, ProjectionError};

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

/// A window's decisions, column by column, inserted with one statement.
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

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        org: &'a OrgId,
        events: &'a [Event<'a>],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut c = Columns::default();
            let mut counts = HashMap::new();
            for event in events {
                let DecisionRecorded::Recorded(d) = event.decode(org)?;
                let day = d.evaluated_at.date_naive();
                let agent = d.request.agent_id.clone().unwrap_or_default();
                *counts
                    .entry((day, agent, d.evaluation.decision.clone()))
                    .or_insert(0) += 1;
                c.id.push(d.decision_id);
                c.agent_id.push(d.request.agent_id);
                c.decision.push(d.evaluation.decision);
                c.idempotency_key.push(d.idempotency_key);
                c.created_at.push(d.evaluated_at);
                c.ledger_seq.push(event.ledger_seq);
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
            crate::analytics::write_decisions(conn, org, counts).await?;
            Ok(())
        })
    }
}
