//! The ledger tail: every node follows every org's chain (LISTEN/NOTIFY, with a periodic
//! re-scan so a missed notification is caught up from the ledger) and turns new events into
//! live events, cache invalidations, rate-limit counts and projector runs. Because it is fed
//! from the ledger, events committed on any node reach every node's subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use dashclaw_domain::action::ActionRecord;
use dashclaw_domain::action::{Action, ActionEvent};
use dashclaw_domain::api_key::{ApiKey, ApiKeyEvent};
use dashclaw_domain::assumption::{Assumption, AssumptionEvent};
use dashclaw_domain::guard_decision::GuardDecisionRecord;
use dashclaw_domain::guard_decision::{GuardDecision, GuardDecisionEvent};
use dashclaw_domain::org_settings::OrgSettings;
use dashclaw_domain::plan::{Plan, PlanEvent, PlanStatus};
use dashclaw_domain::policy_set::PolicySet;
use dashclaw_domain::webhook::Webhook;
use dashclaw_domain::OrgId;
use dashclaw_projections::{Outbox, Projections};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

use super::keys::KeyCache;
use super::org_view::{Counters, OrgViews};
use super::Error;

/// How often every org's head is re-read, in case a notification was missed: a policy or
/// halt change reaches every node within a second even then.
const RESCAN: Duration = Duration::from_millis(500);
/// After a wake-up, the projector lets more commits gather before folding: under load this
/// turns hundreds of small catch-ups a second into a few larger ones (less CPU taken from
/// the requests), at a cost of a few milliseconds of projection lag.
const PROJECT_GATHER: Duration = Duration::from_millis(10);
/// After a failed outbox fold, try that org again this much later.
const OUTBOX_RETRY: Duration = Duration::from_secs(5);
/// The same for following the chain (SSE, caches): shorter, since waiting agents see it.
const FOLLOW_GATHER: Duration = Duration::from_millis(3);

/// One event for live subscribers (SSE, GraphQL subscriptions): what changed, typed; each
/// transport renders it.
#[derive(Debug)]
pub struct LiveEvent {
    pub org: OrgId,
    pub ledger_seq: u64,
    pub change: Change,
}

/// The changes live subscribers are told about.
#[derive(Debug)]
pub enum Change {
    /// An action was recorded; its record as of this event.
    ActionCreated(Box<ActionRecord>),
    /// An action changed (approval, claim, outcome, ...); its record as of this event.
    ActionUpdated(Box<ActionRecord>),
    DecisionCreated(Box<GuardDecisionRecord>),
    PolicyUpdated,
    AssumptionInvalidated {
        assumption_id: Option<String>,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A plan was submitted, reviewed, revoked, expired or had a step's grant used: what a
    /// waiting agent or an operator's inbox listens for.
    PlanChanged {
        plan_id: String,
        /// The live event's name: `plan.submitted`, `plan.reviewed`, `plan.revoked`,
        /// `plan.expired` or `plan.grant_used`.
        name: &'static str,
        /// The plan's status after the change (`None` for a grant use, which changes none).
        status: Option<&'static str>,
    },
}

/// A stored event, as the tail reads it.
type Row = (i64, String, String, i64, String);

/// Handle to the tail. Cheap to clone; the tail stops with the last clone.
#[derive(Clone)]
pub struct LedgerTail {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    pool: PgPool,
    pub views: OrgViews,
    pub counters: Counters,
    /// Open subscriptions per org.
    subscribers: std::sync::Mutex<HashMap<OrgId, usize>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Work handed between the tail's tasks: the newest known size of each org's chain (from
/// notifications and re-scans), and the orgs whose projection should catch up. Under load
/// many notifications fold into one pass.
#[derive(Clone, Default)]
struct Pending {
    sizes: Arc<Mutex<HashMap<OrgId, u64>>>,
    follow: Arc<Notify>,
    project: Arc<Mutex<HashSet<OrgId>>>,
    catch_up: Arc<Notify>,
    outbox: Arc<Mutex<HashSet<OrgId>>>,
    queue: Arc<Notify>,
    /// Orgs that have (or had, since this node started) a webhook: only their events are
    /// folded into the outbox as they come. Others' checkpoints lag, harmlessly: their next
    /// fold skips straight to the next registration without reading the events between.
    listening: Arc<Mutex<HashSet<OrgId>>>,
}

impl Pending {
    fn saw(&self, org: OrgId, size: u64) {
        if let Ok(mut sizes) = self.sizes.lock() {
            let known = sizes.entry(org).or_default();
            *known = (*known).max(size);
        }
        self.follow.notify_one();
    }

    fn take_sizes(&self) -> HashMap<OrgId, u64> {
        self.sizes
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn project(&self, org: &OrgId) {
        if let Ok(mut orgs) = self.project.lock() {
            orgs.insert(org.clone());
        }
        self.catch_up.notify_one();
    }

    fn take_projects(&self) -> HashSet<OrgId> {
        self.project
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn queue(&self, org: &OrgId) {
        if let Ok(mut orgs) = self.outbox.lock() {
            orgs.insert(org.clone());
        }
        self.queue.notify_one();
    }

    fn listen(&self, org: &OrgId) {
        if let Ok(mut orgs) = self.listening.lock() {
            orgs.insert(org.clone());
        }
    }

    fn is_listening(&self, org: &OrgId) -> bool {
        self.listening
            .lock()
            .map(|orgs| orgs.contains(org))
            .unwrap_or(true)
    }

    fn take_queues(&self) -> HashSet<OrgId> {
        self.outbox
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// The webhook outbox fold and the delivery worker it wakes when it queued something.
#[derive(Clone)]
pub struct OutboxFeed {
    pub outbox: Outbox,
    pub wake: Arc<Notify>,
}

/// Everything the tail updates.
#[derive(Clone)]
struct Follower {
    pending: Pending,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    pool: PgPool,
    projector: Projections,
    feed: OutboxFeed,
    keys: KeyCache,
    views: OrgViews,
    counters: Counters,
}

impl LedgerTail {
    pub async fn start(
        pool: PgPool,
        projector: Projections,
        feed: OutboxFeed,
        keys: KeyCache,
    ) -> Result<Self, Error> {
        let (sender, _) = broadcast::channel(4096);
        let views = OrgViews::default();
        let counters = Counters::default();
        let follower = Follower {
            pending: Pending::default(),
            sender: sender.clone(),
            pool: pool.clone(),
            projector,
            feed,
            keys,
            views: views.clone(),
            counters: counters.clone(),
        };
        // Start from today's heads: history is replayed on request (Last-Event-ID), not pushed.
        let mut cursors = HashMap::new();
        for (org, size) in heads(&pool).await? {
            cursors.insert(org, size);
        }
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(dashclaw_store::LEDGER_CHANNEL).await?;
        let tasks = vec![
            tokio::spawn(follower.clone().listen(listener)),
            tokio::spawn(follower.clone().follow_all(cursors)),
            tokio::spawn(follower.clone().queue_all()),
            tokio::spawn(follower.project_all()),
        ];
        Ok(Self {
            inner: Arc::new(Inner {
                sender,
                pool,
                views,
                counters,
                subscribers: Default::default(),
                tasks,
            }),
        })
    }

    pub fn views(&self) -> &OrgViews {
        &self.inner.views
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// A receiver of every live event (all orgs; filter by `org`), counted as a subscriber
    /// of `org` until dropped.
    pub fn subscribe(&self, org: &OrgId) -> Subscription {
        *self.subscribers().entry(org.clone()).or_insert(0) += 1;
        Subscription {
            receiver: self.inner.sender.subscribe(),
            tail: self.clone(),
            org: org.clone(),
        }
    }

    /// How many subscriptions of `org` this node holds.
    pub fn subscribers_of(&self, org: &OrgId) -> usize {
        self.subscribers().get(org).copied().unwrap_or(0)
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, usize>> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Up to `limit` events of `org` after `after`, rendered as the live stream would have
    /// shown them (Last-Event-ID replay).
    pub async fn replay(
        &self,
        org: &OrgId,
        after: u64,
        limit: i64,
    ) -> Result<Vec<LiveEvent>, Error> {
        let rows = rows_of(
            dashclaw_store::chain::events_after(&self.inner.pool, org, after, limit).await?,
        );
        let mut out = Vec::new();
        for row in rows {
            if let Some(e) = render(&self.inner.pool, org, &row).await? {
                out.push(e);
            }
        }
        Ok(out)
    }
}

pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<LiveEvent>>,
    tail: LedgerTail,
    org: OrgId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = self.tail.subscribers();
        if let Some(n) = subscribers.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                subscribers.remove(&self.org);
            }
        }
    }
}

async fn heads(pool: &PgPool) -> Result<Vec<(OrgId, u64)>, Error> {
    Ok(dashclaw_store::chain::heads(pool).await?)
}

/// The tail's rows of stored events.
fn rows_of(events: Vec<dashclaw_store::chain::EventPayload>) -> Vec<Row> {
    events
        .into_iter()
        .map(|e| {
            (
                e.ledger_seq,
                e.aggregate_type,
                e.aggregate_id,
                e.sequence,
                e.payload,
            )
        })
        .collect()
}

impl Follower {
    /// Turns notifications (and a periodic re-scan of every head) into pending work.
    async fn listen(self, mut listener: PgListener) {
        let mut rescan = tokio::time::interval(RESCAN);
        loop {
            tokio::select! {
                notification = listener.recv() => match notification {
                    Ok(n) => {
                        let Some((org, size)) = n.payload().rsplit_once(':') else { continue };
                        if let (Ok(org), Ok(size)) = (OrgId::new(org), size.parse::<u64>()) {
                            self.pending.saw(org, size);
                        }
                    }
                    // PgListener reconnects by itself; the re-scan catches up what was missed.
                    Err(e) => {
                        tracing::warn!(error = %e, "ledger notifications interrupted");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = rescan.tick() => match heads(&self.pool).await {
                    Ok(heads) => heads.into_iter().for_each(|(org, size)| self.pending.saw(org, size)),
                    Err(e) => tracing::warn!(error = %e, "cannot re-scan ledger heads"),
                }
            }
        }
    }

    async fn follow_all(self, mut cursors: HashMap<OrgId, u64>) {
        loop {
            self.pending.follow.notified().await;
            tokio::time::sleep(FOLLOW_GATHER).await;
            for (org, size) in self.pending.take_sizes() {
                self.follow(&mut cursors, &org, size).await;
            }
        }
    }

    async fn project_all(self) {
        loop {
            self.pending.catch_up.notified().await;
            tokio::time::sleep(PROJECT_GATHER).await;
            for org in self.pending.take_projects() {
                if let Err(e) = self.projector.catch_up(&org).await {
                    tracing::warn!(error = %e, %org, "projection catch-up failed; will retry");
                }
            }
        }
    }

    /// Folds new events into the webhook outbox, in its own task so that neither the read
    /// models nor the guard path wait for it. Starts by catching up every org, since events
    /// committed while no node ran are not announced again.
    async fn queue_all(self) {
        // First every org, then the orgs with webhooks; retried until the database answers.
        loop {
            let started = async {
                let queued = self.feed.outbox.catch_up_all().await?;
                let orgs = self.feed.outbox.listening_orgs().await?;
                Ok::<_, dashclaw_projections::ProjectionError>((queued, orgs))
            };
            match started.await {
                Ok((_, orgs)) => {
                    orgs.iter().for_each(|org| self.pending.listen(org));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook outbox catch-up failed; will retry");
                    tokio::time::sleep(OUTBOX_RETRY).await;
                }
            }
        }
        // Whatever is due (queued now, or retries left by a stopped node).
        self.feed.wake.notify_one();
        loop {
            self.pending.queue.notified().await;
            tokio::time::sleep(PROJECT_GATHER).await;
            for org in self.pending.take_queues() {
                match self.feed.outbox.catch_up(&org).await {
                    Ok(queued) if queued > 0 => self.feed.wake.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, %org, "webhook outbox catch-up failed; will retry");
                        let pending = self.pending.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(OUTBOX_RETRY).await;
                            pending.queue(&org);
                        });
                    }
                }
            }
        }
    }

    /// Processes `org`'s events between its cursor and `size`.
    async fn follow(&self, cursors: &mut HashMap<OrgId, u64>, org: &OrgId, size: u64) {
        let cursor = cursors.get(org).copied().unwrap_or(0);
        if size <= cursor {
            return;
        }
        let rows = match dashclaw_store::chain::events_after(&self.pool, org, cursor, 10_000).await
        {
            Ok(rows) => rows_of(rows),
            Err(e) => {
                tracing::warn!(error = %e, %org, "cannot read new ledger events");
                return;
            }
        };
        let mut last = cursor;
        for row in &rows {
            self.observe(org, row);
            // Rendering costs a little; only do it when someone listens.
            if self.sender.receiver_count() > 0 {
                match render(&self.pool, org, row).await {
                    Ok(Some(event)) => {
                        let _ = self.sender.send(Arc::new(event));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, %org, seq = row.0, "cannot render event")
                    }
                }
            }
            last = row.0 as u64;
        }
        cursors.insert(org.clone(), last);
        if last < size {
            // More than one page: come back for the rest.
            self.pending.saw(org.clone(), size);
        }
        self.pending.project(org);
        // Only orgs with webhooks feed the outbox as events come (`observe` has just noted
        // any registration in these rows).
        if self.pending.is_listening(org) {
            self.pending.queue(org);
        }
    }

    /// Side effects of an event on this node's caches.
    fn observe(&self, org: &OrgId, (seq, aggregate_type, aggregate_id, _, payload): &Row) {
        match aggregate_type.as_str() {
            Webhook::TYPE => self.pending.listen(org),
            PolicySet::TYPE | OrgSettings::TYPE => self.views.invalidate(org),
            ApiKey::TYPE => {
                if let Ok(ApiKeyEvent::Revoked { .. }) = serde_json::from_str(payload) {
                    let entity = aggregate_id
                        .split_once('/')
                        .map_or(aggregate_id.as_str(), |(_, e)| e);
                    self.keys.revoked(entity);
                }
                self.keys.clear();
            }
            GuardDecision::TYPE => {
                if let Ok(GuardDecisionEvent::Recorded(d)) = serde_json::from_str(payload) {
                    if let Some(agent) = &d.request.agent_id {
                        self.counters
                            .record(org, agent, *seq as u64, d.evaluated_at);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The live form of a stored event, if subscribers care about it.
async fn render(pool: &PgPool, org: &OrgId, row: &Row) -> Result<Option<LiveEvent>, Error> {
    let (seq, aggregate_type, aggregate_id, sequence, payload) = row;
    let change = match aggregate_type.as_str() {
        Action::TYPE => {
            let Ok(e) = serde_json::from_str::<ActionEvent>(payload) else {
                return Ok(None);
            };
            let created = matches!(e, ActionEvent::Recorded(_));
            match dashclaw_projections::action_at(pool, aggregate_id, *sequence).await? {
                Some(record) if created => Change::ActionCreated(Box::new(record)),
                Some(record) => Change::ActionUpdated(Box::new(record)),
                None => return Ok(None),
            }
        }
        GuardDecision::TYPE => match serde_json::from_str(payload) {
            Ok(GuardDecisionEvent::Recorded(d)) => Change::DecisionCreated(d),
            Err(_) => return Ok(None),
        },
        PolicySet::TYPE => Change::PolicyUpdated,
        Assumption::TYPE => match serde_json::from_str::<AssumptionEvent>(payload) {
            Ok(AssumptionEvent::Invalidated { reason, at }) => Change::AssumptionInvalidated {
                assumption_id: aggregate_id.split_once('/').map(|(_, id)| id.to_owned()),
                reason,
                at,
            },
            _ => return Ok(None),
        },
        Plan::TYPE => {
            let Ok(e) = serde_json::from_str::<PlanEvent>(payload) else {
                return Ok(None);
            };
            let (name, status) = match e {
                PlanEvent::Submitted(_) => ("plan.submitted", Some(PlanStatus::Pending)),
                PlanEvent::Reviewed { status, .. } => ("plan.reviewed", Some(status)),
                PlanEvent::Revoked { .. } => ("plan.revoked", Some(PlanStatus::Revoked)),
                PlanEvent::Expired { .. } => ("plan.expired", Some(PlanStatus::Expired)),
                PlanEvent::GrantUsed { .. } => ("plan.grant_used", None),
            };
            Change::PlanChanged {
                plan_id: aggregate_id
                    .split_once('/')
                    .map_or_else(|| aggregate_id.clone(), |(_, id)| id.to_owned()),
                name,
                status: status.map(PlanStatus::as_str),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(LiveEvent {
        org: org.clone(),
        ledger_seq: *seq as u64,
        change,
    }))
}

impl super::Service {
    /// Follows the caller's org's ledger live: a subscription to what comes, and (given the
    /// last `ledger_seq` the caller saw) up to `limit` events it missed. Subscribed before
    /// the replay is read, so nothing falls between the two.
    pub async fn follow(
        &self,
        caller: &super::Caller,
        after: Option<u64>,
        limit: i64,
    ) -> Result<(Subscription, Vec<LiveEvent>), Error> {
        let subscription = self.tail().subscribe(&caller.org);
        let replayed = match after {
            Some(after) => self.tail().replay(&caller.org, after, limit).await?,
            None => Vec::new(),
        };
        Ok((subscription, replayed))
    }
}
