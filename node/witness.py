"""Witnessing peers' audit logs (PROTOCOL.md 12.3).

Every ``witness_interval`` this node fetches each trusted peer's latest signed checkpoint, checks
the signature with the key from the peer's card, and compares it with the newest checkpoint it
kept from that peer: a smaller tree (rollback) or another root at the same size (fork) is
misbehaviour, kept with both signed notes as evidence. A consistency proof is not signed (a proxy
or anyone on the path to an http:// endpoint could alter it), so one that fails is fetched once
more, and only a second failure is kept as evidence, with the proof. Answers are read up to a size
limit. A consistent extension is stored and cosigned, and the cosignature is sent back to the peer,
so a node that later shows anyone a different history contradicts what its witnesses signed.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

import aiohttp
import msgspec
import structlog

from node.http.bodies import read_limited
from node.peer_info import PeerInfo
from protocol.audit import origin_of
from protocol.checkpoint import (
    BadConsistencyProof,
    Checkpoint,
    check_extension,
    cosign,
    open_checkpoint,
)
from protocol.decoding import Decoder
from protocol.errors import AuditError, ValidationError
from protocol.signednote import Verifier

if TYPE_CHECKING:
    from node.daemon import Node

log = structlog.get_logger("borderlink.witness")

MAX_NOTE = 64 * 1024  # a checkpoint with up to 100 signature lines is under 16 KiB
MAX_PROOF = 16 * 1024  # a proof for 2^63 entries is at most 63 hashes, about 3 KiB as JSON


class ProofBody(msgspec.Struct):
    proof: list[str]


_PROOF = Decoder[ProofBody](ProofBody, what="consistency proof")


class Witness:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.last: dict[str, str] = {}  # peer name -> last outcome, for status

    async def round(self) -> None:
        peers = [p for p in await self.node.run_db(self.node.store.peers) if p.status == "trusted"]
        timeout = aiohttp.ClientTimeout(total=self.node.config.delivery.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for rec in peers:
                info = await self.node._peer_info(rec.node_id)
                if info is None or not info.endpoint:
                    continue
                try:
                    self.last[info.name] = await self.check(session, info)
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                    self.last[info.name] = f"unreachable ({exc.__class__.__name__})"
                except AuditError as exc:
                    self.last[info.name] = f"bad answer: {exc.message}"
                    log.warning("witness.bad_answer", peer=info.name, detail=exc.message)

    async def check(self, session: aiohttp.ClientSession, peer: PeerInfo) -> str:
        base = str(peer.endpoint).rstrip("/")
        async with session.get(f"{base}/v1/audit/checkpoint") as resp:
            if resp.status != 200:
                return f"no checkpoint (HTTP {resp.status})"
            raw = await read_limited(resp.content, resp.content_length, MAX_NOTE)
        if raw is None:
            raise AuditError(f"checkpoint is over {MAX_NOTE // 1024} KiB")
        try:
            note = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuditError("checkpoint is not UTF-8") from exc
        origin = origin_of(peer.node_id)
        new = open_checkpoint(note, [Verifier(origin, peer.identity.sign_key)])
        if new.origin != origin:
            raise AuditError(f"checkpoint names log {new.origin}, not {origin}")
        body = note.split("\n\n", 1)[0] + "\n"  # the checkpoint text the log signed
        signed = body + "\n" + _line_of(note, origin)
        seen = await self.node.run_db(self.node.store.witnessed, peer.node_id)
        old_cp, old_note = seen if seen else (None, None)
        if old_cp is not None and new.size == old_cp.size and new.root_hash == old_cp.root_hash:
            return f"consistent at size {new.size}"
        old = old_cp if old_cp is not None and old_cp.size > 0 else None
        proof: list[bytes] = []
        for attempt in (1, 2):
            if old is not None and new.size > old.size:
                got = await self._proof(session, base, old.size, new.size)
                if isinstance(got, str):
                    return got
                proof = got
            try:
                check_extension(old, new, proof)
                break
            except BadConsistencyProof as exc:
                # The proof is unsigned: a proxy or anyone on the path of an http:// endpoint
                # could have altered it. Ask once more before blaming the log (PROTOCOL.md 12.3).
                if attempt == 1:
                    log.warning("witness.bad_proof_retry", peer=peer.name, detail=exc.message)
                    continue
                detail = exc.message + "\nproof:\n" + "".join(_b64(h) + "\n" for h in proof)
                return await self._misbehaviour(
                    peer, "badconsistencyproof", old_note, signed, detail
                )
            except AuditError as exc:  # rollback or fork: both are in notes the log signed
                kind = type(exc).__name__.lower()
                return await self._misbehaviour(peer, kind, old_note, signed, exc.message)
        await self.node.run_db(
            self.node.store.record_witnessed, peer.node_id, new, signed, peer.name
        )
        await self._cosign(session, base, peer, new, body)
        return f"cosigned size {new.size}"

    async def _proof(
        self, session: aiohttp.ClientSession, base: str, old: int, new: int
    ) -> list[bytes] | str:
        """The log's consistency proof from ``old`` to ``new``, or the status line if it has none."""
        async with session.get(f"{base}/v1/audit/consistency?old={old}&new={new}") as resp:
            if resp.status != 200:
                return f"no consistency proof (HTTP {resp.status})"
            raw = await read_limited(resp.content, resp.content_length, MAX_PROOF)
        if raw is None:
            raise AuditError(f"consistency proof is over {MAX_PROOF // 1024} KiB")
        try:
            got = _PROOF.decode(raw)
            return [base64.b64decode(p, validate=True) for p in got.proof]
        except ValidationError as exc:
            raise AuditError(f"consistency proof is not well formed ({exc.message})") from exc
        except binascii.Error as exc:
            raise AuditError("consistency proof holds a hash that is not base64") from exc

    async def _misbehaviour(
        self, peer: PeerInfo, kind: str, old_note: str | None, new_note: str, detail: str
    ) -> str:
        """Keep the evidence (once per offending note), log it, and say so in the status."""
        new_evidence = await self.node.run_db(
            self.node.store.record_evidence,
            peer.node_id,
            kind,
            old_note,
            new_note,
            detail,
            peer.name,
        )
        summary = detail.split("\n", 1)[0]
        if new_evidence:
            log.error("witness.misbehaviour", peer=peer.name, kind=kind, detail=detail)
        return f"MISBEHAVIOUR: {summary}"

    async def _cosign(
        self, session: aiohttp.ClientSession, base: str, peer: PeerInfo, cp: Checkpoint, body: str
    ) -> None:
        me = self.node.identity
        line = cosign(body, origin_of(me.node_id), me.signing_key, int(time.time()))
        payload = {"witness": me.node_id.hex(), "size": cp.size, "line": line}
        async with session.post(f"{base}/v1/audit/cosignature", json=payload) as resp:
            if resp.status != 200:
                log.warning("witness.cosignature_refused", peer=peer.name, status=resp.status)


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _line_of(note: str, name: str) -> str:
    """The log's own signature line (cosignatures from others are not part of what we keep)."""
    for line in note.split("\n\n", 1)[1].splitlines():
        if line.startswith(f"\u2014 {name} "):
            return line + "\n"
    raise AuditError("checkpoint carries no signature line of its log")
