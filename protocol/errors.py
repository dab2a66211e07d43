"""The one exception hierarchy of borderlink.

Every error a user or a peer can see is a ``BorderlinkError``. Each carries the text a person reads,
an optional hint (what to do next), the CLI exit code, and for message rejections the single
machine-readable ``reason`` that goes on the wire (see PROTOCOL.md section 8). Other libraries'
exceptions are translated where they are called, with ``raise ... from exc``.

    BorderlinkError                       exit 1
    ├── UsageError                        exit 2   bad command-line use
    ├── ValidationError                   exit 1   a message or card field breaks a rule (path + rule)
    ├── KeystoreError                     exit 1   keystore missing, unreadable, wrong passphrase
    │   ├── WrongPassphrase
    │   ├── InsecureKeystore                       group/world-readable key file
    │   └── PassphraseUnavailable                  no source and no terminal
    ├── TrustError                        exit 4   peer key untrusted / changed / revoked
    │   ├── UnknownPeer
    │   ├── FingerprintMismatch
    │   ├── PeerKeyChanged
    │   └── PeerRevoked
    ├── Rejected                          exit 5   an envelope or card failed a check
    │   ├── Malformed, Oversize, TooManyRecipients
    │   ├── NotForMe, DecryptionFailed, BadSignature, SenderMismatch
    │   ├── UnknownSender (exit 4)
    │   ├── Expired, ClockSkew, Replay
    │   └── ChannelMismatch, QuotaExceeded, ForeignReference   refused by the receiving node
    ├── AuditError                        exit 5   audit log or checkpoint check failed
    ├── NodeError                         exit 3   network, I/O, node unreachable
    │   └── NodeUnreachable
    └── PartialDelivery                   exit 6   delivered to only some recipients
"""

from __future__ import annotations


class BorderlinkError(Exception):
    """Root of every error borderlink raises to users or peers."""

    exit_code = 1
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as its class and fields, not by calling ``__init__`` again with ``args``
        (which subclasses with other signatures refuse): an error raised in a crypto worker
        process comes back to the node as itself."""
        return (_rebuilt, (type(self), self.args, self.__dict__))


def _rebuilt(
    cls: type[BorderlinkError], args: tuple[object, ...], fields: dict[str, object]
) -> BorderlinkError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error


class UsageError(BorderlinkError):
    exit_code = 2


class ValidationError(BorderlinkError):
    """A field breaks a rule. ``path`` is the dotted field path, e.g. ``conveyance.container``;
    ``kind`` names the rule for callers that branch on it ("too_long", "missing", "syntax", ...;
    see protocol/decoding.py), so no caller ever reads the text to decide."""

    def __init__(
        self, path: str, rule: str, *, hint: str | None = None, kind: str = "invalid"
    ) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{rule}", hint=hint)
        self.path = path
        self.rule = rule
        self.kind = kind


class KeystoreError(BorderlinkError):
    pass


class WrongPassphrase(KeystoreError):
    default_hint = (
        "check the passphrase source (--passphrase-fd, --passphrase-file, BORDERLINK_PASSPHRASE)"
    )


class InsecureKeystore(KeystoreError):
    pass


class PassphraseUnavailable(KeystoreError):
    default_hint = "give the passphrase with --passphrase-fd N, --passphrase-file PATH or BORDERLINK_PASSPHRASE"


class TrustError(BorderlinkError):
    exit_code = 4


class UnknownPeer(TrustError):
    default_hint = "list known peers with 'borderlink peers list'"


class FingerprintMismatch(TrustError):
    default_hint = "compare the fingerprint with the card's owner again over a trusted channel"


class PeerKeyChanged(TrustError):
    default_hint = (
        "if the change is expected, verify the new fingerprint out of band, "
        "'borderlink peers remove NAME', then add the new card"
    )


class PeerRevoked(TrustError):
    pass


class Rejected(BorderlinkError):
    """An envelope (or card) was refused. ``reason`` is the wire code (PROTOCOL.md section 8)."""

    exit_code = 5
    reason = "rejected"


class Malformed(Rejected):
    reason = "malformed"


class Oversize(Rejected):
    reason = "oversize"


class TooManyRecipients(Rejected):
    reason = "too_many_recipients"


class NotForMe(Rejected):
    reason = "not_recipient"


class DecryptionFailed(Rejected):
    reason = "decryption_failed"


class BadSignature(Rejected):
    reason = "bad_signature"


class SenderMismatch(Rejected):
    reason = "sender_mismatch"


class UnknownSender(Rejected):
    exit_code = 4
    reason = "unknown_sender"


class Expired(Rejected):
    reason = "expired"


class ClockSkew(Rejected):
    reason = "clock_skew"


class Replay(Rejected):
    reason = "replay"


class ChannelMismatch(Rejected):
    """The envelope's sender is not the peer the TLS channel authenticated."""

    reason = "channel_mismatch"


class KeyRetired(Rejected):
    """Signed with a key its owner rotated away from, after the overlap ended, or revoked."""

    reason = "retired_key"


class StatementRefused(Rejected):
    """A key statement (rotation, renewal, revocation) or directory a peer sent was refused:
    ``reason`` names the rule (PROTOCOL.md 13.6), e.g. sequence_skipped."""

    exit_code = 4

    def __init__(
        self, reason: str, message: str, *, hint: str | None = None, peer: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        self.peer = peer  # the peer it came from, when known


class PeerBlocked(TrustError):
    """The peer's key changed without a rotation this node could check: nothing goes to it until
    a custodian compares the new fingerprint (``borderlink peers verify``)."""


class QuotaExceeded(Rejected):
    """The sender's share of this node's inbox (messages or bytes) is used up."""

    reason = "quota_exceeded"


class ForeignReference(Rejected):
    """Feedback about a message its sender did not receive from this node, or a retraction of a
    message this node wrote."""

    reason = "foreign_reference"


class AuditError(BorderlinkError):
    exit_code = 5


class NodeError(BorderlinkError):
    exit_code = 3


class NodeUnreachable(NodeError):
    default_hint = "start the node with 'borderlink serve' (same --home)"


class PartialDelivery(BorderlinkError):
    exit_code = 6


_OS_REASONS = {
    "ENOENT": "no such file or directory",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EISDIR": "it is a directory",
    "ENOTDIR": "a part of the path is not a directory",
    "EEXIST": "it already exists",
    "ENOSPC": "no space left on the device",
    "EROFS": "the file system is read-only",
    "EADDRINUSE": "the address is already in use",
    "EADDRNOTAVAIL": "the address is not on this machine",
    "ECONNREFUSED": "connection refused",
    "ENAMETOOLONG": "the name is too long",
    "EBADF": "not an open file descriptor",
    "ENXIO": "no such device",
    "ETIMEDOUT": "timed out",
}


def os_reason(exc: OSError) -> str:
    """An operating-system error in our words, chosen by errno: the C library's text depends on
    the locale (LANG=de_DE says "Datei oder Verzeichnis nicht gefunden")."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    return _OS_REASONS.get(name) or (exc.strerror or type(exc).__name__).lower()
