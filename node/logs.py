"""structlog set-up: readable lines on a terminal, JSON lines otherwise (one event per line).

Log calls pass ids, peer names, reasons and timings only; bodies and keys never reach a logger
(the core's error messages carry none either, see tests/unit/protocol/test_envelope_attacks.py).
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
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
