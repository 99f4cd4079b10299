//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, keyed with the webhook's
//! secret (the 64-character string as shown at registration, as ASCII bytes). The format is
//! documented for receivers in `docs/webhooks.md`; the test below checks the doc's example.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-dashclaw-signature";
/// The header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-dashclaw-timestamp";
/// The header carrying the delivery id (the same on every retry: de-duplicate on it).
pub const DELIVERY_HEADER: &str = "x-dashclaw-delivery";
/// The header carrying the event type.
pub const EVENT_HEADER: &str = "x-dashclaw-event";

/// The value of [`SIGNATURE_HEADER`]: `sha256=` and the lowercase hex HMAC.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a received signature in constant time (what a receiver does; used by tests).
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of `docs/webhooks.md`, byte for byte.
    #[test]
    fn the_documented_example() {
        let secret = "3f1c9a7e5b2d4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6e8f0a2c4e6081a3c";
        let body = br#"{"data":{"message":"hello"},"event":"test","id":"whd_0123456789abcdef0123456789abcdef"}"#;
        let expected = "sha256=3222da14d4a6b7d862cd94692abe4dd18e616a15eeaa7dcb7a2e79c2d7e1540f";
        assert_eq!(sign(secret, 1763700000, body), expected);
        assert!(verify(secret, 1763700000, body, expected));
        assert!(!verify(secret, 1763700001, body, expected));
        assert!(!verify("0".repeat(64).as_str(), 1763700000, body, expected));

        // The doc's example must be the one tested here.
        let doc = include_str!("../../../../docs/webhooks.md");
        for needle in [secret, "1763700000", expected] {
            assert!(doc.contains(needle), "docs/webhooks.md lacks {needle}");
        }
        assert!(doc.contains(std::str::from_utf8(body).unwrap()));
    }
}
