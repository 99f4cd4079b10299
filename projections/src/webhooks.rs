//! The `webhooks` tracking projection: folds webhook registrations into `webhooks` and turns
//! every other ledger event into outbox rows, one per (event type, subscribed webhook), in
//! the same transaction as the projection's per-org checkpoint. A crash or restart can
//! therefore neither lose nor double a delivery: either the batch (rows and checkpoint) is
//! committed, or it is folded again from the ledger.
//!
//! Subscriptions are matched in ledger order: a webhook gets the events recorded after its
//! registration and before its deletion, however far behind the fold runs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use dashclaw_domain::action::{Action, ActionEvent, ActionRecord, ActionStatus};
use dashclaw_domain::assumption::{Assumption, AssumptionEvent};
use dashclaw_domain::guard_decision::{GuardDecision, GuardDecisionEvent};
use dashclaw_domain::webhook::{Webhook, WebhookEvent, WebhookRecord};
use dashclaw_domain::OrgId;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::tracker::ProjectionError;

/// The checkpoint name of this projection.
pub const NAME: &str = "webhooks";
/// Events folded per transaction.
const BATCH: i64 = 1000;

/// `(ledger_seq, aggregate_type, aggregate_id, sequence, payload, recorded_at)`.
type Row = (i64, String, String, i64, String, DateTime<Utc>);

/// One delivery to insert.
struct Queued {
    delivery_id: String,
    webhook_id: String,
    event_type: String,
    ledger_seq: i64,
    body: String,
}

/// Folds the ledger into webhook registrations and the delivery outbox.
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    batch: i64,
}

/// The delivery id of `event_type` at `ledger_seq` for `webhook`: derived, so that the same
/// delivery always has the same id (receivers de-duplicate on it).
pub fn delivery_id(org: &OrgId, webhook: &str, ledger_seq: i64, event_type: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"dashclaw-webhook-delivery/v1\0")
        .chain_update(org.as_str())
        .chain_update(b"\0")
        .chain_update(webhook)
        .chain_update(b"\0")
        .chain_update(ledger_seq.to_string())
        .chain_update(b"\0")
        .chain_update(event_type)
        .finalize();
    format!("whd_{}", hex::encode(&digest[..16]))
}

/// The JSON body of a delivery (the exact bytes that are signed and sent).
pub fn body(
    delivery_id: &str,
    event_type: &str,
    org: &OrgId,
    ledger_seq: Option<i64>,
    created_at: DateTime<Utc>,
    data: &Value,
) -> String {
    json!({
        "id": delivery_id,
        "event": event_type,
        "org_id": org.as_str(),
        "ledger_seq": ledger_seq,
        "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

impl Outbox {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, batch: BATCH }
    }

    /// Folds every event of `org` after the checkpoint; returns how many deliveries were
    /// queued. Safe to call from many tasks and nodes at once: batches serialize on the
    /// checkpoint row.
    pub async fn catch_up(&self, org: &OrgId) -> Result<u64, ProjectionError> {
        let mut queued = 0;
        loop {
            let (more, q) = self.fold_batch(org).await?;
            queued += q;
            if !more {
                return Ok(queued);
            }
        }
    }

    /// The orgs that have at least one live webhook (as folded so far).
    pub async fn listening_orgs(&self) -> Result<Vec<OrgId>, ProjectionError> {
        let orgs: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT org_id FROM webhooks WHERE deleted_at IS NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(orgs
            .into_iter()
            .filter_map(|o| OrgId::new(o).ok())
            .collect())
    }

    /// Catches every org up; returns how many deliveries were queued.
    pub async fn catch_up_all(&self) -> Result<u64, ProjectionError> {
        let orgs: Vec<String> = sqlx::query_scalar(
            "SELECT h.org_id FROM ledger_heads h LEFT JOIN projection_checkpoints c
                 ON c.org_id = h.org_id AND c.projection = $1
              WHERE h.size > COALESCE(c.ledger_seq, 0)",
        )
        .bind(NAME)
        .fetch_all(&self.pool)
        .await?;
        let mut queued = 0;
        for org in orgs {
            if let Ok(org) = OrgId::new(org) {
                queued += self.catch_up(&org).await?;
            }
        }
        Ok(queued)
    }

    /// Folds one batch; returns whether there may be more, and how many deliveries it queued.
    async fn fold_batch(&self, org: &OrgId) -> Result<(bool, u64), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        // Creates the checkpoint row if needed and locks it: one org's batches serialize here,
        // across nodes too. (Unlike read models, this commit is a normal durable one.)
        let position: i64 = sqlx::query_scalar(
            "INSERT INTO projection_checkpoints (projection, org_id, ledger_seq) VALUES ($1, $2, 0)
             ON CONFLICT (projection, org_id)
               DO UPDATE SET ledger_seq = projection_checkpoints.ledger_seq
             RETURNING ledger_seq",
        )
        .bind(NAME)
        .bind(org.as_str())
        .fetch_one(&mut *tx)
        .await?;
        // The org's live registrations as of the checkpoint, updated in ledger order below.
        let mut hooks = active(&mut tx, org).await?;
        if hooks.is_empty() {
            // Nobody listens: skip to the next registration (or the head) without reading
            // the events in between, so that an org without webhooks costs next to nothing.
            // The head first: every event up to it is committed, and a registration
            // committed after this read lies beyond it.
            let head: i64 = sqlx::query_scalar(
                "SELECT COALESCE(max(size), 0) FROM ledger_heads WHERE org_id = $1",
            )
            .bind(org.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT min(ledger_seq) FROM events
                  WHERE aggregate_type = $1 AND org_id = $2 AND ledger_seq > $3 AND ledger_seq <= $4",
            )
            .bind(Webhook::TYPE)
            .bind(org.as_str())
            .bind(position)
            .bind(head)
            .fetch_one(&mut *tx)
            .await?;
            let skip_to = next.map_or(head, |seq| seq - 1);
            if skip_to > position {
                set_checkpoint(&mut tx, org, skip_to).await?;
                tx.commit().await?;
                return Ok((next.is_some(), 0));
            }
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT ledger_seq, aggregate_type, aggregate_id, sequence, payload::text, recorded_at
               FROM events WHERE org_id = $1 AND ledger_seq > $2 ORDER BY ledger_seq LIMIT $3",
        )
        .bind(org.as_str())
        .bind(position)
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last().map(|r| r.0) else {
            tx.commit().await?;
            return Ok((false, 0));
        };
        let mut changed: HashMap<String, (WebhookRecord, i64)> = HashMap::new();
        let mut queued = Vec::new();
        for row in &rows {
            let (seq, aggregate_type, aggregate_id, _, payload, _) = row;
            if aggregate_type == Webhook::TYPE {
                let event: WebhookEvent = decode(org, *seq, aggregate_type, payload)?;
                let entity = entity_of(aggregate_id).to_owned();
                let mut state = Webhook {
                    record: match changed.remove(&entity) {
                        Some((r, _)) => Some(r),
                        None => load(&mut tx, org, &entity).await?,
                    },
                };
                state.apply(event);
                if let Some(r) = state.record {
                    if r.deleted_at.is_none() {
                        hooks.insert(entity.clone(), r.clone());
                    } else {
                        hooks.remove(&entity);
                    }
                    changed.insert(entity, (r, *seq));
                }
                continue;
            }
            if hooks.is_empty() {
                continue;
            }
            for (event_type, data) in webhook_events(&mut tx, org, row).await? {
                for hook in hooks.values() {
                    if !hook.subscribes_to(event_type) {
                        continue;
                    }
                    let id = delivery_id(org, hook.id.as_str(), *seq, event_type);
                    queued.push(Queued {
                        body: body(&id, event_type, org, Some(*seq), row.5, &data),
                        delivery_id: id,
                        webhook_id: hook.id.to_string(),
                        event_type: event_type.to_owned(),
                        ledger_seq: *seq,
                    });
                }
            }
        }
        let mut deleted = Vec::new();
        for (_, (r, seq)) in changed {
            if r.deleted_at.is_some() {
                deleted.push(r.id.to_string());
            }
            sqlx::query(
                "INSERT INTO webhooks
                   (org_id, webhook_id, url, events, created_by, created_at, deleted_at, ledger_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (org_id, webhook_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at,
                                                                ledger_seq = EXCLUDED.ledger_seq",
            )
            .bind(org.as_str())
            .bind(r.id.as_str())
            .bind(&r.url)
            .bind(&r.events)
            .bind(&r.created_by)
            .bind(r.created_at)
            .bind(r.deleted_at)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        let inserted = insert_outbox(&mut tx, org, queued).await?;
        if !deleted.is_empty() {
            // A deleted webhook gets nothing more. Rows being attempted right now are left
            // alone (not waited for); the worker cancels them when it next claims them.
            sqlx::query(
                "UPDATE webhook_outbox SET state = 'cancelled', finished_at = clock_timestamp()
                  WHERE delivery_id IN (
                    SELECT delivery_id FROM webhook_outbox
                     WHERE org_id = $1 AND webhook_id = ANY($2) AND state = 'pending'
                       FOR UPDATE SKIP LOCKED)",
            )
            .bind(org.as_str())
            .bind(&deleted)
            .execute(&mut *tx)
            .await?;
        }
        set_checkpoint(&mut tx, org, last).await?;
        tx.commit().await?;
        Ok((rows.len() as i64 == self.batch, inserted))
    }
}

async fn set_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    seq: i64,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET ledger_seq = $3 WHERE projection = $1 AND org_id = $2",
    )
    .bind(NAME)
    .bind(org.as_str())
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_outbox(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    queued: Vec<Queued>,
) -> Result<u64, ProjectionError> {
    if queued.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(queued.len());
    let mut hooks = Vec::with_capacity(queued.len());
    let mut types = Vec::with_capacity(queued.len());
    let mut seqs = Vec::with_capacity(queued.len());
    let mut bodies = Vec::with_capacity(queued.len());
    for q in queued {
        ids.push(q.delivery_id);
        hooks.push(q.webhook_id);
        types.push(q.event_type);
        seqs.push(q.ledger_seq);
        bodies.push(q.body);
    }
    // The ids are derived from (org, webhook, event, type), so a fold that somehow ran twice
    // could not queue a delivery twice.
    let done = sqlx::query(
        "INSERT INTO webhook_outbox (delivery_id, org_id, webhook_id, event_type, ledger_seq, body)
         SELECT u.id, $1, u.hook, u.kind, u.seq, u.body
           FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[])
                AS u(id, hook, kind, seq, body)
         ON CONFLICT DO NOTHING",
    )
    .bind(org.as_str())
    .bind(&ids)
    .bind(&hooks)
    .bind(&types)
    .bind(&seqs)
    .bind(&bodies)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// The webhook event types a ledger event stands for, each with its `data`.
async fn webhook_events(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    row: &Row,
) -> Result<Vec<(&'static str, Value)>, ProjectionError> {
    let (seq, aggregate_type, aggregate_id, sequence, payload, _) = row;
    let mut out = Vec::new();
    match aggregate_type.as_str() {
        Action::TYPE => {
            let event: ActionEvent = decode(org, *seq, aggregate_type, payload)?;
            let record = match &event {
                ActionEvent::Recorded(r) => Some(ActionRecord::clone(r)),
                _ => crate::action_at(&mut **tx, aggregate_id, *sequence).await?,
            };
            let Some(record) = record else {
                return Ok(out);
            };
            let row = action_row(org, &record);
            match event {
                ActionEvent::Recorded(_) => {
                    out.push(("action.created", row.clone()));
                    if record.status == ActionStatus::PendingApproval {
                        out.push(("approval_pending", row));
                    }
                }
                ActionEvent::ApprovalGranted { .. } => out.push(("approval_granted", row)),
                ActionEvent::ApprovalDenied { .. } => out.push(("approval_denied", row)),
                ActionEvent::ApprovalExpired { .. } => out.push(("approval_expired", row)),
                ActionEvent::ConfirmationLost { at } => {
                    out.push(("lost_confirmation", row));
                    out.push((
                        "signal.detected",
                        json!({
                            "type": "lost_confirmation",
                            "severity": "red",
                            "action_id": record.action_id.as_str(),
                            "agent_id": record.agent_id,
                            "message": "The agent never reported the outcome of an action it was allowed to run",
                            "detected_at": ts(at),
                        }),
                    ));
                }
                _ => {}
            }
        }
        GuardDecision::TYPE => {
            let GuardDecisionEvent::Recorded(d) = decode(org, *seq, aggregate_type, payload)?;
            let mut data = serde_json::to_value(&d).unwrap_or_default();
            if let Value::Object(m) = &mut data {
                m.insert("org_id".into(), json!(org.as_str()));
            }
            out.push(("decision.created", data));
        }
        Assumption::TYPE => {
            let event: AssumptionEvent = decode(org, *seq, aggregate_type, payload)?;
            if let AssumptionEvent::Invalidated { reason, at } = event {
                let signal = json!({
                    "type": "assumption_drift",
                    "severity": "amber",
                    "assumption_id": entity_of(aggregate_id),
                    "message": format!("Assumption invalidated: {reason}"),
                    "detected_at": ts(at),
                });
                out.push(("assumption_drift", signal.clone()));
                out.push(("signal.detected", signal));
            }
        }
        _ => {}
    }
    Ok(out)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The action row as the REST API shows it (the domain record plus the org).
fn action_row(org: &OrgId, record: &ActionRecord) -> Value {
    let mut row = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut row {
        map.insert("org_id".into(), json!(org.as_str()));
    }
    row
}

type HookRow = (String, String, Vec<String>, String, DateTime<Utc>);

fn record_of(
    (id, url, events, created_by, created_at): HookRow,
    deleted_at: Option<DateTime<Utc>>,
) -> Option<WebhookRecord> {
    Some(WebhookRecord {
        id: dashclaw_domain::ids::WebhookId::parse(&id).ok()?,
        url,
        events,
        secret_sha256: String::new(),
        created_by,
        created_at,
        deleted_at,
    })
}

async fn active(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
) -> Result<HashMap<String, WebhookRecord>, ProjectionError> {
    let rows: Vec<HookRow> = sqlx::query_as(
        "SELECT webhook_id, url, events, created_by, created_at FROM webhooks
          WHERE org_id = $1 AND deleted_at IS NULL",
    )
    .bind(org.as_str())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| record_of(r, None))
        .map(|r| (r.id.to_string(), r))
        .collect())
}

async fn load(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    id: &str,
) -> Result<Option<WebhookRecord>, ProjectionError> {
    type Full = (
        String,
        String,
        Vec<String>,
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );
    let row: Option<Full> = sqlx::query_as(
        "SELECT webhook_id, url, events, created_by, created_at, deleted_at FROM webhooks
              WHERE org_id = $1 AND webhook_id = $2",
    )
    .bind(org.as_str())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.and_then(|(id, url, events, by, at, deleted)| {
        record_of((id, url, events, by, at), deleted)
    }))
}

fn decode<T: serde::de::DeserializeOwned>(
    org: &OrgId,
    seq: i64,
    aggregate_type: &str,
    payload: &str,
) -> Result<T, ProjectionError> {
    crate::storable::decode(payload).map_err(|e| ProjectionError::Undecodable {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let org = OrgId::new("org_a").unwrap();
        let a = delivery_id(&org, "wh_1", 7, "action.created");
        assert_eq!(a, delivery_id(&org, "wh_1", 7, "action.created"));
        assert_eq!(a.len(), 4 + 32);
        assert_ne!(a, delivery_id(&org, "wh_1", 7, "approval_pending"));
        assert_ne!(a, delivery_id(&org, "wh_2", 7, "action.created"));
        assert_ne!(a, delivery_id(&org, "wh_1", 8, "action.created"));
    }
}
