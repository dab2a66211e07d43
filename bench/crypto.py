"""Seal and open (PROTOCOL.md 5-6) against the raw primitives they are built from.

The raw rows call ``cryptography`` and ``protocol.padding`` directly, with keys already loaded;
the borderlink rows call ``protocol.envelope.seal`` + MessagePack encode and MessagePack decode +
``open_envelope`` (which also validates the JSON body against its schema, PROTOCOL.md 6.2 step 10).
The ratios say how much the envelope code adds on top of the cryptography it cannot avoid; the
issue's target is seal+open within 1.2x of the raw sum. Two costs that are not primitives but that
open must pay anyway are timed too (body schema check, PROTOCOL.md 6.2 step 10; content hash, 5.7),
so the report can say how much of any gap they explain. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import version

import msgspec
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench.timing import FULL, QUICK, Case, Plan, Stat, format_table, measure
from keys.keystore import open_keystore, seal_keystore
from protocol.envelope import CONTENT_NONCE, SUITE, TypeName, hpke_info, open_envelope, seal
from protocol.errors import UnknownSender
from protocol.identity import Identity, PublicIdentity
from protocol.labels import ENVELOPE_HASH_LABEL, MESSAGE_SIGNATURE_LABEL
from protocol.padding import pad, unpad
from protocol.schemas import SeizureAlert, decode_body, encode_body, template

NOW = 1_790_000_000  # the core never reads the clock; any fixed time inside the TTL will do
TTL = 86400
TYPE: TypeName = "seizure-alert"
LARGE_BODY_BYTES = 16_000  # stays in the 16 KiB bucket with the 64-byte signature
TARGET_RATIO = 1.2
FILLER = "Declared as fruit; scanner image showed dense blocks behind the pallets. "
KEYSTORE_PROFILES = ("moderate", "interactive")
PASSPHRASE = b"correct horse battery staple"


@dataclass(frozen=True)
class Node:
    """An identity as the envelope code sees it, and the same keys as raw library objects."""

    identity: Identity
    sign_key: Ed25519PrivateKey
    enc_key: X25519PrivateKey

    @classmethod
    def generate(cls) -> Node:
        secret = os.urandom(64)
        return cls(
            Identity.from_secret_bytes(secret),
            Ed25519PrivateKey.from_private_bytes(secret[:32]),
            X25519PrivateKey.from_private_bytes(secret[32:]),
        )


@dataclass(frozen=True)
class Scenario:
    """One message shape: which body, how many recipients, and the row names that make it up."""

    body: str  # "1 KiB" or "16 KiB"
    recipients: int

    @property
    def name(self) -> str:
        return f"{self.body} body, {self.recipients} recipient{'s' * (self.recipients > 1)}"

    @property
    def seal_row(self) -> str:
        return f"seal + encode, {self.name}"

    @property
    def open_row(self) -> str:
        return f"decode + open, {self.name}"


SCENARIOS = (Scenario("1 KiB", 1), Scenario("1 KiB", 4), Scenario("16 KiB", 1))
HPKE_SEAL = "HPKE seal, 32 B content key"
HPKE_OPEN = "HPKE open, 32 B content key"
SEAL_PARTS = ("Ed25519 sign", "AEAD encrypt", "pad")
OPEN_PARTS = ("Ed25519 verify", "AEAD decrypt", "unpad")
REQUIRED_PARTS = ("body schema check", "content hash")  # not primitives, but open must do them


def primitive_row(part: str, body: str) -> str:
    return f"{part}, {body} body"


@dataclass(frozen=True)
class Ratio:
    scenario: Scenario
    seal: float  # seal / (sign + n x HPKE seal + AEAD encrypt + pad)
    open: float  # open / (verify + HPKE open + AEAD decrypt + unpad)
    both: float  # (seal + open) / (sum of all of the above)
    required: float  # (seal + open) / (that sum + body schema check + content hash)


def bodies() -> dict[str, bytes]:
    """The template alert (about 1 KiB) and the same alert grown to about 16 KiB."""
    small = template(TYPE)
    if not isinstance(small, SeizureAlert):
        raise TypeError(f"the {TYPE} template is a {type(small).__name__}")
    text = (FILLER * (4000 // len(FILLER)))[:4000].strip()
    large = msgspec.structs.replace(
        small,
        narrative=text,
        commodity=msgspec.structs.replace(small.commodity, description=text),
        concealment=msgspec.structs.replace(small.concealment, description=text),
    )
    parties = small.parties or ()
    for count in range(1, 51):  # the schema allows at most 50 parties
        grown = msgspec.structs.replace(large, parties=(parties[0],) * count)
        if len(encode_body(grown)) > LARGE_BODY_BYTES:
            break
        large = grown
    return {"1 KiB": encode_body(small), "16 KiB": encode_body(large)}


def directory(*nodes: Node) -> Callable[[bytes], PublicIdentity]:
    known = {n.identity.node_id: n.identity.public for n in nodes}

    def sender_of(node_id: bytes) -> PublicIdentity:
        if node_id not in known:
            raise UnknownSender("sender is not a trusted peer")
        return known[node_id]

    return sender_of


def primitive_cases(sender: Node, rcpt: Node, label: str, body: bytes) -> dict[str, Case]:
    """The per-body primitives, on exactly the inputs seal and open feed them."""
    env = seal(sender.identity, [rcpt.identity.public], TYPE, body, now=NOW, ttl=TTL)
    header = env.header()
    signed = MESSAGE_SIGNATURE_LABEL + header + body
    signature = sender.sign_key.sign(signed)
    verify_key = sender.sign_key.public_key()
    plain = signature + body
    padded = pad(plain)
    key = ChaCha20Poly1305.generate_key()
    sealed = ChaCha20Poly1305(key).encrypt(CONTENT_NONCE, padded, header)
    parts: dict[str, Case] = {
        "Ed25519 sign": lambda: sender.sign_key.sign(signed),
        "Ed25519 verify": lambda: verify_key.verify(signature, signed),
        # A fresh key per message, so making the cipher object is part of the primitive.
        "AEAD encrypt": lambda: ChaCha20Poly1305(key).encrypt(CONTENT_NONCE, padded, header),
        "AEAD decrypt": lambda: ChaCha20Poly1305(key).decrypt(CONTENT_NONCE, sealed, header),
        "pad": lambda: pad(plain),
        "unpad": lambda: unpad(padded),
        "body schema check": lambda: decode_body(TYPE, body),
        "content hash": lambda: hashlib.sha256(ENVELOPE_HASH_LABEL + header + sealed).digest(),
    }
    return {primitive_row(part, label): fn for part, fn in parts.items()}


def hpke_cases(sender: Node, rcpt: Node) -> dict[str, Case]:
    key = ChaCha20Poly1305.generate_key()
    info = hpke_info(sender.identity.node_id, rcpt.identity.node_id, os.urandom(16))
    public = rcpt.enc_key.public_key()
    slot = SUITE.encrypt(key, public, info)
    return {
        HPKE_SEAL: lambda: SUITE.encrypt(key, public, info),
        HPKE_OPEN: lambda: SUITE.decrypt(slot, rcpt.enc_key, info),
    }


def envelope_cases(sender: Node, rcpts: list[Node], sc: Scenario, body: bytes) -> dict[str, Case]:
    """Seal to ``rcpts[:n]``; open the copy a node delivers to the first (only its own slot)."""
    publics = [r.identity.public for r in rcpts[: sc.recipients]]
    me = rcpts[0].identity
    env = seal(sender.identity, publics, TYPE, body, now=NOW, ttl=TTL)
    data = env.for_recipient(me.node_id).encode()
    sender_of = directory(sender)
    open_envelope(data, me, sender_of=sender_of, now=NOW)  # fail here, not inside the timing
    return {
        sc.seal_row: lambda: seal(sender.identity, publics, TYPE, body, now=NOW, ttl=TTL).encode(),
        sc.open_row: lambda: open_envelope(data, me, sender_of=sender_of, now=NOW),
    }


def keystore_cases() -> dict[str, Case]:
    secret = os.urandom(64)
    files = {p: seal_keystore(secret, PASSPHRASE, profile=p) for p in KEYSTORE_PROFILES}
    return {f"keystore unlock, argon2id {p}": unlock(f) for p, f in files.items()}


def unlock(keystore: bytes) -> Case:
    return lambda: open_keystore(keystore, PASSPHRASE)


def ratios(stats: Mapping[str, Stat]) -> list[Ratio]:
    def us(*rows: str) -> float:
        return sum(stats[row].median_us for row in rows)

    out = []
    for sc in SCENARIOS:
        hpke = sc.recipients * us(HPKE_SEAL)  # one key slot per recipient
        seal_raw = hpke + us(*(primitive_row(p, sc.body) for p in SEAL_PARTS))
        open_raw = us(HPKE_OPEN, *(primitive_row(p, sc.body) for p in OPEN_PARTS))
        required = us(*(primitive_row(p, sc.body) for p in REQUIRED_PARTS))
        seal_us, open_us = us(sc.seal_row), us(sc.open_row)
        both, raw = seal_us + open_us, seal_raw + open_raw
        out.append(
            Ratio(sc, seal_us / seal_raw, open_us / open_raw, both / raw, both / (raw + required))
        )
    return out


@dataclass(frozen=True)
class Results:
    primitives: dict[str, Stat]  # raw primitives and the required non-primitive work
    envelope: dict[str, Stat]
    keystore: dict[str, Stat]
    body_sizes: dict[str, int]


def collect(plan: Plan) -> Results:
    """One interleaved run of primitives and envelope rows, then the keystore unlocks."""
    sender, *rcpts = (Node.generate() for _ in range(5))
    body_of = bodies()
    primitives = hpke_cases(sender, rcpts[0])
    for label, body in body_of.items():
        primitives.update(primitive_cases(sender, rcpts[0], label, body))
    envelope: dict[str, Case] = {}
    for sc in SCENARIOS:
        envelope.update(envelope_cases(sender, rcpts, sc, body_of[sc.body]))
    stats = measure({**primitives, **envelope}, plan)
    kdf_plan = Plan(rounds=1 if plan is QUICK else 5, batch_seconds=0.0, budget_seconds=5.0)
    return Results(
        primitives={k: stats[k] for k in primitives},
        envelope={k: stats[k] for k in envelope},
        keystore=measure(keystore_cases(), kdf_plan, max_ops=1),
        body_sizes={label: len(body) for label, body in body_of.items()},
    )


def libraries() -> str:
    names = ("cryptography", "pynacl", "msgspec")
    return ", ".join(f"{n} {version(n)}" for n in names) + f" ({backend.openssl_version_text()})"


def report(res: Results) -> str:
    sized = ", ".join(f"{label} = {size} B" for label, size in res.body_sizes.items())
    lines = [
        "crypto: seal/open vs the raw primitives they are built from. Figures are CPU-time",
        "medians of batches (wall-time median beside them); spread = (max - min) / median.",
        f"bodies: {sized}; {libraries()}",
        "",
        format_table(res.primitives, "raw primitive (and required work)"),
        "",
        format_table(res.envelope, "borderlink envelope"),
        "",
        f"ratios: envelope / sum of its raw primitives (target for seal+open: <= {TARGET_RATIO}x);",
        "        last column adds the body schema check and content hash to the sum",
    ]
    for r in ratios({**res.primitives, **res.envelope}):
        verdict = "ok" if r.both <= TARGET_RATIO else "OVER TARGET"
        lines.append(
            f"  {r.scenario.name:<26}  seal {r.seal:4.2f}x  open {r.open:4.2f}x  "
            f"seal+open {r.both:4.2f}x  {verdict:<11}  with required work {r.required:4.2f}x"
        )
    lines += ["", format_table(res.keystore, "keystore (paid by every CLI unlock)")]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    plan = QUICK if getattr(args, "quick", False) else FULL
    return report(collect(plan))
