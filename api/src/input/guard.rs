//! Guard bodies (`POST /api/guard`, and the guard fields of `POST /api/actions`) into a
//! [`GuardAsk`] (contract 1.1).

use dashclaw_domain::guard::GuardRequest;
use serde_json::{Map, Value};

use super::fields::{object, Fields};
use crate::service::guard::{act_hash, GuardAsk};
use crate::service::Error;

/// Reads the guard fields; pushes problems into `f`. `action_type` may come as `action` and
/// `declared_goal` as `intent` on the guard endpoint.
pub fn guard_fields(f: &mut Fields<'_>, aliases: bool) -> Option<GuardAsk> {
    let action_type = if aliases && !f.present("action_type") && f.present("action") {
        f.required_string("action", 128)
    } else {
        f.required_string("action_type", 128)
    };
    // On the actions endpoint the caller reads (and requires) the agent and the goal itself.
    let declared_goal = match (aliases, f.present("declared_goal")) {
        (false, _) => None,
        (true, false) => f.string("intent", 2000),
        (true, true) => f.string("declared_goal", 2000),
    };
    let risk_score = f.integer("risk_score", 0, 100).map(|n| n as u8);
    let agent_id = if aliases {
        f.string("agent_id", 128)
    } else {
        None
    };
    let agent_name = f.string("agent_name", 256);
    let systems_touched = f.strings("systems_touched", 50, 500);
    let reversible = f.boolean("reversible");
    let target = f.string("target", 1024);
    let write_paths = f.strings("write_paths", 100, 500);
    f.string("content", 50_000);
    f.object("source_of_truth");
    f.object("intel");
    f.object("tool");
    let trigger = f.string("trigger", 1000);
    let swarm_id = f.string("swarm_id", 128);
    let idempotency_key = f.string("idempotency_key", 256);
    let approval_wait_seconds = f.integer("approval_wait_seconds", 5, 86_400).unwrap_or(300) as u32;
    let client_capabilities = f.strings("client_capabilities", 8, 64);
    // An unusable confidence is dropped, never refused (contract 1.1).
    let confidence = f
        .raw("confidence")
        .and_then(Value::as_i64)
        .filter(|n| (0..=100).contains(n))
        .map(|n| n as u8);
    let act = f.object("act");
    let mut act_hash_value = None;
    if let Some(act) = act {
        let value = Value::Object(act.clone());
        if serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) > 16 * 1024 {
            f.errors
                .push("act exceeds max serialized size of 16KB (ACT_TOO_LARGE)".to_owned());
        } else {
            act_hash_value = act_hash(&value).ok();
        }
    }
    Some(GuardAsk {
        request: GuardRequest {
            action_type: action_type?,
            declared_goal,
            risk_score,
            agent_id,
            agent_name,
            systems_touched,
            reversible,
            target,
            write_paths,
            client_capabilities,
            act_hash: act_hash_value,
            verification: None,
        },
        idempotency_key,
        approval_wait_seconds,
        confidence,
        trigger,
        swarm_id,
    })
}

/// A guard body: `action_type` (or `action`) required, `declared_goal` (or `intent`).
pub fn guard_body(bytes: &[u8]) -> Result<GuardAsk, Error> {
    let body: Map<String, Value> = object(bytes)?;
    let mut f = Fields::new(&body);
    let ask = guard_fields(&mut f, true);
    f.finish()?;
    ask.ok_or_else(|| Error::validation(vec!["action_type is required".into()]))
}
