"""Bodies on their way to the outbox: checked, given the priority asked for, encoded canonically,
sealed and made the rows the outbox keeps (node/sending.py queues them).

Plain functions of picklable data, so the crypto runner may run them on its thread or in a worker
process; a batch's refusal comes back as data (:class:`Refused`) for the same reason. A batch is
worked a chunk at a time (:func:`in_chunks`, node/batches.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import msgspec

from node.batches import IN_FLIGHT, chunks
from node.runtime import in_process
from node.storage import QueuedMessage
from protocol.envelope import Envelope, TypeName, seal
from protocol.errors import TooManyRecipients, ValidationError
from protocol.identity import Identity, PublicIdentity
from protocol.labels import MAX_PADDED_PLAINTEXT, MAX_RECIPIENTS, MAX_TTL_SECONDS
from protocol.padding import bucket_size
from protocol.schemas import decode_body

PRIORITIES = ("routine", "urgent", "flash")
SIGNATURE_BYTES = 64  # the Ed25519 signature sealed with the body (PROTOCOL.md 5)
A = TypeVar("A")
B = TypeVar("B")


class Prepared(msgspec.Struct, frozen=True):
    """A validated body in its canonical encoding, with the meta fields the outbox keeps."""

    body: bytes
    priority: str
    tlp: str


def check_priority(priority: str | None) -> None:
    if priority is not None and priority not in PRIORITIES:
        raise ValidationError("priority", "must be routine, urgent or flash")


def check_sealable(recipients: Sequence[PublicIdentity], ttl: int) -> None:
    """The rules ``seal`` applies to the recipients and the lifetime (PROTOCOL.md 5), checked
    before a batch is validated or sealed: no chunk is then refused by them, in a worker or not."""
    if not recipients:
        raise ValidationError("to", "at least one recipient is needed")
    if len(recipients) > MAX_RECIPIENTS:
        raise TooManyRecipients(f"at most {MAX_RECIPIENTS} recipients per message")
    if len({r.node_id for r in recipients}) != len(recipients):
        raise ValidationError("to", "a recipient is listed twice")
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValidationError(
            "ttl", f"must be between 1 second and {MAX_TTL_SECONDS // 86400} days"
        )


def prepare(type_name: str, data: bytes, priority: str | None) -> Prepared:
    """``data`` decoded and checked as a ``type_name`` body, ``priority`` (checked by the caller)
    put in its meta, encoded canonically; refused if it would not fit in an envelope."""
    msg = decode_body(type_name, data)
    if priority is not None and priority != msg.meta.priority:
        msg = msgspec.structs.replace(
            msg, meta=msgspec.structs.replace(msg.meta, priority=priority)
        )
    # decode_body has just checked msg, and a priority from PRIORITIES keeps it valid:
    # encode_body would decode it once more, a third of the cost of a batch's validation.
    body = msgspec.json.encode(msg)
    if bucket_size(SIGNATURE_BYTES + len(body)) > MAX_PADDED_PLAINTEXT:
        most = MAX_PADDED_PLAINTEXT - SIGNATURE_BYTES - 1
        raise ValidationError(
            "", f"body is {len(body):,} bytes; a message holds at most {most:,}", kind="too_long"
        )
    return Prepared(body, msg.meta.priority, msg.meta.tlp)


class Refused(msgspec.Struct, frozen=True):
    """A batch's body that failed its check, as data: it crosses to a crypto worker process and
    back, where a ValidationError (a constructor of its own) would not unpickle."""

    index: int
    path: str
    rule: str
    kind: str

    def error(self) -> ValidationError:
        where = f"bodies[{self.index}]" + (f".{self.path}" if self.path else "")
        return ValidationError(where, self.rule, kind=self.kind)


@in_process
def prepared(
    type_name: str, bodies: Sequence[bytes], priority: str | None, first: int = 0
) -> list[Prepared] | Refused:
    """:func:`prepare` for each of a batch's ``bodies`` (the first is the batch's ``first``), or
    the first that fails, named by its index in the batch (``bodies[7].meta.tlp``, a JSON path)."""
    out = []
    for i, data in enumerate(bodies, first):
        try:
            out.append(prepare(type_name, data, priority))
        except ValidationError as exc:
            return Refused(i, exc.path, exc.rule, exc.kind)
    return out


@in_process
def sealed(
    identity: Identity,
    recipients: list[PublicIdentity],
    type_name: str,
    bodies: Sequence[Prepared],
    *,
    now: int,
    ttl: int,
) -> list[QueuedMessage]:
    """Each body sealed for the recipients and made the row the outbox keeps: a plain function
    of its arguments, so the crypto runner may run it in a thread or another process."""
    kind = cast(TypeName, type_name)  # checked by prepare
    return [
        outbox_message(seal(identity, recipients, kind, b.body, now=now, ttl=ttl), b)
        for b in bodies
    ]


def outbox_message(env: Envelope, body: Prepared) -> QueuedMessage:
    """A sealed message as the outbox keeps it."""
    return QueuedMessage(
        id=env.id,
        type=env.type,
        created=env.created,
        expires=env.expires,
        content_hash=env.content_hash(),
        envelope=env.encode(),
        priority=body.priority,
        tlp=body.tlp,
    )


async def in_chunks(
    job: Callable[[int, Sequence[A]], Awaitable[list[B]]], items: Sequence[A]
) -> list[B]:
    """``job`` over consecutive chunks of ``items`` (node/batches.py), :data:`IN_FLIGHT` at a
    time, results in order; the error of the earliest failing chunk, so a batch's first bad
    body is the one named."""
    parts = list(chunks(items))
    out: list[B] = []
    for g in range(0, len(parts), IN_FLIGHT):
        group = parts[g : g + IN_FLIGHT]
        results = await asyncio.gather(*(job(s, part) for s, part in group), return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                raise res
            out.extend(res)
    return out
