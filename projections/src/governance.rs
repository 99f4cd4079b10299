//! The `governance` projection: action records (the decisions ledger and approvals queue),
//! the guard decision log, assumptions and API keys.
//!
//! Each row keeps the aggregate state exactly as the domain folds it (`doc`), so the read
//! model is the aggregate by construction; the other columns are copies for filtering.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use dashclaw_domain::action::{Action, ActionEvent, ActionRecord};
use dashclaw_domain::api_key::{ApiKey, ApiKeyEvent, ApiKeyRecord};
use dashclaw_domain::assumption::{Assumption, AssumptionEvent, AssumptionRecord};
use dashclaw_domain::guard_decision::{GuardDecision, GuardDecisionEvent};
use dashclaw_domain::OrgId;
use serde::de::DeserializeOwned;
use sqlx::{PgPool, Postgres, Transaction};

/// The checkpoint name of this projection.
pub const NAME: &str = "governance";
/// Events folded per transaction.
const BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database failed: the caller retries later; nothing was half-applied.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event does not decode into its aggregate's event type. The projection stops
    /// at it rather than skip it: fix the code (an upcaster) and restart.
    #[error("event ({org}, {ledger_seq}) of {aggregate_type} does not decode: {detail}")]
    Undecodable {
        org: String,
        ledger_seq: u64,
        aggregate_type: String,
        detail: String,
    },
}

/// Folds the ledger into the governance read models.
#[derive(Clone)]
pub struct Governance {
    pool: PgPool,
}

type Row = (i64, String, String, String);

/// Rows touched in one batch, written once at the end of it.
#[derive(Default)]
struct Batch {
    actions: HashMap<String, (Action, i64)>,
    assumptions: HashMap<String, (Assumption, i64)>,
    keys: HashMap<String, (ApiKey, i64)>,
    decisions: Decisions,
}

/// Guard decisions of a batch, column by column, inserted with one statement.
#[derive(Default)]
struct Decisions {
    id: Vec<String>,
    doc: Vec<serde_json::Value>,
    agent_id: Vec<Option<String>>,
    decision: Vec<String>,
    idempotency_key: Vec<Option<String>>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    ledger_seq: Vec<i64>,
}

impl Governance {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Folds every event of `org` after the checkpoint; returns the new checkpoint. Safe to
    /// call from many tasks and nodes at once: batches serialize on the checkpoint row.
    pub async fn catch_up(&self, org: &OrgId) -> Result<u64, ProjectionError> {
        loop {
            let (position, folded) = self.fold_batch(org).await?;
            if folded < BATCH as usize {
                return Ok(position);
            }
        }
    }

    /// Catches every org up; returns how many events were folded.
    pub async fn catch_up_all(&self) -> Result<u64, ProjectionError> {
        let before = self.total_position().await?;
        let orgs = dashclaw_store::chain::orgs(&self.pool)
            .await
            .map_err(|e| match e {
                dashclaw_store::StoreError::Database(e) => ProjectionError::Database(e),
                other => ProjectionError::Database(sqlx::Error::Protocol(other.to_string())),
            })?;
        for org in &orgs {
            self.catch_up(org).await?;
        }
        Ok(self.total_position().await?.saturating_sub(before))
    }

    async fn total_position(&self) -> Result<u64, ProjectionError> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT sum(ledger_seq)::bigint FROM projection_checkpoints WHERE projection = $1",
        )
        .bind(NAME)
        .fetch_one(&self.pool)
        .await?;
        Ok(sum.unwrap_or(0) as u64)
    }

    /// The checkpoint of `org` (0 when nothing was folded yet).
    pub async fn position(&self, org: &OrgId) -> Result<u64, ProjectionError> {
        let pos: Option<i64> = sqlx::query_scalar(
            "SELECT ledger_seq FROM projection_checkpoints WHERE projection = $1 AND org_id = $2",
        )
        .bind(NAME)
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(pos.unwrap_or(0) as u64)
    }

    async fn fold_batch(&self, org: &OrgId) -> Result<(u64, usize), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        // Read models can always be rebuilt from the ledger, so their commits need not wait
        // for a WAL flush (which the ledger's own commits then do not have to share). A crash
        // can lose a recent fold and its checkpoint together, never one without the other.
        sqlx::query(
            "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
             INSERT INTO projection_checkpoints (projection, org_id, ledger_seq)
             SELECT $1, $2, 0 FROM quick
             ON CONFLICT DO NOTHING",
        )
        .bind(NAME)
        .bind(org.as_str())
        .execute(&mut *tx)
        .await?;
        let position: i64 = sqlx::query_scalar(
            "SELECT ledger_seq FROM projection_checkpoints
              WHERE projection = $1 AND org_id = $2 FOR UPDATE",
        )
        .bind(NAME)
        .bind(org.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT ledger_seq, aggregate_type, aggregate_id, payload::text FROM events
              WHERE org_id = $1 AND ledger_seq > $2 ORDER BY ledger_seq LIMIT $3",
        )
        .bind(org.as_str())
        .bind(position)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            tx.commit().await?;
            return Ok((position as u64, 0));
        };
        let mut batch = Batch::default();
        for row in &rows {
            self.fold(&mut tx, org, &mut batch, row).await?;
        }
        write_batch(&mut tx, org, batch).await?;
        sqlx::query(
            "UPDATE projection_checkpoints SET ledger_seq = $3 WHERE projection = $1 AND org_id = $2",
        )
        .bind(NAME)
        .bind(org.as_str())
        .bind(last)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((last as u64, rows.len()))
    }

    async fn fold(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        org: &OrgId,
        batch: &mut Batch,
        (seq, aggregate_type, aggregate_id, payload): &Row,
    ) -> Result<(), ProjectionError> {
        let entity = aggregate_id
            .split_once('/')
            .map(|(_, e)| e)
            .unwrap_or(aggregate_id)
            .to_owned();
        match aggregate_type.as_str() {
            Action::TYPE => {
                let event: ActionEvent = decode(org, *seq, aggregate_type, payload)?;
                let state = match batch.actions.remove(&entity) {
                    Some((state, _)) => state,
                    None => Action {
                        record: load(tx, "action_records", "action_id", org, &entity).await?,
                    },
                };
                let mut state = state;
                state.apply(event);
                batch.actions.insert(entity, (state, *seq));
            }
            Assumption::TYPE => {
                let event: AssumptionEvent = decode(org, *seq, aggregate_type, payload)?;
                let mut state = match batch.assumptions.remove(&entity) {
                    Some((state, _)) => state,
                    None => Assumption {
                        record: load(tx, "assumptions", "assumption_id", org, &entity).await?,
                    },
                };
                state.apply(event);
                batch.assumptions.insert(entity, (state, *seq));
            }
            ApiKey::TYPE => {
                let event: ApiKeyEvent = decode(org, *seq, aggregate_type, payload)?;
                let mut state = match batch.keys.remove(&entity) {
                    Some((state, _)) => state,
                    None => ApiKey {
                        record: load_key(tx, &entity).await?,
                    },
                };
                state.apply(event);
                batch.keys.insert(entity, (state, *seq));
            }
            GuardDecision::TYPE => {
                let GuardDecisionEvent::Recorded(record) =
                    decode(org, *seq, aggregate_type, payload)?;
                let d = &mut batch.decisions;
                d.id.push(record.decision_id.to_string());
                d.agent_id.push(record.request.agent_id.clone());
                d.decision
                    .push(record.evaluation.decision.as_str().to_owned());
                d.idempotency_key.push(record.idempotency_key.clone());
                d.created_at.push(record.evaluated_at);
                d.ledger_seq.push(*seq);
                d.doc
                    .push(serde_json::to_value(&record).unwrap_or_default());
            }
            // Policy sets and org settings are read from their aggregates (one stream per org).
            _ => {}
        }
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(
    org: &OrgId,
    seq: i64,
    aggregate_type: &str,
    payload: &str,
) -> Result<T, ProjectionError> {
    serde_json::from_str(payload).map_err(|e| ProjectionError::Undecodable {
        org: org.to_string(),
        ledger_seq: seq as u64,
        aggregate_type: aggregate_type.to_owned(),
        detail: e.to_string(),
    })
}

async fn load<T: DeserializeOwned>(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    id_column: &str,
    org: &OrgId,
    id: &str,
) -> Result<Option<T>, ProjectionError> {
    let doc: Option<serde_json::Value> = sqlx::query_scalar(&format!(
        "SELECT doc FROM {table} WHERE org_id = $1 AND {id_column} = $2"
    ))
    .bind(org.as_str())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(doc.and_then(|d| serde_json::from_value(d).ok()))
}

async fn load_key(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
) -> Result<Option<ApiKeyRecord>, ProjectionError> {
    type KeyRow = (
        String,
        String,
        String,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT key_hash, role, name, created_at, revoked_at FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(
        row.and_then(|(key_hash, role, name, created_at, revoked_at)| {
            Some(ApiKeyRecord {
                id: dashclaw_domain::ids::ApiKeyId::parse(id).ok()?,
                key_hash,
                role: dashclaw_domain::api_key::Role::parse(&role)?,
                name,
                created_by: String::new(),
                created_at,
                revoked_at,
            })
        }),
    )
}

async fn write_batch(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    batch: Batch,
) -> Result<(), ProjectionError> {
    let d = batch.decisions;
    if !d.id.is_empty() {
        sqlx::query(
            "INSERT INTO guard_decisions
               (org_id, decision_id, doc, agent_id, decision, idempotency_key, created_at, ledger_seq)
             SELECT $1, * FROM UNNEST($2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
                                      $7::timestamptz[], $8::int8[])
             ON CONFLICT (org_id, decision_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(&d.id)
        .bind(&d.doc)
        .bind(&d.agent_id)
        .bind(&d.decision)
        .bind(&d.idempotency_key)
        .bind(&d.created_at)
        .bind(&d.ledger_seq)
        .execute(&mut **tx)
        .await?;
    }
    for (_, (action, seq)) in batch.actions {
        let Some(r) = action.record else { continue };
        write_action(tx, org, &r, seq).await?;
    }
    for (_, (assumption, seq)) in batch.assumptions {
        let Some(r) = assumption.record else { continue };
        write_assumption(tx, org, &r, seq).await?;
    }
    for (_, (key, seq)) in batch.keys {
        let Some(r) = key.record else { continue };
        sqlx::query(
            "INSERT INTO api_keys (id, org_id, key_hash, role, name, created_at, revoked_at, ledger_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET revoked_at = EXCLUDED.revoked_at,
                                            ledger_seq = EXCLUDED.ledger_seq",
        )
        .bind(r.id.as_str())
        .bind(org.as_str())
        .bind(&r.key_hash)
        .bind(r.role.as_str())
        .bind(&r.name)
        .bind(r.created_at)
        .bind(r.revoked_at)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_action(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    r: &ActionRecord,
    seq: i64,
) -> Result<(), ProjectionError> {
    let doc = serde_json::to_value(r).unwrap_or_default();
    sqlx::query(
        "INSERT INTO action_records
           (org_id, action_id, doc, agent_id, swarm_id, action_type, status, outcome_status,
            risk_score, cost_estimate, timestamp_start, approval_expires_at, ledger_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (org_id, action_id) DO UPDATE SET
           doc = EXCLUDED.doc, status = EXCLUDED.status, outcome_status = EXCLUDED.outcome_status,
           cost_estimate = EXCLUDED.cost_estimate, ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(org.as_str())
    .bind(r.action_id.as_str())
    .bind(doc)
    .bind(&r.agent_id)
    .bind(r.swarm_id.as_deref())
    .bind(&r.action_type)
    .bind(r.status.as_str())
    .bind(r.outcome_status.as_str())
    .bind(i32::from(r.risk_score))
    .bind(r.cost_estimate)
    .bind(r.timestamp_start)
    .bind(r.approval_expires_at)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_assumption(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    r: &AssumptionRecord,
    seq: i64,
) -> Result<(), ProjectionError> {
    let doc = serde_json::to_value(r).unwrap_or_default();
    sqlx::query(
        "INSERT INTO assumptions (org_id, assumption_id, action_id, doc, created_at, ledger_seq)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (org_id, assumption_id) DO UPDATE SET doc = EXCLUDED.doc,
                                                           ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(org.as_str())
    .bind(r.assumption_id.as_str())
    .bind(r.action_id.as_str())
    .bind(doc)
    .bind(r.created_at)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
