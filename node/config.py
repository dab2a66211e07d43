"""Node settings: ``HOME/config.toml`` decoded with msgspec, then ``BORDERLINK_*`` env overrides.

Every setting has a safe default, so a node runs with no config file at all. An override's name is
the setting's upper-cased path: ``[delivery] backoff_max`` is ``BORDERLINK_DELIVERY_BACKOFF_MAX``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from protocol.decoding import convert
from protocol.errors import BorderlinkError, ValidationError, os_reason
from protocol.flow import DEFAULT_WITHHOLD, Tlp, Withholdable
from protocol.text import shown

# Bounds keep a typo from making a node that never retries, spins, or waits for ever.
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=365 * 86400)]
PerSecond = Annotated[float, msgspec.Meta(gt=0, le=1e9)]


class Delivery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    batch_size: Count = 64  # envelopes per POST when a queue is backed up
    backoff_base: Seconds = 1.0  # first retry after about this many seconds
    backoff_max: Seconds = 300.0  # retries never wait longer than this
    request_timeout: Seconds = 15.0
    concurrency: Count = 2  # requests in flight per peer


class Limits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_body: Annotated[int, msgspec.Meta(ge=1024)] = 8 * 1024 * 1024  # one POST (a batch)
    max_batch: Count = 256
    body_timeout: Seconds = 10.0  # a slow sender must send its whole body within this
    # Budgets bind below what one node serves, so no single caller takes it all. A peer's is
    # counted in envelopes, each opened on the one crypto thread (about 1,000/s on a loaded
    # two-core host): a batch costs one token per envelope, any other request one. 400/s with
    # a burst of 800 lets a backed-up peer send a dozen 64-envelope batches at once, then drain
    # at 400 messages/s; peer_burst must be at least max_batch, or the largest batches are
    # never paid for.
    peer_rate: PerSecond = 400.0  # envelopes (and other requests) per second per peer, sustained
    peer_burst: Count = 800
    peer_concurrency: Count = 8  # a peer's requests in progress at once; more get 429
    # Requests per second per address (or /64) of callers without a peer's certificate; the
    # health checks (/livez, /readyz) are not counted, every other request is (the card, and
    # the 401s); new connections per address have their own bound, connection_rate.
    anonymous_rate: PerSecond = 20.0
    anonymous_burst: Count = 40
    # Connections (node/http/listener.py): a new connection must send its first byte and finish
    # its TLS handshake within header_timeout each, then complete a request's headers within
    # keepalive_timeout, which also closes an idle keep-alive connection. One address (a /64 for
    # IPv6) holds at most max_connections_per_address connections and opens at most
    # connection_rate a second (burst connection_burst); at most max_connections are in TLS at
    # once (each holds about 300 KiB), the oldest not from a trusted peer making room, and one
    # peer at most max_connections_per_peer.
    header_timeout: Seconds = 10.0
    keepalive_timeout: Seconds = 15.0
    max_connections_per_address: Count = 64
    max_connections: Count = 512
    max_connections_per_peer: Count = 8  # one trusted peer's, its oldest closed for a new one
    connection_rate: PerSecond = 20.0
    connection_burst: Count = 40
    # One trusted peer's share of this node's inbox (read or not): over it, its new messages are
    # refused with quota_exceeded and nothing is stored, so one peer cannot fill the disk.
    max_inbox_per_sender: Count = 10_000
    max_inbox_bytes_per_sender: Annotated[int, msgspec.Meta(ge=1024 * 1024, le=1 << 40)] = (
        256 * 1024 * 1024
    )


class Audit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    checkpoint_interval: Seconds = 5.0  # sign a checkpoint this often when the log grew
    witness_interval: Seconds = 30.0  # fetch, check and cosign each peer's checkpoint this often
    prune_interval: Seconds = 600.0  # forget expired replay-table entries this often
    full_check_interval: Seconds = (
        600.0  # re-check every old entry about this often (a slice a round)
    )


class Keys(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Days envelopes sealed under replaced keys still open after `keys rotate` (PROTOCOL.md
    # 13.2); `--overlap-days` overrides it for one rotation. 0 cuts the old keys off at once.
    overlap_days: Annotated[int, msgspec.Meta(ge=0, le=90)] = 7


def _default_withhold() -> dict[Tlp, list[Withholdable]]:
    return {k: list(v) for k, v in DEFAULT_WITHHOLD.items()}  # type: ignore[misc, arg-type]


class Flow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Who this node sends flow reports to (PROTOCOL.md 14): peer names; unset, every trusted
    # peer whose card says unit_type "coordinator" and whose fingerprint was verified; [] reports
    # to no one.
    report_to: list[str] | None = None
    interval: Seconds = 1.0  # report this often (a report with no events says the unit is up)
    max_events: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 500  # per report
    # Fields left out of reported events, per TLP: id, type, priority, recipients, peer, size,
    # latency, reason, action. TLP:RED by default withholds who a message went to and its type.
    withhold: dict[Tlp, list[Withholdable]] = msgspec.field(default_factory=_default_withhold)
    # A coordinator shows a unit as failing when no report came for this long.
    silent_after: Seconds = 5.0
    # Flow events older than this are deleted (the metrics' totals keep counting them); this
    # node's own are kept until every coordinator it reports to was sent them.
    keep_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    # A coordinator keeps at most this many of one unit's events (its newest; the older ones
    # still count in the metrics), so no unit can fill its disk however fast it reports.
    keep_events_per_unit: Annotated[int, msgspec.Meta(ge=1000)] = 1_000_000


class Dashboard(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The dashboard and /metrics (HTTP, token-protected). Port 0 picks a free port at each
    # start (`borderlink dashboard` prints it); a fixed port suits a Prometheus scrape config.
    # "off" serves neither.
    listen: str = "127.0.0.1:0"


class Node(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Worker processes that open and seal envelopes (node/runtime.py), so cryptography uses every
    # core instead of one thread under the interpreter's lock. Unset: one per core this process
    # may run on; 0 keeps it on the node's crypto thread.
    crypto_processes: Annotated[int, msgspec.Meta(ge=0, le=256)] | None = None
    # When they start: "busy", the first time a call finds the crypto thread busy (a node that
    # never has a backlog never pays their start, about 0.3 s of CPU and 30 MB each); "start",
    # with the node, so the first backlog already has them.
    crypto_start: Literal["busy", "start"] = "busy"

    def processes(self, cores: int) -> int:
        return cores if self.crypto_processes is None else self.crypto_processes


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:7443"
    log_format: Literal["auto", "console", "json"] = "auto"
    # "info" logs a summary per batch received or delivered; "debug" adds a line per message.
    log_level: Literal["debug", "info", "warning"] = "info"
    node: Node = msgspec.field(default_factory=Node)
    delivery: Delivery = msgspec.field(default_factory=Delivery)
    limits: Limits = msgspec.field(default_factory=Limits)
    audit: Audit = msgspec.field(default_factory=Audit)
    keys: Keys = msgspec.field(default_factory=Keys)
    flow: Flow = msgspec.field(default_factory=Flow)
    dashboard: Dashboard = msgspec.field(default_factory=Dashboard)

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (``[::1]:7443`` for IPv6) -> (host, port); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        raise ValueError(f"the address must be HOST:PORT such as 127.0.0.1:7443, not {text!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"the port must be 0 to 65535, not {port}")
    return host.strip("[]") or "127.0.0.1", int(port)


_SECTIONS: Final = {
    "node": Node.__struct_fields__,
    "delivery": Delivery.__struct_fields__,
    "limits": Limits.__struct_fields__,
    "audit": Audit.__struct_fields__,
    "keys": Keys.__struct_fields__,
    "flow": Flow.__struct_fields__,
    "dashboard": Dashboard.__struct_fields__,
}


def _overrides(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """setting path ("delivery.batch_size") -> (variable, value), for the BORDERLINK_* variables
    that name real settings; other BORDERLINK_* variables are not ours here."""
    out: dict[str, tuple[str, str]] = {}
    for key, value in env.items():
        if not key.startswith("BORDERLINK_"):
            continue
        path = key[len("BORDERLINK_") :].lower()
        for section, fields in _SECTIONS.items():
            name = path[len(section) + 1 :]
            if path.startswith(section + "_") and name in fields:
                out[f"{section}.{name}"] = (key, value)
                break
        else:
            if path in Config.__struct_fields__ and path not in _SECTIONS:
                out[path] = (key, value)
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise BorderlinkError(f"cannot read config {path}: {os_reason(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise BorderlinkError(f"config {path} is not UTF-8 text (byte {exc.start})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.14 says where; 3.11 to 3.13 carry no structured position.
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        where = f" (line {line}, column {column})" if line else ""
        raise BorderlinkError(f"config {path} is not valid TOML{where}") from exc


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    data = _read(path) if path.exists() else {}
    overrides = _overrides(os.environ if env is None else env)
    for setting, (_, value) in overrides.items():
        section, _, name = setting.rpartition(".")
        table = data.setdefault(section, {}) if section else data
        if not isinstance(table, dict):  # [delivery] written as a value in the file
            table = data[section] = {}
        table[name] = value
    try:
        cfg = convert(data, Config, strict=False, what="config")
    except ValidationError as exc:
        variable, value = overrides.get(exc.path, ("", ""))
        text = f"{variable}={shown(value)}: {exc.rule}" if variable else f"config {path}: {exc}"
        raise BorderlinkError(
            text,
            hint="see node/config.py for every setting, its type and its default",
        ) from exc
    for setting, text in (("listen", cfg.listen), ("dashboard.listen", cfg.dashboard.listen)):
        if setting == "dashboard.listen" and text == "off":
            continue
        try:
            parse_listen(text)
        except ValueError as exc:
            variable = overrides.get(setting, ("", ""))[0]
            raise BorderlinkError(f"{variable or f'config {path}'}: {setting}: {exc}") from exc
    return cfg
