//! C2SP `signed-note` with Ed25519 (the format of Go's sumdb, Tessera and Rekor v2 tree
//! heads): a text, a blank line, and signature lines `— <name> <base64(key id || sig)>`, where
//! the key id is the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)` and the
//! verifier key is published as `<name>+<hex key id>+<base64(0x01 || public key)>`.
//! Pinned by the reference vectors of Go's `golang.org/x/mod/sumdb/note`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature algorithm byte of Ed25519 in key ids and verifier keys.
const ED25519: u8 = 0x01;
/// What starts a signature line: U+2014 (em dash) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note cannot be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("a key name must be non-empty, with no spaces and no '+'")]
    BadName,
    #[error("a note's text must end with a newline and hold no blank line")]
    BadText,
    #[error("not a verifier key <name>+<hex key id>+<base64(0x01 || Ed25519 key)>")]
    BadVerifierKey,
    #[error("not a signed note (text, blank line, signature lines)")]
    Malformed,
    #[error("no signature by {0}")]
    NotSigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// `SHA-256(name || 0x0A || 0x01 || public)[..4]`.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A named Ed25519 public key that checks notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadName);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Parses `<name>+<hex key id>+<base64(0x01 || key)>`, checking the id against the key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::BadVerifierKey;
        let mut parts = text.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad()),
        };
        let bytes = STANDARD.decode(key).map_err(|_| bad())?;
        let (&[ED25519], raw) = bytes.split_at_checked(1).ok_or_else(bad)? else {
            return Err(bad());
        };
        let raw: [u8; 32] = raw.try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad())?;
        let verifier = Self::new(name, key).map_err(|_| bad())?;
        if id.len() != 8 || hex::encode(verifier.key_id()) != id {
            return Err(bad());
        }
        Ok(verifier)
    }

    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// `<name>+<hex key id>+<base64(0x01 || key)>`.
    pub fn encode(&self) -> String {
        let mut key = vec![ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            STANDARD.encode(key)
        )
    }

    /// Opens a signed note: its text, when one of its signature lines is this key's and
    /// verifies. Lines of other keys are ignored (as the spec says); a line with this key's
    /// name and id that does not verify rejects the note.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed)?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        if signatures.is_empty() || !signatures.ends_with('\n') {
            return Err(NoteError::Malformed);
        }
        let id = self.key_id();
        for line in signatures.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed)?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed)?;
            let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed)?;
            if blob.len() < 4 {
                return Err(NoteError::Malformed);
            }
            if name != self.name || blob[..4] != id {
                continue;
            }
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            return self
                .key
                .verify(text.as_bytes(), &signature)
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::NotSigned(self.name.clone()))
    }
}

/// The key names of a note's signature lines, in order (what to look keys up by).
pub fn signer_names(note: &str) -> Result<Vec<String>, NoteError> {
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed)?;
    let signatures = &note[split + 2..];
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(NoteError::Malformed);
    }
    signatures
        .lines()
        .map(|line| {
            line.strip_prefix(SIG_PREFIX)
                .and_then(|rest| rest.split_once(' '))
                .map(|(name, _)| name.to_owned())
                .ok_or(NoteError::Malformed)
        })
        .collect()
}

/// Signs `text` (newline-terminated, no blank line) as `name`: the text, a blank line and
/// one signature line.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !valid_name(name) {
        return Err(NoteError::BadName);
    }
    if !text.ends_with('\n') || text.contains("\n\n") {
        return Err(NoteError::BadText);
    }
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
    Ok(format!(
        "{text}\n{SIG_PREFIX}{name} {}\n",
        STANDARD.encode(blob)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference vectors of golang.org/x/mod/sumdb/note (note_test.go).
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIG: &str = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

    fn go_signing_key() -> SigningKey {
        // PRIVATE+KEY+<name>+<id>+<base64>: the key material may itself hold a '+'.
        let encoded = SKEY.splitn(5, '+').nth(4).unwrap();
        let bytes = STANDARD.decode(encoded).unwrap();
        assert_eq!(bytes[0], ED25519);
        SigningKey::from_bytes(&bytes[1..].try_into().unwrap())
    }

    fn go_note() -> String {
        format!("{TEXT}\n\u{2014} PeterNeumann {SIG}\n")
    }

    #[test]
    fn signing_reproduces_go_s_note_byte_for_byte() {
        let key = go_signing_key();
        assert_eq!(sign(TEXT, "PeterNeumann", &key).unwrap(), go_note());
        let verifier = NoteVerifier::new("PeterNeumann", key.verifying_key()).unwrap();
        assert_eq!(verifier.encode(), VKEY);
    }

    #[test]
    fn go_s_note_opens_with_go_s_verifier_key() {
        let verifier = NoteVerifier::parse(VKEY).unwrap();
        assert_eq!(verifier.open(&go_note()).unwrap(), TEXT);
    }

    #[test]
    fn a_changed_note_or_key_is_refused() {
        let verifier = NoteVerifier::parse(VKEY).unwrap();
        let edited = go_note().replace("cryptography", "cryptographY");
        assert_eq!(
            verifier.open(&edited),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = NoteVerifier::new(
            "PeterNeumann",
            SigningKey::from_bytes(&[7; 32]).verifying_key(),
        )
        .unwrap();
        assert_eq!(
            other.open(&go_note()),
            Err(NoteError::NotSigned("PeterNeumann".into()))
        );
        assert_eq!(verifier.open(TEXT), Err(NoteError::Malformed));
        // Every mangling of the verifier key is refused (a wrong id, a cut, a changed byte).
        for i in 0..VKEY.len() {
            let mut bytes = VKEY.as_bytes().to_vec();
            bytes[i] = bytes[i].wrapping_add(1);
            if let Ok(mangled) = String::from_utf8(bytes) {
                assert!(NoteVerifier::parse(&mangled).is_err(), "{mangled}");
            }
            assert!(NoteVerifier::parse(&VKEY[..i]).is_err());
        }
        assert_eq!(
            sign("no newline", "PeterNeumann", &go_signing_key()),
            Err(NoteError::BadText)
        );
        assert_eq!(
            sign(TEXT, "bad name", &go_signing_key()),
            Err(NoteError::BadName)
        );
    }
}
