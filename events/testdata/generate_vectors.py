#!/usr/bin/env python3
"""Writes events/testdata/vectors.json from an implementation independent of the Rust code.

Only the Python standard library (json, hashlib) and `cryptography` (Ed25519) are used, the way
a third-party auditor would re-verify the ledger (docs/ledger-format.md). The inputs avoid the
corners where Python's json differs from RFC 8785 (non-integral floats other than those below,
astral-plane keys), so `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
*is* the canonical form here. Re-run only when the format changes on purpose.
"""
import base64, hashlib, json, pathlib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization


def jcs(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def genesis(org_id):
    return hashlib.sha256(("dashclaw-ledger-genesis/v1:" + org_id).encode()).hexdigest()


ORG = "org_golden"
payloads = [
    {"action_type": "deploy", "declared_goal": "ship \"v2\" to prod", "risk_score": 70},
    {"nested": {"b": [1, 2.5, True, None], "a": "é\u00e9\u2028\n\t\u0001"}, "big": 1e21, "neg": -7},
    {},
]
events, prev = [], genesis(ORG)
for seq, payload in enumerate(payloads, start=1):
    metadata = {"actor": "operator", "recorded_at": f"2026-11-21T09:00:0{seq}.000Z", "request_id": f"req-{seq}"}
    envelope = {
        "org_id": ORG, "ledger_seq": seq, "stream_type": "Action",
        "stream_id": f"{ORG}/act_{seq}", "stream_seq": 1,
        "event_type": "ActionCreated", "event_version": "1.0",
        "payload": payload, "metadata": metadata, "prev_hash": prev,
    }
    canonical = jcs(envelope)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    events.append({
        **envelope,
        "payload_canonical": jcs(payload),
        "metadata_canonical": jcs(metadata),
        "canonical": canonical,
        "hash": digest,
    })
    prev = digest

seed = bytes(range(32))
key = Ed25519PrivateKey.from_private_bytes(seed)
x = b64url(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
kid = b64url(hashlib.sha256(jcs({"crv": "Ed25519", "kty": "OKP", "x": x}).encode()).digest())
statement = {"type": "dashclaw.checkpoint/v1", "org_id": ORG, "size": len(events),
             "head_hash": prev, "signed_at": "2026-11-21T09:00:09.000Z"}
signing_input = jcs(statement)

vectors = {
    "org_id": ORG,
    "genesis_hash": genesis(ORG),
    "events": events,
    "key": {"seed_hex": seed.hex(), "x": x, "d": b64url(seed), "kid": kid},
    "checkpoint": {
        **{k: v for k, v in statement.items() if k != "type"},
        "signing_input": signing_input,
        "signature": b64url(key.sign(signing_input.encode())),
    },
}
out = pathlib.Path(__file__).with_name("vectors.json")
out.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {out}")
