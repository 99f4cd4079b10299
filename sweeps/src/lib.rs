//! Background sweeps: time-driven transitions, each a pure decision ([`decide`]) plus a loop
//! that acts only by sending commands through [`Effects`], so a race with an agent's own
//! report is settled by the aggregate (exactly one terminal outcome). Each sweep runs on one
//! node at a time ([`leader`]).
//!
//! - `lost_confirmation`: running actions whose outcome was not reported within the org's
//!   timeout become `lost_confirmation` (pending approvals are left to expire by their rule).
//! - `approval_expiry`: pending approvals past their wait + grace become `expired`.
//! - `checkpoints`: every org's chain is signed (a tree head, its Merkle tree integrated
//!   first) every N events or T after its oldest unsigned event (by default within about a
//!   second of any change).
//! - `posture_snapshots`: every org with a ledger gets its posture snapshot of the day, taken
//!   again once the latest is older than the posture interval (`GET /api/posture` only reads).
//!
//! - `plan_expiry`: preflight plans past their `expires_at` (the review deadline, or the end
//!   of their grants) are recorded `expired`.
//!
//! (Work-order lease timeouts join when work orders exist.)

pub mod decide;
pub mod leader;
pub mod settings;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashclaw_domain::ids::ActionId;
use dashclaw_domain::org_settings::SweepOverrides;
use dashclaw_domain::OrgId;
use dashclaw_projections::read::actions::{open_actions, OpenActions};
use futures_util::future::BoxFuture;
use sqlx::PgPool;

pub use settings::{OrgSweeps, Settings};

/// A sweep's failure (logged; the sweep tries again at its next cadence).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SweepError(pub String);

impl From<sqlx::Error> for SweepError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<dashclaw_store::StoreError> for SweepError {
    fn from(e: dashclaw_store::StoreError) -> Self {
        Self(e.to_string())
    }
}

impl From<dashclaw_projections::ProjectionError> for SweepError {
    fn from(e: dashclaw_projections::ProjectionError) -> Self {
        Self(e.to_string())
    }
}

/// What the sweeps can do to the world: commands on aggregates, checkpoint signing and posture
/// snapshots. Each answers `true` when it changed something, `false` when the aggregate
/// refused (someone else, an agent or another sweep, got there first).
pub trait Effects: Send + Sync + 'static {
    fn overrides<'a>(&'a self, org: &'a OrgId)
        -> BoxFuture<'a, Result<SweepOverrides, SweepError>>;
    fn mark_confirmation_lost<'a>(
        &'a self,
        org: &'a OrgId,
        action: &'a ActionId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, SweepError>>;
    fn expire_approval<'a>(
        &'a self,
        org: &'a OrgId,
        action: &'a ActionId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, SweepError>>;
    fn sign_checkpoint<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<bool, SweepError>>;
    /// Computes the org's posture now and keeps it as its snapshot of the day (replacing an
    /// earlier one of that day).
    fn record_posture<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<bool, SweepError>>;
    /// Records the expiry of the org's plans past their `expires_at`; how many.
    fn expire_plans<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<usize, SweepError>>;
}

/// The clock the sweeps read (the server's, which tests can advance).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Names of the sweeps (also their leader locks).
pub const SWEEPS: [&str; 5] = [
    "lost_confirmation",
    "approval_expiry",
    "checkpoints",
    "posture_snapshots",
    "plan_expiry",
];

/// The sweeps of one node.
#[derive(Clone)]
pub struct Sweeps {
    pool: PgPool,
    settings: Settings,
    effects: Arc<dyn Effects>,
    clock: Clock,
}

impl Sweeps {
    pub fn new(pool: PgPool, settings: Settings, effects: Arc<dyn Effects>, clock: Clock) -> Self {
        Self {
            pool,
            settings,
            effects,
            clock,
        }
    }

    /// Starts one loop per sweep; each runs the sweep at every cadence while this node leads
    /// it. The loops stop when the returned handles are aborted.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        SWEEPS
            .into_iter()
            .map(|name| {
                let sweeps = self.clone();
                tokio::spawn(async move {
                    let mut leader = leader::Leader::new(sweeps.pool.clone(), name);
                    let mut tick = tokio::time::interval(sweeps.settings.period(name));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if !leader.lead().await {
                            continue;
                        }
                        match sweeps.run(name).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(sweep = name, transitions = n, "swept"),
                            Err(e) => tracing::warn!(sweep = name, error = %e, "sweep failed"),
                        }
                    }
                })
            })
            .collect()
    }

    /// Runs the sweep `name` once; returns how many transitions it made.
    pub async fn run(&self, name: &str) -> Result<usize, SweepError> {
        match name {
            "lost_confirmation" => self.lost_confirmations().await,
            "approval_expiry" => self.expired_approvals().await,
            "checkpoints" => self.checkpoints().await,
            "posture_snapshots" => self.posture_snapshots().await,
            "plan_expiry" => self.expired_plans().await,
            other => Err(SweepError(format!("no sweep named {other}"))),
        }
    }

    async fn org_settings(
        &self,
        cache: &mut std::collections::HashMap<OrgId, OrgSweeps>,
        org: &OrgId,
    ) -> Result<OrgSweeps, SweepError> {
        if let Some(s) = cache.get(org) {
            return Ok(*s);
        }
        let s = self.settings.for_org(&self.effects.overrides(org).await?);
        cache.insert(org.clone(), s);
        Ok(s)
    }

    /// Running actions without an outcome past their org's timeout -> lost confirmation.
    pub async fn lost_confirmations(&self) -> Result<usize, SweepError> {
        let candidates = open_actions(&self.pool, OpenActions::AwaitingOutcome).await?;
        let now = (self.clock)();
        let mut cache = std::collections::HashMap::new();
        let mut changed = 0;
        for (org, record) in candidates {
            let timeout = self
                .org_settings(&mut cache, &org)
                .await?
                .lost_confirmation_timeout;
            if decide::confirmation_lost(&record, now, timeout)
                && self
                    .effects
                    .mark_confirmation_lost(&org, &record.action_id, now)
                    .await?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Pending approvals past their deadline -> expired.
    pub async fn expired_approvals(&self) -> Result<usize, SweepError> {
        let candidates = open_actions(&self.pool, OpenActions::AwaitingApproval).await?;
        let now = (self.clock)();
        let mut changed = 0;
        for (org, record) in candidates {
            if decide::approval_expired(&record, now)
                && self
                    .effects
                    .expire_approval(&org, &record.action_id, now)
                    .await?
            {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Signs every org whose chain is due.
    pub async fn checkpoints(&self) -> Result<usize, SweepError> {
        let chains = dashclaw_store::chain::unsigned_chains(&self.pool).await?;
        let now = (self.clock)();
        let mut cache = std::collections::HashMap::new();
        let mut signed = 0;
        for chain in chains {
            let org = chain.org_id;
            let s = self.org_settings(&mut cache, &org).await?;
            let chain = decide::ChainState {
                size: chain.size,
                signed_size: chain.signed_size,
                oldest_unsigned_at: chain.oldest_unsigned_at,
            };
            if decide::checkpoint_due(chain, now, s.checkpoint_every_events, s.checkpoint_interval)
                && self.effects.sign_checkpoint(&org).await?
            {
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// Takes the posture snapshot of every org with a ledger whose snapshot is due.
    pub async fn posture_snapshots(&self) -> Result<usize, SweepError> {
        let orgs = dashclaw_store::chain::heads(&self.pool).await?;
        let now = (self.clock)();
        let mut recorded = 0;
        for (org, _) in orgs {
            let last = dashclaw_projections::read::posture::snapshots(&self.pool, &org, 1)
                .await?
                .first()
                .map(|s| s.created_at);
            if decide::posture_due(last, now, self.settings.posture_interval)
                && self.effects.record_posture(&org).await?
            {
                recorded += 1;
            }
        }
        Ok(recorded)
    }

    /// Records the expiry of every org's overdue plans.
    pub async fn expired_plans(&self) -> Result<usize, SweepError> {
        let orgs = dashclaw_store::chain::heads(&self.pool).await?;
        let mut expired = 0;
        for (org, _) in orgs {
            expired += self.effects.expire_plans(&org).await?;
        }
        Ok(expired)
    }
}
