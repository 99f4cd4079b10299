//! The governance loop's shared steps: the per-org policy view (cached, invalidated from the
//! ledger), the rate-limit counters (kept current by the ledger tail), and evaluating +
//! recording a guard decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{
    evaluate, DecisionCounter, GuardContext, GuardRequest, Halt, OperatorGrant, Policy,
};
use dashclaw_domain::guard_decision::{
    DecisionPurpose, GuardDecision, GuardDecisionCommand, GuardDecisionRecord,
};
use dashclaw_domain::ids::{ActionId, GuardDecisionId};
use dashclaw_domain::org_settings::{HaltState, OrgSettings, ORG_SETTINGS_ID};
use dashclaw_domain::policy_set::{PolicySet, POLICY_SET_ID};
use dashclaw_domain::OrgId;

use crate::auth::Caller;
use crate::commands::{Actor, CommandError, Ledger};
use crate::error::ApiError;

/// What the guard needs to know about an org.
#[derive(Debug)]
pub struct OrgView {
    pub policy_set: PolicySet,
    pub policies: Vec<Policy>,
    pub version: String,
    pub halt: Option<HaltState>,
    /// The org's overrides of the sweeps' settings.
    pub sweeps: dashclaw_domain::org_settings::SweepOverrides,
}

/// Per-org views, dropped whenever the ledger shows a policy or settings change. A
/// generation number per org stops a slow load from caching a view older than a change it
/// raced with.
#[derive(Clone, Default)]
pub struct OrgViews(Arc<Mutex<ViewsInner>>);

#[derive(Default)]
struct ViewsInner {
    views: HashMap<OrgId, Arc<OrgView>>,
    generations: HashMap<OrgId, u64>,
}

impl OrgViews {
    pub fn invalidate(&self, org: &OrgId) {
        if let Ok(mut inner) = self.0.lock() {
            inner.views.remove(org);
            *inner.generations.entry(org.clone()).or_default() += 1;
        }
    }

    pub async fn get(&self, ledger: &Ledger, org: &OrgId) -> Result<Arc<OrgView>, ApiError> {
        let generation = {
            let inner = self.0.lock().map_err(ApiError::internal)?;
            if let Some(view) = inner.views.get(org) {
                return Ok(view.clone());
            }
            inner.generations.get(org).copied().unwrap_or(0)
        };
        let policy_set: PolicySet = ledger.load(org, POLICY_SET_ID).await?;
        let settings: OrgSettings = ledger.load(org, ORG_SETTINGS_ID).await?;
        let view = Arc::new(OrgView {
            policies: policy_set.policies(),
            version: policy_set.version_hash(),
            halt: settings.halted().cloned(),
            sweeps: settings.sweeps.clone(),
            policy_set,
        });
        let mut inner = self.0.lock().map_err(ApiError::internal)?;
        if inner.generations.get(org).copied().unwrap_or(0) == generation {
            inner.views.insert(org.clone(), view.clone());
        }
        Ok(view)
    }
}

/// The longest window a rate_limit policy may use (7 days).
const MAX_WINDOW: chrono::Duration = chrono::Duration::minutes(10_080);
/// Per agent, at most this many decisions are remembered.
const MAX_REMEMBERED: usize = 100_000;

/// Guard decisions per (org, agent), fed by the ledger tail from every node and, the first
/// time an agent meets a `rate_limit` policy on this node, seeded from the decision log. Keyed
/// by `ledger_seq`, so a decision seen both ways counts once.
#[derive(Clone, Default)]
pub struct Counters(Arc<Mutex<HashMap<(OrgId, String), AgentDecisions>>>);

#[derive(Default)]
struct AgentDecisions {
    /// `ledger_seq` -> when.
    times: BTreeMap<u64, DateTime<Utc>>,
    seeded: bool,
}

impl AgentDecisions {
    fn insert(&mut self, seq: u64, at: DateTime<Utc>) {
        self.times.insert(seq, at);
        let cutoff = at - MAX_WINDOW;
        while self.times.len() > MAX_REMEMBERED
            || self
                .times
                .first_key_value()
                .is_some_and(|(_, t)| *t < cutoff)
        {
            self.times.pop_first();
        }
    }
}

impl Counters {
    pub fn record(&self, org: &OrgId, agent: &str, seq: u64, at: DateTime<Utc>) {
        if let Ok(mut map) = self.0.lock() {
            map.entry((org.clone(), agent.to_owned()))
                .or_default()
                .insert(seq, at);
        }
    }

    fn seeded(&self, org: &OrgId, agent: &str) -> bool {
        self.0.lock().is_ok_and(|map| {
            map.get(&(org.clone(), agent.to_owned()))
                .is_some_and(|a| a.seeded)
        })
    }

    /// Loads the agent's recent decisions from the decision log once, so that a restarted
    /// node enforces rate limits over the whole window, not only over what it has seen since.
    pub async fn seed(
        &self,
        pool: &sqlx::PgPool,
        org: &OrgId,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if self.seeded(org, agent) {
            return Ok(());
        }
        let rows: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT ledger_seq, created_at FROM guard_decisions
              WHERE org_id = $1 AND agent_id = $2 AND created_at > $3
              ORDER BY ledger_seq DESC LIMIT $4",
        )
        .bind(org.as_str())
        .bind(agent)
        .bind(now - MAX_WINDOW)
        .bind(MAX_REMEMBERED as i64)
        .fetch_all(pool)
        .await?;
        let mut map = self.0.lock().map_err(ApiError::internal)?;
        let decisions = map.entry((org.clone(), agent.to_owned())).or_default();
        for (seq, at) in rows {
            decisions.insert(seq as u64, at);
        }
        decisions.seeded = true;
        Ok(())
    }

    pub fn for_org<'a>(&'a self, org: &'a OrgId) -> OrgCounter<'a> {
        OrgCounter {
            counters: self,
            org,
        }
    }
}

pub struct OrgCounter<'a> {
    counters: &'a Counters,
    org: &'a OrgId,
}

impl DecisionCounter for OrgCounter<'_> {
    fn decisions_since(&self, agent_id: &str, since: DateTime<Utc>) -> u32 {
        let Ok(map) = self.counters.0.lock() else {
            return 0;
        };
        map.get(&(self.org.clone(), agent_id.to_owned()))
            .map(|a| a.times.values().rev().take_while(|t| **t >= since).count() as u32)
            .unwrap_or(0)
    }
}

/// Mints a random id from OS randomness.
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(ApiError::internal)?;
    Ok(bytes)
}

/// Inputs to one recorded evaluation.
pub struct Ask<'a> {
    pub request: GuardRequest,
    pub purpose: DecisionPurpose,
    pub action_id: Option<ActionId>,
    pub idempotency_key: Option<String>,
    pub grant: Option<OperatorGrant<'a>>,
    pub now: DateTime<Utc>,
}

/// Evaluates `ask` under the org's current policies and records the decision in the ledger.
/// The decision is only returned once it is durably recorded.
pub async fn decide(
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    views: &OrgViews,
    counters: &Counters,
    caller: &Caller,
    ask: Ask<'_>,
) -> Result<GuardDecisionRecord, ApiError> {
    let view = views.get(ledger, &caller.org).await?;
    if let Some(agent) = ask.request.agent_id.as_deref() {
        let limited = view
            .policies
            .iter()
            .any(|p| p.active && p.policy_type == "rate_limit" && p.applies_to(Some(agent)));
        if limited {
            counters.seed(pool, &caller.org, agent, ask.now).await?;
        }
    }
    let counter = counters.for_org(&caller.org);
    let halt = view.halt.as_ref().map(|h| Halt {
        actor: &h.actor,
        reason: h.reason.as_deref().unwrap_or("no reason given"),
    });
    let evaluation = evaluate(
        &ask.request,
        &GuardContext {
            policies: &view.policies,
            halt,
            counter: &counter,
            operator_grant: ask.grant,
            now: ask.now,
        },
    );
    let record = GuardDecisionRecord {
        decision_id: GuardDecisionId::random(random()?),
        request: ask.request,
        evaluation,
        policy_set_version: view.version.clone(),
        halted: view.halt.is_some(),
        principal: caller.principal.clone(),
        purpose: ask.purpose,
        action_id: ask.action_id,
        idempotency_key: ask.idempotency_key,
        evaluated_at: ask.now,
    };
    let actor = Actor::of(&caller.principal, record.request.agent_id.as_deref());
    let id = record.decision_id.to_string();
    match ledger
        .create::<GuardDecision>(
            &caller.org,
            &id,
            GuardDecisionCommand::Record(Box::new(record.clone())),
            &actor,
        )
        .await
    {
        Ok(_) => Ok(record),
        Err(CommandError::Failed(e)) => Err(e),
        Err(CommandError::Rejected(e)) => Err(ApiError::internal(e)),
    }
}
