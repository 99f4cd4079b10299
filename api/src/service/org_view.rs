//! What the guard needs to know, kept in memory: each org's policy view (cached, invalidated
//! by the ledger tail on any policy or settings change) and the decision counters that
//! `rate_limit` policies count (kept current by the ledger tail).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{DecisionCounter, Policy};
use dashclaw_domain::org_settings::{HaltState, OrgSettings, ORG_SETTINGS_ID};
use dashclaw_domain::policy_set::{PolicySet, POLICY_SET_ID};
use dashclaw_domain::OrgId;

use super::aggregates::Aggregates;
use super::Error;

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

    pub async fn get(&self, aggregates: &Aggregates, org: &OrgId) -> Result<Arc<OrgView>, Error> {
        let generation = {
            let inner = self.0.lock().map_err(Error::internal)?;
            if let Some(view) = inner.views.get(org) {
                return Ok(view.clone());
            }
            inner.generations.get(org).copied().unwrap_or(0)
        };
        let policy_set: PolicySet = aggregates.load(org, POLICY_SET_ID).await?;
        let settings: OrgSettings = aggregates.load(org, ORG_SETTINGS_ID).await?;
        let view = Arc::new(OrgView {
            policies: policy_set.policies(),
            version: policy_set.version_hash(),
            halt: settings.halted().cloned(),
            sweeps: settings.sweeps.clone(),
            policy_set,
        });
        let mut inner = self.0.lock().map_err(Error::internal)?;
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
    ) -> Result<(), Error> {
        if self.seeded(org, agent) {
            return Ok(());
        }
        let rows = dashclaw_projections::read::decisions::recent_of_agent(
            pool,
            org,
            agent,
            now - MAX_WINDOW,
            MAX_REMEMBERED as i64,
        )
        .await?;
        let mut map = self.0.lock().map_err(Error::internal)?;
        let decisions = map.entry((org.clone(), agent.to_owned())).or_default();
        for row in rows {
            decisions.insert(row.ledger_seq as u64, row.created_at);
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
