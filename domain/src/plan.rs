//! The Plan aggregate (contract section 12): an agent's preflight plan, its steps previewed
//! through the guard, reviewed once by an operator (approve with per-step overrides, or deny),
//! revocable, expiring. An approved step is a single-use grant bound to the step's act hash;
//! a denied step forces a block of that act until the plan expires.
//!
//! Lifecycle: `pending` -> `approved` | `partially_approved` | `denied` (review) ;
//! `pending` | `approved` | `partially_approved` -> `revoked` ; any of those -> `expired`
//! once past `expires_at` (the review deadline while pending, the grant lifetime after).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::guard::Verdict;
use crate::ids::{ActionId, PlanId};

/// Most steps in one plan.
pub const MAX_STEPS: usize = 25;
/// The longest grant lifetime after approval.
pub const MAX_GRANT_TTL: Duration = Duration::minutes(480);
/// Default review window.
pub const DEFAULT_TTL_MINUTES: u32 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Pending,
    Approved,
    PartiallyApproved,
    Denied,
    Revoked,
    Expired,
}

impl PlanStatus {
    pub const ALL: &'static [&'static str] = &[
        "pending",
        "previewing",
        "approved",
        "partially_approved",
        "denied",
        "revoked",
        "expired",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::PartiallyApproved => "partially_approved",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "partially_approved" => Self::PartiallyApproved,
            "denied" => Self::Denied,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// Reviewed and still in force (its steps act in the guard).
    pub fn is_reviewed_live(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::PartiallyApproved | Self::Denied
        )
    }
}

/// A step's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Pending,
    Approved,
    Denied,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
        }
    }
}

/// What the guard said of a step when the plan was submitted (nothing recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPreview {
    pub decision: Verdict,
    pub risk_score: u8,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// `ps_<plan hex>_<seq>`.
    pub step_id: String,
    /// 1-based.
    pub seq: u32,
    pub action_type: String,
    pub step_goal: String,
    pub act: Option<Value>,
    /// Hex SHA-256 of the act's canonical JSON (what a guard request's act must hash to).
    pub act_content_hash: Option<String>,
    pub preview: StepPreview,
    pub grant_status: GrantStatus,
    pub grant_used_at: Option<DateTime<Utc>>,
    pub matched_action_id: Option<ActionId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub plan_id: PlanId,
    pub agent_id: String,
    pub declared_goal: String,
    pub status: PlanStatus,
    pub ttl_minutes: u32,
    pub expires_at: DateTime<Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub steps: Vec<PlanStep>,
}

impl PlanRecord {
    /// The plan's hash: hex SHA-256 of the canonical text that names what was reviewed
    /// (`docs/plans.md`): `dashclaw-plan/v1`, the plan id, the agent, the goal, then each
    /// step's seq, action type, goal and act hash, every field followed by a NUL byte.
    pub fn plan_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |s: &str| {
            h.update(s.as_bytes());
            h.update([0u8]);
        };
        field("dashclaw-plan/v1");
        field(self.plan_id.as_str());
        field(&self.agent_id);
        field(&self.declared_goal);
        for s in &self.steps {
            field(&s.seq.to_string());
            field(&s.action_type);
            field(&s.step_goal);
            field(s.act_content_hash.as_deref().unwrap_or(""));
        }
        hex::encode(h.finalize())
    }

    /// The status as of `now`: a live plan past its `expires_at` is expired, recorded or not.
    pub fn status_at(&self, now: DateTime<Utc>) -> PlanStatus {
        match self.status {
            s @ (PlanStatus::Revoked | PlanStatus::Expired) => s,
            _ if now >= self.expires_at => PlanStatus::Expired,
            s => s,
        }
    }
}

/// An operator's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    Approve,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub record: Option<PlanRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlanCommand {
    Submit(Box<PlanRecord>),
    Review {
        review: Review,
        /// Per step id: approve (`true`) or deny, overriding the verdict.
        overrides: BTreeMap<String, bool>,
        by: String,
        now: DateTime<Utc>,
    },
    Revoke {
        by: String,
        now: DateTime<Utc>,
    },
    Expire {
        now: DateTime<Utc>,
    },
    /// An execution claim used the step's grant.
    UseGrant {
        step_id: String,
        action_id: ActionId,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlanEvent {
    Submitted(Box<PlanRecord>),
    Reviewed {
        status: PlanStatus,
        /// Every step's grant, by step id.
        grants: BTreeMap<String, GrantStatus>,
        reviewed_by: String,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    Revoked {
        revoked_by: String,
        at: DateTime<Utc>,
    },
    Expired {
        at: DateTime<Utc>,
    },
    GrantUsed {
        step_id: String,
        action_id: ActionId,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for PlanEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Submitted(_) => "PlanSubmitted",
            Self::Reviewed { .. } => "PlanReviewed",
            Self::Revoked { .. } => "PlanRevoked",
            Self::Expired { .. } => "PlanExpired",
            Self::GrantUsed { .. } => "PlanGrantUsed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("Plan already exists")]
    AlreadyExists,
    #[error("Plan not found")]
    NotFound,
    /// 404, as DashClaw answers it.
    #[error("Plan not found or not reviewable in its current status")]
    NotReviewable,
    #[error("step_overrides names a step the plan does not have: {0}")]
    UnknownStep(String),
    #[error("Plan cannot be revoked in status '{}'", .0.as_str())]
    NotRevocable(PlanStatus),
    #[error("Plan is not past its expiry")]
    NotExpired,
    #[error("Plan step grant is not usable: {0}")]
    GrantNotUsable(&'static str),
}

impl Aggregate for Plan {
    const TYPE: &'static str = "Plan";
    type Command = PlanCommand;
    type Event = PlanEvent;
    type Error = PlanError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PlanCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PlanError> {
        let event = match (command, &self.record) {
            (PlanCommand::Submit(_), Some(_)) => return Err(PlanError::AlreadyExists),
            (PlanCommand::Submit(record), None) => PlanEvent::Submitted(record),
            (_, None) => return Err(PlanError::NotFound),
            (
                PlanCommand::Review {
                    review,
                    overrides,
                    by,
                    now,
                },
                Some(r),
            ) => {
                if r.status_at(now) != PlanStatus::Pending {
                    return Err(PlanError::NotReviewable);
                }
                if let Some(unknown) = overrides
                    .keys()
                    .find(|id| !r.steps.iter().any(|s| &s.step_id == *id))
                {
                    return Err(PlanError::UnknownStep(unknown.clone()));
                }
                let grants: BTreeMap<String, GrantStatus> = r
                    .steps
                    .iter()
                    .map(|s| {
                        let approve = match review {
                            Review::Deny => false,
                            Review::Approve => overrides.get(&s.step_id).copied().unwrap_or(true),
                        };
                        let grant = if approve {
                            GrantStatus::Approved
                        } else {
                            GrantStatus::Denied
                        };
                        (s.step_id.clone(), grant)
                    })
                    .collect();
                let approved = grants
                    .values()
                    .filter(|g| **g == GrantStatus::Approved)
                    .count();
                let status = match approved {
                    0 => PlanStatus::Denied,
                    n if n == grants.len() => PlanStatus::Approved,
                    _ => PlanStatus::PartiallyApproved,
                };
                let ttl = Duration::minutes(i64::from(r.ttl_minutes)).min(MAX_GRANT_TTL);
                PlanEvent::Reviewed {
                    status,
                    grants,
                    reviewed_by: by,
                    at: now,
                    expires_at: now + ttl,
                }
            }
            (PlanCommand::Revoke { by, now }, Some(r)) => match r.status_at(now) {
                PlanStatus::Pending | PlanStatus::Approved | PlanStatus::PartiallyApproved => {
                    PlanEvent::Revoked {
                        revoked_by: by,
                        at: now,
                    }
                }
                s => return Err(PlanError::NotRevocable(s)),
            },
            (PlanCommand::Expire { now }, Some(r)) => {
                if r.status_at(now) != PlanStatus::Expired || r.status == PlanStatus::Expired {
                    return Err(PlanError::NotExpired);
                }
                PlanEvent::Expired { at: now }
            }
            (
                PlanCommand::UseGrant {
                    step_id,
                    action_id,
                    now,
                },
                Some(r),
            ) => {
                use PlanError::GrantNotUsable as No;
                if !matches!(
                    r.status_at(now),
                    PlanStatus::Approved | PlanStatus::PartiallyApproved
                ) {
                    return Err(No("the plan is not approved and in force"));
                }
                let Some(step) = r.steps.iter().find(|s| s.step_id == step_id) else {
                    return Err(No("no such step"));
                };
                if step.grant_status != GrantStatus::Approved {
                    return Err(No("the step is not approved"));
                }
                if step.grant_used_at.is_some() {
                    return Err(No("the step's grant was already used"));
                }
                PlanEvent::GrantUsed {
                    step_id,
                    action_id,
                    at: now,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PlanEvent) {
        if let PlanEvent::Submitted(record) = event {
            self.record = Some(*record);
            return;
        }
        let Some(r) = self.record.as_mut() else {
            return;
        };
        match event {
            PlanEvent::Submitted(_) => {}
            PlanEvent::Reviewed {
                status,
                grants,
                reviewed_by,
                at,
                expires_at,
            } => {
                r.status = status;
                for step in &mut r.steps {
                    if let Some(g) = grants.get(&step.step_id) {
                        step.grant_status = *g;
                    }
                }
                r.reviewed_by = Some(reviewed_by);
                r.reviewed_at = Some(at);
                r.expires_at = expires_at;
                r.updated_at = at;
            }
            PlanEvent::Revoked { at, .. } => {
                r.status = PlanStatus::Revoked;
                r.updated_at = at;
            }
            PlanEvent::Expired { at } => {
                r.status = PlanStatus::Expired;
                r.updated_at = at;
            }
            PlanEvent::GrantUsed {
                step_id,
                action_id,
                at,
            } => {
                if let Some(step) = r.steps.iter_mut().find(|s| s.step_id == step_id) {
                    step.grant_used_at = Some(at);
                    step.matched_action_id = Some(action_id);
                }
                r.updated_at = at;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
    }

    fn step(seq: u32) -> PlanStep {
        PlanStep {
            step_id: format!("ps_00aa_{seq}"),
            seq,
            action_type: "deploy".into(),
            step_goal: format!("step {seq}"),
            act: None,
            act_content_hash: Some(format!("h{seq}")),
            preview: StepPreview {
                decision: Verdict::RequireApproval,
                risk_score: 50,
                reasons: vec![],
            },
            grant_status: GrantStatus::Pending,
            grant_used_at: None,
            matched_action_id: None,
        }
    }

    pub(crate) fn submitted() -> PlanEvent {
        PlanEvent::Submitted(Box::new(PlanRecord {
            plan_id: PlanId::parse("pa_00aa").unwrap(),
            agent_id: "agent-1".into(),
            declared_goal: "ship".into(),
            status: PlanStatus::Pending,
            ttl_minutes: 60,
            expires_at: t0() + Duration::minutes(60),
            reviewed_by: None,
            reviewed_at: None,
            created_by: "key_agent".into(),
            created_at: t0(),
            updated_at: t0(),
            steps: vec![step(1), step(2)],
        }))
    }

    fn review(review: Review, overrides: &[(&str, bool)], now: DateTime<Utc>) -> PlanCommand {
        PlanCommand::Review {
            review,
            overrides: overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            by: "key_admin".into(),
            now,
        }
    }

    fn state(events: Vec<PlanEvent>) -> PlanRecord {
        let mut p = Plan::default();
        for e in events {
            p.apply(e);
        }
        p.record.unwrap()
    }

    fn reviewed(status: PlanStatus, grants: &[(&str, GrantStatus)]) -> PlanEvent {
        PlanEvent::Reviewed {
            status,
            grants: grants.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            reviewed_by: "key_admin".into(),
            at: t0(),
            expires_at: t0() + Duration::minutes(60),
        }
    }

    #[test]
    fn a_review_approves_denies_or_partially_approves_every_step() {
        use GrantStatus::*;
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(review(Review::Approve, &[], t0()))
            .then_expect_events(vec![reviewed(
                PlanStatus::Approved,
                &[("ps_00aa_1", Approved), ("ps_00aa_2", Approved)],
            )]);
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(review(Review::Approve, &[("ps_00aa_2", false)], t0()))
            .then_expect_events(vec![reviewed(
                PlanStatus::PartiallyApproved,
                &[("ps_00aa_1", Approved), ("ps_00aa_2", Denied)],
            )]);
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(review(Review::Deny, &[("ps_00aa_2", true)], t0()))
            .then_expect_events(vec![reviewed(
                PlanStatus::Denied,
                &[("ps_00aa_1", Denied), ("ps_00aa_2", Denied)],
            )]);
    }

    #[test]
    fn a_plan_is_reviewed_once_in_time_and_overrides_name_its_steps() {
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), reviewed(PlanStatus::Approved, &[])])
            .when(review(Review::Deny, &[], t0()))
            .then_expect_error(PlanError::NotReviewable);
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(review(Review::Approve, &[], t0() + Duration::minutes(61)))
            .then_expect_error(PlanError::NotReviewable);
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(review(Review::Approve, &[("ps_nope", true)], t0()))
            .then_expect_error(PlanError::UnknownStep("ps_nope".into()));
        TestFramework::<Plan>::with(())
            .given_no_previous_events()
            .when(review(Review::Approve, &[], t0()))
            .then_expect_error(PlanError::NotFound);
    }

    #[test]
    fn an_approved_step_grant_is_used_once() {
        let approved = reviewed(
            PlanStatus::PartiallyApproved,
            &[
                ("ps_00aa_1", GrantStatus::Approved),
                ("ps_00aa_2", GrantStatus::Denied),
            ],
        );
        let used = PlanEvent::GrantUsed {
            step_id: "ps_00aa_1".into(),
            action_id: ActionId::parse("act_1").unwrap(),
            at: t0(),
        };
        let use_grant = |step: &str| PlanCommand::UseGrant {
            step_id: step.into(),
            action_id: ActionId::parse("act_1").unwrap(),
            now: t0(),
        };
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), approved.clone()])
            .when(use_grant("ps_00aa_1"))
            .then_expect_events(vec![used.clone()]);
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), approved.clone(), used.clone()])
            .when(use_grant("ps_00aa_1"))
            .then_expect_error(PlanError::GrantNotUsable(
                "the step's grant was already used",
            ));
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), approved.clone()])
            .when(use_grant("ps_00aa_2"))
            .then_expect_error(PlanError::GrantNotUsable("the step is not approved"));
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(use_grant("ps_00aa_1"))
            .then_expect_error(PlanError::GrantNotUsable(
                "the plan is not approved and in force",
            ));
        let r = state(vec![submitted(), approved, used]);
        assert!(r.steps[0].grant_used_at.is_some());
        assert_eq!(
            r.steps[0].matched_action_id.as_ref().unwrap().as_str(),
            "act_1"
        );
    }

    #[test]
    fn revocation_and_expiry() {
        let approved = reviewed(PlanStatus::Approved, &[]);
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), approved.clone()])
            .when(PlanCommand::Revoke {
                by: "key_admin".into(),
                now: t0(),
            })
            .then_expect_events(vec![PlanEvent::Revoked {
                revoked_by: "key_admin".into(),
                at: t0(),
            }]);
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), reviewed(PlanStatus::Denied, &[])])
            .when(PlanCommand::Revoke {
                by: "key_admin".into(),
                now: t0(),
            })
            .then_expect_error(PlanError::NotRevocable(PlanStatus::Denied));
        TestFramework::<Plan>::with(())
            .given(vec![submitted()])
            .when(PlanCommand::Expire { now: t0() })
            .then_expect_error(PlanError::NotExpired);
        let late = t0() + Duration::minutes(61);
        TestFramework::<Plan>::with(())
            .given(vec![submitted(), approved])
            .when(PlanCommand::Expire { now: late })
            .then_expect_events(vec![PlanEvent::Expired { at: late }]);
    }

    #[test]
    fn the_plan_hash_binds_what_was_reviewed() {
        let PlanEvent::Submitted(r) = submitted() else {
            unreachable!()
        };
        let mut other = (*r).clone();
        assert_eq!(r.plan_hash(), other.plan_hash());
        assert_eq!(r.plan_hash().len(), 64);
        other.steps[1].act_content_hash = Some("changed".into());
        assert_ne!(r.plan_hash(), other.plan_hash());
    }
}
