//! Body validation with DashClaw's rules and messages (contract section 0.4): unknown fields
//! are dropped, `null` is absent, camelCase aliases are accepted, and every problem is
//! collected into one `400 {"error":"Validation failed","details":[...]}`.
//!
//! Text that PostgreSQL cannot store is refused here, at the edge, for every field: the NUL
//! character (U+0000), which JSON can carry as `\u0000` but `text` and `jsonb` cannot hold
//! (see [`nul_fields`]). It is the only one: JSON text is UTF-8 without lone surrogates.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::service::Error;

/// A JSON object body being validated. Problems accumulate in `errors`.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    pub errors: Vec<String>,
}

fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The message for a field holding a NUL character.
pub fn nul_message(field: &str) -> String {
    format!("{field} must not contain the NUL character (\\u0000)")
}

/// Every place in a body whose text holds a NUL: string values at any depth (named by their
/// path, `act.args[0]`), and object keys (named by their object). Empty when it can be stored.
pub fn nul_fields(body: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    walk_nul_map("", body, &mut found);
    found
}

fn walk_nul(path: &str, value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains('\0') => found.push(path.to_owned()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_nul(&format!("{path}[{i}]"), item, found);
            }
        }
        Value::Object(map) => walk_nul_map(path, map, found),
        _ => {}
    }
}

fn walk_nul_map(path: &str, map: &Map<String, Value>, found: &mut Vec<String>) {
    for (key, item) in map {
        if key.contains('\0') {
            found.push(if path.is_empty() {
                "a key of the body".to_owned()
            } else {
                format!("a key of {path}")
            });
        } else if path.is_empty() {
            walk_nul(key, item, found);
        } else {
            walk_nul(&format!("{path}.{key}"), item, found);
        }
    }
}

/// Parses a request body that must be a JSON object whose text can all be stored.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => {
            let nul = nul_fields(&map);
            if nul.is_empty() {
                Ok(map)
            } else {
                Err(Error::validation(
                    nul.iter().map(|field| nul_message(field)).collect(),
                ))
            }
        }
        Ok(_) => Err(Error::validation(vec![
            "request body must be a JSON object".to_owned(),
        ])),
        Err(_) => Err(Error::bad_request("Invalid JSON body")),
    }
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Vec::new(),
        }
    }

    /// The raw value of `key` (or its camelCase alias); `null` counts as absent.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        let v = self.body.get(key).or_else(|| {
            let alias = camel(key);
            (alias != key).then(|| self.body.get(&alias)).flatten()
        })?;
        (!v.is_null()).then_some(v)
    }

    pub fn present(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    fn fail(&mut self, message: String) {
        self.errors.push(message);
    }

    /// An optional string of at most `max` characters.
    pub fn string(&mut self, key: &str, max: usize) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) if s.chars().count() > max => {
                self.fail(format!("{key} exceeds max length of {max}"));
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.fail(format!("{key} must be a string"));
                None
            }
        }
    }

    /// A required, non-empty string of at most `max` characters.
    pub fn required_string(&mut self, key: &str, max: usize) -> Option<String> {
        if !self.present(key) {
            self.fail(format!("{key} is required"));
            return None;
        }
        let s = self.string(key, max)?;
        if s.is_empty() {
            self.fail(format!("{key} cannot be empty"));
            return None;
        }
        Some(s)
    }

    /// An optional string from a closed set.
    pub fn one_of(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(key, 256)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.fail(format!("{key} must be one of: {}", allowed.join(", ")));
            None
        }
    }

    /// An optional integer in `min..=max` (floats are refused).
    pub fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.raw(key)?;
        let Some(n) = v.as_i64() else {
            self.fail(format!("{key} must be an integer"));
            return None;
        };
        if n < min {
            self.fail(format!("{key} must be >= {min}"));
            None
        } else if n > max {
            self.fail(format!("{key} must be <= {max}"));
            None
        } else {
            Some(n)
        }
    }

    /// An optional number >= `min`, clamped to `clamp_max`.
    pub fn number(&mut self, key: &str, min: f64, clamp_max: f64) -> Option<f64> {
        let v = self.raw(key)?;
        let Some(n) = v.as_f64() else {
            self.fail(format!("{key} must be a number"));
            return None;
        };
        if n < min {
            self.fail(format!("{key} must be >= {min}"));
            return None;
        }
        Some(n.min(clamp_max))
    }

    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(format!("{key} must be a boolean"));
                None
            }
        }
    }

    /// An optional array of at most `max_items` strings, each at most `item_max` characters.
    pub fn strings(&mut self, key: &str, max_items: usize, item_max: usize) -> Vec<String> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            self.fail(format!("{key} must be an array"));
            return Vec::new();
        };
        if items.len() > max_items {
            self.fail(format!("{key} exceeds max items of {max_items}"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) if s.chars().count() > item_max => {
                    self.fail(format!("{key}[{i}] exceeds max length of {item_max}"))
                }
                Value::String(s) => out.push(s.clone()),
                _ => self.fail(format!("{key}[{i}] must be a string")),
            }
        }
        out
    }

    pub fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.raw(key)? {
            Value::Object(m) => Some(m),
            _ => {
                self.fail(format!("{key} must be an object"));
                None
            }
        }
    }

    pub fn timestamp(&mut self, key: &str) -> Option<DateTime<Utc>> {
        let v = self.raw(key)?;
        let parsed = v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        if parsed.is_none() {
            self.fail(format!(
                "{key} must be a parseable timestamp (ISO 8601 recommended)"
            ));
        }
        parsed
    }

    /// Ends validation: the collected problems as one 400, or nothing.
    pub fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::validation(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn aliases_nulls_and_messages() {
        let body = map(json!({"riskScore": 5.5, "agent_id": null, "goal": "", "tags": [1]}));
        let mut f = Fields::new(&body);
        assert_eq!(f.integer("risk_score", 0, 100), None);
        assert_eq!(f.required_string("agent_id", 128), None);
        assert_eq!(f.required_string("goal", 10), None);
        assert!(f.strings("tags", 5, 10).is_empty());
        assert_eq!(
            f.errors,
            vec![
                "risk_score must be an integer",
                "agent_id is required",
                "goal cannot be empty",
                "tags[0] must be a string"
            ]
        );
    }

    #[test]
    fn limits() {
        let body = map(json!({"n": 101, "s": "abcd", "a": ["x", "y", "z"]}));
        let mut f = Fields::new(&body);
        f.integer("n", 0, 100);
        f.string("s", 3);
        f.strings("a", 2, 10);
        assert_eq!(
            f.errors,
            vec![
                "n must be <= 100",
                "s exceeds max length of 3",
                "a exceeds max items of 2"
            ]
        );
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        /// Text drawn often from the characters that matter: NUL, quotes, backslashes,
        /// non-ASCII, the replacement character.
        fn text() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[a-z0-9_\\x00\"\\\\é\u{FFFD}\u{1F600}]{0,6}")
                .unwrap_or_else(|_| unreachable!())
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                text().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((text(), inner), 0..4)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        fn holds_nul(v: &Value) -> bool {
            match v {
                Value::String(s) => s.contains('\0'),
                Value::Array(items) => items.iter().any(holds_nul),
                Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
                _ => false,
            }
        }

        proptest! {
            /// Whatever the body parser accepts can be stored in PostgreSQL text; whatever it
            /// refuses for a NUL is refused with one problem per place the NUL sits.
            #[test]
            fn accepted_bodies_hold_no_nul(fields in prop::collection::vec((text(), json()), 0..6)) {
                let body = Value::Object(fields.into_iter().collect());
                let bytes = body.to_string().into_bytes();
                match super::super::object(&bytes) {
                    Ok(map) => prop_assert!(!holds_nul(&Value::Object(map))),
                    Err(e) => {
                        prop_assert!(holds_nul(&body), "refused without a NUL: {body}");
                        prop_assert_eq!(serde_json::to_value(e.code).ok(), Some(Value::from("VALIDATION_FAILED")));
                        let details = e.details.unwrap_or_default();
                        prop_assert_eq!(details, Value::from(super::super::nul_fields(body.as_object().unwrap_or(&Map::new()))
                            .iter().map(|f| super::super::nul_message(f)).collect::<Vec<_>>()));
                    }
                }
            }
        }
    }
}
