"""A crypto worker process (node/runtime.py ``CryptoPool``): reads calls on stdin, answers on
stdout, one at a time, until its stdin ends.

Frames are a 4-byte big-endian length and a pickle. The first frame is the node's identity (its
secret bytes, node id and retired decryption keys), sent once; every later one a call
``(function, args, kwargs)``, answered ``(True, result)`` or ``(False, exception)``. The parent
holds the other end of both pipes: when the node ends, however it ends (kill -9 included), the
kernel closes them, this process reads the end of its input and exits, so no worker outlives
its node. Only the node writes to these pipes; nothing from a peer is unpickled here (envelopes
arrive as bytes inside the node's own call).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from typing import IO, Any

LENGTH = struct.Struct(">I")


def read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (n,) = LENGTH.unpack(head)
    data = stream.read(n)
    return data if len(data) == n else None


def frame(data: bytes) -> bytes:
    return LENGTH.pack(len(data)) + data


def main() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from node import runtime
    from node.process import harden
    from protocol.identity import Identity

    harden()  # no core dump of the keys, not readable through ptrace
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    first = read_frame(inp)
    if first is None:
        return
    secret, node_id, retired = pickle.loads(first)  # noqa: S301 - the node's own pipe
    me = Identity.from_secret_bytes(secret, node_id=node_id)
    me.retire([(X25519PrivateKey.from_private_bytes(k), until) for k, until in retired])
    while (call := read_frame(inp)) is not None:
        fn, args, kwargs = pickle.loads(call)  # noqa: S301 - the node's own pipe
        args = tuple(me if isinstance(a, runtime.Me) else a for a in args)
        kwargs = {k: me if isinstance(v, runtime.Me) else v for k, v in kwargs.items()}
        answer: tuple[bool, Any]
        try:
            answer = (True, fn(*args, **kwargs))
        except Exception as exc:  # the caller raises it, in its own process
            answer = (False, exc)
        try:
            data = pickle.dumps(answer)
        except Exception as exc:  # an unpicklable result or exception
            data = pickle.dumps((False, RuntimeError(f"crypto worker: {type(exc).__name__}")))
        out.write(frame(data))
        out.flush()


if __name__ == "__main__":
    main()
