"""An independent verifier of dashclaw's ledger evidence: event hashes, proofs, tree heads, bundles, exports.

Written from docs/ledger-format.md, docs/proofs.md and docs/evidence-format.md, with only the
standard library and `cryptography`; it imports nothing of dashclaw's. It recomputes event
hashes from envelopes (RFC 8785 canonical JSON) and checks chains, builds the per-org Merkle
tree and checks inclusion and consistency proofs (RFC 9162 section 2.1), opens signed tree
heads (C2SP signed-note with a C2SP tlog-checkpoint body) against a JWKS, and verifies signed
evidence bundles (`verify_bundle`) and compliance exports (`verify_export`, streaming). Every
check raises `VerificationError` naming what failed. Hashes are `bytes` in the Merkle
functions and 64 lowercase hex characters everywhere else (envelopes, JSON), as on the wire.
"""

import base64
import binascii
import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class VerificationError(Exception):
    """A piece of evidence does not verify; the message says which and why."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_from_hex(text, what="hash") -> bytes:
    """The 32 bytes of a hash written as 64 lowercase hex characters."""
    if not isinstance(text, str) or not re.fullmatch("[0-9a-f]{64}", text):
        raise VerificationError(f"{what} is not 64 lowercase hex characters: {text!r}")
    return bytes.fromhex(text)


# ---- RFC 8785 canonical JSON and event hashes -------------------------------------------------


def _number(value) -> str:
    """An IEEE 754 double as ECMAScript's Number.prototype.toString writes it (RFC 8785 3.2.2.3)."""
    if isinstance(value, int) and abs(value) <= 2**53:
        return str(value)  # exact as a double, and written the same way
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise VerificationError(f"RFC 8785 has no form for the number {value}")
    if value == 0:
        return "0"  # -0 included
    if value < 0:
        return "-" + _number(-value)
    # repr() is the shortest round-tripping decimal, the same digits ECMAScript chooses.
    _, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.<digits> * 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"


def canonical_json(value) -> str:
    """RFC 8785 (JCS) text of a JSON value as `json.loads` returns it."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        # Escapes exactly `"`, `\` and U+0000..U+001F (short forms where they exist, else
        # \u00xx), everything else literal: RFC 8785's string form.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code unit order
        return "{" + ",".join(f"{canonical_json(k)}:{canonical_json(value[k])}" for k in keys) + "}"
    raise VerificationError(f"not a JSON value: {value!r}")


ENVELOPE_KEYS = frozenset(
    "event_type event_version ledger_seq metadata org_id payload prev_hash stream_id stream_seq"
    " stream_type".split()
)


def genesis_hash(org_id: str) -> str:
    """The `prev_hash` of an org's first event."""
    return hashlib.sha256(("dashclaw-ledger-genesis/v1:" + org_id).encode()).hexdigest()


def event_hash(envelope: dict) -> str:
    """The hash of an event: SHA-256 of the canonical JSON of its ten envelope members (any
    `hash` member is left out), as hex."""
    members = {k: v for k, v in envelope.items() if k != "hash"}
    if set(members) != ENVELOPE_KEYS:
        raise VerificationError(
            f"an envelope has exactly the members {sorted(ENVELOPE_KEYS)}, not {sorted(members)}"
        )
    return hashlib.sha256(canonical_json(members).encode()).hexdigest()


def verify_chain(envelopes, org_id: str, start_seq: int = 1, prev_hash: str = None) -> str:
    """Checks that `envelopes` (each with its `hash`) are events `start_seq, start_seq + 1, ...`
    of `org_id`'s chain, each linked to the one before (event `start_seq` to `prev_hash`, the
    genesis value by default) and hashing to its stated hash. Returns the last hash."""
    head = genesis_hash(org_id) if prev_hash is None else prev_hash
    for seq, envelope in enumerate(envelopes, start_seq):
        where = f"event {envelope.get('ledger_seq')!r} (expected {seq})"
        if envelope.get("org_id") != org_id:
            raise VerificationError(f"{where} belongs to org {envelope.get('org_id')!r}, not {org_id!r}")
        if envelope.get("ledger_seq") != seq:
            raise VerificationError(f"{where} is out of sequence")
        if envelope.get("prev_hash") != head:
            raise VerificationError(f"{where} links to {envelope.get('prev_hash')}, not {head}")
        if event_hash(envelope) != envelope.get("hash"):
            raise VerificationError(f"{where} does not hash to its stated hash {envelope.get('hash')}")
        head = envelope["hash"]
    return head


# ---- the Merkle tree (RFC 9162 section 2.1) ----------------------------------------------------


def leaf_hash(event_hash_bytes: bytes) -> bytes:
    """The leaf of the event whose chain hash is `event_hash_bytes`: SHA-256(0x00 || hash)."""
    return sha256(b"\x00" + event_hash_bytes)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def merkle_root(leaves) -> bytes:
    """MTH (RFC 9162 2.1.1) of a list of leaf hashes; SHA-256 of nothing for no leaves."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def verify_inclusion(leaf_index: int, tree_size: int, leaf: bytes, path, root: bytes) -> None:
    """RFC 9162 2.1.3.2: `leaf` is leaf `leaf_index` of the tree of `tree_size` leaves with root
    `root`, by the audit path `path` (leaf to root)."""
    where = f"inclusion of leaf {leaf_index} in the tree of {tree_size}"
    if not 0 <= leaf_index < tree_size:
        raise VerificationError(f"{where}: the leaf index is outside the tree")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError(f"{where}: the path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(f"{where}: the path is shorter than the tree is deep")
    if r != root:
        raise VerificationError(f"{where}: the path leads to {r.hex()}, not the root {root.hex()}")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, path) -> None:
    """RFC 9162 2.1.4.2: the tree of `first` leaves with root `first_root` is a prefix of the
    tree of `second` leaves with root `second_root`. Equal sizes need an empty path and equal
    roots (the RFC's proof of a tree against itself is empty)."""
    where = f"consistency of the trees of {first} and {second}"
    if not 0 < first <= second:
        raise VerificationError(f"{where}: sizes must satisfy 0 < first <= second")
    if first == second:
        if path or first_root != second_root:
            raise VerificationError(f"{where}: equal sizes need an empty path and equal roots")
        return
    path = list(path)
    if first & (first - 1) == 0:  # a complete subtree of the second tree is not repeated
        path.insert(0, first_root)
    if not path:
        raise VerificationError(f"{where}: the path is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(f"{where}: the path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(f"{where}: the path is shorter than the trees need")
    if fr != first_root:
        raise VerificationError(f"{where}: the path gives the first root {fr.hex()}, not {first_root.hex()}")
    if sr != second_root:
        raise VerificationError(f"{where}: the path gives the second root {sr.hex()}, not {second_root.hex()}")


# ---- keys: JWKS and note verifier keys ---------------------------------------------------------


def _b64decode(text: str, what: str, urlsafe=False) -> bytes:
    try:
        if urlsafe:
            if "=" in text:
                raise ValueError("padding")
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise VerificationError(f"{what} is not valid base64: {text!r}") from error


def jwk_public_key(jwk: dict) -> bytes:
    """The 32-byte Ed25519 public key of an OKP JWK (RFC 8037)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise VerificationError(f"not an Ed25519 JWK: kty {jwk.get('kty')!r}, crv {jwk.get('crv')!r}")
    key = _b64decode(jwk.get("x", ""), "the JWK's x", urlsafe=True)
    if len(key) != 32:
        raise VerificationError(f"the JWK's x holds {len(key)} bytes, not 32")
    return key


def jwk_thumbprint(jwk: dict) -> str:
    """The RFC 7638 thumbprint of an Ed25519 JWK: the `kid` checkpoints name."""
    x = base64.urlsafe_b64encode(jwk_public_key(jwk)).rstrip(b"=").decode()
    members = canonical_json({"crv": "Ed25519", "kty": "OKP", "x": x})
    return base64.urlsafe_b64encode(sha256(members.encode())).rstrip(b"=").decode()


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return sha256(name.encode() + b"\n\x01" + public_key)[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The note verifier key `<name>+<hex key id>+<base64(0x01 || key)>`."""
    encoded = base64.b64encode(b"\x01" + public_key).decode()
    return f"{name}+{note_key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str):
    """`(name, public key)` of a note verifier key, its key id checked."""
    parts = text.split("+", 2)
    if len(parts) != 3 or not parts[0] or re.search(r"\s", parts[0]):
        raise VerificationError(f"not a verifier key <name>+<hex id>+<base64 key>: {text!r}")
    name, key_id, encoded = parts
    raw = _b64decode(encoded, "the verifier key's key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise VerificationError("the verifier key is not 0x01 followed by a 32-byte Ed25519 key")
    if key_id != note_key_id(name, raw[1:]).hex():
        raise VerificationError(f"the verifier key's id {key_id} is not that of its name and key")
    return name, raw[1:]


# ---- signed notes and tree heads ---------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    body: str  # the signed text, ending with its newline
    signatures: tuple


def parse_note(note: str) -> SignedNote:
    """Splits a C2SP signed note into its text and signature lines `— <name> <base64>`."""
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("not a signed note: no blank line between text and signatures")
    body, lines = note[: split + 1], note[split + 2 :]
    if not lines.endswith("\n"):
        raise VerificationError("not a signed note: no newline after the signature lines")
    signatures = []
    for line in lines[:-1].split("\n"):
        name, _, encoded = line.removeprefix("\u2014 ").partition(" ")
        if not line.startswith("\u2014 ") or not name or not encoded:
            raise VerificationError(f"not a signature line '\u2014 <name> <base64>': {line!r}")
        blob = _b64decode(encoded, f"the signature by {name}")
        if len(blob) < 5:
            raise VerificationError(f"the signature by {name} is too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    return SignedNote(body, tuple(signatures))


def verify_note(note: str, jwks: dict):
    """Verifies a signed note against a JWKS: some signature must verify under an Ed25519 key
    of the set whose note key id, derived with the signature's name, is the signature's key id
    (every such key is tried). Returns `(body, jwk)`: the signed text and the key."""
    parsed = parse_note(note)
    candidates = []
    for sig in parsed.signatures:
        for jwk in jwks.get("keys", []):
            try:
                public_key = jwk_public_key(jwk)
            except VerificationError:
                continue  # not an Ed25519 key: it cannot have signed
            if note_key_id(sig.name, public_key) != sig.key_id:
                continue
            candidates.append(sig.name)
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(sig.signature, parsed.body.encode())
            except InvalidSignature:
                continue
            return parsed.body, jwk
    names = ", ".join(f"{s.name} (key id {s.key_id.hex()})" for s in parsed.signatures)
    if candidates:
        raise VerificationError(f"the signature by {candidates[0]} does not verify over the note's text")
    raise VerificationError(f"no Ed25519 key of the JWKS has the key id of any signature: {names}")


@dataclass(frozen=True)
class TreeHead:
    origin: str  # <log origin>/<org_id>
    org_id: str
    size: int
    root: bytes
    chain_head: str  # hex hash of event `size`
    signed_at: str


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def parse_tree_head(body: str) -> TreeHead:
    """Reads a tree head body: `<origin>/<org>`, size, base64 root, `chain-head <hex>`,
    `signed-at <time>`, one line each."""
    if not body.endswith("\n"):
        raise VerificationError("not a tree head body: no final newline")
    lines = body[:-1].split("\n")
    if len(lines) != 5:
        raise VerificationError(f"not a tree head body: {len(lines)} lines, not 5")
    origin, size, root, chain_head, signed_at = lines
    log, _, org_id = origin.rpartition("/")
    if not log or not re.fullmatch("[A-Za-z0-9_-]{1,64}", org_id) or re.search(r"\s", origin):
        raise VerificationError(f"the origin line is not <log origin>/<org_id>: {origin!r}")
    if not re.fullmatch("0|[1-9][0-9]*", size):
        raise VerificationError(f"the size line is not a decimal number: {size!r}")
    root_bytes = _b64decode(root, "the root line")
    if len(root_bytes) != 32:
        raise VerificationError(f"the root holds {len(root_bytes)} bytes, not 32")
    if not chain_head.startswith("chain-head "):
        raise VerificationError(f"line 4 is not 'chain-head <hex>': {chain_head!r}")
    chain_head = chain_head.removeprefix("chain-head ")
    hash_from_hex(chain_head, "the chain head")
    signed_at = signed_at.removeprefix("signed-at ")
    if not lines[4].startswith("signed-at ") or not _TIMESTAMP.fullmatch(signed_at):
        raise VerificationError(f"line 5 is not 'signed-at <RFC 3339 UTC, ms>': {lines[4]!r}")
    return TreeHead(origin, org_id, int(size), root_bytes, chain_head, signed_at)


def open_tree_head(note: str, jwks: dict) -> TreeHead:
    """A signed tree head's statement, once its signature verifies against the JWKS."""
    body, _ = verify_note(note, jwks)
    return parse_tree_head(body)


# ---- evidence bundles and compliance exports (docs/evidence-format.md) -------------------------

BUNDLE_VERSION = "dashclaw-compliance-bundle/v1"
EVIDENCE_FORMAT = "dashclaw-ledger-evidence/v1"
EXPORT_FORMAT = "dashclaw-export/v1"
SIGNED_BASE = ("version", "issuedAt", "engineVersion", "payloadHash", "prevBundleHash")

# The check names, as the Rust verifiers print them (events/src/bundle.rs, events/src/export.rs).
PAYLOAD_HASH = "payload hash"
BUNDLE_SIGNATURE = "bundle signature"
TREE_HEAD = "tree head"
EVENT_HASHES = "event hashes"
ORG = "org"
ORDER = "event order"
CHAIN_LINKS = "chain links"
STREAMS = "streams"
INCLUSION_PROOFS = "inclusion proofs"
SUBJECT = "subject"
POLICY_SETS = "policy sets"
MANIFEST_SIGNATURE = "manifest signature"
COUNTS = "counts"
INCLUSION_PROOF = "inclusion proof"
PREVIOUS_EXPORT = "previous export"

_HASH_MEMBER = ',"hash":"'


class UnusableEvidence(VerificationError):
    """Not a bundle or an export this verifier can read (where the Rust verifiers exit 2)."""


class CheckFailed(VerificationError):
    """A named check of a bundle or an export failed (where the Rust verifiers exit 1); the
    message is `<check>: <place and detail>`."""

    def __init__(self, check: str, detail: str):
        super().__init__(f"{check}: {detail}")
        self.check = check


@contextmanager
def _check(name: str, where: str = ""):
    """Reports a failure of the code inside as check `name` failing at `where`."""
    try:
        yield
    except (CheckFailed, UnusableEvidence):
        raise
    except VerificationError as error:
        raise CheckFailed(name, f"{where}{error}") from error


def _member(obj, name: str, kinds, where: str):
    """`obj[name]` if it is one of the JSON types `kinds`, else the evidence is unusable."""
    value = obj.get(name) if isinstance(obj, dict) else None
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise UnusableEvidence(f"{where}{name} is not {expected}: {value!r}")
    return value


def _strings(obj, name: str, where: str) -> list:
    values = _member(obj, name, (list,), where)
    if not all(isinstance(v, str) for v in values):
        raise UnusableEvidence(f"{where}{name} is not a list of strings")
    return values


def digest_json(value) -> str:
    """`"sha256:" + base64url(SHA-256(RFC 8785 JSON of value))`: a bundle's `payloadHash`."""
    return "sha256:" + base64.urlsafe_b64encode(sha256(canonical_json(value).encode())).rstrip(b"=").decode()


def verify_signature(jwks: dict, kid: str, message: bytes, signature: str) -> None:
    """An Ed25519 signature (base64url, no padding) over `message` by the key of the JWKS whose
    recomputed RFC 7638 thumbprint is `kid` (a JWK's own `kid` member is not trusted)."""
    for jwk in jwks.get("keys", []):
        try:
            if jwk_thumbprint(jwk) != kid:
                continue
        except VerificationError:
            continue  # not an Ed25519 key
        raw = _b64decode(signature, "the signature", urlsafe=True)
        if len(raw) != 64:
            raise VerificationError(f"the signature holds {len(raw)} bytes, not 64")
        try:
            Ed25519PublicKey.from_public_bytes(jwk_public_key(jwk)).verify(raw, message)
        except InvalidSignature:
            raise VerificationError(f"the signature by {kid} does not verify") from None
        return
    raise VerificationError(f"no Ed25519 key of the JWKS has the thumbprint {kid}")


def entry_hash_input(entry: str):
    """`(stated hash, hashed bytes)` of an entry: the hex of its first `,"hash":"<64 hex>"`
    member, and the UTF-8 bytes of the entry without that member."""
    at = entry.find(_HASH_MEMBER)
    start = at + len(_HASH_MEMBER)
    if at < 0 or entry[start + 64 : start + 65] != '"':
        raise VerificationError('has no ,"hash":"<64 hex>" member')
    stated = entry[start : start + 64]
    hash_from_hex(stated, "the stated hash")
    return stated, (entry[:at] + entry[start + 65 :]).encode()


def open_entry(entry: str) -> dict:
    """The envelope (with its `hash`) of an entry whose bytes hash to the hash it states, once
    that stated hash is also the envelope's own top-level `hash` member."""
    stated, hashed = entry_hash_input(entry)
    computed = hashlib.sha256(hashed).hexdigest()
    if computed != stated:
        raise VerificationError(f"its bytes hash to {computed}, it states {stated}")
    try:
        envelope = json.loads(entry)
    except ValueError as error:
        raise VerificationError(f"is not JSON: {error}") from None
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_KEYS | {"hash"}:
        members = sorted(envelope) if isinstance(envelope, dict) else type(envelope).__name__
        raise VerificationError(f"is not an envelope with its hash: {members}")
    if envelope["hash"] != stated:
        raise VerificationError(
            f"the hash it states ({stated}) is not its own hash member {envelope['hash']!r}"
        )
    for name in ("ledger_seq", "stream_seq"):
        if isinstance(envelope[name], bool) or not isinstance(envelope[name], int) or envelope[name] < 1:
            raise VerificationError(f"its {name} is not a positive integer: {envelope[name]!r}")
    return envelope


def _open_head(note, jwks: dict, org_id: str) -> TreeHead:
    """A signed tree head of `org_id`'s tree."""
    if not isinstance(note, str):
        raise VerificationError(f"not a signed note: {note!r}")
    head = open_tree_head(note, jwks)
    if head.org_id != org_id:
        raise VerificationError(f"the head is of {head.origin}, the evidence of {org_id}")
    return head


def _path(hashes) -> list:
    return [hash_from_hex(h, "a proof hash") for h in hashes]


def _ledger_evidence(bundle) -> dict:
    """`payload.ledger` of a readable bundle."""
    if _member(bundle, "version", (str,), "") != BUNDLE_VERSION:
        raise UnusableEvidence(f"version {bundle['version']!r}, expected {BUNDLE_VERSION!r}")
    for name in SIGNED_BASE[1:4]:
        _member(bundle, name, (str,), "")
    _member(bundle, "prevBundleHash", (str, type(None)), "")
    for name in ("alg", "kid", "sig"):
        _member(_member(bundle, "signature", (dict,), ""), name, (str,), "signature.")
    ledger = _member(_member(bundle, "payload", (dict,), ""), "ledger", (dict,), "payload.")
    where = "payload.ledger."
    if _member(ledger, "format", (str,), where) != EVIDENCE_FORMAT:
        raise UnusableEvidence(f"{where}format {ledger['format']!r}, expected {EVIDENCE_FORMAT!r}")
    if not re.fullmatch("[A-Za-z0-9_-]{1,64}", _member(ledger, "org_id", (str,), where)):
        raise UnusableEvidence(f"{where}org_id is not an org id: {ledger['org_id']!r}")
    _member(ledger, "tree_head", (str,), where)
    for i, event in enumerate(_member(ledger, "events", (list,), where)):
        _member(event, "entry", (str,), f"{where}events[{i}].")
        _strings(event, "audit_path", f"{where}events[{i}].")
    for i, policy_set in enumerate(_member(ledger, "policy_sets", (list,), where)):
        for name in ("version", "policies"):
            _member(policy_set, name, (str,), f"{where}policy_sets[{i}].")
    return ledger


def verify_bundle(bundle: dict, jwks: dict, trust_envelope: bool = False) -> dict:
    """Verifies a signed evidence bundle against a JWKS, check by check in the order of
    `dashclaw verify-bundle` (docs/evidence-format.md section 3), except the replay of the
    decisions, which needs dashclaw's guard engine. Raises `UnusableEvidence` for a bundle it
    cannot read and `CheckFailed` naming the first check that fails and where.

    `trust_envelope=True` skips the payload hash and the bundle signature and checks only what
    the payload's ledger evidence proves by itself: what an edit would still have to get past
    if its author could sign bundles.

    Returns `{org_id, action_id, kid, tree_size, events, decisions, checks}`: `kid` is the
    bundle signer's thumbprint (None when the envelope was trusted), `checks` the names of the
    checks that held, in order."""
    ledger = _ledger_evidence(bundle)
    org_id = ledger["org_id"]
    checks = []
    if not trust_envelope:
        with _check(PAYLOAD_HASH):
            digest = digest_json(bundle["payload"])
            if digest != bundle["payloadHash"]:
                raise VerificationError(
                    f"the payload digests to {digest}, the bundle states {bundle['payloadHash']}"
                )
        checks.append(PAYLOAD_HASH)
        with _check(BUNDLE_SIGNATURE):
            signed = canonical_json({name: bundle.get(name) for name in SIGNED_BASE})
            verify_signature(jwks, bundle["signature"]["kid"], signed.encode(), bundle["signature"]["sig"])
        checks.append(BUNDLE_SIGNATURE)

    with _check(TREE_HEAD):
        head = _open_head(ledger["tree_head"], jwks, org_id)
    checks.append(TREE_HEAD)

    events = []
    for i, event in enumerate(ledger["events"]):
        with _check(EVENT_HASHES, f"event #{i}: "):
            events.append(open_entry(event["entry"]))
    checks.append(EVENT_HASHES)

    for e in events:
        if e["org_id"] != org_id:
            raise CheckFailed(ORG, f"event {e['ledger_seq']} is of org {e['org_id']!r}, not {org_id}")
    checks.append(ORG)

    for before, after in zip(events, events[1:]):
        if after["ledger_seq"] <= before["ledger_seq"]:
            raise CheckFailed(ORDER, f"event {after['ledger_seq']} comes after event {before['ledger_seq']}")
    for e in events:
        if e["ledger_seq"] > head.size:
            raise CheckFailed(ORDER, f"event {e['ledger_seq']} is outside the tree of {head.size} events")
    checks.append(ORDER)

    genesis = genesis_hash(org_id)
    for before, e in zip([None] + events, events):
        if before is not None and before["ledger_seq"] + 1 == e["ledger_seq"]:
            expected = before["hash"]
        elif e["ledger_seq"] == 1:
            expected = genesis
        else:
            expected = None  # its predecessor is not in the bundle
        if expected is not None and e["prev_hash"] != expected:
            raise CheckFailed(
                CHAIN_LINKS,
                f"event {e['ledger_seq']} links to {e['prev_hash']}, the event before it is {expected}",
            )
        if e["ledger_seq"] == head.size and e["hash"] != head.chain_head:
            raise CheckFailed(
                CHAIN_LINKS,
                f"event {e['ledger_seq']} is {e['hash']}, the tree head's chain head is {head.chain_head}",
            )
    checks.append(CHAIN_LINKS)

    streams = {}
    for e in events:
        last = streams.get(e["stream_id"], 0)
        if e["stream_seq"] != last + 1:
            raise CheckFailed(
                STREAMS,
                f"{e['stream_id']} jumps from event {last} to {e['stream_seq']}"
                f" (ledger_seq {e['ledger_seq']})",
            )
        streams[e["stream_id"]] = e["stream_seq"]
    checks.append(STREAMS)

    for event, e in zip(ledger["events"], events):
        with _check(INCLUSION_PROOFS, f"event {e['ledger_seq']}: "):
            leaf = leaf_hash(bytes.fromhex(e["hash"]))
            verify_inclusion(e["ledger_seq"] - 1, head.size, leaf, _path(event["audit_path"]), head.root)
    checks.append(INCLUSION_PROOFS)

    action = bundle["payload"].get("action")
    action_id = action.get("action_id") if isinstance(action, dict) else None
    action_id = action_id if isinstance(action_id, str) else ""
    if not any(e["stream_type"] == "Action" and e["stream_id"] == f"{org_id}/{action_id}" for e in events):
        raise CheckFailed(SUBJECT, f"the bundle's action {action_id!r} has no events in it")
    checks.append(SUBJECT)

    decisions = [e for e in events if e["stream_type"] == "GuardDecision"]
    for e in decisions:
        recorded = e["payload"].get("Recorded") if isinstance(e["payload"], dict) else None
        version = recorded.get("policy_set_version") if isinstance(recorded, dict) else None
        if not isinstance(version, str):
            raise CheckFailed(POLICY_SETS, f"the decision at {e['ledger_seq']} records no policy_set_version")
        policy_set = next((p for p in ledger["policy_sets"] if p["version"] == version), None)
        if policy_set is None:
            raise CheckFailed(
                POLICY_SETS,
                f"decision {recorded.get('decision_id')} (ledger_seq {e['ledger_seq']}) ran under policy set "
                f"{version}, which the bundle does not hold",
            )
        hashed = hashlib.sha256(policy_set["policies"].encode()).hexdigest()
        if hashed != version:
            raise CheckFailed(POLICY_SETS, f"the policy set given as {version} hashes to {hashed}")
        try:
            policies = json.loads(policy_set["policies"])
        except ValueError:
            policies = None
        if not isinstance(policies, list):
            raise CheckFailed(POLICY_SETS, f"policy set {version} is not a JSON list of policies")
    checks.append(POLICY_SETS)

    return {
        "org_id": org_id,
        "action_id": action_id,
        "kid": None if trust_envelope else bundle["signature"]["kid"],
        "tree_size": head.size,
        "events": len(events),
        "decisions": len(decisions),
        "checks": checks,
    }


def _manifest(text: str) -> dict:
    """A readable export manifest."""
    try:
        manifest = json.loads(text)
    except ValueError as error:
        raise UnusableEvidence(f"not an export manifest: {error}") from None
    if _member(manifest, "format", (str,), "") != EXPORT_FORMAT:
        raise UnusableEvidence(f"format {manifest['format']!r}, expected {EXPORT_FORMAT!r}")
    if not re.fullmatch("[A-Za-z0-9_-]{1,64}", _member(manifest, "org_id", (str,), "")):
        raise UnusableEvidence(f"org_id is not an org id: {manifest['org_id']!r}")
    for name in ("from", "to"):
        _member(manifest, name, (str, type(None)), "")
    for name in ("first_ledger_seq", "last_ledger_seq", "events"):
        if _member(manifest, name, (int,), "") < 0:
            raise UnusableEvidence(f"{name} is negative")
    counts = _member(manifest, "counts", (dict,), "")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        raise UnusableEvidence("counts are not integers")
    _member(manifest, "tree_head", (str,), "")
    _strings(manifest, "last_event_proof", "")
    previous = _member(manifest, "previous", (dict, type(None)), "")
    if previous is not None:
        _member(previous, "tree_head", (str,), "previous.")
        _strings(previous, "consistency", "previous.")
    _member(manifest, "exported_at", (str,), "")
    for name in ("alg", "kid", "sig"):
        _member(_member(manifest, "signature", (dict,), ""), name, (str,), "signature.")
    return manifest


def verify_export(manifest_text: str, lines, jwks: dict) -> dict:
    """Verifies a compliance export against a JWKS, check by check in the order of `dashclaw
    verify-export` (docs/evidence-format.md section 5): the manifest's text, then its event
    lines in order (an iterable of str, each with or without its final "\\n"), read once and
    one at a time, so memory stays constant whatever the export's size. Raises
    `UnusableEvidence` for a manifest it cannot read and `CheckFailed` naming the first check
    that fails and where (`line N` counts from 1).

    Returns `{org_id, first_ledger_seq, last_ledger_seq, events, tree_size,
    previous_tree_size, checks}` (`previous_tree_size` None for the org's first export)."""
    manifest = _manifest(manifest_text)
    org_id = manifest["org_id"]
    checks = []
    with _check(MANIFEST_SIGNATURE):
        unsigned = canonical_json({k: v for k, v in manifest.items() if k != "signature"})
        verify_signature(jwks, manifest["signature"]["kid"], unsigned.encode(), manifest["signature"]["sig"])
    checks.append(MANIFEST_SIGNATURE)
    with _check(TREE_HEAD):
        head = _open_head(manifest["tree_head"], jwks, org_id)
        if head.size < manifest["last_ledger_seq"]:
            raise VerificationError(
                f"the head covers {head.size} events, the export ends at {manifest['last_ledger_seq']}"
            )
    checks.append(TREE_HEAD)

    seen, last, counts = 0, None, {}
    for n, line in enumerate(lines, 1):
        with _check(EVENT_HASHES, f"line {n}: "):
            envelope = open_entry(line.removesuffix("\n"))
        seq, expected = envelope["ledger_seq"], manifest["first_ledger_seq"] + seen
        if envelope["org_id"] != org_id or seq != expected:
            raise CheckFailed(
                CHAIN_LINKS,
                f"line {n} is event {seq} of {envelope['org_id']!r}, expected event {expected} of {org_id}",
            )
        # The first line's predecessor is outside the export, unless it is the genesis.
        before = last if last is not None else (0, genesis_hash(org_id)) if seq == 1 else None
        if before is not None and envelope["prev_hash"] != before[1]:
            raise CheckFailed(
                CHAIN_LINKS,
                f"event {seq} links to {envelope['prev_hash']}, event {before[0]} is {before[1]} (line {n})",
            )
        counts[envelope["event_type"]] = counts.get(envelope["event_type"], 0) + 1
        seen, last = n, (seq, envelope["hash"])
    checks += [EVENT_HASHES, CHAIN_LINKS]

    last_seq = last[0] if last is not None else 0
    stated = (manifest["events"], manifest["last_ledger_seq"], manifest["counts"])
    if (seen, last_seq, counts) != stated:
        raise CheckFailed(
            COUNTS,
            f"the lines hold {seen} events ending at {last_seq} ({counts}); the manifest states "
            f"{stated[0]} ending at {stated[1]} ({stated[2]})",
        )
    checks.append(COUNTS)

    if last is not None:
        with _check(INCLUSION_PROOF, f"event {last_seq}: "):
            leaf = leaf_hash(bytes.fromhex(last[1]))
            verify_inclusion(last_seq - 1, head.size, leaf, _path(manifest["last_event_proof"]), head.root)
        checks.append(INCLUSION_PROOF)

    previous = manifest.get("previous")
    previous_size = None
    if previous is not None:
        with _check(PREVIOUS_EXPORT):
            before = _open_head(previous["tree_head"], jwks, org_id)
            verify_consistency(before.size, head.size, before.root, head.root, _path(previous["consistency"]))
        previous_size = before.size
    checks.append(PREVIOUS_EXPORT)

    return {
        "org_id": org_id,
        "first_ledger_seq": manifest["first_ledger_seq"],
        "last_ledger_seq": last_seq,
        "events": seen,
        "tree_size": head.size,
        "previous_tree_size": previous_size,
        "checks": checks,
    }
