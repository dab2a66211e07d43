"""C2SP signed notes: the spec's example, round trips, and every malformed shape we refuse."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.signednote import (
    MAX_SIGNATURES,
    BadNoteSignature,
    BadVerifierKey,
    MalformedNote,
    Note,
    UnverifiedNote,
    Verifier,
    format_note,
    key_id,
    parse_note,
    public_key_bytes,
    sign_note,
    verify_note,
)
from tests.vectors import load_json, shared_vectors

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
NAME = "borderlink.example/log"
TEXT = "borderlink.example/log\n42\nsome text\n"


def _verifier(key: Ed25519PrivateKey = KEY, name: str = NAME) -> Verifier:
    return Verifier(name, key.public_key())


@pytest.fixture
def example() -> dict[str, Any]:
    vector: dict[str, Any] = load_json(shared_vectors("signed-note") / "example.json")
    assert vector["expect"] == "verifies"
    return vector


def test_spec_example_verifies(example: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(example["verifier_key"])
    note = verify_note(example["note"], [verifier])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.signatures] == ["example.com/foo"]
    assert verifier.vkey == example["verifier_key"]
    assert note.signatures[0].key_id == verifier.key_id == bytes.fromhex("530d903a")


def test_spec_example_tampered_text_is_rejected(example: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(example["verifier_key"])
    for tampered in (
        example["note"].replace("example message", "example messagf"),
        example["note"].replace("This", "this"),
        "x" + example["note"],
    ):
        with pytest.raises(BadNoteSignature):
            verify_note(tampered, [verifier])


def test_spec_example_tampered_signature_is_rejected(example: dict[str, Any]) -> None:
    verifier = Verifier.from_vkey(example["verifier_key"])
    note = parse_note(example["note"])
    sig = note.signatures[0]
    flipped = bytearray(sig.signature)
    flipped[10] ^= 1
    bad = Note(note.text, (type(sig)(sig.name, sig.key_id, bytes(flipped)),))
    with pytest.raises(BadNoteSignature):
        verify_note(format_note(bad), [verifier])


def test_spec_example_with_another_key_is_unverified(example: dict[str, Any]) -> None:
    with pytest.raises(UnverifiedNote):
        verify_note(example["note"], [_verifier(name="example.com/foo")])


def test_sign_and_verify_round_trip() -> None:
    signed = sign_note(TEXT, NAME, KEY)
    assert signed.startswith(TEXT + "\n\u2014 " + NAME + " ")
    note = verify_note(signed, [_verifier()])
    assert note.text == TEXT
    assert verify_note(signed.encode(), [_verifier()]) == note


def test_unknown_keys_are_ignored_and_only_verified_signatures_returned() -> None:
    ours = parse_note(sign_note(TEXT, NAME, KEY)).signatures[0]
    # Same name, other key; other name, same key: both unknown, neither checked.
    theirs = parse_note(sign_note(TEXT, NAME, OTHER)).signatures[0]
    renamed = parse_note(sign_note(TEXT, "other.example/w", KEY)).signatures[0]
    garbage = type(ours)("unknown.example", b"\x00\x01\x02\x03", b"\xff" * 64)
    data = format_note(Note(TEXT, (garbage, theirs, renamed, ours)))
    assert verify_note(data, [_verifier()]).signatures == (ours,)


def test_a_failing_signature_from_a_known_key_rejects_the_whole_note() -> None:
    good = parse_note(sign_note(TEXT, NAME, KEY)).signatures[0]
    other = parse_note(sign_note(TEXT, "w.example", OTHER)).signatures[0]
    forged = type(other)(other.name, other.key_id, good.signature)
    data = format_note(Note(TEXT, (good, forged)))
    with pytest.raises(BadNoteSignature, match=r"w\.example"):
        verify_note(data, [_verifier(), _verifier(OTHER, "w.example")])


def test_signature_limit() -> None:
    sig = parse_note(sign_note(TEXT, NAME, KEY)).signatures[0]
    verify_note(format_note(Note(TEXT, (sig,) * MAX_SIGNATURES)), [_verifier()])
    with pytest.raises(MalformedNote, match="more than 100"):
        parse_note(format_note(Note(TEXT, (sig,) * (MAX_SIGNATURES + 1))))


def _signed() -> str:
    return sign_note(TEXT, NAME, KEY)


def _b64_of_line() -> str:
    return _signed().rsplit(" ", 1)[1].rstrip("\n")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (TEXT + "\u2014 " + NAME + " AAAA\n", "blank line"),
        (_signed().rstrip("\n"), "end with a newline"),
        (_signed().replace("\u2014", "-"), "em dash"),
        (_signed().replace("\u2014 ", "\u2014  "), "key name"),
        (_signed().replace(NAME + " ", "a+b "), "key name"),
        (_signed().replace(_b64_of_line(), "!!!!"), "base64"),
        (_signed().replace(_b64_of_line(), _b64_of_line().rstrip("=")), "base64"),
        (_signed().replace(_b64_of_line(), "AAAAAA=="), "too short"),
        (_signed().replace(_b64_of_line(), _b64_of_line() + " extra"), "base64"),
        (TEXT + "\n", "end with a newline"),
        ("text\r\n\n" + _signed().split("\n\n")[1], "control character"),
        ("text\x00\n\n" + _signed().split("\n\n")[1], "control character"),
        ("\ud800\n\n" + _signed().split("\n\n")[1], "UTF-8"),
        (TEXT, "blank line"),
    ],
)
def test_malformed_notes_are_rejected(data: str, why: str) -> None:
    with pytest.raises(MalformedNote, match=why):
        verify_note(data, [_verifier()])


def test_non_canonical_base64_is_rejected() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    canonical = _b64_of_line()
    # 68 bytes end in "xyz=": the last data character carries 2 unused bits, and setting one of
    # them spells the same bytes a second way.
    assert canonical.endswith("=") and not canonical.endswith("==")
    twin = canonical[:-2] + alphabet[alphabet.index(canonical[-2]) | 1] + "="
    assert base64.b64decode(twin) == base64.b64decode(canonical) and twin != canonical
    with pytest.raises(MalformedNote, match="canonical"):
        parse_note(_signed().replace(canonical, twin))


def test_invalid_utf8_bytes_are_rejected() -> None:
    with pytest.raises(MalformedNote, match="UTF-8"):
        parse_note(b"\xff\xfe\n\n" + _signed().split("\n\n")[1].encode())


@pytest.mark.parametrize("text", ["no newline", "tab\there\n", "bell\x07\n"])
def test_unsignable_text_is_refused(text: str) -> None:
    with pytest.raises(MalformedNote):
        sign_note(text, NAME, KEY)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "nbsp\u00a0"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(MalformedNote):
        sign_note(TEXT, name, KEY)
    with pytest.raises(BadVerifierKey):
        Verifier(name, KEY.public_key())


def test_vkey_round_trip_and_key_id() -> None:
    verifier = _verifier()
    public = public_key_bytes(KEY.public_key())
    assert verifier.key_id == key_id(NAME, 0x01, public)
    name, hex_id, encoded = verifier.vkey.split("+", 2)
    assert (name, hex_id) == (NAME, verifier.key_id.hex())
    assert base64.b64decode(encoded) == b"\x01" + public
    assert Verifier.from_vkey(verifier.vkey).key_id == verifier.key_id


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v.replace("+", "+0", 1),  # 9 hex digits
        lambda v: v.split("+")[0] + "+00000000+" + v.split("+", 2)[2],  # wrong ID
        lambda v: v.rsplit("+", 1)[0] + "+" + base64.b64encode(b"\x04" + b"k" * 32).decode(),
        lambda v: v[:-4],  # truncated key material
        lambda v: "+" + v,  # empty name
    ],
)
def test_bad_vkeys_are_refused(mangle: Any) -> None:
    with pytest.raises(BadVerifierKey):
        Verifier.from_vkey(mangle(_verifier().vkey))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), max_size=30),
        min_size=1,
        max_size=5,
    )
)
def test_any_clean_text_round_trips(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    note = verify_note(sign_note(text, NAME, KEY), [_verifier()])
    assert note.text == text
