"""The control plane's own paths: the routes open to all, and which paths are the API's."""

from __future__ import annotations

__all__ = [
    "FAVICON_PATH",
    "INFO_PATH",
    "OPENAPI_PATH",
    "PUBLIC_PATHS",
    "SIGNIN_PATH",
    "SPANS_PATH",
    "STATIC_PREFIX",
    "is_api",
]

INFO_PATH = "/api/v1/bentoship/info"
OPENAPI_PATH = "/api/v1/bentoship/openapi.json"
SIGNIN_PATH = "/login"
FAVICON_PATH = "/favicon.ico"
STATIC_PREFIX = "/static/"
SPANS_PATH = "/v1/traces"
PUBLIC_PATHS = frozenset({INFO_PATH, OPENAPI_PATH, SIGNIN_PATH, FAVICON_PATH, SPANS_PATH})
"""The routes the access check lets through: discovery, the API's description, the sign-in
form (and the empty favicon browsers ask for), and the OTLP span receiver, which checks its
own tokens (a revision's span token, or an API token)."""


def is_api(path: str) -> bool:
    """Whether ``path`` is the API's (JSON answers, 401 without a token) or the console's."""
    return path.startswith("/api/") or path == "/metrics"
