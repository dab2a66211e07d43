"""C2SP signed notes (https://c2sp.org/signed-note): the envelope of checkpoints and cosignatures.

See AUDIT-FORMATS.md section 2 for the exact bytes. Parsing is strict where the spec leaves room:
base64 must be canonical (re-encoding gives the same text), so one signature has one spelling, and a
note carries at most ``MAX_SIGNATURES`` lines so a hostile note cannot make us verify forever.

Verification follows the spec's rules: signatures from unknown keys are ignored; a signature whose
(name, key ID) matches a known key must verify or the whole note is rejected; at least one must
verify. ``verify_note`` returns only the signatures that verified, so callers cannot mistake an
ignored line for a trusted one.

Errors (all ``AuditError``, see protocol/errors.py):

    AuditError
    ├── MalformedNote       not a well-formed signed note (or a text/name that cannot be signed)
    ├── BadVerifierKey      a verifier key string that does not parse or whose ID does not match
    ├── BadNoteSignature    a signature by a known key does not verify
    └── UnverifiedNote      no signature by a known key
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode, b64encode
from collections.abc import Iterable
from hashlib import sha256
from typing import Protocol, Self

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import AuditError

SIG_PREFIX = "\u2014 "  # em dash, space
ALG_ED25519 = 0x01  # signed-note signature type identifier bytes
ALG_COSIGNATURE_V1 = 0x04
KEY_ID_SIZE = 4
MAX_SIGNATURES = 100  # the spec asks for at least 16; Go's sumdb/note stops at 100
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


class MalformedNote(AuditError):
    """The bytes are not a well-formed signed note."""


class BadVerifierKey(AuditError):
    """A verifier key string is malformed or its key ID does not match its key."""


class BadNoteSignature(AuditError):
    """A signature line from a known key failed to verify."""


class UnverifiedNote(AuditError):
    """No signature line came from a known key and verified."""


class Signature(msgspec.Struct, frozen=True):
    """One signature line: ``— <name> base64(key_id || signature)``."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        encoded = b64encode(self.key_id + self.signature).decode("ascii")
        return f"{SIG_PREFIX}{self.name} {encoded}\n"


class Note(msgspec.Struct, frozen=True):
    """Note text (ending in a newline) and its signature lines, in order of appearance."""

    text: str
    signatures: tuple[Signature, ...]


class NoteVerifier(Protocol):
    """One trusted key. ``verify`` gets the note text and the signature bytes after the key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || alg || public key)[:4], the spec's recommended key ID."""
    return sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:KEY_ID_SIZE]


def is_valid_name(name: str) -> bool:
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and all(c >= " " for c in name)
    )


def decode_base64(text: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), padded and canonical; raises ValueError otherwise."""
    try:
        raw = b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc
    if b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _to_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNote("signed note is not valid UTF-8") from exc
    try:
        data.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates in a str
        raise MalformedNote("signed note is not valid UTF-8") from exc
    return data


def check_text(text: str) -> None:
    """Raise MalformedNote unless ``text`` can be the text of a note."""
    _to_text(text)
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    if any(c < " " and c != "\n" for c in text):
        raise MalformedNote("note text contains a control character")


def parse_note(data: str | bytes) -> Note:
    """Split a signed note into text and signature lines without verifying anything."""
    data = _to_text(data)
    if any(c < " " and c != "\n" for c in data):
        raise MalformedNote("signed note contains a control character")
    split = data.rfind("\n\n")
    if split < 0:
        raise MalformedNote("signed note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNote("signed note must end with a newline after a signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"signed note has more than {MAX_SIGNATURES} signatures")
    return Note(text=text, signatures=tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(SIG_PREFIX):
        raise MalformedNote("signature line does not start with an em dash and a space")
    name, _, encoded = line[len(SIG_PREFIX) :].partition(" ")
    if not is_valid_name(name):
        raise MalformedNote(f"signature line has an invalid key name {name!r}")
    try:
        raw = decode_base64(encoded)
    except ValueError as exc:
        raise MalformedNote(f"signature by {name} is {exc}") from exc
    if len(raw) <= KEY_ID_SIZE:
        raise MalformedNote(f"signature by {name} is too short")
    return Signature(name=name, key_id=raw[:KEY_ID_SIZE], signature=raw[KEY_ID_SIZE:])


def format_note(note: Note) -> str:
    if not note.signatures:
        raise MalformedNote("a signed note needs at least one signature")
    check_text(note.text)
    return note.text + "\n" + "".join(sig.line() for sig in note.signatures)


def verify_note(data: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse and verify; the returned note keeps only the signatures that verified."""
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    text = note.text.encode("utf-8")
    verified: list[Signature] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # unknown key, even if it shares the name or the ID with a known one
        if not verifier.verify(text, sig.signature):
            raise BadNoteSignature(f"signature by {sig.name} does not verify")
        if sig not in verified:
            verified.append(sig)
    if not verified:
        raise UnverifiedNote("note is not signed by any trusted key")
    return Note(text=note.text, signatures=tuple(verified))


def parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    """Split ``<name>+<hex key ID>+<base64(alg || public key)>`` into (name, alg, public key),
    checking that the key ID is the one the name and key produce."""
    name, _, rest = vkey.partition("+")
    hex_id, _, encoded = rest.partition("+")
    if not is_valid_name(name):
        raise BadVerifierKey("verifier key has an invalid key name")
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise BadVerifierKey("verifier key ID must be 8 lowercase hex digits")
    try:
        raw = decode_base64(encoded)
    except ValueError as exc:
        raise BadVerifierKey(f"verifier key material is {exc}") from exc
    if len(raw) < 2:
        raise BadVerifierKey("verifier key material is empty")
    alg, public = raw[0], raw[1:]
    if key_id(name, alg, public).hex() != hex_id:
        raise BadVerifierKey(f"verifier key ID {hex_id} does not match the key for {name}")
    return name, alg, public


def format_vkey(name: str, alg: int, public_key: bytes) -> str:
    encoded = b64encode(bytes([alg]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, alg, public_key).hex()}+{encoded}"


def load_ed25519_public(public: bytes, what: str) -> Ed25519PublicKey:
    if len(public) != 32:
        raise BadVerifierKey(f"{what} must be a 32-byte Ed25519 public key")
    try:
        return Ed25519PublicKey.from_public_bytes(public)
    except ValueError as exc:
        raise BadVerifierKey(f"{what} is not a valid Ed25519 public key") from exc


class Verifier:
    """An Ed25519 (type 0x01) note verifier: a trusted (name, public key) pair."""

    alg: int = ALG_ED25519

    def __init__(self, name: str, public_key: Ed25519PublicKey | bytes) -> None:
        if not is_valid_name(name):
            raise BadVerifierKey(f"invalid key name {name!r}")
        if isinstance(public_key, Ed25519PublicKey):
            public_key = public_key_bytes(public_key)
        self._public = load_ed25519_public(public_key, f"key for {name}")
        self._raw = public_key
        self._name = name
        self._key_id = key_id(name, self.alg, public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        name, alg, public = parse_vkey(vkey)
        if alg != cls.alg:
            raise BadVerifierKey(f"key for {name} has type 0x{alg:02x}, want 0x{cls.alg:02x}")
        return cls(name, public)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def vkey(self) -> str:
        return format_vkey(self._name, self.alg, self._raw)

    def ed25519_verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def verify(self, text: bytes, signature: bytes) -> bool:
        return len(signature) == 64 and self.ed25519_verify(text, signature)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """A signed note with one Ed25519 signature over ``text`` (which must end with a newline)."""
    check_text(text)
    if not is_valid_name(name):
        raise MalformedNote(f"invalid key name {name!r}")
    public = public_key_bytes(private_key.public_key())
    sig = Signature(
        name=name,
        key_id=key_id(name, ALG_ED25519, public),
        signature=private_key.sign(text.encode("utf-8")),
    )
    return format_note(Note(text=text, signatures=(sig,)))
