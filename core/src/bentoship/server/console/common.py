"""What the console's page modules share: how they render a page, who the session acts as, and
the redirect back to a page with a notice or a problem."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from ..responses import SECURITY_HEADERS
from ..tokens import Principal

__all__ = ["PageRenderer", "back", "principal_in"]

PageRenderer = Callable[..., HTMLResponse]
"""``page(request, template, status=200, **context)``: a template rendered as the response."""


def principal_in(request: Request) -> Principal | None:
    """Who the console session acts as (set by the access check)."""
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def back(url: str, **message: str) -> RedirectResponse:
    """A 303 to ``url``, with each ``message`` (``notice``, ``problem``) added to its query."""
    note = "".join(f"&{k}={quote(v, safe='')}" for k, v in message.items())
    if note:
        url += ("&" if "?" in url else "?") + note.lstrip("&")
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
