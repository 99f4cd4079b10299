//! The agent's side of an action's life: record it (through the guard), claim its single
//! execution attempt, report its one-shot outcome (or the legacy update), and read it. Every
//! change is a command on the `Action` aggregate, whose rules settle every race (exactly one
//! outcome wins; the rest get the domain's refusal, mapped here once).

use chrono::{DateTime, Utc};
use dashclaw_domain::action::{
    Action, ActionCommand, ActionDetails, ActionError, ActionRecord, ActionStatus, ClaimExecution,
    LegacyUpdate, NewAction, ReportOutcome, ReportedOutcome,
};
use dashclaw_domain::guard::OperatorGrant;
use dashclaw_domain::guard_decision::{DecisionPurpose, GuardDecision, GuardDecisionRecord};
use dashclaw_domain::ids::{ActionId, GuardDecisionId};
use dashclaw_projections::read::actions::{self as read, ActionFilter, ActionStats};
use dashclaw_projections::read::Page;
use serde_json::Value;

use super::aggregates::{Actor, CommandError};
use super::error::Subject;
use super::guard::{refuse_injection, Ask, GuardAsk};
use super::{random, Caller, Error, ErrorCode, Permission, Service};

/// The largest `progress` of a partial outcome, serialized.
const MAX_PROGRESS_BYTES: usize = 8192;

/// A new action (`POST /api/actions`): the agent, its goal, the guard fields and the
/// action's own details.
#[derive(Clone, Debug)]
pub struct RecordAction {
    pub guard: GuardAsk,
    /// A client-chosen id; else derived from the idempotency key, else random.
    pub action_id: Option<ActionId>,
    /// Everything else about the action; its `agent_id` and `declared_goal` are required.
    pub details: ActionDetails,
    /// A guard decision the client says it already has for this action.
    pub claimed_decision: Option<String>,
}

/// What recording an action came to.
#[derive(Debug)]
pub enum Recorded {
    /// Recorded now, with the guard decision it was recorded under. Its status says whether
    /// it runs or waits for approval (a blocked one is refused with `ACTION_BLOCKED`, about
    /// the action and its decision).
    New {
        record: Box<ActionRecord>,
        decision: Box<GuardDecisionRecord>,
    },
    /// The same idempotency key recorded it before: that action.
    Replayed(Box<ActionRecord>),
}

/// An execution claim (contract 5): one attempt per action.
#[derive(Clone, Debug)]
pub struct Claim {
    pub attempt_id: String,
    pub agent_id: Option<String>,
    /// Hex SHA-256 of the act about to run (see [`super::guard::act_hash`]).
    pub act_hash: Option<String>,
}

/// A one-shot outcome report.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: ReportedOutcome,
    pub summary: Option<String>,
    pub error_message: Option<String>,
    pub progress: Option<Value>,
}

/// An action as a reader sees it.
#[derive(Debug)]
pub struct ActionView {
    pub record: ActionRecord,
    pub guard_decision: Option<GuardDecisionRecord>,
    pub assumptions: Vec<dashclaw_domain::assumption::AssumptionRecord>,
}

fn action_not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Action not found")
}

fn already_exists() -> Error {
    Error::new(
        ErrorCode::Conflict,
        "Action with this action_id already exists",
    )
}

impl Service {
    /// Records an action: evaluates it through the guard (recorded as a decision), then
    /// records it as running, held for approval or blocked.
    pub async fn record_action(
        &self,
        caller: &Caller,
        new: RecordAction,
    ) -> Result<Recorded, Error> {
        caller.require(Permission::Write)?;
        self.org_hit(&caller.org)?;
        if new.guard.request.action_type == "containment_promote" {
            return Err(Error::new(
                ErrorCode::ReservedActionType,
                "action_type \"containment_promote\" is reserved for the server",
            ));
        }
        let key = new.guard.idempotency_key.clone();
        let action_id = match (new.action_id.clone(), &key) {
            (Some(id), _) => id,
            (None, Some(key)) => ActionId::for_idempotency_key(&caller.org, key),
            (None, None) => ActionId::random(random()?),
        };
        // Idempotency first: a retried create returns the original action; an id that is
        // taken otherwise is refused before anything is evaluated or written.
        if let Some(existing) = self.existing(caller, &action_id, key.as_deref()).await? {
            return Ok(Recorded::Replayed(Box::new(existing)));
        }
        if let Some(id) = &new.claimed_decision {
            let known = GuardDecisionId::is_well_formed(id)
                && self
                    .aggregates()
                    .load::<GuardDecision>(&caller.org, id)
                    .await?
                    .record
                    .is_some();
            if !known {
                return Err(Error::bad_request(
                    "guard_decision_id does not match a guard decision in this org",
                ));
            }
        }
        let details = new.details;
        refuse_injection(Some(&details.declared_goal))?;
        let mut request = new.guard.request.clone();
        request.agent_id = Some(details.agent_id.clone());
        request.declared_goal = Some(details.declared_goal.clone());
        let ask = Ask {
            request,
            purpose: DecisionPurpose::Action,
            action_id: Some(action_id.clone()),
            idempotency_key: key.clone(),
            grant: None,
            now: self.clock().now(),
        };
        let decision = self.decide(caller, ask).await?;
        match self
            .record_decided(caller, &new.guard, &decision, action_id.clone(), details)
            .await?
        {
            Ok(record) if record.status == ActionStatus::Blocked => Err(Error::new(
                ErrorCode::ActionBlocked,
                "Action blocked by policy",
            )
            .about(Subject::Decided {
                org: caller.org.clone(),
                action: Box::new(record),
                decision: Box::new(decision),
            })),
            Ok(record) => Ok(Recorded::New {
                record: Box::new(record),
                decision: Box::new(decision),
            }),
            Err(ActionError::AlreadyExists) => {
                // Lost a race with an identical create: answer with the winner.
                match self.existing(caller, &action_id, key.as_deref()).await? {
                    Some(winner) if key.is_some() => Ok(Recorded::Replayed(Box::new(winner))),
                    _ => Err(already_exists()),
                }
            }
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// The action `id` if it exists: with the same idempotency key it is the answer to a
    /// retry; otherwise its id is taken (409).
    async fn existing(
        &self,
        caller: &Caller,
        id: &ActionId,
        key: Option<&str>,
    ) -> Result<Option<ActionRecord>, Error> {
        let action: Action = self.aggregates().load(&caller.org, id.as_str()).await?;
        match action.record {
            None => Ok(None),
            Some(record) if key.is_some() && record.idempotency_key.as_deref() == key => {
                Ok(Some(record))
            }
            Some(_) => Err(already_exists()),
        }
    }

    /// Records the action a guard decision was made for: the one path shared by
    /// `POST /api/actions` and the guard's `record`. `details` holds what the client said
    /// about the action beyond the guard request.
    pub(super) async fn record_decided(
        &self,
        caller: &Caller,
        ask: &GuardAsk,
        decision: &GuardDecisionRecord,
        action_id: ActionId,
        details: ActionDetails,
    ) -> Result<Result<ActionRecord, ActionError>, Error> {
        let request = &decision.request;
        let evaluation = &decision.evaluation;
        let new = NewAction {
            action_id: action_id.clone(),
            details: ActionDetails {
                agent_name: request.agent_name.clone(),
                swarm_id: ask.swarm_id.clone(),
                trigger: ask.trigger.clone(),
                action_type: request.action_type.clone(),
                systems_touched: request.systems_touched.clone(),
                reversible: request.reversible,
                confidence: details.confidence.or(ask.confidence),
                idempotency_key: ask.idempotency_key.clone(),
                ..details
            },
            verdict: evaluation.decision,
            risk_score: evaluation.risk_score,
            guard_decision_id: decision.decision_id.clone(),
            guard_reason: (!evaluation.reasons.is_empty()).then(|| evaluation.reasons.join("; ")),
            matched_policies: evaluation.matched_policies.clone(),
            approval_wait_seconds: ask.approval_wait_seconds,
            approval_grace: self.approval_grace(&caller.org).await?,
            act_content_hash: request.act_hash.clone(),
            created_by: caller.principal.clone(),
            now: decision.evaluated_at,
        };
        let actor = Actor::of(&caller.principal, request.agent_id.as_deref());
        let command = ActionCommand::Record(Box::new(new));
        match self
            .aggregates()
            .execute::<Action>(&caller.org, action_id.as_str(), command, &actor)
            .await
        {
            Ok(action) => Ok(Ok(action.record.ok_or_else(action_not_found)?)),
            Err(CommandError::Rejected(e)) => Ok(Err(e)),
            Err(CommandError::Failed(e)) => Err(e),
        }
    }

    /// The action `id` of the caller's org as of now: a pending approval past its deadline
    /// reads as expired (the sweep records the expiry), with its guard decision and
    /// assumptions.
    pub async fn action(&self, caller: &Caller, id: &str) -> Result<ActionView, Error> {
        let record = self.load_action(caller, id).await?;
        let guard: GuardDecision = self
            .aggregates()
            .load(&caller.org, record.guard_decision_id.as_str())
            .await?;
        let assumptions = self.assumptions_of(caller, &record.action_id).await?;
        Ok(ActionView {
            record: record.as_seen_at(self.clock().now()),
            guard_decision: guard.record,
            assumptions,
        })
    }

    /// The assumptions recorded for an action, oldest first.
    pub async fn assumptions_of(
        &self,
        caller: &Caller,
        id: &ActionId,
    ) -> Result<Vec<dashclaw_domain::assumption::AssumptionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        Ok(
            dashclaw_projections::read::assumptions::of_action(self.pool(), &caller.org, id)
                .await?,
        )
    }

    /// The action `id` of the caller's org, as stored; ids that cannot exist are simply not
    /// found (so a malformed or foreign id answers 404, never 400 or 500).
    pub async fn load_action(&self, caller: &Caller, id: &str) -> Result<ActionRecord, Error> {
        let Ok(id) = ActionId::parse(id) else {
            return Err(action_not_found());
        };
        let action: Action = self.aggregates().load(&caller.org, id.as_str()).await?;
        action.record.ok_or_else(action_not_found)
    }

    /// Runs a command on an action; domain refusals come back as the inner `Err`.
    pub(super) async fn run_action(
        &self,
        caller: &Caller,
        id: &ActionId,
        command: ActionCommand,
    ) -> Result<Result<ActionRecord, ActionError>, Error> {
        let actor = Actor::of(&caller.principal, None);
        match self
            .aggregates()
            .execute::<Action>(&caller.org, id.as_str(), command, &actor)
            .await
        {
            Ok(action) => action.record.map(Ok).ok_or_else(action_not_found),
            Err(CommandError::Rejected(e)) => Ok(Err(e)),
            Err(CommandError::Failed(e)) => Err(e),
        }
    }

    /// Claims the action's single execution attempt: re-evaluates the recorded request
    /// under today's policies (recorded as a decision), then claims.
    pub async fn claim_execution(
        &self,
        caller: &Caller,
        id: &str,
        claim: Claim,
    ) -> Result<ActionRecord, Error> {
        caller.require(Permission::Write)?;
        let Some(agent_id) = claim.agent_id.filter(|a| !a.is_empty()) else {
            return Err(Error::new(
                ErrorCode::AgentIdentityRequired,
                "Execution claim requires agent identity",
            ));
        };
        let record = self.load_action(caller, id).await?;
        let conflict = || {
            Error::new(
                ErrorCode::ExecutionClaimConflict,
                "Action is not eligible for a new execution attempt. Reconcile its state before retrying.",
            )
            .with("action_id", record.action_id.as_str())
        };
        // The cheap rules first: an ineligible claim is refused before anything is
        // evaluated or written.
        let mut command = ClaimExecution {
            attempt_id: claim.attempt_id,
            agent_id,
            principal: caller.principal.clone(),
            act_hash: claim.act_hash.clone(),
            reevaluation: dashclaw_domain::guard::Verdict::Allow,
            guard_decision_id: record.guard_decision_id.clone(),
            now: self.clock().now(),
        };
        if let Err(ActionError::ClaimNotEligible(why)) = record.check_claim(&command) {
            return Err(conflict().with("reason", why));
        }
        let recorded: GuardDecision = self
            .aggregates()
            .load(&caller.org, record.guard_decision_id.as_str())
            .await?;
        let Some(recorded) = recorded.record else {
            return Err(conflict());
        };
        let mut request = recorded.request;
        request.act_hash = claim.act_hash;
        if !request
            .client_capabilities
            .iter()
            .any(|c| c == "execution_claims")
        {
            request.client_capabilities.push("execution_claims".into());
        }
        let now = self.clock().now();
        let grant = record.approved_by.as_deref().map(|who| OperatorGrant {
            action_id: record.action_id.as_str(),
            approved_by: who,
        });
        let ask = Ask {
            request,
            purpose: DecisionPurpose::Claim,
            action_id: Some(record.action_id.clone()),
            idempotency_key: None,
            grant,
            now,
        };
        let decision = self.decide(caller, ask).await?;
        // A plan step's grant cleared the hold: it is used now, once.
        let plan_grant = decision
            .context
            .as_ref()
            .and_then(|c| c.plan_step.as_ref())
            .filter(|_| {
                decision
                    .evaluation
                    .matched_policies
                    .iter()
                    .any(|m| m == dashclaw_domain::guard::MATCHED_PLAN_GRANT)
            });
        if let Some(step) = plan_grant {
            self.use_plan_grant(caller, step, &record.action_id)
                .await
                .map_err(|e| conflict().with("reason", e.error))?;
        }
        command.reevaluation = decision.evaluation.decision;
        command.guard_decision_id = decision.decision_id.clone();
        command.now = now;
        let command = ActionCommand::ClaimExecution(command);
        match self.run_action(caller, &record.action_id, command).await? {
            Ok(claimed) => Ok(claimed),
            Err(ActionError::ClaimNotEligible(why)) => Err(conflict().with("reason", why)),
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// The legacy outcome update (`PATCH /api/actions/:id`); its `now` is the service's
    /// clock. With `close_if_running`, an action no longer running is answered as it is.
    pub async fn update_action(
        &self,
        caller: &Caller,
        id: &str,
        update: LegacyUpdate,
        close_if_running: bool,
    ) -> Result<ActionRecord, Error> {
        caller.require(Permission::Write)?;
        let update = LegacyUpdate {
            now: self.clock().now(),
            ..update
        };
        let record = self.load_action(caller, id).await?;
        let command = ActionCommand::Update(Box::new(update));
        match self.run_action(caller, &record.action_id, command).await? {
            Ok(updated) => Ok(updated),
            Err(ActionError::NotRunning(_)) if close_if_running => Ok(record),
            Err(ActionError::NotRunning(status)) => Err(Error::new(
                ErrorCode::Conflict,
                "Action is in a terminal state and cannot be modified",
            )
            .with("status", status.as_str())),
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// Reports the action's one-shot outcome: a failure needs its error message, a partial
    /// outcome its progress; a second report is refused with the outcome already set.
    pub async fn report_outcome(
        &self,
        caller: &Caller,
        id: &str,
        outcome: Outcome,
    ) -> Result<ActionRecord, Error> {
        caller.require(Permission::Write)?;
        if outcome.status == ReportedOutcome::Failed
            && outcome.error_message.as_deref().is_none_or(str::is_empty)
        {
            return Err(Error::bad_request(
                "error_message is required when status is \"failed\"",
            ));
        }
        match &outcome.progress {
            None if outcome.status == ReportedOutcome::Partial => {
                return Err(Error::bad_request(
                    "progress (object) is required when status is \"partial\"",
                ))
            }
            Some(p) => {
                let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0);
                if size > MAX_PROGRESS_BYTES {
                    return Err(Error::bad_request(format!(
                        "progress payload too large ({size} bytes; max {MAX_PROGRESS_BYTES})"
                    )));
                }
            }
            None => {}
        }
        let record = self.load_action(caller, id).await?;
        let command = ActionCommand::ReportOutcome(ReportOutcome {
            status: outcome.status,
            summary: outcome.summary,
            error_message: outcome.error_message,
            progress: outcome.progress,
            now: self.clock().now(),
        });
        match self.run_action(caller, &record.action_id, command).await? {
            Ok(done) => Ok(done),
            Err(ActionError::OutcomeNotAllowed(s)) => Err(Error::new(
                ErrorCode::OutcomeConflict,
                format!(
                    "Cannot report an outcome for an action in status '{}'",
                    s.as_str()
                ),
            )
            .with("current_status", s.as_str())),
            Err(ActionError::OutcomeAlreadySet(s)) => Err(Error::new(
                ErrorCode::OutcomeConflict,
                "outcome already set",
            )
            .with("current_status", s.as_str())),
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// Decides not to run a running action nobody has claimed (contract 5.5): its recorder
    /// or an admin, for a reason.
    pub async fn cancel_action(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<ActionRecord, Error> {
        caller.require(Permission::Write)?;
        if reason.trim().is_empty() {
            return Err(Error::new(
                ErrorCode::ReasonRequired,
                "reason is required to cancel an action",
            ));
        }
        let record = self.load_action(caller, id).await?;
        if record.created_by != caller.principal {
            caller.require_admin("Only the action's recorder or an admin can cancel it")?;
        }
        let command = ActionCommand::Cancel {
            reason: reason.trim().to_owned(),
            cancelled_by: caller.principal.clone(),
            now: self.clock().now(),
        };
        match self.run_action(caller, &record.action_id, command).await? {
            Ok(done) => Ok(done),
            Err(e @ ActionError::NotCancellable(_)) => {
                Err(Error::new(ErrorCode::NotCancellable, e.to_string()).with(
                    "current_status",
                    record.as_seen_at(self.clock().now()).status.as_str(),
                ))
            }
            Err(e) => Err(Error::internal(e)),
        }
    }

    /// Milliseconds since the action was created, up to its outcome (or now).
    pub fn elapsed_ms(&self, record: &ActionRecord) -> i64 {
        let end: DateTime<Utc> = record.outcome_at.unwrap_or_else(|| self.clock().now());
        (end - record.created_at).num_milliseconds().max(0)
    }

    /// The caller's org's actions matching `filter`, as they read now, one page of them,
    /// and the counts over all of them.
    pub async fn actions(
        &self,
        caller: &Caller,
        filter: ActionFilter,
        page: Page,
    ) -> Result<(Vec<ActionRecord>, ActionStats), Error> {
        let filter = self.as_seen_now(filter);
        let records = self.action_page(caller, filter.clone(), page).await?;
        let stats = read::stats(self.pool(), &caller.org, &filter).await?;
        Ok((records, stats))
    }

    /// `filter` with statuses as they read now (see [`ActionFilter::seen_at`]).
    fn as_seen_now(&self, filter: ActionFilter) -> ActionFilter {
        ActionFilter {
            seen_at: Some(self.clock().now()),
            ..filter
        }
    }

    /// An action's sub-actions (newest first, at most 100) and its agent's latest 200
    /// actions: what its trace and graph show beside it.
    pub async fn neighbours(
        &self,
        caller: &Caller,
        action: &ActionRecord,
    ) -> Result<(Vec<ActionRecord>, Vec<ActionRecord>), Error> {
        let pool = self.pool();
        let children = read::children(pool, &caller.org, &action.action_id, 100).await?;
        let of_agent = read::of_agent(pool, &caller.org, &action.agent_id, 200).await?;
        Ok((children, of_agent))
    }

    /// One page of the caller's org's actions matching `filter`, as they read now.
    pub async fn action_page(
        &self,
        caller: &Caller,
        filter: ActionFilter,
        page: Page,
    ) -> Result<Vec<ActionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let filter = self.as_seen_now(filter);
        Ok(read::page(self.pool(), &caller.org, &filter, page).await?)
    }

    /// The approvals queue: the caller's org's actions waiting for a human (not yet past
    /// their deadline), oldest first, at most 500.
    pub async fn approval_queue(&self, caller: &Caller) -> Result<Vec<ActionRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let now = self.clock().now();
        Ok(read::pending_approvals(self.pool(), &caller.org, now, 500).await?)
    }

    /// The agents that have recorded actions in the caller's org, most active first (at
    /// most 500).
    pub async fn agents(&self, caller: &Caller) -> Result<Vec<read::AgentActivity>, Error> {
        self.projections().catch_up(&caller.org).await?;
        Ok(read::agents(self.pool(), &caller.org, 500).await?)
    }
}
