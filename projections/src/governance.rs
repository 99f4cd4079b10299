//! The `governance` projection: action records (the decisions ledger and approvals queue),
//! the action analytics (see `analytics`), assumptions, API keys and the entity records of
//! the smaller aggregates (see `entities`).
//!
//! Each row keeps the aggregate state exactly as the domain folds it (`doc`), so the read
//! model is the aggregate by construction; the other columns are copies for filtering.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use dashclaw_domain::action::{Action, ActionRecord};
use dashclaw_domain::api_key::{ApiKey, ApiKeyRecord};
use dashclaw_domain::assumption::{Assumption, AssumptionRecord};
use dashclaw_domain::identity::{AgentIdentity, Pairing};
use dashclaw_domain::plan::Plan;
use dashclaw_domain::session::Session;
use dashclaw_domain::OrgId;
use futures_util::future::BoxFuture;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::analytics::{self, Deltas};
use crate::entities;
use crate::tracker::{Event, Fold, Prepared, ProjectionError};

/// The key listing moved to [`crate::read::keys`]; kept here for existing callers.
pub use crate::read::keys::{keys_of, KeyListing};

/// Folds actions, assumptions and API keys.
pub struct Governance;

/// Rows touched in one window, written once at the end of it.
#[derive(Default)]
struct Batch {
    actions: HashMap<String, (Action, i64)>,
    /// What each preloaded action counted in the analytics before this window.
    counted: HashMap<String, (analytics::Key, analytics::Counters)>,
    assumptions: HashMap<String, (Assumption, i64)>,
    keys: HashMap<String, (ApiKey, i64)>,
    /// Entity records by (aggregate type, entity id): the aggregate as JSON.
    entities: HashMap<(String, String), (serde_json::Value, i64)>,
}

/// The aggregate types this projection folds: its own and [`entities::TYPES`].
const TYPES: &[&str] = &[
    Action::TYPE,
    Assumption::TYPE,
    ApiKey::TYPE,
    Session::TYPE,
    Plan::TYPE,
    Pairing::TYPE,
    AgentIdentity::TYPE,
];

impl Fold for Governance {
    fn name(&self) -> &'static str {
        "governance"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "action_records",
            "analytics_actions",
            "analytics_approvals",
            "assumptions",
            "api_keys",
            "entity_records",
        ]
    }

    fn prepare<'a>(
        &'a self,
        pool: &'a PgPool,
        org: &'a OrgId,
        events: &'a [Event<'a>],
        previous: Option<&'a Prepared>,
    ) -> BoxFuture<'a, Result<Prepared, ProjectionError>> {
        Box::pin(async move {
            let previous = previous.and_then(|p| p.downcast_ref::<Window>());
            let mut conn = pool.acquire().await?;
            let mut batch = Batch::default();
            preload(&mut conn, org, events, previous, &mut batch).await?;
            for event in events {
                fold(&mut conn, org, &mut batch, event).await?;
            }
            Ok(Box::new(Window::of(batch)) as Prepared)
        })
    }

    fn write<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        org: &'a OrgId,
        prepared: &'a Prepared,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            match prepared.downcast_ref::<Window>() {
                Some(window) => window.write(conn, org).await,
                None => Ok(()),
            }
        })
    }
}

/// A prepared window: the states it ends with (what the next window starts from) and its
/// rows, encoded.
struct Window {
    batch: Batch,
    /// Rows of actions created in this window, and of the others.
    new: ActionColumns,
    changed: ActionColumns,
    deltas: Deltas,
    decided: Vec<analytics::Decided>,
}

impl Window {
    fn of(batch: Batch) -> Self {
        let (mut new, mut changed) = (ActionColumns::default(), ActionColumns::default());
        let mut deltas = Deltas::default();
        let mut decided = Vec::new();
        for (id, (action, seq)) in &batch.actions {
            let Some(r) = &action.record else { continue };
            // What an action counted before is known exactly when it already has a row.
            let counted = batch.counted.get(id);
            deltas.change(counted, r);
            decided.extend(analytics::decided_approval(r));
            match counted {
                Some(_) => changed.push(r, *seq),
                None => new.push(r, *seq),
            }
        }
        Self {
            batch,
            new,
            changed,
            deltas,
            decided,
        }
    }

    async fn write(&self, conn: &mut PgConnection, org: &OrgId) -> Result<(), ProjectionError> {
        insert_actions(conn, org, &self.new).await?;
        upsert_actions(conn, org, &self.changed).await?;
        self.deltas.write(conn, org).await?;
        analytics::write_approvals(conn, org, &self.decided).await?;
        for (assumption, seq) in self.batch.assumptions.values() {
            let Some(r) = &assumption.record else {
                continue;
            };
            write_assumption(conn, org, r, *seq).await?;
        }
        for (key, seq) in self.batch.keys.values() {
            let Some(r) = &key.record else { continue };
            write_key(conn, org, r, *seq).await?;
        }
        write_entities(conn, org, &self.batch.entities).await?;
        Ok(())
    }
}

async fn fold(
    conn: &mut PgConnection,
    org: &OrgId,
    batch: &mut Batch,
    event: &Event<'_>,
) -> Result<(), ProjectionError> {
    let seq = event.ledger_seq;
    match event.aggregate_type {
        Action::TYPE => {
            // Rows this window touches were preloaded; an absent one is a new action.
            let (state, at) = state_of(&mut batch.actions, event.entity);
            state.apply(event.decode(org)?);
            *at = seq;
        }
        Assumption::TYPE => {
            let (state, at) = state_of(&mut batch.assumptions, event.entity);
            state.apply(event.decode(org)?);
            *at = seq;
        }
        ApiKey::TYPE => {
            let entity = event.entity.to_owned();
            let mut state = match batch.keys.remove(&entity) {
                Some((state, _)) => state,
                None => ApiKey {
                    record: load_key(conn, &entity).await?,
                },
            };
            state.apply(event.decode(org)?);
            batch.keys.insert(entity, (state, seq));
        }
        kind if entities::TYPES.contains(&kind) => {
            let key = (kind.to_owned(), event.entity.to_owned());
            let doc = batch.entities.remove(&key).map(|(doc, _)| doc);
            let doc = entities::apply(org, doc, event)?;
            batch.entities.insert(key, (doc, seq));
        }
        _ => {}
    }
    Ok(())
}

/// The state of `entity` and the last event folded into it, a fresh one if absent (updated in
/// place: an aggregate is large to move in and out of the map for every event).
fn state_of<'m, T: Default>(
    map: &'m mut HashMap<String, (T, i64)>,
    entity: &str,
) -> &'m mut (T, i64) {
    map.entry(entity.to_owned()).or_default()
}

/// Loads, with one query per table, the current rows of every action and assumption the window
/// touches.
async fn preload(
    conn: &mut PgConnection,
    org: &OrgId,
    events: &[Event<'_>],
    previous: Option<&Window>,
    batch: &mut Batch,
) -> Result<(), ProjectionError> {
    // What the previous window touched is taken from it (its rows may not be committed yet).
    if let Some(previous) = previous.map(|w| &w.batch) {
        for e in events {
            let entity = e.entity.to_owned();
            match e.aggregate_type {
                Action::TYPE => {
                    if let Some((action, seq)) = previous.actions.get(&entity) {
                        if let Some(r) = &action.record {
                            batch
                                .counted
                                .insert(entity.clone(), analytics::contribution(r));
                        }
                        batch.actions.insert(entity, (action.clone(), *seq));
                    }
                }
                Assumption::TYPE => {
                    if let Some(state) = previous.assumptions.get(&entity) {
                        batch.assumptions.insert(entity, state.clone());
                    }
                }
                ApiKey::TYPE => {
                    if let Some(state) = previous.keys.get(&entity) {
                        batch.keys.insert(entity, state.clone());
                    }
                }
                kind if entities::TYPES.contains(&kind) => {
                    let key = (kind.to_owned(), entity);
                    if let Some(state) = previous.entities.get(&key) {
                        batch.entities.insert(key, state.clone());
                    }
                }
                _ => {}
            }
        }
    }
    let carried = |kind: &str, id: &str| match kind {
        Action::TYPE => batch.actions.contains_key(id),
        Assumption::TYPE => batch.assumptions.contains_key(id),
        kind => batch
            .entities
            .contains_key(&(kind.to_owned(), id.to_owned())),
    };
    // Entities created in this window (their first event here has sequence 1) have no row yet.
    let ids = |kind: &str| -> Vec<&str> {
        let mut first: HashMap<&str, i64> = HashMap::new();
        for e in events.iter().filter(|e| e.aggregate_type == kind) {
            first.entry(e.entity).or_insert(e.sequence);
        }
        first
            .into_iter()
            .filter(|(id, sequence)| *sequence > 1 && !carried(kind, id))
            .map(|(id, _)| id)
            .collect()
    };
    let (actions, assumptions) = (ids(Action::TYPE), ids(Assumption::TYPE));
    let (mut kinds, mut entity_ids) = (Vec::new(), Vec::new());
    for kind in entities::TYPES {
        for id in ids(kind) {
            kinds.push(*kind);
            entity_ids.push(id);
        }
    }
    if !actions.is_empty() {
        let docs: Vec<(String, Json<ActionRecord>)> = sqlx::query_as(
            "SELECT action_id, doc::json FROM action_records WHERE org_id = $1 AND action_id = ANY($2)",
        )
        .bind(org.as_str())
        .bind(&actions)
        .fetch_all(&mut *conn)
        .await?;
        for (id, Json(record)) in docs {
            batch
                .counted
                .insert(id.clone(), analytics::contribution(&record));
            let action = Action {
                record: Some(record),
            };
            batch.actions.insert(id, (action, 0));
        }
    }
    if !assumptions.is_empty() {
        let docs: Vec<(String, Json<AssumptionRecord>)> = sqlx::query_as(
            "SELECT assumption_id, doc FROM assumptions WHERE org_id = $1 AND assumption_id = ANY($2)",
        )
        .bind(org.as_str())
        .bind(&assumptions)
        .fetch_all(&mut *conn)
        .await?;
        for (id, Json(record)) in docs {
            let assumption = Assumption {
                record: Some(record),
            };
            batch.assumptions.insert(id, (assumption, 0));
        }
    }
    if !kinds.is_empty() {
        let docs: Vec<(String, String, Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT aggregate_type, entity_id, doc FROM entity_records
              WHERE org_id = $1
                AND (aggregate_type, entity_id) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))",
        )
        .bind(org.as_str())
        .bind(&kinds)
        .bind(&entity_ids)
        .fetch_all(&mut *conn)
        .await?;
        for (kind, id, Json(doc)) in docs {
            batch.entities.insert((kind, id), (doc, 0));
        }
    }
    Ok(())
}

/// Writes the entity records a window touched, with one statement.
async fn write_entities(
    conn: &mut PgConnection,
    org: &OrgId,
    touched: &HashMap<(String, String), (serde_json::Value, i64)>,
) -> Result<(), ProjectionError> {
    if touched.is_empty() {
        return Ok(());
    }
    let (mut kinds, mut ids, mut docs, mut seqs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((kind, id), (doc, seq)) in touched {
        kinds.push(kind.as_str());
        ids.push(id.as_str());
        docs.push(Json(doc));
        seqs.push(*seq);
    }
    sqlx::query(
        "INSERT INTO entity_records (org_id, aggregate_type, entity_id, doc, ledger_seq)
         SELECT $1, kind, id, doc, seq
           FROM UNNEST($2::text[], $3::text[], $4::jsonb[], $5::int8[]) AS u(kind, id, doc, seq)
         ON CONFLICT (org_id, aggregate_type, entity_id)
           DO UPDATE SET doc = EXCLUDED.doc, ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(org.as_str())
    .bind(&kinds)
    .bind(&ids)
    .bind(&docs)
    .bind(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

async fn load_key(
    conn: &mut PgConnection,
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
    .fetch_optional(conn)
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

async fn write_key(
    conn: &mut PgConnection,
    org: &OrgId,
    r: &ApiKeyRecord,
    seq: i64,
) -> Result<(), ProjectionError> {
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
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns of `action_records`, and the rows an UNNEST of the statement's parameters
/// yields for them.
const ACTION_ROWS: &str = "INSERT INTO action_records
       (org_id, action_id, doc, agent_id, swarm_id, action_type, status, outcome_status,
        risk_score, cost_estimate, timestamp_start, approval_expires_at, ledger_seq, session_id)
     SELECT $1, id, doc, agent, swarm, kind, status, outcome, risk, cost, started,
            expires, seq, session
       FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                   $7::text[], $8::text[], $9::int4[], $10::float8[],
                   $11::timestamptz[], $12::timestamptz[], $13::int8[], $14::text[])
         AS u(id, doc, agent, swarm, kind, status, outcome, risk, cost, started, expires, seq,
              session)";

/// Inserts the rows of actions created in the window, with one statement. A plain insert:
/// such an action has no row yet, so PostgreSQL need not look for one first (a row that did
/// exist would be a bug, and stops the projection with a unique violation).
async fn insert_actions(
    conn: &mut PgConnection,
    org: &OrgId,
    c: &ActionColumns,
) -> Result<(), ProjectionError> {
    write_actions(conn, org, c, ACTION_ROWS).await
}

/// Updates the rows of the other actions the window touched, with one statement.
async fn upsert_actions(
    conn: &mut PgConnection,
    org: &OrgId,
    c: &ActionColumns,
) -> Result<(), ProjectionError> {
    let upsert = format!(
        "{ACTION_ROWS}
         ON CONFLICT (org_id, action_id) DO UPDATE SET
           doc = EXCLUDED.doc, status = EXCLUDED.status, outcome_status = EXCLUDED.outcome_status,
           cost_estimate = EXCLUDED.cost_estimate, approval_expires_at = EXCLUDED.approval_expires_at,
           ledger_seq = EXCLUDED.ledger_seq"
    );
    write_actions(conn, org, c, &upsert).await
}

/// Writes action rows with `statement` (documents travel as JSON text, serialized straight
/// from the record when the window was prepared).
async fn write_actions(
    conn: &mut PgConnection,
    org: &OrgId,
    c: &ActionColumns,
    statement: &str,
) -> Result<(), ProjectionError> {
    if c.id.is_empty() {
        return Ok(());
    }
    sqlx::query(statement)
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
        .bind(&c.session_id)
        .execute(conn)
        .await?;
    Ok(())
}

impl ActionColumns {
    fn push(&mut self, r: &ActionRecord, seq: i64) {
        self.id.push(r.action_id.to_string());
        self.doc.push(serde_json::to_string(r).unwrap_or_default());
        self.agent_id.push(r.agent_id.clone());
        self.swarm_id.push(r.swarm_id.clone());
        self.action_type.push(r.action_type.clone());
        self.status.push(r.status.as_str().to_owned());
        self.outcome_status
            .push(r.outcome_status.as_str().to_owned());
        self.risk_score.push(i32::from(r.risk_score));
        self.cost_estimate.push(r.cost_estimate);
        self.timestamp_start.push(r.timestamp_start);
        self.approval_expires_at.push(r.approval_expires_at);
        self.ledger_seq.push(seq);
        self.session_id.push(r.session_id.clone());
    }
}

#[derive(Default)]
struct ActionColumns {
    id: Vec<String>,
    doc: Vec<String>,
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
    session_id: Vec<Option<String>>,
}

async fn write_assumption(
    conn: &mut PgConnection,
    org: &OrgId,
    r: &AssumptionRecord,
    seq: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO assumptions (org_id, assumption_id, action_id, doc, created_at, ledger_seq)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (org_id, assumption_id) DO UPDATE SET doc = EXCLUDED.doc,
                                                           ledger_seq = EXCLUDED.ledger_seq",
    )
    .bind(org.as_str())
    .bind(r.assumption_id.as_str())
    .bind(r.action_id.as_str())
    .bind(Json(r))
    .bind(r.created_at)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}
