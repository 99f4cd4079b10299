//! The one error type of the `events` crate.

/// What can go wrong when parsing ledger values or checking signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// An org id is empty, too long or has characters outside `[A-Za-z0-9_-]`: fix the input.
    #[error("invalid org id {0:?}: use 1-64 characters from [A-Za-z0-9_-]")]
    InvalidOrgId(String),
    /// A stream id is not of the form `<org_id>/<entity id>`.
    #[error("stream id {0:?} is not org-scoped (expected \"<org_id>/<id>\")")]
    UnscopedStreamId(String),
    /// A hash is not 64 lowercase hex characters.
    #[error("invalid hash {0:?}: expected 64 lowercase hex characters")]
    InvalidHash(String),
    /// A value could not be encoded as canonical JSON (it holds a non-finite number, say).
    #[error("cannot canonicalize JSON: {0}")]
    Canonicalization(String),
    /// A JWK is malformed or is not an Ed25519 (`OKP`/`Ed25519`) key.
    #[error("invalid Ed25519 JWK: {0}")]
    InvalidJwk(String),
    /// No key in the JWKS has this `kid`.
    #[error("no key with kid {0:?} in the key set")]
    UnknownKey(String),
    /// The signature is malformed or does not verify under the named key.
    #[error("signature does not verify under key {0:?}")]
    BadSignature(String),
}
