//! RFC 8785 (JCS) canonical JSON: the only way a value becomes bytes on the ledger.
//!
//! Canonicalization is delegated to `serde_json_canonicalizer`, which sorts keys by UTF-16 code
//! units and formats numbers like ECMAScript (`1` not `1.0`, `1e+21`). Never hash the output of
//! `serde_json::to_string`: its float formatting and key order are not a standard.

use std::fmt;

use serde::Serialize;

use crate::Error;

/// JSON text known to be in RFC 8785 canonical form.
///
/// The ledger stores payloads and metadata as canonical text, so the bytes that were hashed are
/// the bytes that are stored, and verification can hash them without re-parsing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    /// Canonicalizes any serializable value.
    pub fn encode<T: Serialize>(value: &T) -> Result<Self, Error> {
        serde_json_canonicalizer::to_string(value)
            .map(Self)
            .map_err(|e| Error::Canonicalization(e.to_string()))
    }

    /// Wraps text read back from the ledger. It is *not* re-checked here: if it is not the
    /// canonical text that was hashed, the envelope's hash will not verify, which is the point.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Parses the text back into a JSON value (for readers; hashing never needs this).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for CanonicalJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalJson({})", self.0)
    }
}

impl fmt::Display for CanonicalJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends `s` as a canonical JSON string literal (ECMAScript `JSON.stringify` escaping).
pub(crate) fn push_string(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` through the JCS serializer into a Vec cannot fail.
    let _ = serde_json_canonicalizer::to_writer(&s, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_examples() {
        // RFC 8785 section 3.2.2 style checks: sorted keys, JS number formatting, no whitespace.
        let v = json!({"b": [1.0, 0.5, 1e21, -0.0, 1e-7], "a": "\u{20ac}\n", "\u{e9}": null, "A": true});
        assert_eq!(
            CanonicalJson::encode(&v).unwrap().as_str(),
            r#"{"A":true,"a":"€\n","b":[1,0.5,1e+21,0,1e-7],"é":null}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+10000 is a surrogate pair (0xD800...) and sorts before U+FB33 in UTF-16 order,
        // though after it in UTF-8/code point order.
        let v = json!({"\u{fb33}": 1, "\u{10000}": 2});
        assert_eq!(
            CanonicalJson::encode(&v).unwrap().as_str(),
            "{\"\u{10000}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn string_literals_escape_like_json_stringify() {
        let mut out = Vec::new();
        push_string(&mut out, "a\"b\\c\u{1}\u{7f}é");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\u0001\u{7f}é\""
        );
    }
}
