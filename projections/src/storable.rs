//! Stored payloads decoded into what the read models can hold.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the NUL character (U+0000). The server refuses
//! it at its edge, but events stored before it did (JSON `\u0000` in the `json` payload
//! column, hashed and chained like any other) must neither stop a projection nor be skipped:
//! they are folded with every NUL replaced by U+FFFD (the Unicode replacement character), in
//! string values and in object keys. The ledger keeps the original bytes; only the read
//! models show the replacement.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a NUL becomes in a read model.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// Decodes a stored payload (JSON text) into `T`, replacing any NUL (see the module docs).
pub fn decode<T: DeserializeOwned>(payload: &str) -> serde_json::Result<T> {
    // In JSON text a NUL can only be written as this escape (raw control characters are
    // not allowed in strings); an escaped backslash before "u0000" merely costs the walk.
    if !payload.contains("\\u0000") {
        return serde_json::from_str(payload);
    }
    let mut value: Value = serde_json::from_str(payload)?;
    replace_nul(&mut value);
    serde_json::from_value(value)
}

fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            for (key, mut item) in std::mem::take(map) {
                replace_nul(&mut item);
                map.insert(key.replace('\0', "\u{FFFD}"), item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn nul_is_replaced_in_values_and_keys_and_nothing_else_changes() {
        let stored = r#"{"agent_id":"z\u0000","k\u0000":["a\u0000b",1],"plain":"x\\u0000"}"#;
        let decoded: Value = super::decode(stored).unwrap();
        assert_eq!(
            decoded,
            json!({"agent_id": "z\u{FFFD}", "k\u{FFFD}": ["a\u{FFFD}b", 1], "plain": "x\\u0000"})
        );
        let clean = r#"{"agent_id":"z"}"#;
        assert_eq!(
            super::decode::<Value>(clean).unwrap(),
            json!({"agent_id": "z"})
        );
    }
}
