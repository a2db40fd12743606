"""BentoCloud's API token routes, as ``bentoml api-token create/list/get/delete`` call them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import schemas
from ..store import ApiTokenRecord, now
from ..tokens import SERVER_PRINCIPAL, Principal, TokenBook
from .bodies import ApiTokenBody, parse
from .common import json_body
from .params import ApiTokenListParams, query

__all__ = ["principal_of", "routes", "token_json"]


def principal_of(request: Request) -> Principal:
    """Who the request acts as (set by the access check)."""
    principal = request.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else SERVER_PRINCIPAL


def token_json(token: ApiTokenRecord, value: str | None = None) -> dict[str, Any]:
    data = {
        **schemas.resource(
            uid=token.uid, name=token.name, resource_type="api_token", created_at=token.created_at
        ),
        "description": token.description,
        "scopes": token.scopes,
        "user": schemas.USER,
        "organization": schemas.organization(),
        "expired_at": token.expired_at,
        "last_used_at": token.last_used_at,
        "is_expired": token.expired_at is not None and token.expired_at <= now(),
        "is_api_token": True,
    }
    if value is not None:
        data["token"] = value
    return data


def routes(tokens: TokenBook) -> list[Route]:
    async def listing(request: Request) -> JSONResponse:
        params = query(ApiTokenListParams, request)
        items = tokens.list(params.search)
        count = len(items) if params.count is None else params.count
        page = [token_json(t) for t in items[params.start : params.start + count]]
        return JSONResponse(schemas.listing(page, start=params.start, total=len(items)))

    async def create(request: Request) -> JSONResponse:
        body = parse(ApiTokenBody, await json_body(request))
        record, value = tokens.create(
            body.name,
            description=body.description or "",
            scopes=body.scopes,
            expired_at=body.expired_at,
            by=principal_of(request),
        )
        return JSONResponse(token_json(record, value))

    async def get(request: Request) -> JSONResponse:
        return JSONResponse(token_json(tokens.get(request.path_params["uid"])))

    async def delete(request: Request) -> JSONResponse:
        return JSONResponse(token_json(tokens.revoke(request.path_params["uid"])))

    one = "/api/v1/api_tokens/{uid:str}"
    return [
        Route("/api/v1/api_tokens", listing, methods=["GET"]),
        Route("/api/v1/api_tokens", create, methods=["POST"]),
        Route(one, get, methods=["GET"]),
        Route(one, delete, methods=["DELETE"]),
    ]
