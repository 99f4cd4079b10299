//! Golden payloads of every stored event type and version (`domain/testdata/events`).
//!
//! The store persists `serde_json::to_value(&event)` (canonicalized) as an event's payload and
//! hashes it into the org's chain, so any change to a type that ends up in a payload (a
//! record struct, a REST-facing type embedded in one, a serde attribute, a variant name)
//! changes the bytes of new ledger events. These tests make such a change fail instead of
//! slipping through:
//!
//! - `<AggregateType>/<event_type>.v<event_version>.json` holds one example per event type and
//!   version: `{"event_type", "event_version", "payload"}`, the payload being exactly what
//!   `serde_json::to_value` gives today. Serializing the example must give that payload, and
//!   decoding the file's payload must give the example back (so stored events still decode).
//! - Every variant of every event enum needs an example, and every event enum of this crate
//!   needs a set of examples; a file that no example produces fails as stale.
//!
//! If a change is intended, rerun with `UPDATE_GOLDEN=1` in the environment: the files are
//! rewritten instead of compared, and the diff is what to review. A payload shape change needs
//! a new `event_version`, and the old version must still decode: keep its example and its
//! file (docs/ledger-format.md, "Event payloads").

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use regex::Regex;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{json, Value};

use crate::action::{
    Action, ActionEvent, ActionRecord, ActionStatus, CloseSource, LegacyUpdate, OutcomeStatus,
    ReportedOutcome,
};
use crate::api_key::{ApiKey, ApiKeyEvent, ApiKeyRecord, Role};
use crate::assumption::{Assumption, AssumptionEvent, AssumptionRecord};
use crate::guard::{
    Evaluation, GuardRequest, Policy, RiskBase, RiskBreakdown, RiskModifier, Verdict,
};
use crate::guard_decision::{
    CounterAnswer, DecisionPurpose, GuardDecision, GuardDecisionEvent, GuardDecisionRecord,
    RecordedContext, RecordedGrant, RecordedHalt, RecordedPlanStep,
};
use crate::identity::{
    AgentIdentity, IdentityEvent, Pairing, PairingEvent, PairingRecord, PairingStatus,
};
use crate::ids::{
    ActionId, ApiKeyId, AssumptionId, GuardDecisionId, PairingId, PlanId, SessionId, WebhookId,
};
use crate::org_settings::{HaltState, OrgProfile, OrgSettings, OrgSettingsEvent, SweepOverrides};
use crate::plan::{GrantStatus, Plan, PlanEvent, PlanRecord, PlanStatus, PlanStep, StepPreview};
use crate::policy_set::{PolicySet, PolicySetEvent, StoredPolicy};
use crate::session::{Session, SessionChanges, SessionEvent, SessionStatus};
use crate::webhook::{Webhook, WebhookEvent, WebhookRecord};

/// What to do when a payload no longer matches its golden file.
const HINT: &str = "If this change is intended, rerun with UPDATE_GOLDEN=1 and review the \
                    diff: the change alters bytes hashed into new ledger events, so it needs a \
                    new event_version (and the old version must still decode: keep its example \
                    and its file).";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/events")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().expect("a fixed RFC 3339 timestamp")
}

fn action_id() -> ActionId {
    ActionId::parse("act_5b0c6f1e-2d4a-4c8e-9f3b-7a1d2e3f4a5b").expect("a valid action id")
}

fn decision_id(n: u8) -> GuardDecisionId {
    GuardDecisionId::random([0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, n])
}

// ---------------------------------------------------------------------------------------
// The examples: one function per aggregate, one example per variant.
//
// Each function ends with a match naming every variant, so that a new variant stops the build
// right next to the list it needs an example in; `every_variant_has_an_example` then checks
// the list against serde's own variant names, so naming a variant there without giving it an
// example fails a test.
// Examples fill optional fields with values (not null) wherever that shows more of the shape,
// and every id and timestamp is fixed.
// ---------------------------------------------------------------------------------------

fn action_events() -> Vec<ActionEvent> {
    let record = ActionRecord {
        action_id: action_id(),
        agent_id: "agent-deployer".into(),
        agent_name: Some("Deployer".into()),
        swarm_id: Some("swarm-release".into()),
        parent_action_id: Some("act_parent-1".into()),
        action_type: "deploy".into(),
        declared_goal: "ship \"v2\" to prod — région eu-west".into(),
        reasoning: Some("tests are green\nand the change window is open".into()),
        authorization_scope: Some("prod:deploy".into()),
        trigger: Some("merge to main".into()),
        systems_touched: vec!["k8s/prod".into(), "postgres/main".into()],
        input_summary: Some("image v2.3.1".into()),
        status: ActionStatus::PendingApproval,
        reversible: false,
        risk_score: 85,
        confidence: 72,
        recommendation_id: Some("rec_42".into()),
        output_summary: Some("rolled out to 3/3 pods".into()),
        side_effects: vec!["cache flushed".into()],
        artifacts_created: vec!["release-notes.md".into(), "s3://builds/v2.3.1".into()],
        error_message: Some("one pod restarted twice".into()),
        timestamp_start: at("2026-11-21T09:30:00.123Z"),
        timestamp_end: Some(at("2026-11-21T09:42:10Z")),
        duration_ms: Some(730_877),
        cost_estimate: Some(0.0125),
        tokens_in: Some(12_800),
        tokens_out: Some(950),
        model: Some("claude-sonnet-4".into()),
        idempotency_key: Some("deploy-v2.3.1".into()),
        session_id: Some("sess_7".into()),
        guard_decision_id: decision_id(1),
        guard_verdict: Verdict::RequireApproval,
        approval_expires_at: Some(at("2026-11-21T09:50:00.123Z")),
        approved_by: Some("key_admin".into()),
        approved_at: Some(at("2026-11-21T09:31:00Z")),
        approval_grant_used_at: Some(at("2026-11-21T09:31:30Z")),
        approval_decided_at: Some(at("2026-11-21T09:31:00Z")),
        outcome_status: OutcomeStatus::LostConfirmation,
        outcome_at: Some(at("2026-11-21T10:31:30Z")),
        outcome_summary: Some("No outcome reported within timeout window".into()),
        outcome_error: Some("timeout".into()),
        outcome_progress: Some(
            json!({"pods": [1, 2, 3], "ratio": 0.5, "done": false, "note": null}),
        ),
        close_source: Some(CloseSource::Outcome),
        act_content_hash: Some("ab".repeat(32)),
        created_by: "key_agent".into(),
        execution_claimed_at: Some(at("2026-11-21T09:31:30Z")),
        execution_attempt_id: Some("attempt-1".into()),
        execution_guard_decision_id: Some(decision_id(2)),
        created_at: at("2026-11-21T09:30:00.123Z"),
        updated_at: at("2026-11-21T10:31:30Z"),
    };
    let events = vec![
        ActionEvent::Recorded(Box::new(record)),
        ActionEvent::ApprovalGranted {
            approved_by: "key_admin".into(),
            reasoning: Some("change window confirmed".into()),
            at: at("2026-11-21T09:31:00Z"),
        },
        ActionEvent::ApprovalDenied {
            denied_by: "operator".into(),
            reasoning: Some("freeze in effect".into()),
            at: at("2026-11-21T09:31:00.500Z"),
        },
        ActionEvent::ApprovalExpired {
            at: at("2026-11-21T09:50:00.123Z"),
        },
        ActionEvent::ExecutionClaimed {
            attempt_id: "attempt-1".into(),
            guard_decision_id: decision_id(2),
            at: at("2026-11-21T09:31:30Z"),
        },
        ActionEvent::OutcomeReported {
            status: ReportedOutcome::Partial,
            summary: Some("2 of 3 regions".into()),
            error_message: Some("eu-west timed out".into()),
            progress: Some(
                json!({"regions": {"us-east": "done", "eu-west": "timeout"}, "pct": 66}),
            ),
            at: at("2026-11-21T09:42:10Z"),
        },
        ActionEvent::Updated(Box::new(LegacyUpdate {
            status: Some(ActionStatus::Completed),
            output_summary: Some("done".into()),
            side_effects: Some(vec!["dns updated".into()]),
            artifacts_created: Some(vec!["report.pdf".into()]),
            error_message: Some("none".into()),
            timestamp_end: Some(at("2026-11-21T09:42:10Z")),
            duration_ms: Some(730_877),
            cost_estimate: Some(1.5),
            tokens_in: Some(100),
            tokens_out: Some(20),
            model: Some("gpt-4o".into()),
            now: at("2026-11-21T09:42:11Z"),
        })),
        ActionEvent::ConfirmationLost {
            at: at("2026-11-21T10:31:30Z"),
        },
        ActionEvent::Cancelled {
            reason: "the migration window closed".into(),
            cancelled_by: "key_admin".into(),
            at: at("2026-11-21T10:40:00Z"),
        },
    ];
    for e in &events {
        match e {
            ActionEvent::Recorded(_)
            | ActionEvent::ApprovalGranted { .. }
            | ActionEvent::ApprovalDenied { .. }
            | ActionEvent::ApprovalExpired { .. }
            | ActionEvent::ExecutionClaimed { .. }
            | ActionEvent::OutcomeReported { .. }
            | ActionEvent::Updated(_)
            | ActionEvent::ConfirmationLost { .. }
            | ActionEvent::Cancelled { .. } => {}
        }
    }
    events
}

fn guard_decision_events() -> Vec<GuardDecisionEvent> {
    let record = GuardDecisionRecord {
        decision_id: decision_id(1),
        request: GuardRequest {
            action_type: "deploy".into(),
            declared_goal: Some("ship v2 to prod".into()),
            risk_score: Some(90),
            agent_id: Some("agent-deployer".into()),
            agent_name: Some("Deployer".into()),
            systems_touched: vec!["k8s/prod".into()],
            reversible: Some(false),
            target: Some("prod".into()),
            write_paths: vec!["/etc/app.conf".into()],
            client_capabilities: vec!["execution_claims".into()],
            act_hash: Some("cd".repeat(32)),
            verification: None,
        },
        evaluation: Evaluation {
            decision: Verdict::RequireApproval,
            reasons: vec!["risk 90 >= threshold 80".into()],
            warnings: vec!["policy gp_x has an unknown type".into()],
            matched_policies: vec!["gp_0123456789abcdef01234567".into()],
            risk_score: 90,
            risk_breakdown: RiskBreakdown {
                base: RiskBase {
                    action_type: "deploy".into(),
                    score: 60,
                },
                modifiers: vec![
                    RiskModifier {
                        factor: "irreversible".into(),
                        delta: 15,
                    },
                    RiskModifier {
                        factor: "read_only_goal".into(),
                        delta: -10,
                    },
                ],
                server_total: 65,
                client_reported: Some(90),
                effective: 90,
                final_score: 90,
            },
        },
        policy_set_version: "ef".repeat(32),
        halted: false,
        principal: "key_agent".into(),
        purpose: DecisionPurpose::Action,
        action_id: Some(action_id()),
        idempotency_key: Some("deploy-v2.3.1".into()),
        evaluated_at: at("2026-11-21T09:30:00.123Z"),
        context: None,
    };
    // Version 2: the same with the recorded context of the evaluation.
    let with_context = GuardDecisionRecord {
        purpose: DecisionPurpose::Claim,
        context: Some(RecordedContext {
            engine: "dashclaw-guard/0.1.0".into(),
            halt: Some(RecordedHalt {
                actor: "key_admin".into(),
                reason: "incident 42".into(),
            }),
            counts: vec![CounterAnswer {
                agent_id: "agent-deployer".into(),
                since: at("2026-11-21T08:30:00.123Z"),
                count: 7,
            }],
            operator_grant: Some(RecordedGrant {
                action_id: action_id().to_string(),
                approved_by: "key_admin".into(),
            }),
            plan_step: None,
        }),
        ..record.clone()
    };
    // Version 3: a plan step named the request.
    let mut with_plan = with_context.clone();
    if let Some(c) = with_plan.context.as_mut() {
        c.operator_grant = None;
        c.plan_step = Some(RecordedPlanStep {
            plan_id: "pa_0011223344556677".into(),
            step_id: "ps_0011223344556677_1".into(),
            seq: 1,
            approved: true,
            reviewed_by: "key_admin".into(),
        });
    }
    let events = vec![
        GuardDecisionEvent::Recorded(Box::new(record)),
        GuardDecisionEvent::Recorded(Box::new(with_context)),
        GuardDecisionEvent::Recorded(Box::new(with_plan)),
    ];
    for e in &events {
        match e {
            GuardDecisionEvent::Recorded(_) => {}
        }
    }
    events
}

fn policy() -> Policy {
    Policy {
        id: "gp_0123456789abcdef01234567".into(),
        name: "hold risky deploys".into(),
        policy_type: "risk_threshold".into(),
        rules: json!({"threshold": 80, "action": "require_approval"}),
        active: true,
        agent_ids: Some(vec!["agent-deployer".into(), "agent-ops".into()]),
    }
}

fn policy_set_events() -> Vec<PolicySetEvent> {
    let events = vec![
        PolicySetEvent::Created(StoredPolicy {
            policy: policy(),
            created_by: "key_admin".into(),
            created_at: at("2026-11-21T08:00:00Z"),
            updated_at: at("2026-11-21T08:00:00Z"),
        }),
        PolicySetEvent::Updated {
            policy: Policy {
                active: false,
                ..policy()
            },
            at: at("2026-11-21T08:15:00.250Z"),
        },
        PolicySetEvent::Deleted {
            ids: vec!["gp_0123456789abcdef01234567".into(), "gp_aaaa".into()],
            at: at("2026-11-21T08:30:00Z"),
        },
    ];
    for e in &events {
        match e {
            PolicySetEvent::Created(_)
            | PolicySetEvent::Updated { .. }
            | PolicySetEvent::Deleted { .. } => {}
        }
    }
    events
}

fn org_settings_events() -> Vec<OrgSettingsEvent> {
    let events = vec![
        OrgSettingsEvent::ProfileChanged(OrgProfile {
            name: "Acme Corp".into(),
            slug: "acme-corp".into(),
            changed_by: "operator".into(),
            created_at: at("2026-11-21T10:00:00Z"),
            updated_at: at("2026-11-21T10:30:00Z"),
        }),
        OrgSettingsEvent::HaltChanged(HaltState {
            halted: true,
            actor: "operator".into(),
            reason: Some("incident #12".into()),
            at: at("2026-11-21T11:00:00Z"),
        }),
        OrgSettingsEvent::SweepsChanged {
            overrides: SweepOverrides {
                lost_confirmation_timeout_secs: Some(3600),
                approval_grace_secs: Some(900),
                checkpoint_every_events: Some(1000),
                checkpoint_interval_secs: Some(300),
            },
            actor: "key_admin".into(),
            at: at("2026-11-21T11:05:00Z"),
        },
    ];
    for e in &events {
        match e {
            OrgSettingsEvent::ProfileChanged(_)
            | OrgSettingsEvent::HaltChanged(_)
            | OrgSettingsEvent::SweepsChanged { .. } => {}
        }
    }
    events
}

fn assumption_events() -> Vec<AssumptionEvent> {
    let record = AssumptionRecord {
        assumption_id: AssumptionId::parse("asm_9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4")
            .expect("a valid assumption id"),
        action_id: action_id(),
        assumption: "the orders table is empty".into(),
        basis: Some("SELECT count(*) returned 0".into()),
        validated: true,
        invalidated: true,
        invalidated_reason: Some("3 rows appeared".into()),
        validated_at: Some(at("2026-11-21T09:35:00Z")),
        invalidated_at: Some(at("2026-11-21T09:40:00Z")),
        created_at: at("2026-11-21T09:30:00.123Z"),
    };
    let events = vec![
        AssumptionEvent::Registered(Box::new(record)),
        AssumptionEvent::Validated {
            at: at("2026-11-21T09:35:00Z"),
        },
        AssumptionEvent::Invalidated {
            reason: "3 rows appeared".into(),
            at: at("2026-11-21T09:40:00Z"),
        },
    ];
    for e in &events {
        match e {
            AssumptionEvent::Registered(_)
            | AssumptionEvent::Validated { .. }
            | AssumptionEvent::Invalidated { .. } => {}
        }
    }
    events
}

fn api_key_events() -> Vec<ApiKeyEvent> {
    let record = ApiKeyRecord {
        id: ApiKeyId::parse("key_1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f").expect("a valid key id"),
        key_hash: "12".repeat(32),
        role: Role::Readonly,
        name: "auditor".into(),
        created_by: "operator".into(),
        created_at: at("2026-11-21T07:00:00Z"),
        revoked_at: Some(at("2026-11-22T07:00:00Z")),
    };
    let events = vec![
        ApiKeyEvent::Issued(Box::new(record)),
        ApiKeyEvent::Revoked {
            at: at("2026-11-22T07:00:00Z"),
        },
    ];
    for e in &events {
        match e {
            ApiKeyEvent::Issued(_) | ApiKeyEvent::Revoked { .. } => {}
        }
    }
    events
}

fn webhook_events() -> Vec<WebhookEvent> {
    let record = WebhookRecord {
        id: WebhookId::parse("wh_0f1e2d3c-4b5a-4697-8877-665544332211")
            .expect("a valid webhook id"),
        url: "https://hooks.example.com/dashclaw?team=ops".into(),
        events: vec!["approval_pending".into(), "lost_confirmation".into()],
        secret_sha256: "34".repeat(32),
        created_by: "key_admin".into(),
        created_at: at("2026-11-21T07:30:00Z"),
        deleted_at: Some(at("2026-11-23T07:30:00Z")),
    };
    let events = vec![
        WebhookEvent::Registered(Box::new(record)),
        WebhookEvent::Deleted {
            deleted_by: "key_admin".into(),
            at: at("2026-11-23T07:30:00Z"),
        },
    ];
    for e in &events {
        match e {
            WebhookEvent::Registered(_) | WebhookEvent::Deleted { .. } => {}
        }
    }
    events
}

fn session_events() -> Vec<SessionEvent> {
    let events = vec![
        SessionEvent::Started {
            session_id: SessionId::parse("sess_0a1b2c3d4e5f").expect("a valid session id"),
            agent_id: "claude-code".into(),
            workspace: Some("/home/dev/repo".into()),
            branch: Some("feature/ledger".into()),
            at: at("2026-12-03T09:00:00Z"),
        },
        SessionEvent::Updated {
            changes: SessionChanges {
                status: Some(SessionStatus::Blocked),
                green_level: Some("package".into()),
                branch_freshness: Some("stale".into()),
                commits_behind: Some(3),
                blocked_reason: Some("waiting for review".into()),
                summary: None,
            },
            at: at("2026-12-03T09:30:00Z"),
        },
    ];
    for e in &events {
        match e {
            SessionEvent::Started { .. } | SessionEvent::Updated { .. } => {}
        }
    }
    events
}

fn plan_events() -> Vec<PlanEvent> {
    let plan_id = PlanId::parse("pa_0011223344556677").expect("a valid plan id");
    let record = PlanRecord {
        plan_id: plan_id.clone(),
        agent_id: "claude-code".into(),
        declared_goal: "release 2.1".into(),
        status: PlanStatus::Pending,
        ttl_minutes: 60,
        expires_at: at("2026-12-03T11:00:00Z"),
        reviewed_by: None,
        reviewed_at: None,
        created_by: "key_agent".into(),
        created_at: at("2026-12-03T10:00:00Z"),
        updated_at: at("2026-12-03T10:00:00Z"),
        steps: vec![PlanStep {
            step_id: plan_id.step_id(1),
            seq: 1,
            action_type: "deploy".into(),
            step_goal: "deploy to staging".into(),
            act: Some(json!({"kind": "shell", "command": "make deploy"})),
            act_content_hash: Some("ab".repeat(32)),
            preview: StepPreview {
                decision: Verdict::RequireApproval,
                risk_score: 60,
                reasons: vec!["Hold: Action type \"deploy\" requires approval".into()],
            },
            grant_status: GrantStatus::Pending,
            grant_used_at: None,
            matched_action_id: None,
        }],
    };
    let events = vec![
        PlanEvent::Submitted(Box::new(record)),
        PlanEvent::Reviewed {
            status: PlanStatus::Approved,
            grants: [(plan_id.step_id(1), GrantStatus::Approved)]
                .into_iter()
                .collect(),
            reviewed_by: "key_admin".into(),
            at: at("2026-12-03T10:05:00Z"),
            expires_at: at("2026-12-03T11:05:00Z"),
        },
        PlanEvent::GrantUsed {
            step_id: plan_id.step_id(1),
            action_id: ActionId::parse("act_0f1e2d3c-4b5a-4697-8877-665544332211").expect("an id"),
            at: at("2026-12-03T10:10:00Z"),
        },
        PlanEvent::Revoked {
            revoked_by: "key_admin".into(),
            at: at("2026-12-03T10:20:00Z"),
        },
        PlanEvent::Expired {
            at: at("2026-12-03T11:05:00Z"),
        },
    ];
    for e in &events {
        match e {
            PlanEvent::Submitted(_)
            | PlanEvent::Reviewed { .. }
            | PlanEvent::GrantUsed { .. }
            | PlanEvent::Revoked { .. }
            | PlanEvent::Expired { .. } => {}
        }
    }
    events
}

fn identity_events() -> Vec<IdentityEvent> {
    let events = vec![IdentityEvent::KeyRegistered {
        agent_id: "claude-code".into(),
        public_key: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n".into(),
        algorithm: "Ed25519".into(),
        registered_by: "key_admin".into(),
        via: "pairing:pair_0011223344556677".into(),
        at: at("2026-12-03T10:00:00Z"),
    }];
    for e in &events {
        match e {
            IdentityEvent::KeyRegistered { .. } => {}
        }
    }
    events
}

fn pairing_events() -> Vec<PairingEvent> {
    let events = vec![
        PairingEvent::Requested(Box::new(PairingRecord {
            pairing_id: PairingId::parse("pair_0011223344556677").expect("a valid pairing id"),
            agent_id: "claude-code".into(),
            agent_name: Some("Claude Code".into()),
            public_key: "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n".into(),
            algorithm: "Ed25519".into(),
            status: PairingStatus::Pending,
            requested_by: "key_agent".into(),
            created_at: at("2026-12-03T09:58:00Z"),
            expires_at: at("2026-12-03T10:13:00Z"),
            approved_by: None,
            approved_at: None,
        })),
        PairingEvent::Approved {
            approved_by: "key_admin".into(),
            at: at("2026-12-03T10:00:00Z"),
        },
    ];
    for e in &events {
        match e {
            PairingEvent::Requested(_) | PairingEvent::Approved { .. } => {}
        }
    }
    events
}

/// Every aggregate's examples. A new aggregate goes here (`every_event_enum_has_examples`
/// finds the ones that do not).
fn all() -> Vec<Examples> {
    vec![
        examples::<Action>(action_events()),
        examples::<GuardDecision>(guard_decision_events()),
        examples::<PolicySet>(policy_set_events()),
        examples::<OrgSettings>(org_settings_events()),
        examples::<Assumption>(assumption_events()),
        examples::<ApiKey>(api_key_events()),
        examples::<Webhook>(webhook_events()),
        examples::<Session>(session_events()),
        examples::<Plan>(plan_events()),
        examples::<AgentIdentity>(identity_events()),
        examples::<Pairing>(pairing_events()),
    ]
}

// ---------------------------------------------------------------------------------------
// The machinery, the same for every aggregate.
// ---------------------------------------------------------------------------------------

/// One aggregate's examples, type-erased so that all aggregates are checked by one loop.
struct Examples {
    aggregate: &'static str,
    /// The event enum's name, as written in its `DomainEvent` impl.
    event_enum: &'static str,
    /// The variant names serde knows (what a payload's outer key can be).
    variants: &'static [&'static str],
    examples: Vec<Example>,
}

/// Decodes a payload as an event enum and says how it differs from the example, if it does.
type Decode = Box<dyn Fn(&Value) -> Result<(), String>>;

struct Example {
    event_type: String,
    event_version: String,
    payload: Value,
    decode: Decode,
}

fn examples<A: Aggregate>(events: Vec<A::Event>) -> Examples
where
    A::Event: 'static,
{
    let name = std::any::type_name::<A::Event>();
    Examples {
        aggregate: A::TYPE,
        event_enum: name.rsplit("::").next().unwrap_or(name),
        variants: variant_names::<A::Event>(),
        examples: events
            .into_iter()
            .map(|event| Example {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(&event).expect("an event serializes"),
                decode: Box::new(move |payload| {
                    match serde_json::from_value::<A::Event>(payload.clone()) {
                        Ok(decoded) if decoded == event => Ok(()),
                        Ok(decoded) => {
                            // Serde ignores unknown keys, so a renamed field decodes to its
                            // default: show where, as paths, rather than two Debug dumps.
                            let mut lost = Vec::new();
                            let example = serde_json::to_value(&event).expect("serializes");
                            let back = serde_json::to_value(&decoded).expect("serializes");
                            diff(
                                "$",
                                &example,
                                &back,
                                ("the example", "the decoded event"),
                                &mut lost,
                            );
                            if lost.is_empty() {
                                lost.push(format!("{decoded:?} != {event:?}"));
                            }
                            Err(format!(
                                "decodes to a different event than the example:\n    {}",
                                lost.join("\n    ")
                            ))
                        }
                        Err(e) => Err(format!("does not decode: {e}")),
                    }
                }),
            })
            .collect(),
    }
}

impl Example {
    fn file_name(&self) -> String {
        format!("{}.v{}.json", self.event_type, self.event_version)
    }

    /// The golden file's content.
    fn document(&self) -> Value {
        json!({
            "event_type": self.event_type,
            "event_version": self.event_version,
            "payload": self.payload,
        })
    }

    /// The serde variant name of the example: the payload's only key (an externally tagged
    /// enum), or the payload itself for a unit variant.
    fn variant(&self) -> Option<&str> {
        match &self.payload {
            Value::Object(map) if map.len() == 1 => map.keys().next().map(String::as_str),
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The variant names of an enum's derived `Deserialize`: it hands them to `deserialize_enum`,
/// which this deserializer records and then refuses.
fn variant_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("variant names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    // The error is the point: only the recorded names matter.
    let _ = T::deserialize(Probe(&mut names));
    names
}

/// Where `left` and `right` differ, as `path: ...` lines (`names` says what each side is).
fn diff(path: &str, left: &Value, right: &Value, names: (&str, &str), out: &mut Vec<String>) {
    let (l, r) = names;
    match (left, right) {
        (Value::Object(lm), Value::Object(rm)) => {
            for (key, lv) in lm {
                match rm.get(key) {
                    Some(rv) => diff(&format!("{path}.{key}"), lv, rv, names, out),
                    None => out.push(format!("{path}.{key}: in {l} ({lv}), not in {r}")),
                }
            }
            for (key, rv) in rm.iter().filter(|(k, _)| !lm.contains_key(*k)) {
                out.push(format!("{path}.{key}: in {r} ({rv}), not in {l}"));
            }
        }
        (Value::Array(la), Value::Array(ra)) if la.len() == ra.len() => {
            for (i, (lv, rv)) in la.iter().zip(ra).enumerate() {
                diff(&format!("{path}[{i}]"), lv, rv, names, out);
            }
        }
        _ if left != right => out.push(format!("{path}: {l} has {left}, {r} has {right}")),
        _ => {}
    }
}

/// Checks (or, with `UPDATE_GOLDEN=1`, writes) one example's file; returns what is wrong.
fn check(dir: &Path, aggregate: &str, example: &Example, update: bool) -> Vec<String> {
    let rel = format!("{aggregate}/{}", example.file_name());
    let path = dir.join(&rel);
    let expected = example.document();
    let mut problems = Vec::new();

    if update {
        let text = serde_json::to_string_pretty(&expected).expect("JSON prints") + "\n";
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let written = path
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| fs::write(&path, text));
            if let Err(e) = written {
                problems.push(format!("{rel}: cannot write: {e}"));
            }
        }
        // The new file must decode too.
        if let Err(e) = (example.decode)(&example.payload) {
            problems.push(format!("{rel}: the payload {e}"));
        }
        return problems;
    }

    let golden: Value = match fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(golden) => golden,
        Err(e) => {
            return vec![format!(
                "{rel}: cannot read the golden file ({e}); a new event type or version gets \
                 its file with UPDATE_GOLDEN=1"
            )]
        }
    };
    let mut differences = Vec::new();
    diff(
        "$",
        &golden,
        &expected,
        ("the golden file", "the code"),
        &mut differences,
    );
    if !differences.is_empty() {
        problems.push(format!(
            "{rel}: the code no longer produces the golden payload of {} v{}:\n    {}\n  {HINT}",
            example.event_type,
            example.event_version,
            differences.join("\n    ")
        ));
    }
    // Stored events of this type and version look like the file: they must still decode, to
    // the event they were written from.
    if let Err(e) = (example.decode)(&golden["payload"]) {
        problems.push(format!(
            "{rel}: the golden payload {e}\n  Stored events of {} v{} must still decode: keep \
             the old shape decodable and give a new shape a new event_version.",
            example.event_type, example.event_version
        ));
    }
    problems
}

/// Files under `dir`, relative to it, `/`-separated.
fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            files_under(&entry.path(), &format!("{name}/"), out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn payloads_match_their_golden_files() {
    let dir = golden_dir();
    let update = updating();
    let mut problems = Vec::new();
    let mut produced = BTreeMap::new();

    for set in all() {
        for example in &set.examples {
            // The names become file names: keep them plain.
            let plain = |s: &str, extra: char| {
                !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == extra)
            };
            if !plain(&example.event_type, '_') || !plain(&example.event_version, '.') {
                problems.push(format!(
                    "{}: event type {:?} / version {:?} cannot name a golden file",
                    set.aggregate, example.event_type, example.event_version
                ));
                continue;
            }
            let rel = format!("{}/{}", set.aggregate, example.file_name());
            if produced.insert(rel.clone(), set.event_enum).is_some() {
                problems.push(format!(
                    "{rel}: two examples have this event type and version (one file each)"
                ));
            }
            problems.extend(check(&dir, set.aggregate, example, update));
        }
    }

    // Stale files are never deleted automatically: a file of a version that still has to
    // decode must not disappear because its example was dropped.
    let mut present = BTreeSet::new();
    files_under(&dir, "", &mut present);
    for stale in present.iter().filter(|f| !produced.contains_key(*f)) {
        problems.push(format!(
            "{stale}: no example produces this golden file. Stored events of an old version \
             must still decode, so an old version keeps its example; delete the file only if \
             no event of that type and version was ever stored."
        ));
    }

    assert!(
        problems.is_empty(),
        "golden event payloads (domain/testdata/events):\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn every_variant_has_an_example() {
    let mut problems = Vec::new();
    for set in all() {
        let known: BTreeSet<&str> = set.variants.iter().copied().collect();
        let covered: BTreeSet<&str> = set.examples.iter().filter_map(Example::variant).collect();
        if known.is_empty() {
            problems.push(format!("{}: no serde variant names found", set.event_enum));
        }
        for missing in known.difference(&covered) {
            problems.push(format!(
                "{}::{missing} has no golden example: add one to the {} examples and run \
                 with UPDATE_GOLDEN=1",
                set.event_enum, set.aggregate
            ));
        }
        for unknown in covered.difference(&known) {
            problems.push(format!(
                "{}: an example serializes as the unknown variant {unknown}",
                set.event_enum
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_event_enum_has_examples() {
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("domain/src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let implementation = Regex::new(r"impl\s+DomainEvent\s+for\s+(\w+)").expect("a valid regex");
    let in_source: BTreeSet<String> = files
        .iter()
        .flat_map(|f| {
            let text = fs::read_to_string(f).expect("a source file is readable");
            implementation
                .captures_iter(&text)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let covered: BTreeSet<String> = all().iter().map(|s| s.event_enum.to_owned()).collect();
    assert_eq!(
        in_source, covered,
        "every event enum of the domain crate needs its examples in golden_events::all()"
    );
}
