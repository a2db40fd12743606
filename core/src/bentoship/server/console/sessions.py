"""Console sessions: made by signing in with an API token, kept in memory, ended by signing out.

A session knows the digest of the token it was made with (never the token), so a token revoked
or expired after sign-in ends its sessions at their next request. Each session has its own CSRF
token, which every form and every non-GET request from the console carries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.types import Scope

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SIGNIN_COOKIE",
    "Session",
    "SessionBook",
    "cookie_header",
    "same_secret",
    "session_key",
]

SESSION_COOKIE = "bentoship_session"
SIGNIN_COOKIE = "bentoship_signin"
"""The sign-in form's CSRF secret (a double-submit cookie: there is no session yet)."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same_secret(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest((given or "").encode(), expected.encode())


@dataclass(frozen=True)
class Session:
    token_digest: str
    csrf: str
    expires: float


class SessionBook:
    def __init__(self, seconds: float = SESSION_SECONDS) -> None:
        self.seconds = seconds
        self._sessions: dict[str, Session] = {}

    def open(self, token_digest: str) -> tuple[str, Session]:
        """A new session's cookie value and the session."""
        self._prune()
        key = secrets.token_urlsafe(32)
        session = Session(token_digest, secrets.token_urlsafe(32), time.time() + self.seconds)
        self._sessions[_digest(key)] = session
        return key, session

    def get(self, key: str | None) -> Session | None:
        if not key:
            return None
        session = self._sessions.get(_digest(key))
        if session is None or session.expires <= time.time():
            return None
        return session

    def close(self, key: str | None) -> None:
        if key:
            self._sessions.pop(_digest(key), None)

    def _prune(self) -> None:
        moment = time.time()
        for key in [k for k, s in self._sessions.items() if s.expires <= moment]:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]


def cookie_header(name: str, value: str, *, max_age: int, secure: bool = False) -> str:
    """A ``Set-Cookie`` value: HttpOnly, SameSite=Strict, for the whole site."""
    flags = f"; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return f"{name}={value}{flags}{'; Secure' if secure else ''}"


def session_key(scope: Scope) -> str | None:
    """The session cookie of a request, if it has one."""
    header = next((v for k, v in scope["headers"] if k == b"cookie"), b"")
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header.decode("latin-1"))
    except Exception:  # a malformed Cookie header reads as no session
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel else None
