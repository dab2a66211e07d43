"""The node's secret keys, encrypted at rest under a passphrase.

The secret is an opaque byte string chosen by the caller (e.g. Ed25519 seed || X25519 private key).
It is sealed with XChaCha20-Poly1305 under a key derived by Argon2id from the passphrase. The file
is one JSON document::

    {"format":"borderlink-keystore","version":1,
     "kdf":{"alg":"argon2id","opslimit":2,"memlimit":67108864,"salt":"<b64, 16 bytes>"},
     "aead":"xchacha20poly1305","nonce":"<b64, 24 bytes>","ciphertext":"<b64, secret + 16>"}

Why each choice:
- The KDF parameters live in the file, so opening never guesses and profiles can change later.
  They come from a file an attacker may have edited, so absurd values are refused *before* the KDF
  runs (a 4-billion-pass or 4 TiB Argon2id call is a denial of service, not a keystore).
- The AEAD's associated data is the canonical encoding of everything but nonce and ciphertext
  (format, version, kdf, aead), so no header field can be changed without failing the tag.
- The document must be byte-for-byte the canonical encoding we write (one trailing newline
  allowed). Base64 decoders ignore stray padding bits; requiring the canonical form means *every*
  modification of the file is detected, not only those that change a decoded value.
- A wrong passphrase and a damaged ciphertext are indistinguishable by design; both give
  ``WrongPassphrase``. Structural problems give ``KeystoreError`` naming the problem.

Only bytes leave this module: nothing here holds the secret or passphrase in an object whose repr
could be logged. Python cannot reliably zero memory, so we do not pretend to.

``write_keystore_file`` and ``read_keystore_file`` are the only file I/O in ``keys/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.pwhash.argon2id as argon2id

from protocol.decoding import Decoder
from protocol.errors import (
    InsecureKeystore,
    KeystoreError,
    UsageError,
    ValidationError,
    WrongPassphrase,
    os_reason,
)

FORMAT = "borderlink-keystore"
BACKUP_FORMAT = "borderlink-key-backup"  # the same document, its own name (PROTOCOL.md 13.7)
VERSION = 1
KDF_ALG = "argon2id"
AEAD_ALG = "xchacha20poly1305"
KEY_LEN = 32
SALT_LEN = 16
NONCE_LEN = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_LEN = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
MAX_FILE_BYTES = 64 * 1024  # a keystore is a few hundred bytes; refuse to parse megabytes

# name -> (opslimit, memlimit). "moderate" takes ~0.5 s; "interactive" ~0.05 s (tests, small boxes).
PROFILES: dict[str, tuple[int, int]] = {
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
}
# Ceilings on stored parameters. libsodium's own maxima (2**32 - 1 passes, 4 TiB) are not a limit.
MAX_OPSLIMIT = 16  # "sensitive" is 4
MAX_MEMLIMIT = 1024**3

OPEN_FAILED = "wrong passphrase, or the keystore file is damaged"


class KdfParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    alg: str
    opslimit: int
    memlimit: int
    salt: bytes


class Header(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Everything authenticated as associated data. Field order is the canonical order."""

    format: str
    version: int
    kdf: KdfParams
    aead: str


class KeystoreDocument(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str
    version: int
    kdf: KdfParams
    aead: str
    nonce: bytes
    ciphertext: bytes

    def header(self) -> Header:
        return Header(self.format, self.version, self.kdf, self.aead)


_DOCUMENT = Decoder[KeystoreDocument](KeystoreDocument, what="the file")


def seal_keystore(
    secret: bytes,
    passphrase: bytes,
    *,
    profile: str = "moderate",
    salt: bytes | None = None,
    nonce: bytes | None = None,
    format: str = FORMAT,
) -> bytes:
    """Encrypt ``secret`` under ``passphrase``; return the keystore file content.

    ``salt`` and ``nonce`` are for test vectors only; leave them ``None`` so they are random.
    """
    if profile not in PROFILES:
        raise UsageError(f"unknown keystore profile {profile!r} (choose: {', '.join(PROFILES)})")
    if not passphrase:
        raise UsageError("empty passphrase")
    salt = secrets.token_bytes(SALT_LEN) if salt is None else salt
    nonce = secrets.token_bytes(NONCE_LEN) if nonce is None else nonce
    if len(salt) != SALT_LEN or len(nonce) != NONCE_LEN:
        raise UsageError(f"salt must be {SALT_LEN} bytes and nonce {NONCE_LEN} bytes")
    opslimit, memlimit = PROFILES[profile]
    header = Header(format, VERSION, KdfParams(KDF_ALG, opslimit, memlimit, salt), AEAD_ALG)
    key = _derive_key(passphrase, header.kdf)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        secret, msgspec.json.encode(header), nonce, key
    )
    doc = KeystoreDocument(
        header.format, header.version, header.kdf, header.aead, nonce, ciphertext
    )
    return msgspec.json.encode(doc) + b"\n"


def open_keystore(data: bytes, passphrase: bytes, *, format: str = FORMAT) -> bytes:
    """Decrypt keystore file content; return the secret. Raises ``KeystoreError`` subclasses."""
    doc = _parse(data, format)
    key = _derive_key(passphrase, doc.kdf)
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            doc.ciphertext, msgspec.json.encode(doc.header()), doc.nonce, key
        )
    except nacl.exceptions.CryptoError as exc:
        raise WrongPassphrase(OPEN_FAILED) from exc


def profile_of(data: bytes) -> str:
    """The profile a keystore was sealed with, so re-sealing keeps it ("moderate" if its
    parameters are no profile's)."""
    doc = _parse(data)
    for name, (ops, mem) in PROFILES.items():
        if (doc.kdf.opslimit, doc.kdf.memlimit) == (ops, mem):
            return name
    return "moderate"


def change_passphrase(data: bytes, old: bytes, new: bytes, profile: str = "moderate") -> bytes:
    """Re-seal under a new passphrase, with a fresh salt and nonce (and possibly a new profile)."""
    return seal_keystore(open_keystore(data, old), new, profile=profile)


def _parse(data: bytes, format: str = FORMAT) -> KeystoreDocument:
    """Decode and check everything that can be checked without the passphrase."""
    if len(data) > MAX_FILE_BYTES:
        raise KeystoreError(f"keystore file is too large ({len(data)} bytes)")
    try:
        doc = _DOCUMENT.decode(data)
    except ValidationError as exc:
        raise KeystoreError(f"keystore file is damaged or not a keystore ({exc.message})") from exc
    if doc.format != format:
        what = "key backup" if format == BACKUP_FORMAT else "keystore"
        raise KeystoreError(f"not a borderlink {what} file")
    if doc.version != VERSION:
        raise KeystoreError(f"unsupported keystore version {doc.version} (this build reads 1)")
    if doc.kdf.alg != KDF_ALG or doc.aead != AEAD_ALG:
        raise KeystoreError(
            "unsupported keystore algorithms (expected argon2id, xchacha20poly1305)"
        )
    if not (argon2id.OPSLIMIT_MIN <= doc.kdf.opslimit <= min(argon2id.OPSLIMIT_MAX, MAX_OPSLIMIT)):
        raise KeystoreError("keystore parameters out of range")
    if not (argon2id.MEMLIMIT_MIN <= doc.kdf.memlimit <= min(argon2id.MEMLIMIT_MAX, MAX_MEMLIMIT)):
        raise KeystoreError("keystore parameters out of range")
    if len(doc.kdf.salt) != SALT_LEN or len(doc.nonce) != NONCE_LEN:
        raise KeystoreError("keystore file is damaged (bad salt or nonce length)")
    if len(doc.ciphertext) < TAG_LEN:
        raise KeystoreError("keystore file is damaged (ciphertext too short)")
    if msgspec.json.encode(doc) not in (data, data.removesuffix(b"\n")):
        raise KeystoreError("keystore file is damaged (not in canonical form)")
    return doc


def _derive_key(passphrase: bytes, kdf: KdfParams) -> bytes:
    try:
        return argon2id.kdf(
            KEY_LEN, passphrase, kdf.salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit
        )
    except (nacl.exceptions.RuntimeError, MemoryError) as exc:
        raise KeystoreError("could not derive the keystore key (out of memory?)") from exc


# ---- the file part --------------------------------------------------------------------------


def write_keystore_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600.

    A temp file in the same directory is created 0600 (never briefly world-readable), fsynced, then
    moved into place and the directory fsynced, so a crash leaves the old keystore or the new one,
    never half of one. Without ``overwrite`` the move is a hard link, which fails if ``path``
    exists: losing the only copy of a node's keys to a repeated ``init`` is not recoverable.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.tmp-{secrets.token_hex(8)}"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may only have narrowed it; make it exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
        _fsync_dir(directory)  # makes the rename (and the temp name's removal) durable
    except FileExistsError as exc:
        raise KeystoreError(
            f"keystore {path} already exists; refusing to overwrite it",
            hint="move the old keystore away first if you really mean to replace it",
        ) from exc
    except OSError as exc:
        raise KeystoreError(f"cannot write keystore {path}: {os_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # only still there if something failed


def _link_no_clobber(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
        os.unlink(tmp)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # The filesystem has no hard links: check-then-replace, with a small race window.
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from exc
        os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_keystore_file(path: Path) -> bytes:
    """Read a keystore file, refusing one that group or others can access (like ssh does).

    The mode is checked on the open descriptor, so the file checked is the file read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise KeystoreError(
            f"no keystore at {path}", hint="create one with 'borderlink init'"
        ) from exc
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {os_reason(exc)}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeystoreError(f"keystore {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            what = "readable" if mode & 0o044 else "accessible"
            raise InsecureKeystore(
                f"keystore {path} is {what} by group or others (mode {mode:04o}); "
                f"run: chmod 600 {path}"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise KeystoreError(f"keystore {path} is too large to be a keystore")
        return b"".join(chunks)
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {os_reason(exc)}") from exc
    finally:
        os.close(fd)
