"""File arguments: reading an input ('-' is standard input) and writing an output ('-' or none is
standard output), with errors that name the file in our words.

An output file (``-o FILE``) may hold what only this unit should read (an audit export, a sealed
message), so it is created private (0600), never through a symlink, and never over an existing
file unless the command's ``--force`` (``force_option``) says so."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from protocol.errors import BorderlinkError, os_reason


def input_name(path: str) -> str:
    """How errors name a file argument: '-' is standard input."""
    return "standard input" if path == "-" else path


def read_bytes(path: str) -> bytes:
    """A file's bytes, or standard input's for '-': decoding is the parser's job, so a file
    that is not UTF-8 gets the parser's exact error rather than the locale's guess."""
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BorderlinkError(f"cannot read {path}: {os_reason(exc)}") from exc


def read_text(path: str) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BorderlinkError(
            f"cannot read {input_name(path)}: not UTF-8 text (byte {exc.start})"
        ) from exc


_FORCE = "borderlink.force"  # where force_option leaves its flag, in the command's ctx.meta


def _remember_force(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[_FORCE] = value
    return value


force_option = click.option(
    "--force",
    is_flag=True,
    expose_value=False,  # write_output reads it from the context: commands need no parameter
    callback=_remember_force,
    help="Replace the -o file if it exists.",
)
"""Add ``--force`` next to a command's ``-o``: ``write_output`` then replaces an existing file."""


def _forced() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_FORCE))


def _exists(output: str) -> BorderlinkError:
    return BorderlinkError(
        f"{output} already exists",
        hint="choose another -o file, or pass --force to replace it",
    )


def refuse_existing_output(output: str | None) -> None:
    """Refuse an existing ``-o`` file (without ``--force``) before a command does its work, so
    a refusal costs no passphrase prompt or signature; ``write_output`` checks again, atomically."""
    if output is not None and output != "-" and not _forced() and os.path.lexists(output):
        raise _exists(output)


def write_output(text: str, output: str | None, *, force: bool | None = None) -> None:
    """``text`` to the file ``output``, or to standard output for None or '-'.

    The file is created mode 0600 and never through a symlink. One that exists (a symlink
    included) is refused, unless ``force`` (default: the command's ``--force``, see
    ``force_option``): then it is replaced at once by a complete new file, written beside it and
    renamed over it, so a reader sees the old contents or the new, and a symlink is replaced
    itself, not followed.
    """
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    if force is None:
        force = _forced()
    data = text.encode()
    try:
        if force:
            _replace(output, data)
        else:
            _create(output, data)
    except FileExistsError as exc:
        raise _exists(output) from exc
    except OSError as exc:
        raise BorderlinkError(f"cannot write {output}: {os_reason(exc)}") from exc


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(path: str, data: bytes) -> None:
    """A new file (O_EXCL: an existing name, dangling symlink included, fails with EEXIST)."""
    fd = os.open(path, _NEW_FILE, 0o600)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)  # ours: O_EXCL made it
        raise
    os.close(fd)


def _replace(path: str, data: bytes) -> None:
    import tempfile  # here: reading a file (send, validate) should not pay for it

    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)  # renames over the name: a symlink there is replaced, not followed
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _sync_directory(directory: str) -> None:
    """Make the rename durable; best-effort (not every file system lets a directory be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
