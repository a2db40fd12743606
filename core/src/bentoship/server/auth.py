"""Who may do what: the API token or console session of each request, and its scopes.

Every request but the public ones carries a token (``X-YATAI-API-TOKEN`` as bentoml sends it,
or ``Authorization: Bearer`` as Prometheus does) or a console session cookie. A wrong, revoked
or expired token gets 401; a token without the scope a route needs gets 403. A request made
with a session cookie that changes anything must carry the session's CSRF token too.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..connection import write_private
from .console.sessions import CSRF_FIELD, CSRF_HEADER, SessionBook, same_secret, session_key
from .paths import PUBLIC_PATHS, SIGNIN_PATH, STATIC_PREFIX, is_api
from .responses import SECURITY_HEADERS, error_response
from .tokens import SAFE_METHODS, Principal, TokenBook

__all__ = ["TOKEN_FILE", "TOKEN_HEADER", "Access", "load_or_create_token"]

TOKEN_HEADER = b"x-yatai-api-token"
TOKEN_FILE = "token"
MAX_FORM_BYTES = 64 * 1024


def load_or_create_token(data_dir: Path) -> str:
    """The server's API token: kept in ``<data-dir>/token`` (mode 0600), made on first start."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # so that `--token <value>` does not read as an option
        token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def _header(scope: Scope, name: bytes) -> bytes:
    return next((v for k, v in scope["headers"] if k == name), b"")


def _signin_page_for_htmx(scope: Scope) -> Response:
    """A page's own request (polling, a fragment) once its session has ended: the whole page
    goes to the sign-in form, and back to itself after, rather than the form being swapped
    into a part of the page."""
    page = urlsplit(_header(scope, b"hx-current-url").decode("latin-1"))
    target = page.path + (f"?{page.query}" if page.query else "")
    redirect = {"HX-Redirect": _signin_url(target if target.startswith("/") else "/deployments")}
    return Response(status_code=204, headers={**redirect, **SECURITY_HEADERS})


def _signin_url(target: str) -> str:
    """The sign-in form, which comes back to ``target`` once signed in."""
    return f"{SIGNIN_PATH}?next={quote(target, safe='')}"


def _presented_token(scope: Scope) -> bytes:
    given = _header(scope, TOKEN_HEADER)
    if not given:
        bearer = _header(scope, b"authorization")
        given = bearer[7:] if bearer[:7].lower() == b"bearer " else b""
    return given


def _refused(status: int, message: str, *, api: bool) -> Response:
    return error_response(status, message, "/api/" if api else "/", link=(SIGNIN_PATH, "Sign in"))


async def _read_form_token(receive: Receive) -> tuple[str | None, list[Message]]:
    """The form's CSRF field and the messages read, to hand on unchanged."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES or not message.get("more_body", False):
            break
    values = parse_qs(body.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
    return (values[0] if values else None), messages


def _replay(messages: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class Access:
    """The access check in front of the API and the console."""

    def __init__(self, app: ASGIApp, tokens: TokenBook, sessions: SessionBook) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        api = is_api(path)
        given = _presented_token(scope)
        if given:
            found = self.tokens.authenticate(given)
            if not isinstance(found, Principal):
                hint = "use a valid token (the server's connection.json or BENTO_CLOUD_API_KEY)"
                await _refused(401, f"{found}; {hint}", api=api)(scope, receive, send)
                return
            principal = found
        else:
            key = session_key(scope)
            session = self.sessions.get(key)
            found = self.tokens.authenticate_digest(session.token_digest) if session else "none"
            if session is None or not isinstance(found, Principal):
                self.sessions.close(key)
                await self._unauthenticated(path, scope, api=api)(scope, receive, send)
                return
            principal = found
            if method not in SAFE_METHODS:
                given_csrf = _header(scope, CSRF_HEADER).decode("latin-1") or None
                content_type = _header(scope, b"content-type")
                if given_csrf is None and content_type.startswith(
                    b"application/x-www-form-urlencoded"
                ):
                    given_csrf, messages = await _read_form_token(receive)
                    receive = _replay(messages, receive)
                if not same_secret(given_csrf, session.csrf):
                    message = "cross-site request refused: the CSRF token is missing or wrong"
                    await _refused(403, f"{message}; reload the page", api=api)(
                        scope, receive, send
                    )
                    return
            scope.setdefault("state", {})["session"] = session
        if not principal.may(method, path):
            await _refused(403, principal.refusal(method, path), api=api)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let a websocket through with a token that may read its path; else refuse the
        handshake: 401 or 403 with the JSON reason, or a policy-violation close where the
        server cannot send a response."""
        path: str = scope["path"]
        given = _presented_token(scope)
        found = self.tokens.authenticate(given) if given else "no API token given"
        if not isinstance(found, Principal):
            hint = "use a valid token (the server's connection.json or BENTO_CLOUD_API_KEY)"
            refusal = _refused(401, f"{found}; {hint}", api=True)
        elif not found.may("GET", path):
            refusal = _refused(403, found.refusal("GET", path), api=True)
        else:
            scope.setdefault("state", {})["principal"] = found
            await self.app(scope, receive, send)
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await refusal(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})

    def _unauthenticated(self, path: str, scope: Scope, *, api: bool) -> Response:
        if api:
            return _refused(
                401,
                "missing API token: send it as the X-YATAI-API-TOKEN header or as "
                "Authorization: Bearer <token>; use the token from the server's "
                "connection.json (or BENTO_CLOUD_API_KEY)",
                api=True,
            )
        if _header(scope, b"hx-request") == b"true":
            return _signin_page_for_htmx(scope)
        if scope["method"] in SAFE_METHODS:
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(_signin_url(target), 303)
        return _refused(401, "sign in first: your session has ended", api=False)
