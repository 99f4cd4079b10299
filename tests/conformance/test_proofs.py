"""A real server's signed tree heads and RFC 9162 proofs, checked with verifier.py alone.

Every inclusion and consistency proof of every tree up to 64 events is checked against roots
computed locally from the listed events, every signed head against the JWKS, and edited
proofs, notes and key sets must be refused."""

import base64
import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from verifier import (
    ENVELOPE_KEYS,
    VerificationError,
    canonical_json,
    hash_from_hex,
    jwk_public_key,
    jwk_thumbprint,
    leaf_hash,
    merkle_root,
    note_key_id,
    open_tree_head,
    parse_note,
    parse_verifier_key,
    verifier_key,
    verify_chain,
    verify_consistency,
    verify_inclusion,
    verify_note,
)

SIZE = 64
VECTORS = Path(__file__).resolve().parents[2] / "events" / "testdata" / "vectors.json"
EVENTS_QUERY = """query($after: Int) { ledgerEvents(after: $after, first: 200) {
  ledgerSeq streamType streamId streamSeq eventType eventVersion payload metadata prevHash hash } }"""
CHECKPOINTS_QUERY = "{ checkpoints { size rootHash note } }"


def get(server, path):
    """GET with the agent's (member) key: any key may read the ledger's proofs."""
    status, body = server.call("GET", path, key=server.agent_key)
    assert status == 200, (path, body)
    return body


def graphql(server, query, variables=None):
    status, body = server.call("POST", "/graphql", {"query": query, "variables": variables or {}})
    assert status == 200 and "errors" not in body, body
    return body["data"]


def list_events(server):
    """Every event of the org's chain, as GraphQL lists them (pages of 200)."""
    events = []
    while True:
        page = graphql(server, EVENTS_QUERY, {"after": len(events)})["ledgerEvents"]
        if not page:
            return events
        events += page


def envelope(event, org_id):
    """A listed event as its envelope (the ten hashed members) with its hash."""
    return {
        "org_id": org_id,
        "ledger_seq": event["ledgerSeq"],
        "stream_type": event["streamType"],
        "stream_id": event["streamId"],
        "stream_seq": event["streamSeq"],
        "event_type": event["eventType"],
        "event_version": event["eventVersion"],
        "payload": event["payload"],
        "metadata": event["metadata"],
        "prev_hash": event["prevHash"],
        "hash": event["hash"],
    }


def wait_for_tree_head(server, size, timeout=15.0):
    """The latest signed tree head once it covers at least `size` events (heads are signed
    within about a second of a change)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = server.call("GET", "/api/integrity/checkpoint", key=server.agent_key)
        if status == 200 and body["tree_size"] >= size:
            return body
        assert time.monotonic() < deadline, f"no signed tree head of {size} events: {body}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ledger(server):
    """The default org's chain grown past SIZE events in two batches of guard decisions, the
    tree head of each batch awaited (so at least two heads are signed). Returns the org id,
    every event, the leaf hashes, and the latest tree head (REST body)."""
    claw = server.client("agent-proofs-" + uuid.uuid4().hex[:8])
    for batch in (SIZE // 2, SIZE):
        for i in range(batch):
            claw.guard({"action_type": "research", "declared_goal": f"read page {i}"})
        head = wait_for_tree_head(server, len(list_events(server)))
    org_id = head["org_id"]
    events = [envelope(e, org_id) for e in list_events(server)]
    leaves = [leaf_hash(hash_from_hex(e["hash"])) for e in events]
    return {"org_id": org_id, "events": events, "leaves": leaves, "head": head}


@pytest.fixture(scope="module")
def jwks(server):
    """The published key set, fetched once (as an auditor keeps it)."""
    return get(server, "/.well-known/jwks.json")


@pytest.fixture(scope="module")
def roots(ledger):
    """roots[n]: the locally computed root of the tree of the first n events (n = 0..SIZE)."""
    return [merkle_root(ledger["leaves"][:n]) for n in range(SIZE + 1)]


def inclusion(server, seq, size):
    proof = get(server, f"/api/integrity/proof/inclusion?ledger_seq={seq}&tree_size={size}")
    assert (proof["leaf_index"], proof["tree_size"]) == (seq - 1, size), proof
    return hash_from_hex(proof["leaf_hash"]), [hash_from_hex(h) for h in proof["hashes"]]


def consistency(server, first, second):
    proof = get(server, f"/api/integrity/proof/consistency?from={first}&to={second}")
    assert (proof["first"], proof["second"]) == (first, second), proof
    return [hash_from_hex(h) for h in proof["hashes"]]


def flipped(hash_bytes):
    return bytes([hash_bytes[0] ^ 0x01]) + hash_bytes[1:]


# ---- the verifier itself, on fixed vectors ------------------------------------------------------


def test_the_verifier_reproduces_the_ledger_vectors():
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    envelopes = [{**{k: e[k] for k in ENVELOPE_KEYS}, "hash": e["hash"]} for e in vectors["events"]]
    for vector, envelope in zip(vectors["events"], envelopes):
        assert canonical_json({k: envelope[k] for k in ENVELOPE_KEYS}) == vector["canonical"]
    assert verify_chain(envelopes, vectors["org_id"]) == vectors["checkpoint"]["head_hash"]
    key = {"kty": "OKP", "crv": "Ed25519", "x": vectors["key"]["x"]}
    assert jwk_thumbprint(key) == vectors["key"]["kid"]
    numbers = [1.0, 1e21, 1e-7, 0.5, -0.0, 1e20, 1.5e-7, 0.000001, 2**64 - 1]
    assert [canonical_json(n) for n in numbers] == [
        "1", "1e+21", "1e-7", "0.5", "0", "100000000000000000000", "1.5e-7", "0.000001",
        "18446744073709552000",
    ]
    # Keys sort by UTF-16 code units: U+1F600 (a surrogate pair) before U+FFFF.
    assert canonical_json({"\uffff": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\uffff":1}'


def test_the_verifier_opens_go_sumdb_reference_notes():
    """The reference vectors of golang.org/x/mod/sumdb/note: an independent source of the
    signed-note format."""
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = ("If you think cryptography is the answer to your problem,\n"
            "then you don't know what your problem is.\n")
    sig = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    name, public_key = parse_verifier_key(vkey)
    assert verifier_key(name, public_key) == vkey
    x = base64.urlsafe_b64encode(public_key).rstrip(b"=").decode()
    body, _ = verify_note(f"{text}\n\u2014 PeterNeumann {sig}\n", {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]})
    assert body == text


# ---- a real server --------------------------------------------------------------------------------


def test_every_event_hashes_from_its_envelope_and_chains(ledger):
    events, head = ledger["events"], ledger["head"]
    assert len(events) >= SIZE + SIZE // 2
    verify_chain(events, ledger["org_id"])
    assert events[head["tree_size"] - 1]["hash"] == head["chain_head"]
    edited = [dict(e) for e in events]
    edited[SIZE // 2]["payload"] = {**edited[SIZE // 2]["payload"], "edited": True}
    with pytest.raises(VerificationError, match="does not hash to its stated hash"):
        verify_chain(edited, ledger["org_id"])


def test_the_note_key_is_the_jwks_key(server, jwks, ledger):
    note_key = get(server, "/api/integrity/note-key")
    name, public_key = parse_verifier_key(note_key["verifier_key"])
    assert name == note_key["name"]
    assert note_key_id(name, public_key).hex() == note_key["key_id"]
    [jwk] = [k for k in jwks["keys"] if jwk_public_key(k) == public_key]
    assert jwk_thumbprint(jwk) == note_key["kid"]
    [signature] = parse_note(ledger["head"]["checkpoint"]).signatures
    assert (signature.name, signature.key_id.hex()) == (name, note_key["key_id"])


def test_the_latest_tree_head_verifies_and_matches_the_local_tree(server, jwks, ledger):
    head = ledger["head"]
    statement = open_tree_head(head["checkpoint"], jwks)
    name = get(server, "/api/integrity/note-key")["name"]
    assert statement.origin == f"{name}/{ledger['org_id']}"
    assert (statement.org_id, statement.size, statement.root.hex(), statement.chain_head, statement.signed_at) == (
        head["org_id"], head["tree_size"], head["root_hash"], head["chain_head"], head["signed_at"],
    )
    assert statement.root == merkle_root(ledger["leaves"][: statement.size])


def test_every_signed_tree_head_matches_the_local_tree_and_extends_the_one_before(server, jwks, ledger):
    heads = [c for c in graphql(server, CHECKPOINTS_QUERY)["checkpoints"] if c["note"]]
    assert len(heads) >= 2, heads
    previous = None
    for listed in heads:
        statement = open_tree_head(listed["note"], jwks)
        by_size = get(server, f"/api/integrity/checkpoint?size={listed['size']}")
        assert by_size["checkpoint"] == listed["note"]
        assert (statement.size, statement.root.hex()) == (listed["size"], listed["rootHash"])
        assert statement.root == merkle_root(ledger["leaves"][: statement.size])
        if previous:
            path = consistency(server, previous.size, statement.size)
            verify_consistency(previous.size, statement.size, previous.root, statement.root, path)
        previous = statement


def test_every_inclusion_proof_of_trees_up_to_64_events(server, ledger, roots):
    for size in range(1, SIZE + 1):
        for seq in range(1, size + 1):
            leaf, path = inclusion(server, seq, size)
            assert leaf == ledger["leaves"][seq - 1]
            verify_inclusion(seq - 1, size, leaf, path, roots[size])


def test_every_consistency_proof_of_trees_up_to_64_events(server, roots):
    for second in range(1, SIZE + 1):
        for first in range(1, second + 1):
            path = consistency(server, first, second)
            verify_consistency(first, second, roots[first], roots[second], path)


# ---- refusals -------------------------------------------------------------------------------------


def test_a_flipped_byte_in_any_proof_hash_is_refused(server, roots):
    leaf, path = inclusion(server, 6, SIZE)
    for i in range(len(path)):
        bad = path[:i] + [flipped(path[i])] + path[i + 1 :]
        with pytest.raises(VerificationError):
            verify_inclusion(5, SIZE, leaf, bad, roots[SIZE])
    with pytest.raises(VerificationError):
        verify_inclusion(5, SIZE, flipped(leaf), path, roots[SIZE])
    path = consistency(server, 11, SIZE)
    for i in range(len(path)):
        bad = path[:i] + [flipped(path[i])] + path[i + 1 :]
        with pytest.raises(VerificationError):
            verify_consistency(11, SIZE, roots[11], roots[SIZE], bad)
    with pytest.raises(VerificationError):
        verify_consistency(11, SIZE, flipped(roots[11]), roots[SIZE], path)


def test_a_wrong_leaf_index_is_refused(server, roots):
    for seq in (1, 6, 33, SIZE):
        leaf, path = inclusion(server, seq, SIZE)
        for index in {seq - 2, seq, seq - 1 + SIZE // 2} - {-1}:
            with pytest.raises(VerificationError):
                verify_inclusion(index, SIZE, leaf, path, roots[SIZE])


def test_a_truncated_or_extended_path_is_refused(server, roots):
    leaf, path = inclusion(server, 6, 40)
    for bad in (path[:-1], path[1:], [], path + [roots[1]]):
        with pytest.raises(VerificationError):
            verify_inclusion(5, 40, leaf, bad, roots[40])
    path = consistency(server, 7, 40)
    for bad in (path[:-1], path[1:], [], path + [roots[1]]):
        with pytest.raises(VerificationError):
            verify_consistency(7, 40, roots[7], roots[40], bad)


def test_a_note_with_any_changed_body_byte_is_refused(jwks, ledger):
    note = ledger["head"]["checkpoint"]
    body_length = note.index("\n\n") + 1
    for i in range(body_length):
        edited = note[:i] + chr(ord(note[i]) ^ 0x01) + note[i + 1 :]
        with pytest.raises(VerificationError):
            open_tree_head(edited, jwks)


def test_a_jwks_without_the_signing_key_is_refused(server, jwks, ledger):
    note = ledger["head"]["checkpoint"]
    _, signer = parse_verifier_key(get(server, "/api/integrity/note-key")["verifier_key"])
    others = [k for k in jwks["keys"] if jwk_public_key(k) != signer]
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    stranger = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(stranger).rstrip(b"=").decode()}
    for keys in ([], others, others + [stranger]):
        with pytest.raises(VerificationError, match="no Ed25519 key"):
            open_tree_head(note, {"keys": keys})
    # The signing key under another name derives another key id: not the note's signer either.
    renamed = note.replace("\n\n\u2014 ", "\n\n\u2014 x", 1)
    with pytest.raises(VerificationError, match="no Ed25519 key"):
        open_tree_head(renamed, jwks)
