//! Preflight plans (contract section 12): an agent submits its steps (each previewed through
//! the guard, nothing recorded as a decision), an admin reviews them once (approve, with
//! per-step overrides, or deny; or revokes), the agent attests the plan hash before acting.
//! In the guard, an approved step is a single-use grant bound to its act hash
//! (`builtin:plan_grant`, used by the execution claim) and a denied step forces a block
//! (`builtin:plan_deny`). Expiry is recorded by the sweep. `docs/plans.md` has the details.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use dashclaw_domain::action::OPERATOR;
use dashclaw_domain::guard::{evaluate, GuardContext, GuardRequest, Halt};
use dashclaw_domain::guard_decision::RecordedPlanStep;
use dashclaw_domain::ids::{ActionId, PlanId};
use dashclaw_domain::plan::{
    GrantStatus, Plan, PlanCommand, PlanError, PlanRecord, PlanStatus, PlanStep, Review,
    StepPreview, MAX_STEPS,
};
use dashclaw_domain::OrgId;
use dashclaw_projections::read::{entities, Page};
use serde_json::{json, Value};

use super::aggregates::{Actor, CommandError};
use super::guard::act_hash;
use super::policy_tools::NoHistory;
use super::{random, Caller, Error, ErrorCode, Permission, Service};

/// Most pending plans one agent may have.
pub const MAX_PENDING: usize = 10;

/// One step as submitted.
#[derive(Clone, Debug)]
pub struct NewStep {
    pub action_type: String,
    pub step_goal: String,
    pub act: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct NewPlan {
    pub agent_id: String,
    pub declared_goal: String,
    pub steps: Vec<NewStep>,
    pub ttl_minutes: u32,
}

/// An admin's verdict on a plan.
#[derive(Clone, Debug)]
pub enum PlanVerdict {
    Review(Review, BTreeMap<String, bool>),
    Revoke,
}

/// Which plans to list.
#[derive(Clone, Debug, Default)]
pub struct PlanFilter {
    pub status: Option<PlanStatus>,
    pub agent_id: Option<String>,
    pub limit: i64,
}

/// A successful attestation: the plan is approved, in force and carries the hash.
#[derive(Clone, Debug)]
pub struct Attestation {
    pub plan: PlanRecord,
    pub plan_hash: String,
    pub attested_at: DateTime<Utc>,
}

fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "Plan not found")
}

fn refused(e: CommandError<PlanError>) -> Error {
    match e {
        CommandError::Rejected(PlanError::NotFound) => not_found(),
        CommandError::Rejected(e @ PlanError::NotReviewable) => {
            Error::new(ErrorCode::NotFound, e.to_string())
        }
        CommandError::Rejected(e @ PlanError::UnknownStep(_)) => Error::bad_request(e.to_string()),
        CommandError::Rejected(e @ PlanError::NotRevocable(s)) => {
            Error::new(ErrorCode::Conflict, e.to_string()).with("current_status", s.as_str())
        }
        CommandError::Rejected(e @ PlanError::GrantNotUsable(_)) => {
            Error::new(ErrorCode::ExecutionClaimConflict, e.to_string())
        }
        CommandError::Rejected(e) => Error::internal(e),
        CommandError::Failed(e) => e,
    }
}

/// A plan as of `now`: a live plan past its expiry reads as expired before the sweep records
/// it.
pub fn as_seen_at(mut plan: PlanRecord, now: DateTime<Utc>) -> PlanRecord {
    plan.status = plan.status_at(now);
    plan
}

impl Service {
    /// Submits a plan: each step is previewed through the guard under the org's current
    /// policies (nothing is recorded as a decision), then the plan waits for review.
    pub async fn submit_plan(&self, caller: &Caller, new: NewPlan) -> Result<PlanRecord, Error> {
        caller.require(Permission::Write)?;
        if new.steps.is_empty() {
            return Err(Error::bad_request("steps must be a non-empty array"));
        }
        if new.steps.len() > MAX_STEPS {
            return Err(Error::bad_request(
                "Plan exceeds the 25-step cap (PLAN_MAX_STEPS)",
            ));
        }
        let now = self.clock().now();
        let pending = self
            .plans(
                caller,
                &PlanFilter {
                    status: Some(PlanStatus::Pending),
                    agent_id: Some(new.agent_id.clone()),
                    limit: 200,
                },
            )
            .await?;
        if pending.len() >= MAX_PENDING {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("Agent already has {MAX_PENDING} pending plans"),
            ));
        }
        let view = self
            .tail()
            .views()
            .get(self.aggregates(), &caller.org)
            .await?;
        let halt = view.halt.as_ref().map(|h| Halt {
            actor: &h.actor,
            reason: h.reason.as_deref().unwrap_or("no reason given"),
        });
        let plan_id = PlanId::random(random()?);
        let mut steps = Vec::with_capacity(new.steps.len());
        for (i, step) in new.steps.into_iter().enumerate() {
            let seq = i as u32 + 1;
            let act_content_hash = step.act.as_ref().map(act_hash).transpose()?;
            let request = GuardRequest {
                action_type: step.action_type.clone(),
                declared_goal: Some(step.step_goal.clone()),
                agent_id: Some(new.agent_id.clone()),
                act_hash: act_content_hash.clone(),
                ..Default::default()
            };
            let evaluation = evaluate(
                &request,
                &GuardContext {
                    policies: &view.policies,
                    halt,
                    counter: &NoHistory,
                    operator_grant: None,
                    plan_step: None,
                    now,
                },
            );
            steps.push(PlanStep {
                step_id: plan_id.step_id(seq),
                seq,
                action_type: step.action_type,
                step_goal: step.step_goal,
                act: step.act,
                act_content_hash,
                preview: StepPreview {
                    decision: evaluation.decision,
                    risk_score: evaluation.risk_score,
                    reasons: evaluation.reasons,
                },
                grant_status: GrantStatus::Pending,
                grant_used_at: None,
                matched_action_id: None,
            });
        }
        let record = PlanRecord {
            plan_id: plan_id.clone(),
            agent_id: new.agent_id.clone(),
            declared_goal: new.declared_goal,
            status: PlanStatus::Pending,
            ttl_minutes: new.ttl_minutes,
            expires_at: now + Duration::minutes(i64::from(new.ttl_minutes)),
            reviewed_by: None,
            reviewed_at: None,
            created_by: caller.principal.clone(),
            created_at: now,
            updated_at: now,
            steps,
        };
        let actor = Actor::of(&caller.principal, Some(&new.agent_id));
        let plan = self
            .aggregates()
            .create::<Plan>(
                &caller.org,
                plan_id.as_str(),
                PlanCommand::Submit(Box::new(record)),
                &actor,
            )
            .await
            .map_err(refused)?;
        self.fold_plans(&caller.org).await;
        plan.record.ok_or_else(not_found)
    }

    /// Folds the org's read models up to now, so that the guard (which finds plans through
    /// them) knows of a plan once its submission or review has been answered. The write is
    /// already committed: a failure here only delays that, and is logged.
    async fn fold_plans(&self, org: &OrgId) {
        if let Err(e) = self.projections().catch_up(org).await {
            tracing::warn!(org = %org, error = %e, "plan read model not caught up");
        }
    }

    /// A plan of the caller's org, as of now.
    pub async fn plan(&self, caller: &Caller, id: &str) -> Result<PlanRecord, Error> {
        let Ok(id) = PlanId::parse(id) else {
            return Err(not_found());
        };
        let plan: Plan = self.aggregates().load(&caller.org, id.as_str()).await?;
        let record = plan.record.ok_or_else(not_found)?;
        Ok(as_seen_at(record, self.clock().now()))
    }

    /// The caller's org's plans, most recently changed first, as of now.
    pub async fn plans(
        &self,
        caller: &Caller,
        filter: &PlanFilter,
    ) -> Result<Vec<PlanRecord>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let mut record = serde_json::Map::new();
        if let Some(agent) = &filter.agent_id {
            record.insert("agent_id".into(), json!(agent));
        }
        let now = self.clock().now();
        // Expiry is a matter of time before the sweep records it: filter after reading.
        let stored = match filter.status {
            Some(PlanStatus::Expired) | None => None,
            Some(s) => Some(s),
        };
        if let Some(s) = stored {
            record.insert("status".into(), json!(s.as_str()));
        }
        let fragment = json!({ "record": record });
        let found: Vec<Plan> =
            entities::page(self.pool(), &caller.org, &fragment, Page::first(1000)).await?;
        Ok(found
            .into_iter()
            .filter_map(|p| p.record)
            .map(|r| as_seen_at(r, now))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .take(filter.limit.max(0) as usize)
            .collect())
    }

    /// An admin's verdict: approve (steps overridable one by one), deny, or revoke.
    /// Reviewing one's own plan is refused (the bootstrap operator excepted).
    pub async fn resolve_plan(
        &self,
        caller: &Caller,
        id: &str,
        verdict: PlanVerdict,
    ) -> Result<PlanRecord, Error> {
        caller.require_admin("Admin access required")?;
        let current = self.plan(caller, id).await.map_err(|_| {
            Error::new(
                ErrorCode::NotFound,
                "Plan not found or not reviewable in its current status",
            )
        })?;
        let now = self.clock().now();
        let by = caller.principal.clone();
        let command = match verdict {
            PlanVerdict::Review(review, overrides) => {
                if current.created_by == caller.principal && caller.principal != OPERATOR {
                    return Err(Error::new(
                        ErrorCode::SelfApprovalForbidden,
                        "Separation of duties: a principal may not review its own plan",
                    ));
                }
                PlanCommand::Review {
                    review,
                    overrides,
                    by,
                    now,
                }
            }
            PlanVerdict::Revoke => PlanCommand::Revoke { by, now },
        };
        let actor = Actor::of(&caller.principal, Some(&current.agent_id));
        let plan = self
            .aggregates()
            .execute::<Plan>(&caller.org, current.plan_id.as_str(), command, &actor)
            .await
            .map_err(refused)?;
        self.fold_plans(&caller.org).await;
        Ok(as_seen_at(plan.record.ok_or_else(not_found)?, now))
    }

    /// Proves the plan is usable: approved (or partially), unexpired, unrevoked, and its hash
    /// is `plan_hash`. Every other outcome is an error with `ok: false` and a `reason`.
    pub async fn attest_plan(
        &self,
        caller: &Caller,
        id: &str,
        plan_hash: &str,
    ) -> Result<Attestation, Error> {
        let refuse = |code, message: &str, reason: &str| {
            Error::new(code, message)
                .with("ok", false)
                .with("reason", reason)
        };
        let plan = self
            .plan(caller, id)
            .await
            .map_err(|_| refuse(ErrorCode::NotFound, "Plan not found", "not_found"))?;
        let reason = match plan.status {
            PlanStatus::Approved | PlanStatus::PartiallyApproved => None,
            PlanStatus::Expired => Some("expired"),
            PlanStatus::Revoked => Some("revoked"),
            PlanStatus::Denied => Some("denied"),
            PlanStatus::Pending => Some("not_reviewed"),
        };
        if let Some(reason) = reason {
            return Err(refuse(
                ErrorCode::Forbidden,
                &format!("Plan is {}", plan.status.as_str()),
                reason,
            ));
        }
        let hash = plan.plan_hash();
        if hash != plan_hash {
            return Err(refuse(
                ErrorCode::Forbidden,
                "plan_hash does not match the reviewed plan",
                "hash_mismatch",
            ));
        }
        Ok(Attestation {
            plan,
            plan_hash: hash,
            attested_at: self.clock().now(),
        })
    }

    /// The reviewed step of a live plan of the request's agent that names this exact act
    /// (its action type and act hash): a denied one first, else an approved, unused one.
    pub(crate) async fn plan_step_for(
        &self,
        org: &OrgId,
        request: &GuardRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<RecordedPlanStep>, Error> {
        let (Some(agent), Some(hash)) = (request.agent_id.as_deref(), &request.act_hash) else {
            return Ok(None);
        };
        // The read model says which plans to look at; the ledger says what they are now (a
        // grant used a moment ago must not be offered again).
        let ids = entities::plans_in_force_of(self.pool(), org, agent).await?;
        let mut found: Option<RecordedPlanStep> = None;
        for id in ids {
            let plan: Plan = self.aggregates().load(org, &id).await?;
            let Some(plan) = plan.record else { continue };
            if !plan.status_at(now).is_reviewed_live() {
                continue;
            }
            for step in &plan.steps {
                let names_it = step.action_type == request.action_type
                    && step.act_content_hash.as_deref() == Some(hash.as_str());
                let usable = match step.grant_status {
                    GrantStatus::Denied => true,
                    GrantStatus::Approved => step.grant_used_at.is_none(),
                    GrantStatus::Pending => false,
                };
                if !(names_it && usable) {
                    continue;
                }
                let candidate = RecordedPlanStep {
                    plan_id: plan.plan_id.to_string(),
                    step_id: step.step_id.clone(),
                    seq: step.seq,
                    approved: step.grant_status == GrantStatus::Approved,
                    reviewed_by: plan.reviewed_by.clone().unwrap_or_default(),
                };
                if !candidate.approved {
                    return Ok(Some(candidate));
                }
                found.get_or_insert(candidate);
            }
        }
        Ok(found)
    }

    /// Uses the plan step grant a claim's decision relied on (once: a second use is refused).
    pub(crate) async fn use_plan_grant(
        &self,
        caller: &Caller,
        step: &RecordedPlanStep,
        action_id: &ActionId,
    ) -> Result<(), Error> {
        let command = PlanCommand::UseGrant {
            step_id: step.step_id.clone(),
            action_id: action_id.clone(),
            now: self.clock().now(),
        };
        let actor = Actor::of(&caller.principal, None);
        self.aggregates()
            .execute::<Plan>(&caller.org, &step.plan_id, command, &actor)
            .await
            .map_err(refused)
            .map(|_| ())
    }

    /// Records the expiry of `org`'s plans past their `expires_at` (the plan sweep); how many.
    /// The read model only says where to look (the ledger tail keeps it folded; a plan it has
    /// not folded yet waits for the next run); each plan's aggregate decides.
    pub async fn expire_plans(&self, org: &OrgId) -> Result<usize, Error> {
        let now = self.clock().now();
        let overdue = entities::overdue_plans(self.pool(), org, now, 500).await?;
        let actor = Actor::of("system:plan-expiry", None);
        let mut expired = 0;
        for id in overdue {
            match self
                .aggregates()
                .execute::<Plan>(org, &id, PlanCommand::Expire { now }, &actor)
                .await
            {
                Ok(_) => expired += 1,
                Err(CommandError::Rejected(_)) => {}
                Err(CommandError::Failed(e)) => return Err(e),
            }
        }
        Ok(expired)
    }
}
