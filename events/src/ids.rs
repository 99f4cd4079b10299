//! Identifier newtypes shared by every layer: organisations and event hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A tenant. Every org has its own chain. 1-64 characters from `[A-Za-z0-9_-]`, so it can be
/// used as the prefix of a stream id (`<org_id>/<id>`) without escaping.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// Parses and validates an org id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let valid = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(id))
        } else {
            Err(Error::InvalidOrgId(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The org-scoped stream id for an entity: `<org_id>/<entity_id>`. Scoping stream ids by
    /// org means two tenants can never address, collide with or probe each other's streams,
    /// even when clients choose their own entity ids.
    pub fn stream_id(&self, entity_id: &str) -> String {
        format!("{}/{}", self.0, entity_id)
    }

    /// The org that owns a stream id produced by [`OrgId::stream_id`].
    pub fn of_stream(stream_id: &str) -> Result<Self, Error> {
        let (org, rest) = stream_id
            .split_once('/')
            .ok_or_else(|| Error::UnscopedStreamId(stream_id.to_owned()))?;
        if rest.is_empty() {
            return Err(Error::UnscopedStreamId(stream_id.to_owned()));
        }
        Self::new(org).map_err(|_| Error::UnscopedStreamId(stream_id.to_owned()))
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OrgId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 digest on the chain, written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    pub fn to_hex(&self) -> String {
        String::from_utf8_lossy(&self.hex_bytes()).into_owned()
    }

    /// Lowercase hex as bytes, without allocating (verification does this for every event).
    pub fn hex_bytes(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        out
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", self.to_hex())
    }
}

impl FromStr for EventHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        // Only lowercase hex, exactly 64 digits: the one form the ledger stores.
        fn digit(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let bytes = s.as_bytes();
        let mut out = [0u8; 32];
        if bytes.len() != 64 {
            return Err(Error::InvalidHash(s.to_owned()));
        }
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
                _ => return Err(Error::InvalidHash(s.to_owned())),
            }
        }
        Ok(Self(out))
    }
}

impl Serialize for EventHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for EventHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_validated() {
        assert!(OrgId::new("org_default").is_ok());
        assert!(OrgId::new("Org-1").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert_eq!(OrgId::new(bad), Err(Error::InvalidOrgId(bad.to_owned())));
        }
    }

    #[test]
    fn stream_ids_round_trip_to_their_org() {
        let org = OrgId::new("org_a").unwrap();
        let stream = org.stream_id("act_1/with/slashes");
        assert_eq!(stream, "org_a/act_1/with/slashes");
        assert_eq!(OrgId::of_stream(&stream), Ok(org));
        assert!(OrgId::of_stream("no-org").is_err());
        assert!(OrgId::of_stream("org_a/").is_err());
        assert!(OrgId::of_stream("bad org/x").is_err());
    }

    #[test]
    fn hashes_parse_only_lowercase_hex() {
        let hex = "ab".repeat(32);
        let hash: EventHash = hex.parse().unwrap();
        assert_eq!(hash.to_hex(), hex);
        assert!("AB".repeat(32).parse::<EventHash>().is_err());
        assert!("ab".repeat(31).parse::<EventHash>().is_err());
    }
}
