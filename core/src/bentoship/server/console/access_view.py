"""Signing in to the console with an API token, signing out, and the API tokens page.

The sign-in form is the one page open to all; its secret is kept in a cookie of its own (several
sign-in pages may be open at once). A session is opened for the token, never with the token
itself in a cookie.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..api.api_tokens import principal_of, token_json
from ..errors import DomainError
from ..paths import SIGNIN_PATH
from ..tokens import Scope, TokenBook, digest
from .common import PageRenderer, back
from .sessions import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    SessionBook,
    cookie_header,
    same_secret,
    session_key,
)

__all__ = ["safe_next", "signin_routes", "token_routes"]

SIGNIN_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
"""The sign-in form's secret as made here (kept while the browser has it: several sign-in pages
may be open at once, or loaded by the browser itself, as for the favicon)."""


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this server, else the deployments."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/deployments"
    return target


def signin_routes(tokens: TokenBook, sessions: SessionBook, page: PageRenderer) -> list[Route]:
    """The sign-in form, signing in, and signing out."""

    async def signin_form(request: Request) -> Response:
        return signin_page(request, request.query_params.get("next"), "", 200)

    def signin_page(request: Request, target: str | None, error: str, status: int) -> Response:
        kept = request.cookies.get(SIGNIN_COOKIE, "")
        secret = kept if SIGNIN_SECRET.fullmatch(kept) else secrets.token_urlsafe(32)
        response = page(
            request, "login.html", status, signin_csrf=secret, next=safe_next(target), error=error
        )
        response.headers["Set-Cookie"] = cookie_header(SIGNIN_COOKIE, secret, max_age=3600)
        return response

    async def signin(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        target = str(form.get("next") or "")
        given = str(form.get(CSRF_FIELD) or "")
        if not same_secret(given, request.cookies.get(SIGNIN_COOKIE, "")):
            return signin_page(
                request, target, "The form expired or came from another site: try again.", 403
            )
        token = str(form.get("token") or "").strip()
        found = tokens.authenticate(token.encode()) if token else "enter an API token"
        if isinstance(found, str):
            return signin_page(request, target, f"Sign-in refused: {found}.", 401)
        key, _ = sessions.open(digest(token))
        response = RedirectResponse(safe_next(target), status_code=303)
        response.headers.append(
            "Set-Cookie", cookie_header(SESSION_COOKIE, key, max_age=int(SESSION_SECONDS))
        )
        response.headers.append("Set-Cookie", cookie_header(SIGNIN_COOKIE, "", max_age=0))
        return response

    async def signout(request: Request) -> Response:
        sessions.close(session_key(request.scope))
        response = RedirectResponse(SIGNIN_PATH, status_code=303)
        response.headers["Set-Cookie"] = cookie_header(SESSION_COOKIE, "", max_age=0)
        return response

    return [
        Route(SIGNIN_PATH, signin_form, methods=["GET"]),
        Route(SIGNIN_PATH, signin, methods=["POST"]),
        Route("/logout", signout, methods=["POST"]),
    ]


def token_routes(tokens: TokenBook, page: PageRenderer) -> list[Route]:
    """The API tokens page: list, create and revoke tokens."""

    async def api_tokens(request: Request) -> Response:
        return tokens_page(request)

    def tokens_page(
        request: Request, created: dict[str, Any] | None = None, problem: str = ""
    ) -> Response:
        listed = [token_json(t) for t in tokens.list()]
        return page(
            request,
            "api_tokens.html",
            status=400 if problem else 200,
            tokens=listed,
            scopes=[s.value for s in Scope],
            created=created,
            problem=problem,
            notice=request.query_params.get("notice", ""),
        )

    async def create_token(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=20)
        try:
            record, value = tokens.create(
                str(form.get("name") or ""),
                description=str(form.get("description") or ""),
                scopes=[str(s) for s in form.getlist("scopes")] or None,
                expired_at=str(form.get("expired_at") or "") or None,
                by=principal_of(request),
            )
        except DomainError as exc:
            return tokens_page(request, problem=exc.message)
        return tokens_page(request, created=token_json(record, value))

    async def revoke_token(request: Request) -> Response:
        try:
            token = tokens.revoke(request.path_params["uid"])
        except DomainError as exc:
            return back("/api_tokens", notice=exc.message)
        return back("/api_tokens", notice=f"Revoked {token.name}.")

    return [
        Route("/api_tokens", api_tokens, methods=["GET"]),
        Route("/api_tokens", create_token, methods=["POST"]),
        Route("/api_tokens/{uid:str}/revoke", revoke_token, methods=["POST"]),
    ]
