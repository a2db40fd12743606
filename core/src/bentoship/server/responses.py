"""The answers a refused or failed request gets: JSON for the API, a short page for the console."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse, JSONResponse, Response

from .paths import is_api

__all__ = ["SECURITY_HEADERS", "error_response"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""The headers of every console page."""


def error_response(
    status: int, message: str, path: str = "/api/", *, link: tuple[str, str] | None = None
) -> Response:
    """``{"error": message}`` for an API path; for a console page, a page saying the same, with
    a way on (``link``: its path and text; the deployments by default)."""
    if is_api(path):
        return JSONResponse({"error": message}, status_code=status)
    href, text = link or ("/deployments", "Deployments")
    return HTMLResponse(
        f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{escape(message)}</p>"
        f'<p><a href="{href}">{text}</a></p>',
        status_code=status,
        headers=SECURITY_HEADERS,
    )
