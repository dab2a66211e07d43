"""The peer API (aiohttp): envelopes in, receipts out; this node's card; health (PROTOCOL.md 11).

Cheap refusals come before any work: a caller over its rate gets 429 before its body is read; a
declared or actual body over the limit gets 413 while reading; a body that trickles in slower than
``body_timeout`` gets 408. Only then is MessagePack decoded and cryptography run. Errors are JSON
``{"error": reason, "message": text}``; for decryption and signature failures the text is generic,
details go to the local log only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from keys.card import parse_card
from node.audit_store import event
from node.http.bodies import read_limited
from node.ratelimit import source_key
from node.store import Store
from protocol.audit import origin_of
from protocol.batch import (
    BATCH_CONTENT_TYPE,
    BATCH_PATH,
    HTTP_STATUS,
    decode_batch,
    encode_response,
)
from protocol.checkpoint import CosignatureVerifier, verify_cosignature
from protocol.decoding import Decoder
from protocol.errors import AuditError, Rejected, ValidationError
from protocol.merkle import MerkleTree
from protocol.signednote import Signature, parse_note

if TYPE_CHECKING:
    from node.daemon import Node

GENERIC = {
    "decryption_failed": "the envelope could not be decrypted",
    "bad_signature": "the envelope could not be verified",
    "unknown_sender": "the sender is not a trusted peer of this node",
}


MAX_COSIGNATURE_BODY = 4096  # the JSON of one cosignature: a node id, a size, a line
MAX_COSIGNATURE_LINE = 512  # an Ed25519 cosignature line is about 190 bytes


class CosignatureIn(msgspec.Struct, forbid_unknown_fields=True):
    witness: str
    size: int
    line: str


_COSIGNATURE = Decoder[CosignatureIn](CosignatureIn, what="cosignature request")


def cosignature_line(signed_checkpoint: str, line: str) -> Signature:
    """The one signature line a witness sent for ``signed_checkpoint`` (PROTOCOL.md 12.3).

    A line with a newline anywhere but at its end would smuggle more lines into the note we serve,
    e.g. a forged signature under our own key name that every honest witness then rejects.
    """
    body = line.removesuffix("\n")
    if "\n" in body:
        raise AuditError("a cosignature is one line")
    if len(line.encode("utf-8", "surrogatepass")) > MAX_COSIGNATURE_LINE:
        raise AuditError(f"a cosignature line is at most {MAX_COSIGNATURE_LINE} bytes")
    return parse_note(signed_checkpoint + body + "\n").signatures[-1]


class ProofCache:
    """One tree of this node's log, extended as checkpoints grow (each leaf hashed once); a
    proof for any signed size is then a lookup, O(log n). Without it every anonymous proof
    request re-hashed the whole log on the node's only database thread."""

    def __init__(self) -> None:
        self.tree = MerkleTree()

    def proof(self, store: Store, old: int, new: int) -> list[bytes]:
        """Runs on the database thread; ``new`` is a signed checkpoint size."""
        if new > self.tree.size:
            for h in store.leaf_hashes(new, start=self.tree.size):
                self.tree.append(h)
        return self.tree.consistency_proof(old, new)


class RateLimiter:
    """Token bucket per caller key, with a bounded number of keys (oldest forgotten first)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, float(burst), max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        tokens, last = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self.buckets[key] = (tokens - 1.0 if ok else tokens, now)
        while len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)
        return ok


def error(reason: str, message: str = "") -> web.Response:
    body = msgspec.json.encode({"error": reason, "message": GENERIC.get(reason, message)})
    return web.Response(
        status=HTTP_STATUS.get(reason, 400), body=body, content_type="application/json"
    )


def make_app(node: Node) -> web.Application:
    limits = node.config.limits
    limiter = RateLimiter(limits.rate, limits.burst)
    refused = {"rate_limited": 0}
    known: dict[str, object] = {"ids": frozenset(), "at": float("-inf")}

    async def bucket_key(request: web.Request) -> str:
        """A trusted peer's claimed id gets a bucket of its own (peers may share an address);
        every other claim from an address shares that address's bucket, so rotating the
        unauthenticated header buys nothing. Claiming a real peer's id can at worst slow that
        peer's deliveries, which it retries."""
        now = time.monotonic()
        if now - float(known["at"]) > 2.0:  # type: ignore[arg-type]
            peers = await node.run_db(node.store.peers)
            known["ids"] = frozenset(p.node_id.hex() for p in peers if p.status == "trusted")
            known["at"] = now
        claimed = request.headers.get("X-Borderlink-Sender", "")
        if claimed in known["ids"]:  # type: ignore[operator]
            return f"peer|{claimed}"
        return f"addr|{source_key(request.remote)}"

    async def audit(reason: str, detail: str, request: web.Request) -> None:
        """Refusals before decoding: every one logged, the audit log sampled per source and
        reason like other unauthenticated rejections (PROTOCOL.md 12.1)."""
        node.log.warning("message.rejected", reason=reason, detail=detail, source=request.remote)
        n = node.receiver.sampler.count(f"{source_key(request.remote)}|{reason}")
        if n & (n - 1):
            return
        claimed = request.headers.get("X-Borderlink-Sender", "")[:64] or None
        entry = event(
            "message.rejected",
            outcome=reason,
            detail=f"{n} so far from this source; last: {detail}",
            peer_id=claimed,
            source=str(request.remote),
        )
        await node.run_db(node.store.audit, entry)

    app = web.Application(client_max_size=limits.max_body)
    proofs = ProofCache()

    async def post_envelopes(request: web.Request) -> web.Response:
        if not limiter.allow(await bucket_key(request), time.monotonic()):
            refused["rate_limited"] += 1
            n = refused["rate_limited"]
            if n & (n - 1) == 0:  # log the 1st, 2nd, 4th, 8th... refusal: a flood is no log flood
                await audit("rate_limited", f"{n} requests refused so far", request)
            return error("rate_limited", "too many requests; retry later")
        if request.content_length is not None and request.content_length > limits.max_body:
            await audit("oversize", f"declared {request.content_length} bytes", request)
            return error("oversize", f"body over {limits.max_body} bytes")
        if node.stopping:
            return error("unavailable", "node is shutting down")
        try:
            body = await asyncio.wait_for(request.read(), timeout=limits.body_timeout)
        except TimeoutError:
            await audit(
                "body_timeout", f"body not received within {limits.body_timeout} s", request
            )
            return error("body_timeout", f"body not received within {limits.body_timeout:.0f} s")
        except web.HTTPRequestEntityTooLarge:
            await audit("oversize", f"body over {limits.max_body} bytes", request)
            return error("oversize", f"body over {limits.max_body} bytes")
        try:
            items = decode_batch(body, max_items=limits.max_batch)
        except Rejected as exc:
            await audit(exc.reason, exc.message, request)
            return error(exc.reason, exc.message)
        resp = await node.receiver.receive(items, source=str(request.remote))
        if len(resp.results) == 1 and resp.results[0].outcome == "rejected":
            return error(resp.results[0].reason or "rejected")
        return web.Response(body=encode_response(resp), content_type=BATCH_CONTENT_TYPE)

    async def card(_request: web.Request) -> web.Response:
        return web.Response(text=node.card_text, content_type="text/plain")

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        if node.stopping or not node.ready:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ready"})

    async def audit_checkpoint(request: web.Request) -> web.Response:
        if not limiter.allow(await bucket_key(request), time.monotonic()):
            return error("rate_limited", "too many requests; retry later")
        note = await node.run_db(node.store.cosigned_note)
        if note is None:
            note = await node.checkpoint()
        return web.Response(text=note, content_type="text/plain")

    async def audit_consistency(request: web.Request) -> web.Response:
        if not limiter.allow(await bucket_key(request), time.monotonic()):
            return error("rate_limited", "too many requests; retry later")
        try:
            old, new = int(request.query["old"]), int(request.query["new"])
        except (KeyError, ValueError):
            return error("malformed", "give old=SIZE&new=SIZE")
        signed = {size for size, _root, _note in await node.run_db(node.store.own_checkpoints)}
        if not 0 < old <= new or new not in signed:
            return error("malformed", "sizes must satisfy 0 < old <= new, new a signed size")
        proof = await node.run_db(proofs.proof, node.store, old, new)
        return web.json_response(
            {"old": old, "new": new, "proof": [base64.b64encode(h).decode() for h in proof]}
        )

    async def audit_cosignature(request: web.Request) -> web.Response:
        if not limiter.allow(await bucket_key(request), time.monotonic()):
            return error("rate_limited", "too many requests; retry later")
        declared = request.content_length
        if declared is not None and declared > MAX_COSIGNATURE_BODY:
            await audit("oversize", f"declared {declared} bytes", request)
            return error("oversize", f"body over {MAX_COSIGNATURE_BODY} bytes")
        try:
            raw = await asyncio.wait_for(
                read_limited(request.content, None, MAX_COSIGNATURE_BODY),
                timeout=limits.body_timeout,
            )
        except TimeoutError:
            await audit(
                "body_timeout", f"body not received within {limits.body_timeout} s", request
            )
            return error("body_timeout", f"body not received within {limits.body_timeout:.0f} s")
        if raw is None:
            await audit("oversize", f"body over {MAX_COSIGNATURE_BODY} bytes", request)
            return error("oversize", f"body over {MAX_COSIGNATURE_BODY} bytes")
        try:
            got = _COSIGNATURE.decode(raw)
            witness = bytes.fromhex(got.witness)
        except (ValidationError, ValueError):
            return error("malformed", "expected JSON {witness, size, line}")
        rec = await node.run_db(node.store.peer_by_id, witness)
        if rec is None or rec.status != "trusted":
            return error("unknown_sender")
        cps = {size: note for size, _root, note in await node.run_db(node.store.own_checkpoints)}
        if got.size not in cps:
            return error("malformed", "no checkpoint of that size")
        verifier = CosignatureVerifier(
            origin_of(witness), parse_card(rec.card, now=None).body.sign_key
        )
        try:
            sig = cosignature_line(cps[got.size], got.line)
        except AuditError as exc:
            return error("malformed", exc.message)
        if sig.name != verifier.name or sig.key_id != verifier.key_id:
            return error("bad_signature")
        try:
            ts = verify_cosignature(cps[got.size] + sig.line(), verifier, now=int(time.time()))
        except AuditError:
            return error("bad_signature")
        # What we serve is our own spelling of the one line that verified, never the client's text.
        await node.run_db(node.store.add_cosignature, got.size, witness, sig.line(), ts, rec.name)
        return web.json_response({"status": "stored"})

    app.router.add_get("/v1/audit/checkpoint", audit_checkpoint)
    app.router.add_get("/v1/audit/consistency", audit_consistency)
    app.router.add_post("/v1/audit/cosignature", audit_cosignature)
    app.router.add_post(BATCH_PATH, post_envelopes)
    app.router.add_get("/v1/card", card)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return app
