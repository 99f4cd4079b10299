//! The guard: "may I do X?" ([`Service::guard`]), answered under the org's current
//! policies and recorded on the ledger before it is returned, with the 10-minute
//! idempotent replay and the optional recording of the action it stands for. [`Service::decide`]
//! is the step shared with recording an action and claiming execution.

use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{
    evaluate, scan_prompt_injection, GuardContext, GuardRequest, Halt, OperatorGrant,
    ENGINE_VERSION,
};
use dashclaw_domain::guard_decision::{
    DecisionPurpose, GuardDecision, GuardDecisionCommand, GuardDecisionRecord, RecordedContext,
    RecordedGrant, RecordedHalt, RecordedPlanStep, RecordingCounter,
};
use dashclaw_domain::ids::{ActionId, GuardDecisionId};
use dashclaw_events::CanonicalJson;
use dashclaw_projections::read::decisions::{self, DecisionFilter};
use dashclaw_projections::read::Page;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::aggregates::{Actor, CommandError};
use super::caller::{Caller, Permission};
use super::{random, Error, ErrorCode, Service};

/// How long a guard answer is replayed for the same idempotency key.
const REPLAY_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// A guard request and what comes with it on the wire (contract 1.1).
#[derive(Clone, Debug)]
pub struct GuardAsk {
    pub request: GuardRequest,
    pub idempotency_key: Option<String>,
    /// How long the agent will wait for an approval, if one is needed.
    pub approval_wait_seconds: u32,
    pub confidence: Option<u8>,
    pub trigger: Option<String>,
    pub swarm_id: Option<String>,
}

/// What the guard answered.
#[derive(Debug)]
pub enum GuardAnswer {
    /// The same idempotency key was decided within the replay window: that decision, and
    /// whether it recorded an action.
    Replayed(Box<GuardDecisionRecord>),
    /// A new decision; with `record`, whether the action was recorded.
    Decided {
        decision: Box<GuardDecisionRecord>,
        recording: Option<Recording>,
    },
}

/// The outcome of `record` on a guard call.
#[derive(Debug)]
pub enum Recording {
    /// The action (new, or the one an earlier call with this idempotency key recorded).
    Recorded(ActionId),
    /// An action needs an agent and a declared goal.
    MissingIdentity,
}

/// Hex SHA-256 of the act's canonical JSON: binds approvals and claims to the exact act.
pub fn act_hash(act: &Value) -> Result<String, Error> {
    let canonical = CanonicalJson::encode(act).map_err(Error::internal)?;
    Ok(hex::encode(Sha256::digest(canonical.as_str().as_bytes())))
}

/// Refuses a declared goal the prompt-injection scanner would block (contract 1.5).
pub fn refuse_injection(goal: Option<&str>) -> Result<(), Error> {
    let Some(goal) = goal else { return Ok(()) };
    let scan = scan_prompt_injection(goal);
    if scan.recommendation == "block" {
        return Err(Error::new(
            ErrorCode::PromptInjection,
            "Input rejected: prompt injection pattern detected",
        )
        .with("risk_level", scan.risk_level)
        .with("categories", json!(scan.categories)));
    }
    Ok(())
}

impl Service {
    /// Answers a guard request (a write: the decision is recorded); with `record`, also
    /// records the action it stands for.
    pub async fn guard(
        &self,
        caller: &Caller,
        ask: GuardAsk,
        record: bool,
    ) -> Result<GuardAnswer, Error> {
        caller.require(Permission::Write)?;
        self.org_hit(&caller.org)?;
        refuse_injection(ask.request.declared_goal.as_deref())?;
        let view = self
            .tail()
            .views()
            .get(self.aggregates(), &caller.org)
            .await?;
        if let (Some(key), None) = (&ask.idempotency_key, &view.halt) {
            if let Some(prior) = self.replayable(caller, key).await? {
                return Ok(GuardAnswer::Replayed(Box::new(prior)));
            }
        }
        let now = self.clock().now();
        let action_id = match (&ask.idempotency_key, record) {
            (Some(key), true) => Some(ActionId::for_idempotency_key(&caller.org, key)),
            (None, true) => Some(ActionId::random(random()?)),
            _ => None,
        };
        let can_record = ask.request.agent_id.is_some() && ask.request.declared_goal.is_some();
        let decision = self
            .decide(
                caller,
                Ask {
                    request: ask.request.clone(),
                    purpose: DecisionPurpose::Guard,
                    action_id: action_id.clone().filter(|_| can_record),
                    idempotency_key: ask.idempotency_key.clone(),
                    grant: None,
                    now,
                },
            )
            .await?;
        let recording = match action_id {
            None => None,
            Some(_) if !can_record => Some(Recording::MissingIdentity),
            Some(action_id) => {
                let request = &ask.request;
                let details = dashclaw_domain::action::ActionDetails {
                    agent_id: request.agent_id.clone().unwrap_or_default(),
                    declared_goal: request.declared_goal.clone().unwrap_or_default(),
                    ..Default::default()
                };
                match self
                    .record_decided(caller, &ask, &decision, action_id.clone(), details)
                    .await?
                {
                    Ok(_) | Err(dashclaw_domain::action::ActionError::AlreadyExists) => {
                        Some(Recording::Recorded(action_id))
                    }
                    Err(e) => return Err(Error::internal(e)),
                }
            }
        };
        Ok(GuardAnswer::Decided {
            decision: Box::new(decision),
            recording,
        })
    }

    /// The newest decision of the caller's org with this idempotency key inside the replay
    /// window, if any.
    async fn replayable(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Option<GuardDecisionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let since = self.clock().now() - REPLAY_WINDOW;
        Ok(dashclaw_projections::read::decisions::by_idempotency_key(
            self.pool(),
            &caller.org,
            key,
            since,
        )
        .await?)
    }
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

/// The decision of a stored `GuardDecisionRecorded` payload (JSON text), with any NUL an old
/// server stored replaced as the read models do.
pub fn stored_decision(payload: &str) -> Option<GuardDecisionRecord> {
    use dashclaw_domain::guard_decision::GuardDecisionEvent;
    match dashclaw_projections::storable::decode::<GuardDecisionEvent>(payload) {
        Ok(GuardDecisionEvent::Recorded(d)) => Some(*d),
        Err(_) => None,
    }
}

impl Service {
    /// Evaluates `ask` under the org's current policies and records the decision in the ledger.
    /// The decision is only returned once it is durably recorded.
    pub async fn decide(
        &self,
        caller: &Caller,
        ask: Ask<'_>,
    ) -> Result<GuardDecisionRecord, Error> {
        let (views, counters) = (self.tail().views(), self.tail().counters());
        let view = views.get(self.aggregates(), &caller.org).await?;
        if let Some(agent) = ask.request.agent_id.as_deref() {
            let limited = view
                .policies
                .iter()
                .any(|p| p.active && p.policy_type == "rate_limit" && p.applies_to(Some(agent)));
            if limited {
                counters
                    .seed(self.pool(), &caller.org, agent, ask.now)
                    .await?;
            }
        }
        let plan_step = self
            .plan_step_for(&caller.org, &ask.request, ask.now)
            .await?;
        // In a block: the counter is not `Send`, and must be gone before the next await.
        let (evaluation, context) = {
            let counter = counters.for_org(&caller.org);
            let counter = RecordingCounter::new(&counter);
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
                    plan_step: plan_step.as_ref().map(RecordedPlanStep::as_grant),
                    now: ask.now,
                },
            );
            let context = RecordedContext {
                engine: ENGINE_VERSION.to_owned(),
                halt: halt.map(|h| RecordedHalt {
                    actor: h.actor.to_owned(),
                    reason: h.reason.to_owned(),
                }),
                counts: counter.into_answers(),
                operator_grant: ask.grant.map(|g| RecordedGrant {
                    action_id: g.action_id.to_owned(),
                    approved_by: g.approved_by.to_owned(),
                }),
                plan_step,
            };
            (evaluation, context)
        };
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
            context: Some(context),
        };
        let actor = Actor::of(&caller.principal, record.request.agent_id.as_deref());
        let id = record.decision_id.to_string();
        match self
            .aggregates()
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
            Err(CommandError::Rejected(e)) => Err(Error::internal(e)),
        }
    }

    /// The org's recorded requests since `since`, newest first, at most `limit` (claims left out:
    /// a claim re-evaluates a request already counted). Caught up first, so a caller sees its
    /// own decisions. Used to replay real traffic (simulation, posture).
    pub async fn recorded_requests(
        &self,
        org: &dashclaw_domain::OrgId,
        since: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<GuardDecisionRecord>, Error> {
        self.projections().catch_up(org).await?;
        Ok(
            dashclaw_projections::read::decisions::recorded_requests(
                self.pool(),
                org,
                since,
                limit,
            )
            .await?,
        )
    }

    /// One page of the caller's org's decisions matching `filter`, newest first.
    pub async fn decision_page(
        &self,
        caller: &Caller,
        filter: &DecisionFilter,
        page: Page,
    ) -> Result<Vec<GuardDecisionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        Ok(decisions::page(self.pool(), &caller.org, filter, page).await?)
    }

    /// The caller's org's decision log: one page of the decisions matching `filter`, newest
    /// first, how many match, and the last 24 hours by verdict.
    pub async fn decisions(
        &self,
        caller: &Caller,
        filter: &DecisionFilter,
        page: Page,
    ) -> Result<DecisionLog, Error> {
        let page = self.decision_page(caller, filter, page).await?;
        let (pool, org) = (self.pool(), &caller.org);
        Ok(DecisionLog {
            decisions: page,
            total: decisions::total(pool, org, filter).await?,
            last_24h: decisions::stats_24h(pool, org).await?,
        })
    }
}

/// A page of the decision log.
#[derive(Debug)]
pub struct DecisionLog {
    pub decisions: Vec<GuardDecisionRecord>,
    /// Decisions matching the filter, on every page.
    pub total: i64,
    pub last_24h: decisions::DecisionStats,
}
