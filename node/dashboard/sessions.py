"""Who may see the dashboard: one-time login tokens, session keys sent as bearers, and the
metrics token.

``borderlink dashboard`` asks the node (over the admin socket, so only the home's owner can) for a
login link. Its token is good once, for five minutes, and rides in the URL's fragment, which a
browser never sends to a server nor puts in a Referer. The page trades it (POST /api/login) for a
session key that it keeps in ``sessionStorage`` and sends as ``Authorization: Bearer`` itself.

Why no cookie: browsers scope cookies by host, not port, so any other server on 127.0.0.1 that the
operator's browser visits would be sent a session cookie, and a page there could make the browser
send it back here (sign-out by CSRF, at least). ``sessionStorage`` belongs to the origin, port
included, and a header is sent only by our own script, so neither another local server nor
another site ever holds or replays the key. The price is that a script running in the page could
read it, which the page's CSP (no inline or foreign script) and text-only rendering rule out.

Sessions live in the node's memory (a restart signs everyone out). Tokens and keys are compared by
their SHA-256 in a dict, never as strings with ``==``. A stock Prometheus scrapes /metrics with
the bearer token in ``HOME/metrics.token`` (mode 0600, made at first start).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from pathlib import Path

from node.home import write_private
from node.runtime import Clock

LOGIN_TTL = 300.0
SESSION_TTL = 12 * 3600.0
MAX_PENDING = 64  # unused login tokens kept; older ones are dropped


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class Sessions:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._logins: dict[bytes, float] = {}
        self._sessions: dict[bytes, float] = {}

    def login_token(self) -> str:
        now = self.clock()
        self._logins = {k: t for k, t in self._logins.items() if t > now}
        while len(self._logins) >= MAX_PENDING:
            self._logins.pop(next(iter(self._logins)))
        token = secrets.token_urlsafe(32)
        self._logins[_key(token)] = now + LOGIN_TTL
        return token

    def log_in(self, token: str) -> str | None:
        """A new session key for a valid, unused login token (which is used up); else None."""
        expires = self._logins.pop(_key(token), None)
        now = self.clock()
        if expires is None or expires <= now:
            return None
        self._sessions = {k: t for k, t in self._sessions.items() if t > now}
        session = secrets.token_urlsafe(32)
        self._sessions[_key(session)] = now + SESSION_TTL
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        expires = self._sessions.get(_key(session))
        return expires is not None and expires > self.clock()

    def log_out(self, session: str | None) -> bool:
        """Whether there was such a session (it is dead now either way)."""
        return bool(session) and self._sessions.pop(_key(session or ""), None) is not None


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credentials of ``Authorization: Bearer ...`` (the scheme in any case, RFC 7235 2.1)."""
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def metrics_token(home_root: Path) -> str:
    """The bearer token /metrics asks for, made once (0600) and kept across restarts."""
    path = home_root / "metrics.token"
    try:
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def same(token: str | None, expected: str) -> bool:
    return token is not None and secrets.compare_digest(_key(token), _key(expected))
