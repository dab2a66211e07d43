"""Run the ``borderlink`` entry point inside the test process, with what a subprocess would see.

Starting a fresh interpreter per command (and importing cryptography, msgspec and the node's
modules again) was most of the CLI and integration tests' run time, yet few of those tests are
about the process itself. This runs ``cli.main.main`` - the console script's function, so the
one-line error handling is part of what is tested - under click's ``CliRunner`` isolation: its own
stdin, stdout and stderr, environment and working directory, all restored afterwards.

Differences from a real process, and why they do not matter for the tests that use this:

- stdin is a byte buffer, never a terminal, so commands that need a passphrase and have no
  source fail at once, as they do in a subprocess without a controlling terminal. Tests about
  terminal detection itself run a real process (tests/cli/test_passphrase.py).
- No timeout: a command is bounded by its own timeouts (the admin socket's 30 s).
- The SQLite connections a command opens are closed when it returns, as its exit would: the
  CLI closes the store it opens (node/local.py), and ``_closing_databases`` makes sure of it.
- ``serve`` must not run here: it runs an event loop, installs signal handlers and configures
  structlog for the whole process. tests/integration/harness.py sends it to a real process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from unittest import mock

from click.testing import CliRunner

from cli.main import main


def run_main(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: str | bytes | IO[Any] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``borderlink ARGS`` in this process; the result is shaped like ``subprocess.run``'s.

    ``env`` is the whole environment, as for a subprocess: variables of ``os.environ`` missing
    from it are unset for the call (CliRunner on its own only adds and overrides). ``None``
    keeps the current environment. ``input`` is stdin (empty if not given).

    An exception escaping ``main`` fails the calling test with its traceback: a real process
    would have printed that traceback, and the CLI promises one-line errors instead.
    """
    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    runner = CliRunner()
    with (
        contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext(),
        _closing_databases(),
        runner.isolation(input=input, env=overrides) as (out, err, _),
    ):
        try:
            status: object = main(list(args))  # the console script does sys.exit(main())
        except SystemExit as exc:
            status = exc.code
        except Exception as exc:
            raise AssertionError(
                f"borderlink {' '.join(args)} raised instead of printing one line: {exc!r}"
            ) from exc
        returncode = _returncode(status)
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(["borderlink", *args], returncode, stdout, stderr)


def _returncode(status: object) -> int:
    """What the interpreter makes of ``sys.exit(status)``: None is 0, a non-int is printed."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    print(status, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _closing_databases() -> Iterator[None]:
    """Close the SQLite connections opened inside, as the end of a command's process would.

    The CLI closes the store it opens (node/local.py); a command that failed half-way, or a
    connection opened elsewhere, would otherwise rely on the process exit. In here, dropping a
    connection is not enough: a CPython connection is in a reference cycle (its statement cache
    is an lru_cache wrapping it), so it stays open until the cyclic garbage collector runs, at any
    later moment of the test, e.g. while a node process or the test itself works on the same
    database. test_audit_tamper.py's direct edits of node.db then failed with "disk I/O error".
    Other threads' connections opened meanwhile are closed too: run no node in-process then.
    """
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def tracked(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        opened.append(conn)
        return conn

    try:
        with mock.patch.object(sqlite3, "connect", tracked):
            yield
    finally:
        for conn in opened:
            conn.close()
