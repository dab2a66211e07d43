"""Witnessing peers' audit logs (PROTOCOL.md 12.3).

Every ``witness_interval`` this node fetches each trusted peer's latest signed checkpoint, checks
the signature with the key from the peer's card, and compares it with the newest checkpoint it
kept from that peer: a smaller tree (rollback), another root at the same size (fork) or a failed
consistency proof is misbehaviour, kept with both signed notes as evidence. A consistent extension
is stored and cosigned, and the cosignature is sent back to the peer, so a node that later shows
anyone a different history contradicts what its witnesses signed.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import aiohttp
import msgspec
import structlog

from node.delivery import PeerInfo
from protocol.audit import origin_of
from protocol.checkpoint import Checkpoint, check_extension, cosign, open_checkpoint
from protocol.errors import AuditError
from protocol.signednote import Verifier

if TYPE_CHECKING:
    from node.daemon import Node

log = structlog.get_logger("borderlink.witness")


class ProofBody(msgspec.Struct):
    proof: list[str]


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
            note = await resp.text()
        origin = origin_of(peer.node_id)
        new = open_checkpoint(note, [Verifier(origin, peer.identity.sign_key)])
        if new.origin != origin:
            raise AuditError(f"checkpoint names log {new.origin}, not {origin}")
        body = note.split("\n\n", 1)[0] + "\n"  # the checkpoint text the log signed
        signed = body + "\n" + _line_of(note, origin)
        seen = await self.node.run_db(self.node.store.witnessed, peer.node_id)
        old_cp, old_note = seen if seen else (None, None)
        proof: list[bytes] = []
        if old_cp is not None and new.size > old_cp.size and old_cp.size > 0:
            url = f"{base}/v1/audit/consistency?old={old_cp.size}&new={new.size}"
            async with session.get(url) as resp:
                if resp.status != 200:
                    return f"no consistency proof (HTTP {resp.status})"
                got = msgspec.json.decode(await resp.read(), type=ProofBody)
            proof = [base64.b64decode(p) for p in got.proof]
        if old_cp is not None and new.size == old_cp.size and new.root_hash == old_cp.root_hash:
            return f"consistent at size {new.size}"
        try:
            check_extension(old_cp if old_cp and old_cp.size > 0 else None, new, proof)
        except AuditError as exc:
            kind = type(exc).__name__.lower()
            new_evidence = await self.node.run_db(
                self.node.store.record_evidence,
                peer.node_id,
                kind,
                old_note,
                signed,
                exc.message,
                peer.name,
            )
            if new_evidence:
                log.error("witness.misbehaviour", peer=peer.name, kind=kind, detail=exc.message)
            return f"MISBEHAVIOUR: {exc.message}"
        await self.node.run_db(
            self.node.store.record_witnessed, peer.node_id, new, signed, peer.name
        )
        await self._cosign(session, base, peer, new, body)
        return f"cosigned size {new.size}"

    async def _cosign(
        self, session: aiohttp.ClientSession, base: str, peer: PeerInfo, cp: Checkpoint, body: str
    ) -> None:
        me = self.node.identity
        line = cosign(body, origin_of(me.node_id), me.signing_key, int(time.time()))
        payload = {"witness": me.node_id.hex(), "size": cp.size, "line": line}
        async with session.post(f"{base}/v1/audit/cosignature", json=payload) as resp:
            if resp.status != 200:
                log.warning("witness.cosignature_refused", peer=peer.name, status=resp.status)


def _line_of(note: str, name: str) -> str:
    """The log's own signature line (cosignatures from others are not part of what we keep)."""
    for line in note.split("\n\n", 1)[1].splitlines():
        if line.startswith(f"\u2014 {name} "):
            return line + "\n"
    raise AuditError("checkpoint carries no signature line of its log")
