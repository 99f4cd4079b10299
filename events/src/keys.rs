//! Ed25519 signing keys as JWKs, the published key set (JWKS) and RFC 7638 key ids.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// A JSON Web Key for Ed25519 (`kty: "OKP"`, `crv: "Ed25519"`). Private keys carry `d`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    pub(crate) fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(Error::InvalidJwk(format!(
                "kty/crv must be OKP/Ed25519, got {}/{}",
                self.kty, self.crv
            )));
        }
        let x: [u8; 32] = decode_32(&self.x, "x")?;
        VerifyingKey::from_bytes(&x).map_err(|e| Error::InvalidJwk(format!("x: {e}")))
    }

    /// This key's RFC 7638 thumbprint, whatever its `kid` field says.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.x)
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key given as base64url `x`:
/// `base64url(SHA-256('{"crv":"Ed25519","kty":"OKP","x":"<x>"}'))`.
pub fn jwk_thumbprint(x: &str) -> String {
    let members = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(members.as_bytes()))
}

fn decode_32(b64: &str, what: &str) -> Result<[u8; 32], Error> {
    B64.decode(b64)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| Error::InvalidJwk(format!("{what} must be 32 bytes of base64url")))
}

/// The server's Ed25519 signing key, with its RFC 7638 `kid`.
#[derive(Clone)]
pub struct LedgerKey {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LedgerKey({})", self.kid)
    }
}

impl LedgerKey {
    /// A key from 32 secret bytes (the caller draws them from the OS: this crate does no IO).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let kid = jwk_thumbprint(&B64.encode(key.verifying_key().as_bytes()));
        Self { key, kid }
    }

    /// A key from a private JWK (`d` present). A `kid` in the JWK, if any, must be the
    /// thumbprint: the published key set is addressed by thumbprints only.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, Error> {
        let public = jwk.verifying_key()?;
        let d = jwk
            .d
            .as_deref()
            .ok_or_else(|| Error::InvalidJwk("private key has no \"d\"".into()))?;
        let key = Self::from_seed(decode_32(d, "d")?);
        if key.key.verifying_key() != public {
            return Err(Error::InvalidJwk("\"x\" does not match \"d\"".into()));
        }
        match &jwk.kid {
            Some(kid) if kid != &key.kid => Err(Error::InvalidJwk(format!(
                "kid {kid:?} is not the RFC 7638 thumbprint {:?}",
                key.kid
            ))),
            _ => Ok(key),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public JWK as published in the JWKS.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: B64.encode(self.key.verifying_key().as_bytes()),
            d: None,
            kid: Some(self.kid.clone()),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    /// The private JWK (for persisting the key; never publish it).
    pub fn private_jwk(&self) -> Jwk {
        Jwk {
            d: Some(B64.encode(self.key.to_bytes())),
            ..self.public_jwk()
        }
    }

    /// Ed25519 signature over `message`, base64url without padding.
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.key.sign(message).to_bytes())
    }
}

/// A published key set: `{"keys": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Verifies a base64url Ed25519 signature made by the key whose thumbprint is `kid`.
    pub fn verify(&self, kid: &str, message: &[u8], signature: &str) -> Result<(), Error> {
        let jwk = self
            .keys
            .iter()
            .find(|k| k.thumbprint() == kid)
            .ok_or_else(|| Error::UnknownKey(kid.to_owned()))?;
        let bad = || Error::BadSignature(kid.to_owned());
        let bytes: [u8; 64] = B64
            .decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        jwk.verifying_key()?
            .verify(message, &Signature::from_bytes(&bytes))
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_example_key_has_the_rfc_thumbprint() {
        // RFC 8037 appendix A.1-A.3: the Ed25519 example key and its RFC 7638 thumbprint.
        let jwk = Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            d: Some("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into()),
            kid: None,
            alg: None,
            use_: None,
        };
        let key = LedgerKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        // RFC 8037 A.4: the signature of "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc".
        let sig = key.sign(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc");
        assert_eq!(
            sig,
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        let jwks = Jwks {
            keys: vec![key.public_jwk()],
        };
        assert!(jwks
            .verify(
                key.kid(),
                b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
                &sig
            )
            .is_ok());
    }

    #[test]
    fn private_jwk_round_trips_and_public_jwk_has_no_secret() {
        let key = LedgerKey::from_seed([7; 32]);
        let again = LedgerKey::from_jwk(&key.private_jwk()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(key.public_jwk().d, None);
    }

    #[test]
    fn mismatched_or_foreign_keys_are_refused() {
        let a = LedgerKey::from_seed([1; 32]);
        let b = LedgerKey::from_seed([2; 32]);
        let mut jwk = a.private_jwk();
        jwk.x = b.public_jwk().x;
        assert!(LedgerKey::from_jwk(&jwk).is_err());
        let jwks = Jwks {
            keys: vec![a.public_jwk()],
        };
        let sig = b.sign(b"m");
        assert_eq!(
            jwks.verify(b.kid(), b"m", &sig),
            Err(Error::UnknownKey(b.kid().into()))
        );
        let sig = a.sign(b"m");
        assert_eq!(
            jwks.verify(a.kid(), b"n", &sig),
            Err(Error::BadSignature(a.kid().into()))
        );
    }
}
