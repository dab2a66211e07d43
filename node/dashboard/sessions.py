"""Who may see the dashboard: one-time login tokens, session cookies, and the metrics token.

``borderlink dashboard`` asks the node (over the admin socket, so only the home's owner can) for a
login URL. Its token is good once, for five minutes; opening it sets an HttpOnly, SameSite=Strict
session cookie and redirects to a URL without the token, so the token is in no history, bookmark
or Referer afterwards. Sessions live in the node's memory (a restart logs everyone out). Tokens
are compared by their SHA-256 in a dict, never as strings with ``==``. A stock Prometheus scrapes
/metrics with the bearer token in ``HOME/metrics.token`` (mode 0600, made at first start).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from node.home import write_private
from node.runtime import Clock

LOGIN_TTL = 300.0
SESSION_TTL = 12 * 3600.0
MAX_PENDING = 64  # unused login tokens kept; older ones are dropped
COOKIE = "borderlink_session"


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
        """A new session for a valid, unused login token (which is used up); else None."""
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

    def log_out(self, session: str | None) -> None:
        if session:
            self._sessions.pop(_key(session), None)


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
