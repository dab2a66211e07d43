"""The node: wiring and lifecycle of one asyncio process (peer API, admin API, delivery, witnessing).

Everything with logic lives in a service; this module builds them with explicit dependencies,
binds the two apps, runs the periodic jobs (checkpoints, replay-table pruning, witness rounds) and
shuts down in order. All storage work runs on one database thread and envelope cryptography on
another (node/runtime.py), so the event loop never waits on fsync and never computes for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
from aiohttp import web

from keys.card import Card, check_valid_at, parse_card
from node.admission import Admission
from node.audit_ops import BackgroundCheck, cosigned_note, sign_checkpoint, sweep_size
from node.config import Config, parse_listen
from node.cosigning import Cosigning
from node.dashboard.app import DashboardDeps, make_dashboard_app
from node.dashboard.sessions import Sessions, metrics_token
from node.delivery import Deliveries
from node.flow_ingest import FlowIngest
from node.flow_reports import PRUNE_BATCH, FlowReporter, prune_flow
from node.flow_view import FlowView
from node.home import Home
from node.http.admin_routes import AdminDeps, make_admin_app
from node.http.flow_routes import FlowDeps
from node.http.listener import CappedSite, GatedSite
from node.http.peer_routes import PeerDeps, make_peer_app
from node.inbox import Inbox
from node.initialise import tls_added, with_tls, write_card
from node.keychange import apply_statement, refresh_revocation_certificate, resume
from node.logs import http_logger, quiet_loop_errors
from node.operations import OperationDeps
from node.peer_client import PeerClient
from node.peer_info import PeerInfo
from node.receiver import Quota, Receiver
from node.rejections import Rejections
from node.runtime import Clock, Threads, usable_cores, wall_clock
from node.sending import Sender
from node.status import CryptoStatus, Running, Status
from node.storage import Store
from node.storage.sqlite import open_reader, open_store
from node.tasks import cancelled
from node.tls import NodeTls
from node.witness import Witness
from protocol.checkpoint import checkpoint_size
from protocol.errors import AuditError, NodeError, os_reason
from protocol.identity import Identity
from protocol.text import shown

# Connections the dashboard's listener holds at once (16 live streams and their pages' requests
# fit many times over); the oldest makes room for a new one.
DASHBOARD_CONNECTIONS = 64
_LOOK = "run 'borderlink audit verify'"


class Node:
    def __init__(
        self, home: Home, config: Config, identity: Identity, clock: Clock = wall_clock
    ) -> None:
        self.home = home
        self.config = config
        self.identity = identity
        self.clock = clock
        self.card_text = home.card.read_text()
        self._own_checked: tuple[str, Card] | None = None  # (text, its checked parse)
        self.card = parse_card(self.card_text, now=None)
        self.log = structlog.get_logger("borderlink.node").bind(node=self.card.name)
        self.threads = Threads(identity, config.node.processes(usable_cores()))
        self.run_db, self.run_cpu = self.threads.run_db, self.threads.run_cpu
        self.store: Store = open_store(home.database)
        # The second, read-only connection (opened after the store brought the schema up to
        # date): listings, status and the audit check read through it on their own thread.
        self.reader = open_reader(home.database)
        self.run_read = self.threads.run_read
        if self.card.body.tls_cert is None:
            self._add_tls()
        assert self.card.body.tls_cert is not None
        resume(self.store, self.card, now=int(clock()))
        refresh_revocation_certificate(home, identity, self.card, now=int(clock()))
        self.tls = NodeTls(identity, self.card.body.tls_cert, home.root)
        self.client = PeerClient(config.delivery.request_timeout, self.tls)
        self.deliveries = Deliveries(
            identity.node_id,
            self.store,
            self.run_db,
            self.client,
            config.delivery,
            clock,
            run_cpu=self.run_cpu,
        )
        self.rejections = Rejections(self.store, self.run_db, clock)
        self.receiver = Receiver(
            identity,
            self.store,
            self.run_db,
            self.run_cpu,
            self.rejections,
            clock,
            quota=Quota.of(config.limits),
            parallel=self.threads.cpu_parallel,
            reads=self.reader,
            run_read=self.run_read,
        )
        self.witness = Witness(identity, self.store, self.run_db, self.client, clock)
        self.admission = Admission(config.limits, self.store, self.run_db)
        self.sender = Sender(
            identity,
            self.store,
            self.run_db,
            self.run_cpu,
            self.deliveries,
            clock,
            reads=self.reader,
            run_read=self.run_read,
        )
        self.flow_ingest = FlowIngest(
            identity,
            self.store,
            self.run_db,
            self.run_cpu,
            clock,
            self._own_card,
            keep_per_unit=config.flow.keep_events_per_unit,
        )
        self.reporter = FlowReporter(
            identity,
            self.store,
            self.run_db,
            self.run_cpu,
            self.client,
            config.flow,
            clock,
            own_card=self._own_card,
            link_of=self._link_of,
        )
        self.flow_view = FlowView(
            identity,
            self.store,
            self.run_db,
            clock,
            own_card=self._own_card,
            link_of=self._link_of,
            silent_after=config.flow.silent_after,
        )
        self.sessions = Sessions(clock)
        self.metrics_token = metrics_token(home.root)
        self.dashboard_port: int | None = None
        self._dashboard_streams: set[object] = set()  # transports of signed-in live streams
        self.stopping = False
        self.ready = False
        self.started = clock()
        self.listen_port: int | None = None
        self._runners: list[web.AppRunner] = []
        self._background: list[asyncio.Task[None]] = []
        audit = config.audit
        self.audit_check = BackgroundCheck(
            self.reader,
            self.run_read,
            self.store,
            self.run_db,
            clock,
            sweep=partial(
                sweep_size,
                interval=audit.checkpoint_interval,
                full_interval=audit.full_check_interval,
            ),
        )

    def _add_tls(self) -> None:
        """A home made before cards pinned a TLS certificate: re-issue the card with one (same
        keys, same expiry, https endpoints), once, and say so in one line."""
        now = int(self.clock())
        card = with_tls(self.card, self.identity, now=now)
        write_card(self.home, card)
        tls_added(self.store, card, now=now)
        self.card, self.card_text = card, card.armored()
        self.log.warning(
            "node.tls_added",
            pin=card.tls_pin,
            action="this node now serves mutual TLS; send your new card to every peer "
            "(borderlink keys export) so they can reach you",
        )

    # the apps --------------------------------------------------------------------------------

    def peer_app(self) -> web.Application:
        """The peer API on this node's services (tests serve it without starting the node)."""
        return make_peer_app(
            PeerDeps(
                limits=self.config.limits,
                card_text=lambda: self.card_text,
                home_root=self.home.root,
                key_statement=self.key_statement,
                receiver=self.receiver,
                rejections=self.rejections,
                admission=self.admission,
                cosigning=Cosigning(self.store, self.run_db, self.clock, run_cpu=self.run_cpu),
                flow=self.flow_ingest,
                run_cpu=self.run_cpu,
                checkpoint=self._served_checkpoint,
                stopping=lambda: self.stopping,
                ready=lambda: self.ready,
                log=self.log,
            )
        )

    def admin_app(self) -> web.Application:
        host = self.config.host_port[0]
        running = Running(
            name=self.card.name,
            node_id=self.identity.node_id,
            started=self.started,
            listen=lambda: f"{host}:{self.listen_port}",
            card=lambda: self.card,
            crypto=self._crypto_status,
        )
        return make_admin_app(
            AdminDeps(
                status=Status(
                    running, self.reader, self.run_read, self.deliveries, self.witness, self.clock
                ),
                sender=self.sender,
                inbox=Inbox(self.sender, reads=self.reader, run_read=self.run_read),
                checkpoint=self._fresh_checkpoint,
                witness_round=self._witness_now,
                operations=OperationDeps(
                    store=self.store,
                    run_db=self.run_db,
                    run_cpu=self.threads.run_operator,
                    clock=self.clock,
                    own_card=self._own_card,
                    identity=self.identity,
                    after_peers_changed=self.after_peers_changed,
                    home=self.home,
                    after_keys_changed=self.after_keys_changed,
                    fetch=self.fetch,
                    reader=self.reader,
                    run_read=self.run_read,
                ),
                flow=FlowDeps(
                    view=self.flow_view,
                    sessions=self.sessions,
                    base_url=self.dashboard_url,
                    metrics_token_file=str(self.home.root / "metrics.token"),
                ),
            )
        )

    def dashboard_app(self) -> web.Application:
        return make_dashboard_app(
            DashboardDeps(
                view=self.flow_view,
                sessions=self.sessions,
                metrics_token=self.metrics_token,
                store=self.store,
                run_db=self.run_db,
                ingested=lambda: self.flow_ingest.ingested,
                stopping=lambda: self.stopping,
                hosts=self._dashboard_hosts,
                streaming=self._dashboard_streams,
            )
        )

    def dashboard_url(self) -> str | None:
        if self.dashboard_port is None:
            return None
        host = parse_listen(self.config.dashboard.listen)[0]
        shown_host = f"[{host}]" if ":" in host else host
        return f"http://{shown_host}:{self.dashboard_port}"

    def _dashboard_hosts(self) -> set[str]:
        """The Host values a browser sends for this listener (its address, and localhost for a
        loopback one)."""
        if self.dashboard_port is None:
            return set()
        host = parse_listen(self.config.dashboard.listen)[0]
        port = self.dashboard_port
        names = {f"[{host}]" if ":" in host else host}
        if host.startswith("127.") or host == "::1":
            names.add("localhost")
        return {f"{n}:{port}" for n in names}

    def _link_of(self, node_id: bytes) -> str:
        return self.deliveries.link(node_id).link

    def _crypto_status(self) -> CryptoStatus:
        pool = self.threads.pool
        if pool is None:
            return CryptoStatus(processes=0, running=0, failing=False)
        return CryptoStatus(
            processes=pool.processes, running=len(pool.pids()), failing=pool.failing
        )

    def _own_card(self) -> Card:
        """Checked at the time of asking, as the CLI does when the node is down: a node started
        before its card expired must not vouch for it after. The text is parsed and its
        signature checked once per card (it changes only by a key change), the time each call."""
        text, now = self.card_text, int(self.clock())
        checked = self._own_checked
        if checked is None or checked[0] != text:
            checked = self._own_checked = (text, parse_card(text, now=now))
        else:
            check_valid_at(checked[1], now)
        return checked[1]

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        resumed = await self.run_db(self._resume)
        host, port = self.config.host_port
        limits = self.config.limits
        quiet_loop_errors(asyncio.get_running_loop())
        peer_runner = web.AppRunner(
            self.peer_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=5.0,
            keepalive_timeout=limits.keepalive_timeout,
            # A refused request's unread body (an anonymous caller's after 401, a peer's after
            # 429 or 413) is not read at all: the connection closes, and the caller pays a new
            # handshake, within its address's connection rate, to send more. aiohttp's default
            # (read and drop for 10 s) let one peer over its budget have the node decrypt and
            # drop 512 KB batches as fast as it could send them (another peer's median delivery
            # 6 -> 51 ms; with no lingering, 6 ms).
            lingering_time=0.0,
            logger=http_logger(),  # an unparsable request: one sampled line, no traceback
        )
        await peer_runner.setup()
        site = GatedSite(
            peer_runner,
            host,
            port,
            ssl_context=self.tls.server_context(await self.admission.trusted_certificates()),
            max_per_address=limits.max_connections_per_address,
            handshake_timeout=limits.header_timeout,
            max_connections=limits.max_connections,
            connect_rate=limits.connection_rate,
            connect_burst=limits.connection_burst,
            peer_of=self.admission.peer_of_certificate,
            max_per_peer=limits.max_connections_per_peer,
        )
        try:
            await site.start()
        except OSError as exc:  # port taken, no permission: a start-up error, said in one line
            await peer_runner.cleanup()
            raise NodeError(
                f"cannot start the node on {host}:{port}: {os_reason(exc)}",
                hint="pick another address with --listen HOST:PORT, or stop the other process",
            ) from exc
        sockets = site.sockets
        self.listen_port = sockets[0].getsockname()[1] if sockets else port
        admin_runner = web.AppRunner(self.admin_app(), access_log=None)
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
        await self._start_dashboard()
        await self.run_db(self._name_flow_self)
        await self.deliveries.start()
        await self.reporter.refresh()
        audit = self.config.audit
        self._background = [
            asyncio.create_task(self._check_audit()),
            asyncio.create_task(self._warm()),
            asyncio.create_task(self._every(audit.checkpoint_interval, self.checkpoint)),
            asyncio.create_task(self._every(audit.prune_interval, self._prune)),
            asyncio.create_task(
                self._every(audit.witness_interval, self.witness.round, self.witness.next_delay)
            ),
        ]
        self.ready = True
        self.log.info(
            "node.started",
            listen=f"{host}:{self.listen_port}",
            resumed=resumed,
            admin=str(sock_path),
            dashboard=self.dashboard_url() or "off",
        )

    async def _warm(self) -> None:
        """With ``[node] crypto_start = "start"``, the crypto workers now, not the first time
        the crypto thread is busy (each imports for a while)."""
        if self.threads.pool is not None and self.config.node.crypto_start == "start":
            self.threads.pool.start_soon()

    async def _start_dashboard(self) -> None:
        """The dashboard and /metrics on their local HTTP listener (``[dashboard] listen``)."""
        listen = self.config.dashboard.listen
        if listen == "off":
            return
        host, port = parse_listen(listen)
        # A closed page's live stream ends when its connection does (handler_cancellation),
        # not at its next write: a page whose filters changed gives its slot back at once.
        runner = web.AppRunner(
            self.dashboard_app(),
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=True,
            keepalive_timeout=10.0,  # an idle connection goes after 10 s, not aiohttp's 75
        )
        await runner.setup()
        site = CappedSite(
            runner,
            host,
            port,
            max_connections=DASHBOARD_CONNECTIONS,
            kept=self._dashboard_streams,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            for r in self._runners:
                await r.cleanup()
            raise NodeError(
                f"cannot start the dashboard on {host}:{port}: {os_reason(exc)}",
                hint="pick another address with [dashboard] listen in config.toml "
                '(or BORDERLINK_DASHBOARD_LISTEN), "off" for none',
            ) from exc
        addresses = runner.addresses
        self.dashboard_port = int(addresses[0][1]) if addresses else port
        self._runners.append(runner)

    def _name_flow_self(self) -> None:
        with self.store.unit(self.clock()) as u:
            u.set_flow_self(self.identity.node_id)

    async def stop(self) -> None:
        self.stopping = True
        self.ready = False
        await cancelled(self._background)
        await self.reporter.stop()
        await self.deliveries.stop()
        for r in self._runners:
            await r.cleanup()
        await self.run_db(self._resume)
        await self.client.close()
        await self.run_read(self.reader.close)
        await self.run_db(self.store.close)
        await self.threads.aclose()
        self.threads.shutdown()
        with contextlib.suppress(FileNotFoundError):
            self.home.admin_socket.unlink()
        self.log.info("node.stopped")

    async def serve_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._stopping_on, sig, stop)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _stopping_on(self, sig: signal.Signals, stop: asyncio.Event) -> None:
        """SIGTERM, SIGINT and SIGHUP all stop the node gracefully (SIGHUP does not reload: a
        changed config takes effect on the next start), each said in the log."""
        self.log.info("node.signal", signal=sig.name, action="shutting down gracefully")
        stop.set()

    async def _every(
        self,
        interval: float,
        job: Callable[[], Awaitable[object]],
        delay: Callable[[float], float] = lambda interval: interval,
    ) -> None:
        """Run ``job`` every ``delay(interval)`` seconds (the witness jitters its rounds, so
        nodes do not all ask each other at once); a failure is logged and retried next time."""
        while True:
            await asyncio.sleep(delay(interval))
            try:
                await job()
            except Exception:
                self.log.exception("node.background_error", job=getattr(job, "__name__", "?"))

    def _resume(self) -> int:
        with self.store.unit(self.clock()) as u:
            return u.resume_inflight()

    async def _prune(self) -> None:
        def prune() -> None:
            with self.store.unit(self.clock()) as u:
                u.prune_seen()

        await self.run_db(prune)
        for _ in range(100):  # at most a million events a round; the next round goes on
            step = partial(prune_flow, self.store, self.config.flow, self.clock())
            if await self.run_db(step) < PRUNE_BATCH:
                break

    # jobs and what the routes call -----------------------------------------------------------

    async def _check_audit(self) -> None:
        """At start: verify the entries appended since the node last did (on the reader's
        thread; deliveries go on meanwhile). Damage is logged, and no checkpoint is signed."""
        try:
            verified = await self.audit_check.run()
        except AuditError as exc:
            self.log.error("audit.damaged", error=exc.message, action=_LOOK)
            return
        self.log.info("audit.checked", verified=verified.prefix.size)

    async def checkpoint(self, force: bool = False) -> str:
        """Sign a checkpoint if the audit log grew (PROTOCOL.md 12.2); returns the latest note.
        The entries appended since the last check are recomputed first (BackgroundCheck), then
        signing, on the writer's thread, compares recorded roots only: O(log n)."""
        try:
            await self.audit_check.run()
        except AuditError as exc:
            raise AuditError(f"refusing to sign: {exc.message}; {_LOOK}") from exc
        now = self.clock()
        signed = await self.run_db(
            sign_checkpoint, self.store, self.identity, now, actor="node", force=force, full=False
        )
        if signed.new:
            self.log.info("checkpoint.published", size=str(checkpoint_size(signed.note)))
        return signed.note

    async def _served_checkpoint(self) -> str:
        note = await self.run_db(cosigned_note, self.store)
        return note if note is not None else await self.checkpoint()

    async def _fresh_checkpoint(self) -> str:
        await self.checkpoint(force=True)
        return await self.run_db(cosigned_note, self.store) or ""

    async def _witness_now(self) -> dict[str, str]:
        await self.witness.round()
        return self.witness.outcomes()

    async def fetch(self, name: str, path: str) -> bytes:
        """GET ``path`` from the trusted peer ``name`` (for an operation such as importing a
        coordinator's directory); a failure is a DeliveryFailed in our words."""
        rec = await self.run_db(self.store.peer_by_name, name)
        if rec is None or rec.status != "trusted":
            raise NodeError(f"no trusted peer named {shown(name)}")
        answer = await self.client.get(PeerInfo.of(rec), path, limit=1024 * 1024)
        if answer.status != 200:
            raise NodeError(f"{shown(name)} answered HTTP {answer.status} for {path}")
        return answer.body

    async def key_statement(self, text: str, source: str) -> tuple[str, bytes]:
        """A peer's rotation, renewal or revocation (PROTOCOL.md 13.5): applied, then the
        node's view of its peers (TLS anchors, delivery) follows it."""
        applied = await self.run_db(
            apply_statement,
            self.store,
            self.identity,
            text,
            now=int(self.clock()),
            source=source,
            sample=lambda src, reason, peer: self.rejections.sample(src, reason, sender=peer),
        )
        if applied.outcome == "applied":
            self.log.info("keys.peer_changed", peer=applied.peer)
            await self.after_peers_changed()
        return applied.outcome, applied.receipt

    async def after_keys_changed(self, identity: Identity | None, card: Card | None) -> None:
        """This node rotated or renewed (``identity`` and ``card`` new) or queued a revocation:
        sign, decrypt and serve with the new keys from now on, and send the statements."""
        if identity is not None and card is not None:
            self.identity.take_over(identity)
            self.card, self.card_text = card, card.armored()
            if card.body.tls_cert is not None and card.body.tls_cert != self.tls.cert_der:
                self.tls.reload(card.body.tls_cert)
                await self.client.close()  # pooled connections presented the old certificate
            self.log.info("keys.changed", seq=card.seq, fingerprint=card.identity.fingerprint)
        await self.deliveries.notices_queued()

    async def after_peers_changed(self) -> None:
        """A peer was added, updated, removed or revoked through the admin API: forget what is
        cached about peers (the rate limiter's trusted ids) and bring delivery up to date."""
        self.admission.forget_peers()
        self.tls.trust(await self.admission.trusted_certificates())
        await self.deliveries.refresh()
        await self.reporter.refresh()
