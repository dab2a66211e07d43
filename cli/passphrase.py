"""Where the keystore passphrase comes from: an fd, a file, the environment, or a terminal prompt.

The first source given wins, in this order:

1. ``--passphrase-fd N``: read from descriptor N up to the first newline or EOF. Reading stops at
   the newline, so the rest of the stream is left for whoever reads it next (as gpg does).
2. ``--passphrase-file PATH``: the file's first line. A file group or others can read is used but
   warned about, not refused: secret mounts (Docker secrets 0444, Kubernetes 0644 by default) often
   have modes the operator cannot change, and refusing would push people to the environment
   variable, which leaks more easily (``/proc/PID/environ``, child processes, crash reports).
3. ``BORDERLINK_PASSPHRASE``: taken as is, and removed from the process's environment once read
   (``os.environ.pop``), so no child process inherits it. Set but empty is an error, not "unset":
   it is almost always a script expanding a missing variable.
4. A no-echo prompt, asked twice when creating a keystore. Only when stdin is a terminal *and*
   /dev/tty can be opened: with no controlling terminal ``getpass`` would fall back to reading
   stdin with echo on, or wait forever on a pipe. Otherwise fail at once with
   ``PassphraseUnavailable``; a script must name a source.

One trailing "\\n" or "\\r\\n" is stripped from fd and file input. Passphrases are bytes and are
compared as bytes: no Unicode normalisation, no trimming of spaces. There is deliberately no
``--passphrase VALUE`` option: command lines are visible to every user through ``ps``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from cli.options import PathArg, WholeNumber
from cli.output import note
from protocol.errors import PassphraseUnavailable, UsageError, os_reason

ENV_VAR = "BORDERLINK_PASSPHRASE"
MAX_PASSPHRASE_BYTES = 4096  # bounds the read from an fd or file that is not what the user meant

F = TypeVar("F", bound=Callable[..., Any])


def passphrase_options(f: F) -> F:
    """Add ``--passphrase-fd`` and ``--passphrase-file`` to a command."""
    precedence = (
        "Precedence: --passphrase-fd, then --passphrase-file, then $BORDERLINK_PASSPHRASE, "
        "then a prompt on the terminal."
    )
    f = click.option(
        "--passphrase-file",
        type=PathArg(dir_okay=False),
        metavar="PATH",
        help=f"Read the keystore passphrase from the first line of PATH. {precedence}",
    )(f)
    f = click.option(
        "--passphrase-fd",
        type=WholeNumber(min=0),
        metavar="N",
        help="Read the keystore passphrase from file descriptor N, up to the first newline.",
    )(f)
    return f


def passphrase_from_kwargs(
    fd: int | None, file: str | None, confirm: bool, *, purpose: str = "keystore"
) -> bytes:
    """The passphrase for a command decorated with ``passphrase_options``."""
    return get_passphrase(fd=fd, file=file, confirm=confirm, purpose=purpose)


def get_passphrase(
    *,
    fd: int | None,
    file: str | None,
    confirm: bool,
    purpose: str = "keystore",
    env: Mapping[str, str] | None = None,
    stdin_isatty: Callable[[], bool] | None = None,
    prompt: Callable[[str], str] | None = None,
    warn: Callable[[str], None] = note,
) -> bytes:
    """Return the passphrase from the first available source (see the module docstring).

    ``confirm`` asks twice at a prompt (creating a keystore); it does not apply to other sources.
    ``env``, ``stdin_isatty`` (the whole "can we prompt?" check), ``prompt`` and ``warn`` are for
    tests.
    """
    if fd is not None:
        return _nonempty(_read_fd(fd), f"--passphrase-fd {fd}")
    if file is not None:
        return _nonempty(_read_file(file, warn), f"--passphrase-file {file}")
    if env is None:
        # Read once, then gone from this process's environment: child processes, crash reports
        # and later reads do not see it (/proc/PID/environ keeps what the process started with).
        if ENV_VAR in os.environ:
            return _nonempty(os.fsencode(os.environ.pop(ENV_VAR)), ENV_VAR)
    elif ENV_VAR in env:
        return _nonempty(os.fsencode(env[ENV_VAR]), ENV_VAR)

    can_prompt = stdin_isatty if stdin_isatty is not None else _terminal_available
    if not can_prompt():
        raise PassphraseUnavailable("no passphrase given and no terminal to ask on")
    ask = prompt if prompt is not None else _tty_prompt
    if not confirm:
        return _nonempty(os.fsencode(ask(f"Passphrase for the {purpose}")), "the prompt")
    first = os.fsencode(ask(f"New passphrase for the {purpose}"))
    _nonempty(first, "the prompt")
    if os.fsencode(ask("Repeat the new passphrase")) != first:
        raise UsageError("the two passphrases do not match")
    return first


def _nonempty(passphrase: bytes, source: str) -> bytes:
    if not passphrase:
        raise UsageError(f"empty passphrase from {source}")
    return passphrase


def _first_line(data: bytes, source: str) -> bytes:
    line, newline, _ = data.partition(b"\n")
    if newline:
        line = line.removesuffix(b"\r")
    if len(line) > MAX_PASSPHRASE_BYTES:
        raise UsageError(f"passphrase from {source} is longer than {MAX_PASSPHRASE_BYTES} bytes")
    return line


def _read_fd(fd: int) -> bytes:
    """Read byte by byte so nothing past the newline is consumed from a shared stream."""
    source = f"--passphrase-fd {fd}"
    try:
        if os.isatty(fd):
            # Reading a terminal here would echo the passphrase; the prompt does it properly.
            raise UsageError(f"{source} is a terminal; leave it out to be prompted without echo")
        data = bytearray()
        while len(data) < MAX_PASSPHRASE_BYTES + 2 and (byte := os.read(fd, 1)):
            data += byte
            if byte == b"\n":
                break
    except OSError as exc:
        raise UsageError(f"cannot read the passphrase from {source}: {os_reason(exc)}") from exc
    return _first_line(bytes(data), source)


def _read_file(path: str, warn: Callable[[str], None]) -> bytes:
    source = f"--passphrase-file {path}"
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(MAX_PASSPHRASE_BYTES + 2)  # room for the "\r\n"
    except OSError as exc:
        raise UsageError(f"cannot read the passphrase from {source}: {os_reason(exc)}") from exc
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode) and mode & 0o077:
        warn(
            f"borderlink: warning: passphrase file {path} is accessible by group or others "
            f"(mode {mode:04o}); consider: chmod 600 {path}"
        )
    return _first_line(data, source)


def _terminal_available() -> bool:
    """True if a no-echo prompt can be shown and answered; never blocks."""
    if sys.stdin is None or not sys.stdin.isatty():
        return False
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(tty)
    return True


def _tty_prompt(text: str) -> str:
    # click re-asks on empty input and turns Ctrl-C / Ctrl-D into click.Abort (handled by main).
    value: str = click.prompt(text, hide_input=True, err=True)
    return value
