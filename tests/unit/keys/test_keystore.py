"""The encrypted keystore: round trips, tampering, hostile files, and the file on disk."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keys import keystore
from keys.keystore import (
    change_passphrase,
    open_keystore,
    read_keystore_file,
    seal_keystore,
    write_keystore_file,
)
from protocol.errors import InsecureKeystore, KeystoreError, UsageError, WrongPassphrase

SECRET = bytes(range(64))  # Ed25519 seed || X25519 private key, in shape
PASSPHRASE = b"correct horse battery staple"
WRONG = "wrong passphrase, or the keystore file is damaged"


@pytest.fixture
def weak_profile(monkeypatch: pytest.MonkeyPatch) -> str:
    """libsodium's minimum Argon2id cost: lets a test run the KDF thousands of times."""
    monkeypatch.setitem(keystore.PROFILES, "weak", (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN))
    return "weak"


@pytest.fixture
def no_kdf(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to fail the test if the KDF runs: hostile files must be refused before it."""

    def boom(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("KDF ran on a file that should have been refused")

    return lambda: monkeypatch.setattr(keystore, "_derive_key", boom)


def edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """Change a decoded field and re-encode canonically (so only the field differs)."""
    doc = msgspec.json.decode(data, type=keystore.KeystoreDocument)
    raw = msgspec.to_builtins(doc)
    change(raw)
    return msgspec.json.encode(msgspec.convert(raw, keystore.KeystoreDocument)) + b"\n"


def flip(b64: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def assert_no_secrets(exc: BaseException) -> None:
    shown = " ".join(str(x) for x in (str(exc), repr(exc), getattr(exc, "hint", ""), exc.args))
    for needle in (SECRET, PASSPHRASE):
        for form in (needle, needle.hex().encode(), base64.b64encode(needle)):
            assert form.decode("latin-1") not in shown
    assert "\n" not in str(exc)


# ---- seal / open ------------------------------------------------------------------------------


def test_round_trip_interactive() -> None:
    data = seal_keystore(SECRET, PASSPHRASE, profile="interactive")
    assert open_keystore(data, PASSPHRASE) == SECRET


def test_default_profile_is_moderate_and_stored_in_the_file() -> None:
    data = seal_keystore(SECRET, PASSPHRASE)
    doc = json.loads(data)
    assert (doc["kdf"]["opslimit"], doc["kdf"]["memlimit"]) == keystore.PROFILES["moderate"]
    assert open_keystore(data, PASSPHRASE) == SECRET


def test_file_format() -> None:
    data = seal_keystore(SECRET, PASSPHRASE, profile="interactive", salt=b"s" * 16, nonce=b"n" * 24)
    assert data == seal_keystore(
        SECRET, PASSPHRASE, profile="interactive", salt=b"s" * 16, nonce=b"n" * 24
    )
    assert data.endswith(b"}\n") and data.count(b"\n") == 1
    doc = json.loads(data)
    assert list(doc) == ["format", "version", "kdf", "aead", "nonce", "ciphertext"]
    assert doc["format"] == "borderlink-keystore" and doc["version"] == 1
    assert doc["aead"] == "xchacha20poly1305"
    assert doc["kdf"] == {
        "alg": "argon2id",
        "opslimit": argon2id.OPSLIMIT_INTERACTIVE,
        "memlimit": argon2id.MEMLIMIT_INTERACTIVE,
        "salt": base64.b64encode(b"s" * 16).decode(),
    }
    assert base64.b64decode(doc["nonce"]) == b"n" * 24
    assert len(base64.b64decode(doc["ciphertext"])) == len(SECRET) + 16


def test_fresh_salt_and_nonce_each_time(weak_profile: str) -> None:
    a, b = (json.loads(seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)) for _ in "ab")
    assert a["kdf"]["salt"] != b["kdf"]["salt"] and a["nonce"] != b["nonce"]


def test_wrong_passphrase() -> None:
    data = seal_keystore(SECRET, PASSPHRASE, profile="interactive")
    with pytest.raises(WrongPassphrase) as info:
        open_keystore(data, PASSPHRASE + b"!")
    assert str(info.value) == WRONG
    assert_no_secrets(info.value)


def test_change_passphrase(weak_profile: str) -> None:
    old = seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)
    new = change_passphrase(old, PASSPHRASE, b"new passphrase", profile="interactive")
    assert open_keystore(new, b"new passphrase") == SECRET
    with pytest.raises(WrongPassphrase):
        open_keystore(new, PASSPHRASE)
    assert json.loads(new)["kdf"]["salt"] != json.loads(old)["kdf"]["salt"]
    with pytest.raises(WrongPassphrase):
        change_passphrase(old, b"not it", b"x", profile=weak_profile)


def test_bad_seal_arguments() -> None:
    with pytest.raises(UsageError, match="unknown keystore profile 'fast'"):
        seal_keystore(SECRET, PASSPHRASE, profile="fast")
    with pytest.raises(UsageError, match="empty passphrase"):
        seal_keystore(SECRET, b"", profile="interactive")
    with pytest.raises(UsageError, match="salt must be 16 bytes"):
        seal_keystore(SECRET, PASSPHRASE, profile="interactive", salt=b"short")


# ---- tampering --------------------------------------------------------------------------------


def test_every_bit_flip_of_the_file_is_refused(weak_profile: str) -> None:
    data = seal_keystore(SECRET[:8], PASSPHRASE, profile=weak_profile)
    for i in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[i // 8] ^= 1 << (i % 8)
        with pytest.raises(KeystoreError) as info:
            open_keystore(bytes(damaged), PASSPHRASE)
        assert_no_secrets(info.value)


@pytest.mark.parametrize("field", ["salt", "nonce", "ciphertext"])
def test_every_bit_flip_of_a_binary_field_is_wrong_passphrase(
    weak_profile: str, field: str
) -> None:
    data = seal_keystore(SECRET[:8], PASSPHRASE, profile=weak_profile)
    doc = json.loads(data)
    value = doc["kdf"]["salt"] if field == "salt" else doc[field]
    for bit in range(len(base64.b64decode(value)) * 8):

        def change(raw: dict[str, Any], bit: int = bit) -> None:
            target = raw["kdf"] if field == "salt" else raw
            target[field] = flip(value, bit)

        with pytest.raises(WrongPassphrase, match=WRONG):
            open_keystore(edit(data, change), PASSPHRASE)


def test_stored_parameters_are_bound(weak_profile: str) -> None:
    """Each KDF parameter changed within range, or salts swapped between files, fails the tag."""
    data = seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)
    other = json.loads(seal_keystore(SECRET, PASSPHRASE, profile=weak_profile))
    changes: list[Callable[[dict[str, Any]], None]] = [
        lambda raw: raw["kdf"].update(opslimit=raw["kdf"]["opslimit"] + 1),
        lambda raw: raw["kdf"].update(memlimit=raw["kdf"]["memlimit"] + 1024),
        lambda raw: raw["kdf"].update(salt=other["kdf"]["salt"]),
        lambda raw: raw.update(nonce=other["nonce"]),
    ]
    for change in changes:
        with pytest.raises(WrongPassphrase):
            open_keystore(edit(data, change), PASSPHRASE)


def test_downgraded_parameters_are_refused(weak_profile: str) -> None:
    """An interactive-profile file relabelled with cheaper parameters does not open."""
    data = seal_keystore(SECRET, PASSPHRASE, profile="interactive")
    cheap = edit(data, lambda raw: raw["kdf"].update(opslimit=1, memlimit=argon2id.MEMLIMIT_MIN))
    with pytest.raises(WrongPassphrase):
        open_keystore(cheap, PASSPHRASE)


def test_noncanonical_base64_padding_bits_are_refused(weak_profile: str) -> None:
    """Regression: base64 decoders ignore the pad bits of "...w==" vs "...x==", hiding an edit."""
    data = seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)
    salt = json.loads(data)["kdf"]["salt"]
    assert salt.endswith("==")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(salt[-3])
    twin = salt[:-3] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[last ^ 1]
    assert base64.b64decode(twin + "==") == base64.b64decode(salt)
    with pytest.raises(KeystoreError, match="not in canonical form"):
        open_keystore(data.replace(salt.encode(), (twin + "==").encode()), PASSPHRASE)


def test_invalid_utf8_in_a_field_name_is_keystore_error(weak_profile: str) -> None:
    """Regression: msgspec raises UnicodeDecodeError (not DecodeError) for a bad key byte."""
    data = seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)
    with pytest.raises(KeystoreError, match="damaged or not a keystore"):
        open_keystore(data.replace(b'"format"', b'"\xe6ormat"'), PASSPHRASE)


def test_reformatted_file_is_refused(weak_profile: str) -> None:
    data = seal_keystore(SECRET, PASSPHRASE, profile=weak_profile)
    pretty = json.dumps(json.loads(data), indent=2).encode()
    with pytest.raises(KeystoreError, match="not in canonical form"):
        open_keystore(pretty, PASSPHRASE)


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [
        (0, argon2id.MEMLIMIT_MIN),
        (keystore.MAX_OPSLIMIT + 1, argon2id.MEMLIMIT_MIN),
        (2**32 - 1, argon2id.MEMLIMIT_MIN),
        (-1, argon2id.MEMLIMIT_MIN),
        (1, argon2id.MEMLIMIT_MIN - 1),
        (1, 2**30 + 1),
        (1, argon2id.MEMLIMIT_MAX),
    ],
)
def test_absurd_parameters_refused_before_the_kdf(
    weak_profile: str, no_kdf: Callable[[], None], opslimit: int, memlimit: int
) -> None:
    valid = seal_keystore(SECRET, PASSPHRASE, profile="weak", salt=b"s" * 16, nonce=b"n" * 24)
    hostile = edit(valid, lambda raw: raw["kdf"].update(opslimit=opslimit, memlimit=memlimit))
    no_kdf()
    with pytest.raises(KeystoreError, match=r"^keystore parameters out of range$"):
        open_keystore(hostile, PASSPHRASE)


def _sample(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="age"), "not a borderlink keystore file"),
        (lambda d: d.update(version=2), "unsupported keystore version 2"),
        (lambda d: d["kdf"].update(alg="scrypt"), "unsupported keystore algorithms"),
        (lambda d: d.update(aead="aes-gcm"), "unsupported keystore algorithms"),
        (lambda d: d["kdf"].update(salt="AAAA"), "bad salt or nonce length"),
        (lambda d: d.update(nonce="AAAA"), "bad salt or nonce length"),
        (lambda d: d.update(ciphertext="AAAA"), "ciphertext too short"),
        (
            lambda d: d.update(extra=1),
            "(extra: is not a field here (known fields: format, version, kdf, aead, nonce, ciphertext))",
        ),
        (lambda d: d.pop("nonce"), "(nonce: is required)"),
        (lambda d: d.update(nonce="!!"), "(nonce: must be base64 text)"),
        (
            lambda d: d["kdf"].update(opslimit="2"),
            "(kdf.opslimit: must be a whole number, not text)",
        ),
    ],
)
def test_structural_damage_names_the_problem(
    weak_profile: str,
    no_kdf: Callable[[], None],
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    doc = _sample(seal_keystore(SECRET, PASSPHRASE, profile="weak"))
    change(doc)
    no_kdf()
    with pytest.raises(KeystoreError) as info:
        open_keystore(json.dumps(doc).encode(), PASSPHRASE)
    assert type(info.value) is KeystoreError
    assert message in str(info.value)
    assert_no_secrets(info.value)


@pytest.mark.parametrize("data", [b"", b"{}", b"null", b"[]", b"\xff\xfe", b"{" * 10_000])
def test_not_a_keystore(data: bytes) -> None:
    with pytest.raises(KeystoreError) as info:
        open_keystore(data, PASSPHRASE)
    assert type(info.value) is KeystoreError
    assert len(str(info.value)) < 200


def test_too_large(no_kdf: Callable[[], None]) -> None:
    no_kdf()
    with pytest.raises(KeystoreError, match="too large"):
        open_keystore(b" " * (keystore.MAX_FILE_BYTES + 1), PASSPHRASE)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_random_bytes_only_raise_keystore_error(data: bytes) -> None:
    with pytest.raises(KeystoreError):
        open_keystore(data, PASSPHRASE)


@settings(max_examples=150, deadline=None)
@given(doc=json_values, key=st.sampled_from(["format", "version", "kdf", "aead", "nonce", "x"]))
def test_random_json_only_raises_keystore_error(doc: Any, key: str) -> None:
    for candidate in (doc, {key: doc}):
        with pytest.raises(KeystoreError):
            open_keystore(json.dumps(candidate).encode(), PASSPHRASE)


# ---- the file on disk -------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, to prove we do not depend on it."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_write_then_read(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "keystore.json"
    data = seal_keystore(SECRET, PASSPHRASE, profile="interactive")
    write_keystore_file(path, data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keystore_file(path) == data
    assert open_keystore(read_keystore_file(path), PASSPHRASE) == SECRET
    assert os.listdir(tmp_path) == ["keystore.json"]  # no temp file left behind


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    write_keystore_file(path, b"first")
    with pytest.raises(KeystoreError, match="already exists; refusing to overwrite"):
        write_keystore_file(path, b"second")
    assert path.read_bytes() == b"first"
    write_keystore_file(path, b"second", overwrite=True)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["keystore.json"]


def test_overwrite_replaces_a_loose_file_with_a_0600_one(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_keystore_file(path, b"new", overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(
        KeystoreError, match=r"^cannot write keystore .*: no such file or directory"
    ):
        write_keystore_file(tmp_path / "nope" / "keystore.json", b"x")


def test_read_refuses_group_or_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    write_keystore_file(path, b"x")
    path.chmod(0o644)
    with pytest.raises(InsecureKeystore) as info:
        read_keystore_file(path)
    assert str(info.value) == (
        f"keystore {path} is readable by group or others (mode 0644); run: chmod 600 {path}"
    )


@pytest.mark.parametrize(
    ("mode", "word"), [(0o640, "readable"), (0o604, "readable"), (0o620, "accessible")]
)
def test_read_refuses_any_group_or_other_bit(tmp_path: Path, mode: int, word: str) -> None:
    path = tmp_path / "keystore.json"
    write_keystore_file(path, b"x")
    path.chmod(mode)
    with pytest.raises(
        InsecureKeystore, match=f"is {word} by group or others \\(mode {mode:04o}\\)"
    ):
        read_keystore_file(path)


def test_read_missing_file_hints_at_init(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError) as info:
        read_keystore_file(tmp_path / "keystore.json")
    assert str(info.value) == f"no keystore at {tmp_path / 'keystore.json'}"
    assert info.value.hint is not None and "borderlink init" in info.value.hint


def test_read_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "keystore.json").mkdir(mode=0o700)
    with pytest.raises(KeystoreError, match="is not a regular file"):
        read_keystore_file(tmp_path / "keystore.json")


def test_read_refuses_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    write_keystore_file(path, b" " * (keystore.MAX_FILE_BYTES + 1))
    with pytest.raises(KeystoreError, match="too large"):
        read_keystore_file(path)
