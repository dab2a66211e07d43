"""Node settings: ``HOME/config.toml`` decoded with msgspec, then ``BORDERLINK_*`` env overrides.

Every setting has a safe default, so a node runs with no config file at all. An override's name is
the setting's upper-cased path: ``[delivery] backoff_max`` is ``BORDERLINK_DELIVERY_BACKOFF_MAX``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from protocol.decoding import convert
from protocol.errors import BorderlinkError, ValidationError


class Delivery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    batch_size: int = 64  # envelopes per POST when a queue is backed up
    backoff_base: float = 1.0  # first retry after about this many seconds
    backoff_max: float = 300.0  # retries never wait longer than this
    request_timeout: float = 15.0
    concurrency: int = 2  # requests in flight per peer


class Limits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_body: int = 8 * 1024 * 1024  # one POST (a batch of envelopes)
    max_batch: int = 256
    body_timeout: float = 10.0  # a slow sender must send its whole body within this
    rate: float = 2000.0  # requests per second per caller, sustained: never binds a real peer
    burst: int = 4000


class Audit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    checkpoint_interval: float = 5.0  # sign a checkpoint this often when the log grew
    witness_interval: float = 30.0  # fetch, check and cosign each peer's checkpoint this often
    prune_interval: float = 600.0  # forget expired replay-table entries this often
    full_check_interval: float = 600.0  # recompute the whole tree before signing this often


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str = "127.0.0.1:7443"
    log_format: str = "auto"  # auto | console | json
    delivery: Delivery = msgspec.field(default_factory=Delivery)
    limits: Limits = msgspec.field(default_factory=Limits)
    audit: Audit = msgspec.field(default_factory=Audit)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


def _overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Only names of real settings are taken; other BORDERLINK_* variables are not ours here."""
    sections = {
        "delivery": Delivery.__struct_fields__,
        "limits": Limits.__struct_fields__,
        "audit": Audit.__struct_fields__,
    }
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("BORDERLINK_"):
            continue
        path = key[len("BORDERLINK_") :].lower()
        for section, fields in sections.items():
            name = path[len(section) + 1 :]
            if path.startswith(section + "_") and name in fields:
                out.setdefault(section, {})[name] = value
                break
        else:
            if path in Config.__struct_fields__ and path not in sections:
                out[path] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        base[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BorderlinkError(f"cannot read config {path}: {exc}") from exc
    data = _merge(data, _overrides(os.environ if env is None else env))
    try:
        cfg = convert(data, Config, strict=False, what="config")
    except ValidationError as exc:
        raise BorderlinkError(
            f"config {path}: {exc.message}",
            hint="see node/config.py for every setting, its type and its default",
        ) from exc
    try:
        cfg.host_port  # noqa: B018 - validate the listen address early
    except ValueError as exc:
        raise BorderlinkError(f"config: listen must be HOST:PORT, not {cfg.listen!r}") from exc
    return cfg
