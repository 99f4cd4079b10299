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
