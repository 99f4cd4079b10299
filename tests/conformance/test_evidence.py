"""Evidence bundles and compliance exports of a real server, checked with verifier.py alone and
compared with `dashclaw verify-bundle`, `dashclaw verify-export` and `/api/integrity/verify`.

An agent drives a deploy through the SDK (held for approval, approved by an operator, claimed,
completed, with an assumption); its bundle must verify, and every edit must be refused at the
check docs/evidence-format.md names. The server's key is not ours, so an edited bundle fails
first at its payload hash; `trust_envelope=True` shows that the ledger checks catch each edit
on their own. To reach those checks in both verifiers, a key of the test's own (the forger's)
is added to the trusted key set and signs the edited bundles, manifests and tree heads again,
as someone holding the server's key could. Two exports with activity in between must verify
and the second must extend the first; edited lines and manifests must be refused; the streamed
API export must verify the same way. Where the Rust verifiers were once weaker (section 8 of
the document), both must refuse."""

import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from verifier import (
    BUNDLE_SIGNATURE,
    CHAIN_LINKS,
    COUNTS,
    EVENT_HASHES,
    INCLUSION_PROOF,
    INCLUSION_PROOFS,
    MANIFEST_SIGNATURE,
    ORDER,
    ORG,
    PAYLOAD_HASH,
    POLICY_SETS,
    PREVIOUS_EXPORT,
    SIGNED_BASE,
    STREAMS,
    SUBJECT,
    TREE_HEAD,
    CheckFailed,
    UnusableEvidence,
    canonical_json,
    digest_json,
    entry_hash_input,
    jwk_thumbprint,
    note_key_id,
    verify_bundle,
    verify_export,
)

ACT = {"kind": "shell", "command": "make deploy TOKEN=abc123"}
STRANGER = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}


class Forger:
    """A signing key of the test's own: it signs bundles, manifests and tree heads the way the
    server does (docs/evidence-format.md sections 2 and 4, docs/proofs.md section 2)."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(self.public).rstrip(b"=").decode()
        self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": x}
        self.kid = jwk_thumbprint(self.jwk)

    def signature(self, signed: dict) -> dict:
        sig = base64.urlsafe_b64encode(self.key.sign(canonical_json(signed).encode())).rstrip(b"=")
        return {"alg": "EdDSA", "kid": self.kid, "sig": sig.decode()}

    def sign_bundle(self, bundle: dict) -> None:
        bundle["payloadHash"] = digest_json(bundle["payload"])
        bundle["signature"] = self.signature({name: bundle.get(name) for name in SIGNED_BASE})

    def sign_manifest(self, manifest: dict) -> None:
        manifest["signature"] = self.signature({k: v for k, v in manifest.items() if k != "signature"})

    def sign_note(self, body: str, name: str) -> str:
        blob = note_key_id(name, self.public) + self.key.sign(body.encode())
        return f"{body}\n\u2014 {name} {base64.b64encode(blob).decode()}\n"


FORGER = Forger()


def rust(server, *args):
    """`dashclaw <args>`: (exit code, its output)."""
    done = subprocess.run(
        [os.environ["DASHCLAW_BIN"], *args], env=server.env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


def write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


@dataclass
class Keys:
    jwks: dict  # the published key set
    file: str  # a saved copy, for the Rust verifiers
    trusted: dict  # the published keys and the forger's
    trusted_file: str


@pytest.fixture(scope="module")
def keys(server, tmp_path_factory):
    """The published key set, fetched once as an auditor keeps it, and the same with the
    forger's key added."""
    status, jwks = server.call("GET", "/.well-known/jwks.json")
    assert status == 200 and jwks["keys"], jwks
    directory = tmp_path_factory.mktemp("keys")
    trusted = {"keys": jwks["keys"] + [FORGER.jwk]}
    saved = write_json(directory / "jwks.json", jwks)
    return Keys(jwks, saved, trusted, write_json(directory / "trusted.json", trusted))


# ---- bundles ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(server):
    """The evidence bundle of a deploy that an agent ran through the SDK: held for approval by
    a require_approval policy, an assumption registered, approved by an operator, claimed and
    completed."""
    agent_id = "agent-evidence-" + uuid.uuid4().hex[:8]
    status, body = server.call(
        "POST",
        "/api/policies",
        {"name": f"hold deploys of {agent_id}", "policy_type": "require_approval",
         "rules": {"action_types": ["deploy"]}, "agent_ids": [agent_id]},
    )
    assert status == 201, body
    claw = server.client(agent_id)
    created = claw.create_action("deploy", "ship v2 with evidence", act=ACT)
    assert created["action"]["status"] == "pending_approval"
    action_id = created["action_id"]
    claw.register_assumption(action_id, "the canary is healthy")
    approved = server.admin().approve_action(action_id, "allow", "change window open")
    assert approved["action"]["status"] == "running"
    assert claw.claim_execution(action_id, ACT)["claimed"] is True
    claw.report_action_outcome(action_id, "completed", summary="deployed")
    status, body = server.call(
        "POST", "/api/artifacts/evidence-bundle", {"action_id": action_id}, key=server.agent_key
    )
    assert status == 200, body
    return body


def ledger_of(bundle):
    return bundle["payload"]["ledger"]


def envelope_at(bundle, index):
    return json.loads(ledger_of(bundle)["events"][index]["entry"])


def index_of(bundle, event_type):
    events = ledger_of(bundle)["events"]
    [index] = [i for i, e in enumerate(events) if f'"event_type":"{event_type}"' in e["entry"]]
    return index


def verify_over_rest(server, bundle):
    status, answer = server.call("POST", "/api/integrity/verify", {"bundle": bundle})
    assert status == 200, answer
    return answer


def rust_verify_bundle(server, bundle, keys_file, tmp_path):
    return rust(server, "verify-bundle", write_json(tmp_path / "bundle.json", bundle), "--jwks", keys_file)


def test_a_governed_actions_bundle_verifies_everywhere(server, keys, bundle, tmp_path):
    types = [envelope_at(bundle, i)["event_type"] for i in range(len(ledger_of(bundle)["events"]))]
    assert types == [
        "GuardDecisionRecorded", "ActionRecorded", "AssumptionRegistered", "ActionApprovalGranted",
        "GuardDecisionRecorded", "ActionExecutionClaimed", "ActionOutcomeReported",
    ]
    assert bundle["payload"]["action"]["status"] == "completed"

    summary = verify_bundle(bundle, keys.jwks)
    assert summary["action_id"] == bundle["payload"]["action"]["action_id"]
    assert (summary["events"], summary["decisions"], summary["kid"]) == (7, 2, bundle["signature"]["kid"])
    assert verify_bundle(bundle, keys.jwks, trust_envelope=True)["checks"] == summary["checks"][2:]

    # The server runs the same checks, in the same order, and replays the decisions too.
    answer = verify_over_rest(server, bundle)
    assert answer["ok"] is True and answer["kid"] == summary["kid"], answer
    assert [c["check"] for c in answer["checks"]] == summary["checks"] + ["replayed verdicts"]

    code, out = rust_verify_bundle(server, bundle, keys.file, tmp_path)
    assert code == 0, out
    assert [line.split(":")[0][len("ok     "):] for line in out.splitlines() if line.startswith("ok ")] == (
        summary["checks"] + ["replayed verdicts"]
    )


def edit_approval(bundle):
    approval = ledger_of(bundle)["events"][index_of(bundle, "ActionApprovalGranted")]
    approval["entry"] = approval["entry"].replace("change window open", "change window shut")
    return approval


def restate_hash(bundle):
    """The approval edited and its stated hash recomputed: the event after it, its neighbour on
    the chain (the claim's decision), still links to the old hash."""
    i = index_of(bundle, "ActionApprovalGranted")
    assert envelope_at(bundle, i + 1)["ledger_seq"] == envelope_at(bundle, i)["ledger_seq"] + 1
    approval = edit_approval(bundle)
    old = json.loads(approval["entry"])["hash"]
    _, hashed = entry_hash_input(approval["entry"])
    approval["entry"] = approval["entry"].replace(old, hashlib.sha256(hashed).hexdigest(), 1)


def move_hash_into_payload(bundle):
    """The approval edited, its genuine hash moved after the payload, and a `hash` member
    inside the payload stating the SHA-256 of the rest: the bytes hash to the nested member,
    while the top-level `hash` (which the links and proofs use) stays genuine
    (docs/evidence-format.md section 8)."""
    approval = edit_approval(bundle)
    genuine = json.loads(approval["entry"])["hash"]
    _, hashed = entry_hash_input(approval["entry"])
    text = hashed.decode()
    text = text.replace(',"prev_hash":"', f',"hash":"{genuine}","prev_hash":"', 1)
    nested_at = text.index(f'}}}},"hash":"{genuine}"')
    nested = hashlib.sha256(text.encode()).hexdigest()
    approval["entry"] = text[:nested_at] + f',"hash":"{nested}"' + text[nested_at:]


def move_an_event_to_another_org(bundle):
    """The first event's org changed and its hash restated."""
    event = ledger_of(bundle)["events"][0]
    envelope = json.loads(event["entry"])
    edited = event["entry"].replace(f'"org_id":"{envelope["org_id"]}"', '"org_id":"org_other"', 1)
    _, hashed = entry_hash_input(edited)
    event["entry"] = edited.replace(envelope["hash"], hashlib.sha256(hashed).hexdigest(), 1)


def claim_another_org(bundle):
    ledger_of(bundle)["org_id"] = "org_other"


def drop_approval(bundle):
    del ledger_of(bundle)["events"][index_of(bundle, "ActionApprovalGranted")]


def duplicate_event(bundle):
    events = ledger_of(bundle)["events"]
    events.insert(3, copy.deepcopy(events[2]))


def reorder_events(bundle):
    events = ledger_of(bundle)["events"]
    events[1], events[2] = events[2], events[1]


def forge_tree_head(bundle, line, text):
    """The tree head with its line `line` (0-based) replaced by `text`, signed by the forger."""
    note = ledger_of(bundle)["tree_head"]
    lines = note[: note.rfind("\n\n") + 1].split("\n")
    assert int(lines[1]) == envelope_at(bundle, -1)["ledger_seq"]
    lines[line] = text
    ledger_of(bundle)["tree_head"] = FORGER.sign_note("\n".join(lines), lines[0].rpartition("/")[0])


def forge_the_chain_head(bundle):
    """A head with another chain head: the last event, which is event `size` of the tree, is
    not it."""
    forge_tree_head(bundle, 3, "chain-head " + "0" * 64)


def shrink_the_tree(bundle):
    """A head of one event less: the last event is outside its tree."""
    forge_tree_head(bundle, 1, str(envelope_at(bundle, -1)["ledger_seq"] - 1))


def bend_audit_path(bundle):
    path = ledger_of(bundle)["events"][0]["audit_path"]
    path[0] = ("1" if path[0][0] == "0" else "0") + path[0][1:]


def swap_policies(bundle):
    ledger_of(bundle)["policy_sets"][0]["policies"] = "[]"


def rename_policy_set(bundle):
    """A different policy set, under its own (correct) version: not the one the decisions name."""
    policies = ledger_of(bundle)["policy_sets"][0]["policies"].replace("hold deploys", "lenient")
    ledger_of(bundle)["policy_sets"][0] = {
        "version": hashlib.sha256(policies.encode()).hexdigest(), "policies": policies,
    }


def fail_the_action(bundle):
    bundle["payload"]["action"]["status"] = "failed"


def change_the_subject(bundle):
    bundle["payload"]["action"]["action_id"] = "act_00000000-0000-0000-0000-000000000000"


# (edit, the check that catches it once the envelope is trusted or signed again (None: nothing
# does, only the signer vouches for the summary), a phrase of that check's detail)
BUNDLE_EDITS = [
    (edit_approval, EVENT_HASHES, "its bytes hash to"),
    (restate_hash, CHAIN_LINKS, "links to"),
    (move_hash_into_payload, EVENT_HASHES, "is not its own hash member"),
    (claim_another_org, TREE_HEAD, "the head is of"),
    (move_an_event_to_another_org, ORG, "org_other"),
    (drop_approval, STREAMS, "jumps from event 1 to 3"),
    (duplicate_event, ORDER, "comes after"),
    (reorder_events, ORDER, "comes after"),
    (shrink_the_tree, ORDER, "is outside the tree of"),
    (forge_the_chain_head, CHAIN_LINKS, "the tree head's chain head is"),
    (bend_audit_path, INCLUSION_PROOFS, "the path leads to"),
    (swap_policies, POLICY_SETS, "hashes to"),
    (rename_policy_set, POLICY_SETS, "which the bundle does not hold"),
    (fail_the_action, None, None),
    (change_the_subject, SUBJECT, "has no events in it"),
]


def edit_ids(edits):
    return [edit.__name__ for edit, _, _ in edits]


@pytest.mark.parametrize("edit, deeper_check, detail", BUNDLE_EDITS, ids=edit_ids(BUNDLE_EDITS))
def test_every_edit_of_a_bundle_is_refused(server, keys, bundle, tmp_path, edit, deeper_check, detail):
    edited = copy.deepcopy(bundle)
    edit(edited)

    with pytest.raises(CheckFailed) as caught:
        verify_bundle(edited, keys.jwks)
    assert caught.value.check == PAYLOAD_HASH, caught.value
    answer = verify_over_rest(server, edited)
    assert (answer["ok"], answer["reason"]) == (False, "payload_tampered"), answer
    code, out = rust_verify_bundle(server, edited, keys.file, tmp_path)
    assert code == 1 and f"NOT VERIFIED: {PAYLOAD_HASH}" in out, out

    if deeper_check is None:
        verify_bundle(edited, keys.trusted, trust_envelope=True)
    else:
        with pytest.raises(CheckFailed) as caught:
            verify_bundle(edited, keys.trusted, trust_envelope=True)
        assert caught.value.check == deeper_check and detail in str(caught.value), caught.value


# move_hash_into_payload, signed again, is where the verifiers once differed (the end of the file).
RE_SIGNED_EDITS = [e for e in BUNDLE_EDITS if e[0] is not move_hash_into_payload]


@pytest.mark.parametrize("edit, deeper_check, detail", RE_SIGNED_EDITS, ids=edit_ids(RE_SIGNED_EDITS))
def test_an_edit_signed_again_fails_at_the_same_check_in_both_verifiers(
    server, keys, bundle, tmp_path, edit, deeper_check, detail
):
    edited = copy.deepcopy(bundle)
    edit(edited)
    FORGER.sign_bundle(edited)
    code, out = rust_verify_bundle(server, edited, keys.trusted_file, tmp_path)
    if deeper_check is None:
        assert verify_bundle(edited, keys.trusted)["kid"] == FORGER.kid
        assert code == 0, out
    else:
        with pytest.raises(CheckFailed) as caught:
            verify_bundle(edited, keys.trusted)
        assert caught.value.check == deeper_check and detail in str(caught.value), caught.value
        assert code == 1 and f"NOT VERIFIED: {deeper_check}" in out, out


def test_a_bundle_is_refused_under_a_key_set_without_its_key(server, keys, bundle, tmp_path):
    """(The server's /api/integrity/verify always uses its own key set.)"""
    for jwks in ({"keys": []}, STRANGER):
        with pytest.raises(CheckFailed) as caught:
            verify_bundle(bundle, jwks)
        assert caught.value.check == BUNDLE_SIGNATURE and "no Ed25519 key" in str(caught.value)
        with pytest.raises(CheckFailed) as caught:
            verify_bundle(bundle, jwks, trust_envelope=True)
        assert caught.value.check == TREE_HEAD and "no Ed25519 key" in str(caught.value)
    code, out = rust_verify_bundle(server, bundle, write_json(tmp_path / "stranger.json", STRANGER), tmp_path)
    assert code == 1 and f"NOT VERIFIED: {BUNDLE_SIGNATURE}" in out, out


def test_unreadable_evidence_is_unusable_not_failed(server, keys, tmp_path):
    junk = {"not": "a bundle"}
    with pytest.raises(UnusableEvidence):
        verify_bundle(junk, keys.jwks)
    assert verify_over_rest(server, junk)["reason"] == "malformed"
    code, _ = rust_verify_bundle(server, junk, keys.file, tmp_path)
    assert code == 2
    with pytest.raises(UnusableEvidence):
        verify_export('{"format": "dashclaw-export/v0"}', [], keys.jwks)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "manifest.json").write_text("{}", encoding="utf-8")
    (tmp_path / "export" / "events.jsonl").write_text("", encoding="utf-8")
    code, _ = rust(server, "verify-export", str(tmp_path / "export"), "--jwks", keys.file)
    assert code == 2


# ---- exports ---------------------------------------------------------------------------------


def activity(server, n):
    claw = server.client("agent-exports-" + uuid.uuid4().hex[:8])
    for i in range(n):
        decision = claw.guard({"action_type": "research", "declared_goal": f"read page {i}"})
        assert decision["decision"] == "allow"


def export(server, out):
    """`dashclaw export` of the default org into `out` (the server's log origin: the default)."""
    code, printed = rust(server, "export", "--org", "org_default", str(out))
    assert code == 0, printed
    return printed


def lines_of(directory):
    """The export's event lines, read one at a time without translating line ends."""
    return open(directory / "events.jsonl", encoding="utf-8", newline="\n")


def python_verify(directory, jwks):
    with lines_of(directory) as lines:
        return verify_export((directory / "manifest.json").read_text(encoding="utf-8"), lines, jwks)


def manifest_of(directory):
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exports(server, tmp_path_factory):
    """Two exports of the default org by `dashclaw export`, with guard decisions before the
    first and between the two: `(first, second, what each export printed)`."""
    root = tmp_path_factory.mktemp("exports")
    activity(server, 12)
    printed = [export(server, root / "first")]
    activity(server, 5)
    printed.append(export(server, root / "second"))
    return root / "first", root / "second", printed


def copy_of_second(exports, tmp_path, name):
    shutil.copytree(exports[1], tmp_path / name)
    return tmp_path / name


def test_two_exports_verify_and_the_second_extends_the_first(server, keys, exports):
    first, second, printed = exports
    one, two = python_verify(first, keys.jwks), python_verify(second, keys.jwks)
    for summary in (one, two):
        assert summary["checks"] == [
            MANIFEST_SIGNATURE, TREE_HEAD, EVENT_HASHES, CHAIN_LINKS, COUNTS, INCLUSION_PROOF,
            PREVIOUS_EXPORT,
        ]
        assert summary["first_ledger_seq"] == 1 and summary["tree_size"] >= summary["last_ledger_seq"]
    assert two["events"] >= one["events"] + 5
    # The second export proves the first one's tree is a prefix of its own.
    assert manifest_of(second)["previous"]["tree_head"] == manifest_of(first)["tree_head"]
    assert two["previous_tree_size"] == one["tree_size"]
    with lines_of(first) as old, lines_of(second) as new:
        assert list(old) == list(new)[: one["events"]]

    for directory, summary, said in ((first, one, printed[0]), (second, two, printed[1])):
        code, out = rust(server, "verify-export", str(directory), "--jwks", keys.file)
        assert code == 0 and "VERIFIED:" in out, out
        if summary["previous_tree_size"] is None:
            assert "ok     previous export: none" in out and "the org's first export" in said, out
        else:
            assert f"the previous export's tree of {summary['previous_tree_size']} " in out, out
            assert f"previous export's head of {summary['previous_tree_size']} events" in said, said


def edit_lines(edit):
    def apply(directory):
        with lines_of(directory) as read:
            lines = [line.removesuffix("\n") for line in read]
        edit(lines)
        (directory / "events.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    return apply


def edit_manifest(edit, sign=False):
    """Edits the manifest, and signs it again with the forger's key if `sign`."""

    def apply(directory):
        manifest = manifest_of(directory)
        edit(manifest)
        if sign:
            FORGER.sign_manifest(manifest)
        write_json(directory / "manifest.json", manifest)

    return apply


def backdate(lines):
    lines[10] = lines[10].replace('"recorded_at":"20', '"recorded_at":"19', 1)


def relink_the_first(lines):
    """Line 1 linked to something else than the genesis value, its hash restated."""
    envelope = json.loads(lines[0])
    relinked = lines[0].replace(envelope["prev_hash"], "0" * 64, 1)
    _, hashed = entry_hash_input(relinked)
    lines[0] = relinked.replace(envelope["hash"], hashlib.sha256(hashed).hexdigest(), 1)


def flip(hex_hash):
    return ("1" if hex_hash[0] == "0" else "0") + hex_hash[1:]


def bend_last_proof(manifest):
    manifest["last_event_proof"][0] = flip(manifest["last_event_proof"][0])


def bend_consistency(manifest):
    manifest["previous"]["consistency"][0] = flip(manifest["previous"]["consistency"][0])


def shrink_the_head(manifest):
    """The previous export's head, which does not cover this export's last events."""
    manifest["tree_head"] = manifest["previous"]["tree_head"]


# (name, edit of a copy of the second export, how the failure starts: `<check>: <place>`)
EXPORT_EDITS = [
    ("edited", edit_lines(backdate), f"{EVENT_HASHES}: line 11:"),
    ("dropped", edit_lines(lambda lines: lines.pop(5)), f"{CHAIN_LINKS}: line 6 "),
    ("reordered", edit_lines(lambda lines: lines.insert(8, lines.pop(7))), f"{CHAIN_LINKS}: line 8 "),
    ("truncated", edit_lines(lambda lines: lines.pop()), f"{COUNTS}: "),
    ("appended", edit_lines(lambda lines: lines.append('{"no": "hash"}')), f"{EVENT_HASHES}: line "),
    ("not from genesis", edit_lines(relink_the_first), f"{CHAIN_LINKS}: event 1 links to {'0' * 64}, "),
    ("crlf", edit_lines(lambda lines: lines.__setitem__(0, lines[0] + "\r")), f"{EVENT_HASHES}: line 1:"),
    ("counts", edit_manifest(lambda m: m["counts"].update(ApiKeyIssued=1)), f"{MANIFEST_SIGNATURE}: "),
    ("no previous", edit_manifest(lambda m: m.update(previous=None)), f"{MANIFEST_SIGNATURE}: "),
    # Signed again by the forger: the checks behind the signature.
    ("signed counts", edit_manifest(lambda m: m["counts"].update(ApiKeyIssued=1), sign=True), f"{COUNTS}: "),
    ("signed later start", edit_manifest(lambda m: m.update(first_ledger_seq=2), sign=True),
     f"{CHAIN_LINKS}: line 1 is event 1 "),
    ("signed short head", edit_manifest(shrink_the_head, sign=True), f"{TREE_HEAD}: the head covers "),
    ("signed bent proof", edit_manifest(bend_last_proof, sign=True), f"{INCLUSION_PROOF}: event "),
    ("signed bent consistency", edit_manifest(bend_consistency, sign=True), f"{PREVIOUS_EXPORT}: "),
]


@pytest.mark.parametrize("name, edit, failure", EXPORT_EDITS, ids=[e[0] for e in EXPORT_EDITS])
def test_every_edit_of_an_export_is_refused(server, keys, exports, tmp_path, name, edit, failure):
    edited = copy_of_second(exports, tmp_path, name)
    edit(edited)
    with pytest.raises(CheckFailed) as caught:
        python_verify(edited, keys.trusted)
    assert str(caught.value).startswith(failure), caught.value
    code, out = rust(server, "verify-export", str(edited), "--jwks", keys.trusted_file)
    assert code == 1 and f"FAIL   {failure}" in out, out


def test_an_export_is_refused_under_a_key_set_without_its_key(server, exports, tmp_path):
    with pytest.raises(CheckFailed) as caught:
        python_verify(exports[1], STRANGER)
    assert caught.value.check == MANIFEST_SIGNATURE and "no Ed25519 key" in str(caught.value)
    stranger = write_json(tmp_path / "stranger.json", STRANGER)
    code, out = rust(server, "verify-export", str(exports[1]), "--jwks", stranger)
    assert code == 1 and f"FAIL   {MANIFEST_SIGNATURE}" in out, out


def test_the_streamed_export_verifies_and_extends_the_last_export(server, keys, exports, tmp_path):
    request = urllib.request.Request(
        server.base_url + "/api/compliance/export", headers={"x-api-key": server.agent_key}
    )
    streamed = tmp_path / "streamed"
    streamed.mkdir()
    # The manifest comes last: spool each line to a file until the next one shows it was not.
    pending = None
    spool = open(streamed / "events.jsonl", "wb")
    with urllib.request.urlopen(request, timeout=60) as response, spool:
        assert response.headers["content-type"] == "application/x-ndjson"
        for raw in response:
            if pending is not None:
                spool.write(pending)
            pending = raw
    manifest = json.loads(pending)["manifest"]
    write_json(streamed / "manifest.json", manifest)

    summary = python_verify(streamed, keys.jwks)
    second = python_verify(exports[1], keys.jwks)
    assert summary["previous_tree_size"] == second["tree_size"]
    assert manifest["previous"]["tree_head"] == manifest_of(exports[1])["tree_head"]
    with lines_of(exports[1]) as exported, lines_of(streamed) as lines:
        assert list(exported) == list(lines)[: second["events"]]  # the same bytes for the same events
    code, out = rust(server, "verify-export", str(streamed), "--jwks", keys.file)
    assert code == 0 and "VERIFIED:" in out, out


# ---- where the verifiers once differed (docs/evidence-format.md section 8) ---------------------------


def bundle_with_a_moved_hash(bundle, exports, tmp_path):
    """An event's content edited, in a bundle signed again: its bytes hash to a `hash` member
    inside its payload, its own `hash` is the genuine one."""
    edited = copy.deepcopy(bundle)
    move_hash_into_payload(edited)
    FORGER.sign_bundle(edited)
    write_json(tmp_path / "bundle.json", edited)
    return "verify-bundle", tmp_path / "bundle.json"


def export_with_a_moved_hash(bundle, exports, tmp_path):
    """Line 5's `hash` member moved into its payload: its bytes still hash to it and it still
    links, but the envelope has no `hash` of its own."""

    def move(lines):
        stated, hashed = entry_hash_input(lines[4])
        text = hashed.decode()
        at = text.index(',"prev_hash":"') - 1  # the payload's closing brace
        lines[4] = text[:at] + f',"hash":"{stated}"' + text[at:]

    edited = copy_of_second(exports, tmp_path, "moved")
    edit_lines(move)(edited)
    return "verify-export", edited


def manifest_with_an_added_member(bundle, exports, tmp_path):
    """A member added to the manifest after it was signed."""
    edited = copy_of_second(exports, tmp_path, "added")
    edit_manifest(lambda m: m.update(note="reviewed and approved by the auditor"))(edited)
    return "verify-export", edited


DIFFERENCES = [
    (bundle_with_a_moved_hash, f"{EVENT_HASHES}: event #3: the hash it states"),
    (export_with_a_moved_hash, f"{EVENT_HASHES}: line 5: is not an envelope with its hash"),
    (manifest_with_an_added_member, f"{MANIFEST_SIGNATURE}: "),
]
DIFFERENCE_IDS = [make.__name__ for make, _ in DIFFERENCES]


@pytest.mark.parametrize("make, failure", DIFFERENCES, ids=DIFFERENCE_IDS)
def test_the_python_verifier_refuses(keys, bundle, exports, tmp_path, make, failure):
    command, evidence = make(bundle, exports, tmp_path)
    with pytest.raises(CheckFailed) as caught:
        if command == "verify-bundle":
            verify_bundle(json.loads(evidence.read_text(encoding="utf-8")), keys.trusted)
        else:
            python_verify(evidence, keys.trusted)
    assert str(caught.value).startswith(failure), caught.value


@pytest.mark.parametrize("make, failure", DIFFERENCES, ids=DIFFERENCE_IDS)
def test_the_rust_verifiers_refuse(server, keys, bundle, exports, tmp_path, make, failure):
    command, evidence = make(bundle, exports, tmp_path)
    code, out = rust(server, command, str(evidence), "--jwks", keys.trusted_file)
    assert code == 1, out
