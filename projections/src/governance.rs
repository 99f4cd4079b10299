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
use dashclaw_domain::guard_decision::GuardDecision;
use dashclaw_domain::OrgId;
use serde::de::DeserializeOwned;
use sqlx::{PgPool, Postgres, Transaction};

/// The checkpoint name of this projection.
pub const NAME: &str = "governance";
/// Events folded per transaction.
const BATCH: i64 = 2000;

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
    batch: i64,
}

/// `(ledger_seq, aggregate_type, aggregate_id, payload)`.
type Row = (i64, String, String, Option<String>);

/// The fields of a stored `GuardDecisionRecorded` event that the decision log filters on
/// (the rest of the record is read from the event itself when a decision is shown).
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

/// Guard decisions of a batch, column by column, inserted with one statement.
#[derive(Default)]
struct Decisions {
    id: Vec<String>,
    agent_id: Vec<Option<String>>,
    decision: Vec<String>,
    idempotency_key: Vec<Option<String>>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    ledger_seq: Vec<i64>,
}

/// Rows touched in one batch, written once at the end of it.
#[derive(Default)]
struct Batch {
    actions: HashMap<String, (Action, i64)>,
    assumptions: HashMap<String, (Assumption, i64)>,
    keys: HashMap<String, (ApiKey, i64)>,
    decisions: Decisions,
}

impl Governance {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, batch: BATCH }
    }

    /// Folds at most `events` per transaction (tests use small batches to stop mid-stream).
    pub fn with_batch(mut self, events: i64) -> Self {
        self.batch = events.max(1);
        self
    }

    /// Folds every event of `org` after the checkpoint; returns the new checkpoint. Safe to
    /// call from many tasks and nodes at once: batches serialize on the checkpoint row.
    pub async fn catch_up(&self, org: &OrgId) -> Result<u64, ProjectionError> {
        self.catch_up_with(org, &|_| {}).await
    }

    /// [`Self::catch_up`], calling `progress` with the number of events of each batch.
    pub async fn catch_up_with(
        &self,
        org: &OrgId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        loop {
            let (position, folded) = self.fold_batch(org).await?;
            progress(folded as u64);
            if folded < self.batch as usize {
                return Ok(position);
            }
        }
    }

    /// Events of the ledger not yet folded in (for a progress bar).
    pub async fn behind(&self) -> Result<u64, ProjectionError> {
        let behind: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(h.size - COALESCE(c.ledger_seq, 0)), 0)::int8
               FROM ledger_heads h LEFT JOIN projection_checkpoints c
                 ON c.org_id = h.org_id AND c.projection = $1",
        )
        .bind(NAME)
        .fetch_one(&self.pool)
        .await?;
        Ok(behind.max(0) as u64)
    }

    /// Forgets everything this projection built, so that the next catch-up rebuilds it from
    /// the first event. (API keys stop authenticating until their events are folded again.)
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("TRUNCATE action_records, guard_decisions, assumptions, api_keys")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(NAME)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Catches every org up; returns how many events were folded.
    pub async fn catch_up_all(&self) -> Result<u64, ProjectionError> {
        self.catch_up_all_with(&|_| {}).await
    }

    /// [`Self::catch_up_all`] with progress.
    pub async fn catch_up_all_with(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let before = self.total_position().await?;
        let orgs = dashclaw_store::chain::orgs(&self.pool)
            .await
            .map_err(|e| match e {
                dashclaw_store::StoreError::Database(e) => ProjectionError::Database(e),
                other => ProjectionError::Database(sqlx::Error::Protocol(other.to_string())),
            })?;
        for org in &orgs {
            self.catch_up_with(org, progress).await?;
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
        // One statement creates the checkpoint row if needed, locks it (batches of one org
        // serialize here, across nodes too) and reads it.
        let position: i64 = sqlx::query_scalar(
            "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
             INSERT INTO projection_checkpoints (projection, org_id, ledger_seq)
             SELECT $1, $2, 0 FROM quick
             ON CONFLICT (projection, org_id)
               DO UPDATE SET ledger_seq = projection_checkpoints.ledger_seq
             RETURNING ledger_seq",
        )
        .bind(NAME)
        .bind(org.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT ledger_seq, aggregate_type, aggregate_id, payload::text
               FROM events WHERE org_id = $1 AND ledger_seq > $2 ORDER BY ledger_seq LIMIT $3",
        )
        .bind(org.as_str())
        .bind(position)
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            tx.commit().await?;
            return Ok((position as u64, 0));
        };
        let mut batch = Batch::default();
        preload(&mut tx, org, &rows, &mut batch).await?;
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
        let entity = entity_of(aggregate_id).to_owned();
        match aggregate_type.as_str() {
            Action::TYPE => {
                let event: ActionEvent = decode(org, *seq, aggregate_type, payload)?;
                // Rows this batch touches were preloaded; an absent one is a new action.
                let (mut state, _) = batch.actions.remove(&entity).unwrap_or_default();
                state.apply(event);
                batch.actions.insert(entity, (state, *seq));
            }
            Assumption::TYPE => {
                let event: AssumptionEvent = decode(org, *seq, aggregate_type, payload)?;
                let (mut state, _) = batch.assumptions.remove(&entity).unwrap_or_default();
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
                let DecisionRecorded::Recorded(d) = decode(org, *seq, aggregate_type, payload)?;
                let c = &mut batch.decisions;
                c.id.push(d.decision_id);
                c.agent_id.push(d.request.agent_id);
                c.decision.push(d.evaluation.decision);
                c.idempotency_key.push(d.idempotency_key);
                c.created_at.push(d.evaluated_at);
                c.ledger_seq.push(*seq);
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
    payload: &Option<String>,
) -> Result<T, ProjectionError> {
    let payload = payload.as_deref().unwrap_or("null");
    serde_json::from_str(payload).map_err(|e| ProjectionError::Undecodable {
        org: org.to_string(),
        ledger_seq: seq as u64,
        aggregate_type: aggregate_type.to_owned(),
        detail: e.to_string(),
    })
}

fn entity_of(aggregate_id: &str) -> &str {
    aggregate_id
        .split_once('/')
        .map(|(_, e)| e)
        .unwrap_or(aggregate_id)
}

/// Loads, with one query per table, the current rows of every action and assumption the batch
/// touches.
async fn preload(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    rows: &[Row],
    batch: &mut Batch,
) -> Result<(), ProjectionError> {
    let ids = |kind: &str| -> Vec<String> {
        let mut ids: Vec<String> = rows
            .iter()
            .filter(|r| r.1 == kind)
            .map(|r| entity_of(&r.2).to_owned())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let actions = ids(Action::TYPE);
    if !actions.is_empty() {
        let docs: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT action_id, doc FROM action_records WHERE org_id = $1 AND action_id = ANY($2)",
        )
        .bind(org.as_str())
        .bind(&actions)
        .fetch_all(&mut **tx)
        .await?;
        for (id, doc) in docs {
            let record: Option<ActionRecord> = serde_json::from_value(doc).ok();
            batch.actions.insert(id, (Action { record }, 0));
        }
    }
    let assumptions = ids(Assumption::TYPE);
    if !assumptions.is_empty() {
        let docs: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT assumption_id, doc FROM assumptions WHERE org_id = $1 AND assumption_id = ANY($2)",
        )
        .bind(org.as_str())
        .bind(&assumptions)
        .fetch_all(&mut **tx)
        .await?;
        for (id, doc) in docs {
            let record: Option<AssumptionRecord> = serde_json::from_value(doc).ok();
            batch.assumptions.insert(id, (Assumption { record }, 0));
        }
    }
    Ok(())
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
               (org_id, decision_id, agent_id, decision, idempotency_key, created_at, ledger_seq)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::timestamptz[], $7::int8[])
             ON CONFLICT (org_id, decision_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(&d.id)
        .bind(&d.agent_id)
        .bind(&d.decision)
        .bind(&d.idempotency_key)
        .bind(&d.created_at)
        .bind(&d.ledger_seq)
        .execute(&mut **tx)
        .await?;
    }
    write_actions(tx, org, batch.actions).await?;
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

/// Upserts every action row of a batch with one statement.
async fn write_actions(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    actions: HashMap<String, (Action, i64)>,
) -> Result<(), ProjectionError> {
    let mut c = ActionColumns::default();
    for (_, (action, seq)) in actions {
        let Some(r) = action.record else { continue };
        c.id.push(r.action_id.to_string());
        c.doc.push(serde_json::to_value(&r).unwrap_or_default());
        c.agent_id.push(r.agent_id.clone());
        c.swarm_id.push(r.swarm_id.clone());
        c.action_type.push(r.action_type.clone());
        c.status.push(r.status.as_str().to_owned());
        c.outcome_status.push(r.outcome_status.as_str().to_owned());
        c.risk_score.push(i32::from(r.risk_score));
        c.cost_estimate.push(r.cost_estimate);
        c.timestamp_start.push(r.timestamp_start);
        c.approval_expires_at.push(r.approval_expires_at);
        c.ledger_seq.push(seq);
    }
    if c.id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO action_records
           (org_id, action_id, doc, agent_id, swarm_id, action_type, status, outcome_status,
            risk_score, cost_estimate, timestamp_start, approval_expires_at, ledger_seq)
         SELECT $1, * FROM UNNEST($2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::int4[], $10::float8[],
                                  $11::timestamptz[], $12::timestamptz[], $13::int8[])
         ON CONFLICT (org_id, action_id) DO UPDATE SET
           doc = EXCLUDED.doc, status = EXCLUDED.status, outcome_status = EXCLUDED.outcome_status,
           cost_estimate = EXCLUDED.cost_estimate, approval_expires_at = EXCLUDED.approval_expires_at,
           ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(org.as_str())
    .bind(&c.id)
    .bind(&c.doc)
    .bind(&c.agent_id)
    .bind(&c.swarm_id)
    .bind(&c.action_type)
    .bind(&c.status)
    .bind(&c.outcome_status)
    .bind(&c.risk_score)
    .bind(&c.cost_estimate)
    .bind(&c.timestamp_start)
    .bind(&c.approval_expires_at)
    .bind(&c.ledger_seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Default)]
struct ActionColumns {
    id: Vec<String>,
    doc: Vec<serde_json::Value>,
    agent_id: Vec<String>,
    swarm_id: Vec<Option<String>>,
    action_type: Vec<String>,
    status: Vec<String>,
    outcome_status: Vec<String>,
    risk_score: Vec<i32>,
    cost_estimate: Vec<Option<f64>>,
    timestamp_start: Vec<chrono::DateTime<chrono::Utc>>,
    approval_expires_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    ledger_seq: Vec<i64>,
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
