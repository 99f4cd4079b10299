//! Evidence bundles (`docs/evidence-format.md`): everything the ledger holds about one action,
//! signed, so that an auditor can check offline with the published keys alone that it happened
//! as recorded and that each verdict follows from the policies in force; and their
//! verification ([`verify_bundle`], shared by `POST /api/integrity/verify` and `dashclaw
//! verify-bundle`), plus DashClaw's signed receipts.

use std::collections::BTreeSet;

use cqrs_es::Aggregate;
use dashclaw_domain::action::{Action, ActionEvent, ActionRecord};
use dashclaw_domain::assumption::Assumption;
use dashclaw_domain::guard::{Policy, ENGINE_VERSION};
use dashclaw_domain::guard_decision::{replay, GuardDecision, GuardDecisionEvent};
use dashclaw_domain::ids::ActionId;
use dashclaw_events::bundle::{
    self, Bundle, Check, EvidenceEvent, EvidenceFailure, LedgerEvidence, PolicySetText, Report,
    EVIDENCE_FORMAT,
};
use dashclaw_events::{CanonicalJson, Jwks};
use dashclaw_store::append::timestamp;
use dashclaw_store::chain::{self, StoredEvent};
use dashclaw_store::{checkpoints, tree};
use serde_json::{json, Value};

use super::integrity::{hex, SignedTreeHead};
use super::replay::PolicyHistory;
use super::{Caller, Error, ErrorCode, Permission, Service};

impl Service {
    /// The signed evidence bundle of the caller's org's action `action_id`: every event of
    /// the action, of the guard decisions its events name and of its assumptions, exactly as
    /// chained, each with its inclusion proof to one signed tree head (signed now if none
    /// covers them yet), and the policy set each decision ran under.
    pub async fn evidence_bundle(&self, caller: &Caller, action_id: &str) -> Result<Bundle, Error> {
        caller.require(Permission::Read)?;
        let org = &caller.org;
        let not_found = || Error::new(ErrorCode::NotFound, "action_not_found");
        let id = ActionId::parse(action_id).map_err(|_| not_found())?;
        let pool = self.pool();
        let action_events = chain::stream_events(pool, org, Action::TYPE, id.as_str()).await?;
        if action_events.is_empty() {
            return Err(not_found());
        }
        let mut action = Action::default();
        let mut decisions = BTreeSet::new();
        for e in &action_events {
            let event: ActionEvent = decode(e)?;
            match &event {
                ActionEvent::Recorded(record) => {
                    decisions.insert(record.guard_decision_id.to_string());
                }
                ActionEvent::ExecutionClaimed {
                    guard_decision_id, ..
                } => {
                    decisions.insert(guard_decision_id.to_string());
                }
                _ => {}
            }
            action.apply(event);
        }
        let record = action.record.ok_or_else(not_found)?;

        let mut events = action_events;
        for decision in &decisions {
            events.extend(chain::stream_events(pool, org, GuardDecision::TYPE, decision).await?);
        }
        for assumption in self.assumptions_of(caller, &id).await? {
            let entity = assumption.assumption_id.to_string();
            events.extend(chain::stream_events(pool, org, Assumption::TYPE, &entity).await?);
        }
        events.sort_by_key(|e| e.ledger_seq);
        events.dedup_by_key(|e| e.ledger_seq);

        let last = events.last().map_or(0, |e| e.ledger_seq as u64);
        let head = self.tree_head_covering(caller, last).await?;
        let mut proven = Vec::with_capacity(events.len());
        for e in &events {
            let proof = tree::inclusion(pool, org, e.ledger_seq as u64 - 1, head.head.size)
                .await?
                .ok_or_else(|| Error::internal("an inclusion proof inside the tree"))?;
            proven.push(EvidenceEvent {
                entry: e.entry(org),
                audit_path: proof.hashes.iter().map(hex).collect(),
            });
        }

        let history = PolicyHistory::load(pool, org).await?;
        let mut policy_sets: Vec<PolicySetText> = Vec::new();
        for e in events
            .iter()
            .filter(|e| e.aggregate_type == GuardDecision::TYPE)
        {
            let GuardDecisionEvent::Recorded(decision) = decode(e)?;
            let version = &decision.policy_set_version;
            if policy_sets.iter().any(|p| &p.version == version) {
                continue;
            }
            // A decision whose set the ledger does not have is left without one: the bundle
            // then fails verification, which is the truth.
            if let Some(state) = history.as_recorded(e.ledger_seq as u64, version) {
                policy_sets.push(PolicySetText {
                    version: state.version,
                    policies: state.text,
                });
            }
        }

        let now = timestamp(self.clock().now());
        let steps = dashclaw_projections::read::actions::children(pool, org, &id, 100).await?;
        let payload = json!({
            "artifact_type": "evidence_bundle",
            "action": action_summary(&record),
            "steps": steps.iter().map(step_summary).collect::<Vec<_>>(),
            "artifacts": [],
            "generated_at": now,
            "ledger": LedgerEvidence {
                format: EVIDENCE_FORMAT.to_owned(),
                org_id: org.to_string(),
                tree_head: head.note,
                events: proven,
                policy_sets,
            },
        });
        Bundle::sign(self.signer().key(), now, ENGINE_VERSION, payload)
            .map_err(|e| Error::internal(format!("signing a bundle: {e}")))
    }

    /// The org's latest signed tree head if it covers `ledger_seq`, else a head signed now.
    async fn tree_head_covering(
        &self,
        caller: &Caller,
        ledger_seq: u64,
    ) -> Result<SignedTreeHead, Error> {
        if let Ok(head) = self.tree_head(caller, None).await {
            if head.head.size >= ledger_seq {
                return Ok(head);
            }
        }
        checkpoints::sign(self.pool(), self.signer(), &caller.org).await?;
        self.tree_head(caller, None).await
    }

    /// `POST /api/integrity/verify` (public): a bundle or a receipt checked against this
    /// server's published keys.
    pub async fn verify_artifact(&self, body: &Value) -> Result<Value, Error> {
        let keys = dashclaw_store::keys::published(self.pool()).await?;
        if let Some(bundle) = body.get("bundle") {
            return Ok(bundle_answer(bundle, &keys));
        }
        if let Some(receipt) = body.get("receipt") {
            return Ok(receipt_answer(receipt, &keys));
        }
        Err(Error::new(
            ErrorCode::BadRequest,
            "Provide a `receipt` or a `bundle` to verify.",
        ))
    }
}

fn decode<T: serde::de::DeserializeOwned>(e: &StoredEvent) -> Result<T, Error> {
    serde_json::from_str(&e.payload).map_err(|err| {
        Error::internal(format!(
            "event {} ({}) does not decode: {err}",
            e.ledger_seq, e.event_type
        ))
    })
}

/// DashClaw's `payload.action` (contract 13.4).
fn action_summary(r: &ActionRecord) -> Value {
    json!({
        "action_id": r.action_id,
        "status": r.status,
        "agent_id": r.agent_id,
        "declared_goal": r.declared_goal,
        "action_type": r.action_type,
        "risk_score": r.risk_score,
        "output_summary": r.output_summary,
        "error_message": r.error_message,
        "duration_ms": r.duration_ms,
        "started_at": timestamp(r.timestamp_start),
        "finished_at": r.timestamp_end.map(timestamp),
    })
}

/// DashClaw's `payload.steps[]`: the action's children.
fn step_summary(r: &ActionRecord) -> Value {
    json!({
        "action_id": r.action_id,
        "action_type": r.action_type,
        "status": r.status,
        "declared_goal": r.declared_goal,
        "output_summary": r.output_summary,
        "error_message": r.error_message,
        "duration_ms": r.duration_ms,
    })
}

/// Verifies a bundle completely: the ledger's checks ([`bundle::verify_ledger_evidence`]),
/// then that the payload's action is among the events, that each decision's policy set is
/// in the bundle and hashes to the version the decision recorded, and that each decision
/// replays to its recorded evaluation under that set.
pub fn verify_bundle(bundle: &Bundle, keys: &Jwks) -> Report {
    let mut report = bundle::verify_ledger_evidence(bundle, keys);
    if let Ok(evidence) = &report.outcome {
        if let Err(failure) = decision_checks(bundle, evidence, &mut report.passed) {
            report.outcome = Err(failure);
        }
    }
    report
}

fn decision_checks(
    bundle: &Bundle,
    evidence: &bundle::VerifiedEvidence,
    passed: &mut Vec<Check>,
) -> Result<(), EvidenceFailure> {
    let failed = |check: &'static str, detail: String| EvidenceFailure::Failed { check, detail };
    let action_id = bundle
        .payload
        .pointer("/action/action_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let stream = format!(
        "{}/{action_id}",
        evidence
            .tree_head
            .org()
            .map(|o| o.to_string())
            .unwrap_or_default()
    );
    if !evidence
        .events
        .iter()
        .any(|e| e.stream_type == Action::TYPE && e.stream_id == stream)
    {
        return Err(failed(
            bundle::SUBJECT,
            format!("the bundle's action {action_id:?} has no events in it"),
        ));
    }
    passed.push(Check {
        name: bundle::SUBJECT,
        detail: format!("the events of action {action_id} are in the bundle"),
    });

    let mut replayed = 0;
    let mut checked = Vec::new();
    for e in evidence
        .events
        .iter()
        .filter(|e| e.stream_type == GuardDecision::TYPE)
    {
        let GuardDecisionEvent::Recorded(record) = serde_json::from_value(e.payload.clone())
            .map_err(|err| {
                failed(
                    bundle::POLICY_SETS,
                    format!("decision at {} does not decode: {err}", e.ledger_seq),
                )
            })?;
        let version = &record.policy_set_version;
        let set = evidence
            .policy_sets
            .iter()
            .find(|p| &p.version == version)
            .ok_or_else(|| {
                failed(
                    bundle::POLICY_SETS,
                    format!(
                        "decision {} (ledger_seq {}) ran under policy set {version}, which the \
                         bundle does not hold",
                        record.decision_id, e.ledger_seq
                    ),
                )
            })?;
        let hashed = PolicySetText::version_of(&set.policies);
        if &hashed != version {
            return Err(failed(
                bundle::POLICY_SETS,
                format!("the policy set given as {version} hashes to {hashed}"),
            ));
        }
        let policies: Vec<Policy> = serde_json::from_str(&set.policies).map_err(|err| {
            failed(
                bundle::POLICY_SETS,
                format!("policy set {version} does not decode: {err}"),
            )
        })?;
        checked.push((record, policies));
    }
    passed.push(Check {
        name: bundle::POLICY_SETS,
        detail: format!(
            "{} decisions, each with the policy set it recorded (SHA-256 of its bytes)",
            checked.len()
        ),
    });
    for (record, policies) in &checked {
        let outcome = replay(record, policies);
        if !outcome.identical() {
            let fields: Vec<String> = outcome
                .differences
                .iter()
                .map(|d| {
                    format!(
                        "{}: recorded {} replayed {}",
                        d.field, d.recorded, d.replayed
                    )
                })
                .collect();
            return Err(failed(
                bundle::REPLAY,
                format!(
                    "decision {} replays differently ({}): {}",
                    record.decision_id,
                    outcome.replay_engine,
                    fields.join("; ")
                ),
            ));
        }
        replayed += 1;
    }
    passed.push(Check {
        name: bundle::REPLAY,
        detail: format!(
            "{replayed} decisions replay to their recorded verdicts ({ENGINE_VERSION})"
        ),
    });
    Ok(())
}

/// Contract 13.5 for bundles, with the checks.
fn bundle_answer(bundle: &Value, keys: &Jwks) -> Value {
    let parsed = serde_json::to_string(bundle)
        .map_err(|e| EvidenceFailure::Unusable(e.to_string()))
        .and_then(|text| bundle::parse_bundle(&text));
    let bundle = match parsed {
        Ok(bundle) => bundle,
        Err(e) => return json!({"ok": false, "reason": "malformed", "detail": e.to_string()}),
    };
    let report = verify_bundle(&bundle, keys);
    let checks: Vec<Value> = report
        .passed
        .iter()
        .map(|c| json!({"check": c.name, "ok": true, "detail": c.detail}))
        .collect();
    match report.outcome {
        Ok(_) => json!({
            "ok": true,
            "kid": bundle.signature.kid,
            "prevBundleHash": bundle.prev_bundle_hash,
            "checks": checks,
        }),
        Err(failure) => {
            let mut checks = checks;
            if let EvidenceFailure::Failed { check, detail } = &failure {
                checks.push(json!({"check": check, "ok": false, "detail": detail}));
            }
            json!({
                "ok": false,
                "reason": failure.reason(),
                "detail": failure.to_string(),
                "checks": checks,
            })
        }
    }
}

/// Contract 13.3 / 13.5 for receipts: the signature covers the RFC 8785 JSON of the receipt
/// without its `signature`; the key the signature names is tried first, then every key.
fn receipt_answer(receipt: &Value, keys: &Jwks) -> Value {
    if keys.keys.is_empty() {
        return json!({"ok": false, "reason": "no_published_keys"});
    }
    let mut unsigned = receipt.clone();
    let signature = unsigned
        .as_object_mut()
        .and_then(|o| o.remove("signature"))
        .unwrap_or(Value::Null);
    let sig = signature
        .get("sig")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let named = signature.get("kid").and_then(Value::as_str);
    let Ok(message) = CanonicalJson::encode(&unsigned) else {
        return json!({"ok": false, "reason": "verification_error"});
    };
    let mut kids: Vec<String> = keys.keys.iter().map(|k| k.thumbprint()).collect();
    if let Some(named) = named {
        kids.sort_by_key(|k| k != named);
    }
    match kids
        .iter()
        .find(|kid| keys.verify(kid, message.as_str().as_bytes(), sig).is_ok())
    {
        Some(kid) => json!({"ok": true, "kid": kid}),
        None => json!({"ok": false, "reason": "no_matching_key_or_bad_signature"}),
    }
}
