"""The API token: made once, kept private, and checked on every API request."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..connection import write_private

__all__ = [
    "INFO_PATH",
    "OPENAPI_PATH",
    "PUBLIC_PATHS",
    "TOKEN_FILE",
    "TOKEN_HEADER",
    "TokenAuth",
    "load_or_create_token",
]

TOKEN_HEADER = b"x-yatai-api-token"
TOKEN_FILE = "token"
INFO_PATH = "/api/v1/bentoship/info"
OPENAPI_PATH = "/api/v1/bentoship/openapi.json"
PUBLIC_PATHS = frozenset({INFO_PATH, OPENAPI_PATH})
"""The routes without a token: discovery of the extensions, and the API's description."""


def load_or_create_token(data_dir: Path) -> str:
    """The server's API token: kept in ``<data-dir>/token`` (mode 0600), made on first start."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


class TokenAuth:
    """Reject every API request without the right token (constant-time compare): in
    ``X-YATAI-API-TOKEN`` as bentoml sends it, or as ``Authorization: Bearer`` as Prometheus
    does."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            given = next((v for k, v in scope["headers"] if k == TOKEN_HEADER), b"")
            if not given:
                bearer = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
                given = bearer[7:] if bearer[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.token):
                problem = "wrong API token" if given else "missing X-YATAI-API-TOKEN header"
                response = JSONResponse(
                    {
                        "error": f"{problem}; use the token from the server's connection.json "
                        "(or BENTO_CLOUD_API_KEY)"
                    },
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
