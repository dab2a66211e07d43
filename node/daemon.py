"""The node: one asyncio process with the peer API, the admin API and the delivery workers.

All SQLite work runs on one dedicated thread (``run_db``) and envelope cryptography on another
(``run_cpu``), so the event loop never waits on fsync and never computes for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web

from keys.card import parse_card
from keys.trust import PeerRecord
from node.audit_store import event
from node.config import Config
from node.delivery import PeerWorker
from node.home import Home
from node.peer_info import PeerInfo, parsed_card
from node.receiver import Receiver
from node.store import Store
from node.transport import HttpTransport, Transport
from node.witness import Witness
from protocol.envelope import seal
from protocol.errors import NodeError, PeerRevoked, UnknownPeer, ValidationError, os_reason
from protocol.identity import Identity
from protocol.schemas import decode_body, encode_body

T = TypeVar("T")


class Node:
    def __init__(
        self, home: Home, config: Config, identity: Identity, transport: Transport | None = None
    ) -> None:
        self.home = home
        self.config = config
        self.identity = identity
        self.card_text = home.card.read_text()
        self.card = parse_card(self.card_text, now=None)
        self.log = structlog.get_logger("borderlink.node").bind(node=self.card.name)
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="db")
        self._cpu_pool = ThreadPoolExecutor(1, thread_name_prefix="crypto")
        self.store = Store(home.database)
        self.transport = transport or HttpTransport(config.delivery.request_timeout)
        self.receiver = Receiver(identity, self.store, self.run_db, self.run_cpu)
        self.witness = Witness(self)
        self.workers: dict[bytes, PeerWorker] = {}
        self.stopping = False
        self.ready = False
        self.started = time.time()
        self._runners: list[web.AppRunner] = []
        self._background: list[asyncio.Task[None]] = []
        self._full_checked = 0.0  # the first checkpoint after start recomputes the whole tree
        self.listen_port: int | None = None

    async def run_db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._db_pool, functools.partial(fn, *args, **kwargs)
        )

    async def run_cpu(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._cpu_pool, functools.partial(fn, *args, **kwargs)
        )

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        from node.admin_api import make_admin_app
        from node.peer_api import make_app

        resumed = await self.run_db(self.store.resume_inflight)
        host, port = self.config.host_port
        peer_runner = web.AppRunner(
            make_app(self), access_log=None, handler_cancellation=True, shutdown_timeout=5.0
        )
        await peer_runner.setup()
        site = web.TCPSite(peer_runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # port taken, no permission: a start-up error, said in one line
            await peer_runner.cleanup()
            raise NodeError(
                f"cannot start the node on {host}:{port}: {os_reason(exc)}",
                hint="pick another address with --listen HOST:PORT, or stop the other process",
            ) from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.listen_port = sockets[0].getsockname()[1] if sockets else port
        admin_runner = web.AppRunner(make_admin_app(self), access_log=None)
        await admin_runner.setup()
        sock_path = self.home.admin_socket
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(admin_runner, str(sock_path)).start()
        except OSError as exc:
            await peer_runner.cleanup()
            raise NodeError(
                f"cannot create the admin socket {sock_path}: {os_reason(exc)}",
                hint="a Unix socket path must be under 108 bytes: use a shorter --home",
            ) from exc
        finally:
            os.umask(old_umask)
        os.chmod(sock_path, 0o600)
        self._runners = [peer_runner, admin_runner]
        for peer_id in await self.run_db(self.store.pending_peers):
            await self.ensure_worker(peer_id)
        self._background = [
            asyncio.create_task(
                self._every(self.config.audit.checkpoint_interval, self.checkpoint)
            ),
            asyncio.create_task(self._every(self.config.audit.prune_interval, self._prune)),
            asyncio.create_task(
                self._every(self.config.audit.witness_interval, self.witness.round)
            ),
        ]
        self.ready = True
        self.log.info(
            "node.started",
            listen=f"{host}:{self.listen_port}",
            resumed=resumed,
            admin=str(sock_path),
        )

    async def stop(self) -> None:
        self.stopping = True
        self.ready = False
        for t in self._background:
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for w in list(self.workers.values()):
            await w.stop()
        for r in self._runners:
            await r.cleanup()
        await self.run_db(self.store.resume_inflight)
        close = getattr(self.transport, "close", None)
        if close is not None:
            await close()
        await self.run_db(self.store.close)
        self._db_pool.shutdown(wait=True)
        self._cpu_pool.shutdown(wait=True)
        with contextlib.suppress(FileNotFoundError):
            self.home.admin_socket.unlink()
        self.log.info("node.stopped")

    async def _every(self, interval: float, job: Any) -> None:
        """Run ``job`` every ``interval`` seconds; a failure is logged and retried next time."""
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                self.log.exception("node.background_error", job=getattr(job, "__name__", "?"))

    async def checkpoint(self, force: bool = False) -> str:
        """Sign a checkpoint if the audit log grew (PROTOCOL.md 12.2); returns the latest note."""
        full = time.time() - self._full_checked >= self.config.audit.full_check_interval
        note, new = await self.run_db(
            self.store.sign_checkpoint, self.identity, "node", force, full
        )
        if full and new:  # an early return (nothing to sign) recomputed nothing
            self._full_checked = time.time()
        if new:
            self.log.info("checkpoint.published", size=note.split("\n")[1])
        return str(note)

    async def _prune(self) -> None:
        await self.run_db(self.store.prune_seen, int(time.time()))

    async def serve_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # delivery --------------------------------------------------------------------------------

    async def _peer_info(self, node_id: bytes, rec: PeerRecord | None = None) -> PeerInfo | None:
        """``rec``: the peer's record if the caller has just read it (saves a database call)."""
        if rec is None:
            rec = await self.run_db(self.store.peer_by_id, node_id)
        if rec is None or rec.status != "trusted":
            return None
        return PeerInfo.of(rec)

    async def ensure_worker(self, node_id: bytes, rec: PeerRecord | None = None) -> None:
        info = await self._peer_info(node_id, rec)
        if info is None:
            return
        worker = self.workers.get(node_id)
        if worker is None:
            worker = self.workers[node_id] = PeerWorker(
                info,
                me=self.identity.node_id,
                store=self.store,
                run_db=self.run_db,
                transport=self.transport,
                policy=self.config.delivery,
            )
            worker.start()
        else:
            worker.peer = info
        worker.wake.set()

    async def send(
        self, to: list[str], type_name: str, body: bytes, ttl: int, priority: str | None = None
    ) -> bytes:
        """Validate, seal, and queue durably; returns once the message would survive kill -9."""
        records = await self.run_db(lambda: [self.store.peer_by_name(n) for n in to])
        recipients = []
        for name, rec in zip(to, records, strict=True):
            if rec is None:
                raise UnknownPeer(f"no peer named '{name}'")
            if rec.status != "trusted":
                raise PeerRevoked(f"peer '{name}' is revoked")
            recipients.append(rec)
        msg = decode_body(type_name, body)
        if priority is not None:
            if priority not in ("routine", "urgent", "flash"):
                raise ValidationError("priority", "must be routine, urgent or flash")
            msg = msgspec.structs.replace(
                msg, meta=msgspec.structs.replace(msg.meta, priority=priority)
            )
        idents = [parsed_card(r.card).identity for r in recipients]
        now = time.time()
        env = await self.run_cpu(
            functools.partial(
                seal, self.identity, idents, type_name, encode_body(msg), now=int(now), ttl=ttl
            )
        )
        content_hash = env.content_hash()
        await self.run_db(
            functools.partial(
                self.store.enqueue,
                msg_id=env.id,
                type_name=type_name,
                created=env.created,
                expires=env.expires,
                content_hash=content_hash,
                envelope=env.encode(),
                peers=[r.node_id for r in recipients],
                now=now,
                audit=event(
                    "message.queued",
                    "operator",
                    message_id=env.id.hex(),
                    outcome=type_name,
                    detail="to " + ",".join(r.name for r in recipients),
                    hashes={"content": content_hash.hex()},
                ),
            )
        )
        self.log.info(
            "message.queued",
            message_id=env.id.hex(),
            type=type_name,
            to=[r.name for r in recipients],
        )
        for r in recipients:
            await self.ensure_worker(r.node_id, r)
        return env.id
