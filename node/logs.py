"""structlog set-up: readable lines on a terminal, JSON lines otherwise (one event per line).

Log calls pass ids, peer names, reasons and timings only; bodies and keys never reach a logger
(the core's error messages carry none either, see tests/unit/protocol/test_envelope_attacks.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import structlog

from node.ratelimit import Sampler, sampled
from protocol.text import escaped

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure(fmt: str = "auto", level: int | str = logging.INFO) -> None:
    """``level`` is a logging level or its name in the config ([log_level]: debug adds a line
    per message received or delivered to the per-batch summaries info logs)."""
    if isinstance(level, str):
        level = _LEVELS[level]
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    # JSON lines need the traceback as text; the console renderer formats exceptions itself.
    exc: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info] if use_json else []
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *exc,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class _OneLine(logging.Handler):
    """Each record of a library's stdlib logger as one structlog line, no traceback, sampled per
    kind of error (1st, 2nd, 4th...): a peer-facing socket must not let anyone write the log."""

    def __init__(self, event: str) -> None:
        super().__init__(logging.WARNING)
        self.event = event
        self.counts = Sampler(max_keys=1000)

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        kind = type(exc).__name__ if exc is not None else record.getMessage()[:80]
        n = self.counts.count(kind)
        if not sampled(n):
            return
        structlog.get_logger("borderlink.http").warning(
            self.event,
            error=kind,
            detail=escaped(str(exc) if exc is not None else record.getMessage(), limit=200),
            source=escaped(str(record.args[0]), limit=64)
            if isinstance(record.args, tuple) and record.args
            else None,
            count=n,
        )


def http_logger() -> logging.Logger:
    """The logger aiohttp's request handler reports unparsable requests to ("Error handling
    request" with a traceback, on stderr through logging's last resort, one per request)."""
    logger = logging.getLogger("borderlink.http.server")
    if not logger.handlers:
        logger.addHandler(_OneLine("http.bad_request"))
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    return logger


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Errors of connections the event loop reports (a failed TLS transport, a reset socket) as
    one line each, sampled per kind; anything else (a bug) still gets its traceback."""
    counts = Sampler(max_keys=1000)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not isinstance(exc, OSError):  # ssl.SSLError and ConnectionError are OSErrors
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        kind = f"{context.get('message', '')}: {type(exc).__name__}"
        n = counts.count(kind)
        if sampled(n):
            structlog.get_logger("borderlink.loop").warning(
                "connection.error",
                error=escaped(kind, limit=120),
                detail=escaped(str(exc), limit=200),
                count=n,
            )

    loop.set_exception_handler(handler)
