"""Where the tasks and the connector find the API endpoint and token.

In order: task inputs, then ``BENTO_CLOUD_API_ENDPOINT`` / ``BENTO_CLOUD_API_KEY``, then the
Flyte secret ``bentoship/api_key`` (a token, used once an endpoint is known), then the local
control plane's ``connection.json``. Everything but the Flyte secret is bentoship's own order
(:func:`bentoship.connection.resolve_connection`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flytekit import Secret

if TYPE_CHECKING:
    from bentoship import AsyncClient, Client

SECRET_GROUP = "bentoship"
SECRET_KEY = "api_key"
API_KEY_SECRET = Secret(group=SECRET_GROUP, key=SECRET_KEY)
"""The Flyte secret the tasks request (optional on Kubernetes: a missing secret is skipped)."""


def secret_token() -> str | None:
    """The ``bentoship/api_key`` Flyte secret, or None when it is not mounted."""
    import flytekit

    try:
        value = flytekit.current_context().secrets.get(group=SECRET_GROUP, key=SECRET_KEY)
    except (ValueError, OSError):
        return None
    return value or None


def credentials(endpoint: str | None, token: str | None) -> tuple[str | None, str | None]:
    """The endpoint and token to hand to the bentoship client (None: let it look further)."""
    from bentoship.connection import ENDPOINT_ENV, TOKEN_ENV

    endpoint = endpoint or None
    token = token or None
    has_endpoint = bool(endpoint or os.environ.get(ENDPOINT_ENV))
    if token is None and has_endpoint and not os.environ.get(TOKEN_ENV):
        token = secret_token()
    return endpoint, token


def client(endpoint: str | None = None, token: str | None = None) -> Client:
    from bentoship import Client

    return Client(*credentials(endpoint, token))


def async_client(endpoint: str | None = None, token: str | None = None) -> AsyncClient:
    from bentoship import AsyncClient

    return AsyncClient(*credentials(endpoint, token))
