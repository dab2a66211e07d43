"""What ``serve`` does to its own process before it touches the home: one node per home, no core
dumps, enough file descriptors.

**One node per home.** ``hold_home_lock`` takes an exclusive ``flock`` on ``HOME/node.lock`` and
writes the holder's pid into it. A second node on the same home is refused before it opens the
database or the admin socket (which it would otherwise take over, and delete when it stops, leaving
the first node serving peers while the CLI says it is not running). The kernel drops a ``flock``
when its holder dies, however it dies, so a node killed with SIGKILL leaves nothing to clean up:
the file stays, the lock does not. The file is never deleted: a process that opened it just before
the unlink would lock an inode nobody else sees.

**No core dumps.** A core file of a running node holds the unlocked identity's secret keys.
``harden`` sets RLIMIT_CORE to 0 and, on Linux, clears the "dumpable" flag (which also keeps other
processes of the same user from reading the node's memory through ptrace or ``/proc/PID/mem``).
Both are best-effort: where the system does not offer them, the node runs as before.

**File descriptors.** Every peer connection and the database use one; the soft RLIMIT_NOFILE (often
1024) is raised to the hard limit, at most ``MAX_OPEN_FILES``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import sys
from types import TracebackType

from node.home import Home
from protocol.errors import NodeError, os_reason

LOCK_NAME = "node.lock"
MAX_OPEN_FILES = 65536
_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


class HomeLock:
    """The exclusive lock on a home, held until ``release`` (or the process's end)."""

    def __init__(self, home: Home, fd: int) -> None:
        self.home = home
        self._fd: int | None = fd

    def release(self) -> None:
        """Forget the pid and unlock; the file stays (see the module docstring)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor of the open file drops the flock

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def hold_home_lock(home: Home) -> HomeLock:
    """Lock ``home`` for this process, or refuse in one line naming the node that holds it."""
    path = home.root / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise NodeError(f"cannot open the lock file {path}: {os_reason(exc)}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise NodeError(f"cannot lock {path}: {os_reason(exc)}") from exc
        who = f"pid {holder}" if holder else "another process"
        raise NodeError(
            f"a node is already running on {home.root} ({who})",
            hint="stop it first, or give this one another --home",
        ) from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise NodeError(f"cannot write the lock file {path}: {os_reason(exc)}") from exc
    return HomeLock(home, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def harden() -> None:
    """No core dumps, not dumpable, more file descriptors: each best-effort and silent."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    raise_open_files_limit()


def raise_open_files_limit(cap: int = MAX_OPEN_FILES) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most ``cap``); never lower it.
    Returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft
