//! The analytics read models, kept by the projections that own their sources: per day, agent,
//! action type and model, the counters of actions (`analytics_actions`, folded with the
//! action records); each decided approval with its time to decision (`analytics_approvals`);
//! guard decisions per day, agent and verdict (`analytics_decisions`).
//!
//! An action's counters are a pure function of its record ([`contribution`]); a window adds
//! `new - old` for every action it touched, so the sums stay exact under any batching and a
//! rebuild gives the same numbers. Costs are counted in integer micro-dollars for the same
//! reason (floating-point sums depend on their order).

use std::collections::HashMap;

use chrono::NaiveDate;
use dashclaw_domain::action::{ActionRecord, ActionStatus};
use dashclaw_domain::guard::Verdict;
use dashclaw_domain::OrgId;
use sqlx::PgConnection;

/// The counter columns of `analytics_actions`, in [`Counters`] order.
pub const COUNTERS: [&str; 13] = [
    "actions",
    "completed",
    "failed",
    "blocked",
    "held",
    "approved",
    "denied",
    "expired",
    "tokens_in",
    "tokens_out",
    "unpriced_tokens_in",
    "unpriced_tokens_out",
    "cost_reported_micro_usd",
];

/// `(day, agent_id, action_type, model or "")`.
pub type Key = (NaiveDate, String, String, String);
pub type Counters = [i64; COUNTERS.len()];

/// What one action adds to its group's counters.
pub fn contribution(r: &ActionRecord) -> (Key, Counters) {
    let held = r.guard_verdict == Verdict::RequireApproval;
    let expired = held && r.status == ActionStatus::Expired;
    let tokens_in = r.tokens_in.unwrap_or(0) as i64;
    let tokens_out = r.tokens_out.unwrap_or(0) as i64;
    let unpriced = r.cost_estimate.is_none();
    let key = (
        r.timestamp_start.date_naive(),
        r.agent_id.clone(),
        r.action_type.clone(),
        r.model.clone().unwrap_or_default(),
    );
    let counters = [
        1,
        i64::from(r.status == ActionStatus::Completed),
        i64::from(r.status == ActionStatus::Failed),
        i64::from(r.status == ActionStatus::Blocked),
        i64::from(held),
        i64::from(held && r.approved_by.is_some()),
        i64::from(held && r.approval_decided_at.is_some() && r.approved_by.is_none() && !expired),
        i64::from(expired),
        tokens_in,
        tokens_out,
        if unpriced { tokens_in } else { 0 },
        if unpriced { tokens_out } else { 0 },
        r.cost_estimate.map_or(0, |c| (c * 1e6).round() as i64),
    ];
    (key, counters)
}

/// Counter changes of one window, by group.
#[derive(Default)]
pub struct Deltas(HashMap<Key, Counters>);

impl Deltas {
    /// Records that an action went from `before` (absent when new) to `after`.
    pub fn change(&mut self, before: Option<&(Key, Counters)>, after: &ActionRecord) {
        let (key, counters) = contribution(after);
        if let Some((old_key, old)) = before {
            if *old_key == key && *old == counters {
                return;
            }
            let slot = self.0.entry(old_key.clone()).or_insert([0; COUNTERS.len()]);
            slot.iter_mut().zip(old).for_each(|(s, o)| *s -= o);
        }
        let slot = self.0.entry(key).or_insert([0; COUNTERS.len()]);
        slot.iter_mut().zip(counters).for_each(|(s, n)| *s += n);
    }

    /// Adds the window's changes to `analytics_actions` with one statement.
    pub async fn write(&self, conn: &mut PgConnection, org: &OrgId) -> Result<(), sqlx::Error> {
        let groups: Vec<_> = self
            .0
            .iter()
            .filter(|(_, c)| c.iter().any(|n| *n != 0))
            .collect();
        if groups.is_empty() {
            return Ok(());
        }
        let columns = COUNTERS.join(", ");
        let arrays: Vec<String> = (0..COUNTERS.len())
            .map(|i| format!("${}::int8[]", i + 6))
            .collect();
        let updates: Vec<String> = COUNTERS
            .iter()
            .map(|c| format!("{c} = analytics_actions.{c} + EXCLUDED.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO analytics_actions (org_id, day, agent_id, action_type, model, {columns})
             SELECT $1, * FROM UNNEST($2::date[], $3::text[], $4::text[], $5::text[], {})
             ON CONFLICT (org_id, day, agent_id, action_type, model) DO UPDATE SET {}",
            arrays.join(", "),
            updates.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(groups.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(groups.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>())
            .bind(groups.iter().map(|(k, _)| k.2.as_str()).collect::<Vec<_>>())
            .bind(groups.iter().map(|(k, _)| k.3.as_str()).collect::<Vec<_>>());
        for i in 0..COUNTERS.len() {
            query = query.bind(groups.iter().map(|(_, c)| c[i]).collect::<Vec<_>>());
        }
        query.execute(conn).await?;
        Ok(())
    }
}

/// A decided (approved or denied, not expired) approval and how long it took.
pub struct Decided {
    pub action_id: String,
    pub day: NaiveDate,
    pub agent_id: String,
    pub action_type: String,
    pub seconds: f64,
}

/// The decided approval `r` is, if it is one.
pub fn decided_approval(r: &ActionRecord) -> Option<Decided> {
    let decided = r.approval_decided_at?;
    (r.guard_verdict == Verdict::RequireApproval && r.status != ActionStatus::Expired).then(|| {
        Decided {
            action_id: r.action_id.to_string(),
            day: r.timestamp_start.date_naive(),
            agent_id: r.agent_id.clone(),
            action_type: r.action_type.clone(),
            seconds: (decided - r.timestamp_start).num_milliseconds() as f64 / 1e3,
        }
    })
}

/// Records the window's decided approvals (a decision is final, so rows only appear).
pub async fn write_approvals(
    conn: &mut PgConnection,
    org: &OrgId,
    decided: &[Decided],
) -> Result<(), sqlx::Error> {
    if decided.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO analytics_approvals (org_id, action_id, day, agent_id, action_type, seconds)
         SELECT $1, * FROM UNNEST($2::text[], $3::date[], $4::text[], $5::text[], $6::float8[])
         ON CONFLICT (org_id, action_id) DO UPDATE SET seconds = EXCLUDED.seconds",
    )
    .bind(org.as_str())
    .bind(
        decided
            .iter()
            .map(|d| d.action_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(decided.iter().map(|d| d.day).collect::<Vec<_>>())
    .bind(
        decided
            .iter()
            .map(|d| d.agent_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        decided
            .iter()
            .map(|d| d.action_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(decided.iter().map(|d| d.seconds).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a window's guard decisions, counted by `(day, agent or "", verdict)`.
pub async fn write_decisions(
    conn: &mut PgConnection,
    org: &OrgId,
    counts: &HashMap<(NaiveDate, String, String), i64>,
) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let counts: Vec<_> = counts.iter().collect();
    sqlx::query(
        "INSERT INTO analytics_decisions (org_id, day, agent_id, decision, decisions)
         SELECT $1, * FROM UNNEST($2::date[], $3::text[], $4::text[], $5::int8[])
         ON CONFLICT (org_id, day, agent_id, decision)
           DO UPDATE SET decisions = analytics_decisions.decisions + EXCLUDED.decisions",
    )
    .bind(org.as_str())
    .bind(counts.iter().map(|(k, _)| k.0).collect::<Vec<_>>())
    .bind(counts.iter().map(|(k, _)| k.1.as_str()).collect::<Vec<_>>())
    .bind(counts.iter().map(|(k, _)| k.2.as_str()).collect::<Vec<_>>())
    .bind(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}
