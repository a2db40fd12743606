"""BentoCloud's secret routes, as ``bentoml secret list/create/apply/delete`` call them.

Answers show each secret's keys, paths and type, never a value.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import schemas
from ..secrets.book import SecretBook
from ..secrets.records import SecretRecord
from .bodies import SecretBody, SecretUpdateBody, parse
from .common import check_cluster, json_body
from .params import ClusterParams, SecretListParams, query

__all__ = ["routes", "secret_json"]


def secret_json(secret: SecretRecord) -> dict[str, Any]:
    return {
        **schemas.resource(
            uid=secret.uid,
            name=secret.name,
            resource_type="secret",
            created_at=secret.created_at,
            updated_at=secret.updated_at,
        ),
        "description": secret.description,
        "creator": schemas.USER,
        "content": secret.shape,
        "cluster": schemas.cluster(),
        "bentoship": {"version": secret.version, "digest": secret.digest[:12]},
    }


def routes(book: SecretBook) -> list[Route]:
    def in_cluster(request: Request) -> None:
        check_cluster(query(ClusterParams, request).cluster)

    async def listing(request: Request) -> JSONResponse:
        params = query(SecretListParams, request)
        check_cluster(params.cluster)
        items = book.find(params.search or params.q)
        count = len(items) if params.count is None else params.count
        page = [secret_json(s) for s in items[params.start : params.start + count]]
        return JSONResponse(schemas.listing(page, start=params.start, total=len(items)))

    async def create(request: Request) -> JSONResponse:
        in_cluster(request)
        body = await json_body(request)
        parse(SecretBody, body)
        return JSONResponse(secret_json(book.create(body)))

    async def get(request: Request) -> JSONResponse:
        in_cluster(request)
        return JSONResponse(secret_json(book.get(request.path_params["name"])))

    async def update(request: Request) -> JSONResponse:
        in_cluster(request)
        body = await json_body(request)
        parse(SecretUpdateBody, body)
        return JSONResponse(secret_json(book.update(request.path_params["name"], body)))

    async def delete(request: Request) -> JSONResponse:
        in_cluster(request)
        return JSONResponse(secret_json(book.delete(request.path_params["name"])))

    one = "/api/v1/org_secrets/{name:str}"
    return [
        Route("/api/v1/org_secrets", listing, methods=["GET"]),
        Route("/api/v1/org_secrets", create, methods=["POST"]),
        Route(one, get, methods=["GET"]),
        Route(one, update, methods=["PATCH"]),
        Route(one, delete, methods=["DELETE"]),
    ]
