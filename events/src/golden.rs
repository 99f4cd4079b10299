//! Golden vectors: `testdata/vectors.json`, written by an independent Python implementation
//! (`testdata/generate_vectors.py`), pins canonical bytes, hashes, key ids and signatures.
//! Any change to the byte format fails here loudly.

use serde_json::Value;

use crate::*;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).expect("vectors.json parses")
}

fn s(v: &Value) -> String {
    v.as_str().expect("string").to_owned()
}

#[test]
fn envelopes_match_the_independent_implementation() {
    let v = vectors();
    let org = OrgId::new(s(&v["org_id"])).unwrap();
    assert_eq!(genesis_hash(&org).to_hex(), s(&v["genesis_hash"]));

    let mut verifier = ChainVerifier::new(org.clone());
    for e in v["events"].as_array().unwrap() {
        let payload = CanonicalJson::encode(&e["payload"]).unwrap();
        let metadata = CanonicalJson::encode(&e["metadata"]).unwrap();
        assert_eq!(payload.as_str(), s(&e["payload_canonical"]));
        assert_eq!(metadata.as_str(), s(&e["metadata_canonical"]));
        let envelope = Envelope {
            org_id: org.clone(),
            ledger_seq: e["ledger_seq"].as_u64().unwrap(),
            stream_type: s(&e["stream_type"]),
            stream_id: s(&e["stream_id"]),
            stream_seq: e["stream_seq"].as_u64().unwrap(),
            event_type: s(&e["event_type"]),
            event_version: s(&e["event_version"]),
            payload,
            metadata,
            prev_hash: s(&e["prev_hash"]).parse().unwrap(),
            hash: s(&e["hash"]).parse().unwrap(),
        };
        assert_eq!(
            String::from_utf8(envelope.hash_input()).unwrap(),
            s(&e["canonical"])
        );
        assert_eq!(envelope.compute_hash(), envelope.hash);
        verifier.push(&envelope).expect("golden chain verifies");
    }
    assert_eq!(verifier.len(), 3);
}

#[test]
fn keys_and_checkpoints_match_the_independent_implementation() {
    let v = vectors();
    let k = &v["key"];
    let seed: [u8; 32] = hex::decode(s(&k["seed_hex"])).unwrap().try_into().unwrap();
    let key = LedgerKey::from_seed(seed);
    assert_eq!(key.kid(), s(&k["kid"]));
    assert_eq!(key.public_jwk().x, s(&k["x"]));
    assert_eq!(key.private_jwk().d.as_deref(), Some(s(&k["d"]).as_str()));

    let c = &v["checkpoint"];
    let checkpoint = Checkpoint {
        org_id: OrgId::new(s(&c["org_id"])).unwrap(),
        size: c["size"].as_u64().unwrap(),
        head_hash: s(&c["head_hash"]).parse().unwrap(),
        signed_at: s(&c["signed_at"]),
    };
    assert_eq!(
        String::from_utf8(checkpoint.signing_input()).unwrap(),
        s(&c["signing_input"])
    );
    let signed = checkpoint.sign(&key);
    assert_eq!(signed.signature, s(&c["signature"]));
    assert_eq!(
        signed.verify(&Jwks {
            keys: vec![key.public_jwk()]
        }),
        Ok(())
    );
}
