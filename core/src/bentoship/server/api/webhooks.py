"""Webhooks for the deployments' events: add one (its secret is shown once), list, delete, and
read its delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..webhooks import WebhookBook
from .bodies import Body, parse
from .common import Services, json_body

__all__ = ["WebhookBody", "routes"]


class WebhookBody(Body):
    """A receiver's URL, the event kinds it wants (null: all notified kinds) and the format."""

    url: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    events: list[Annotated[StrictStr, Field(max_length=64)]] | None = Field(None, max_length=20)
    format: Literal["cloudevents", "slack"] = "cloudevents"


def routes(services: Services, book: WebhookBook) -> list[Route]:
    async def add(request: Request) -> JSONResponse:
        services.require_extensions()
        body = parse(WebhookBody, await json_body(request))
        hook = book.add(body.url, body.events, body.format)
        return JSONResponse(hook.to_api(with_secret=True))

    async def listing(request: Request) -> JSONResponse:
        services.require_extensions()
        return JSONResponse({"webhooks": [h.to_api() for h in book.all()]})

    async def remove(request: Request) -> Response:
        services.require_extensions()
        book.remove(request.path_params["id"])
        return Response(status_code=204)

    async def deliveries(request: Request) -> JSONResponse:
        services.require_extensions()
        return JSONResponse({"deliveries": book.deliveries(request.path_params["id"])})

    base = "/api/v1/bentoship/webhooks"
    return [
        Route(base, add, methods=["POST"]),
        Route(base, listing, methods=["GET"]),
        Route(f"{base}/{{id:str}}", remove, methods=["DELETE"]),
        Route(f"{base}/{{id:str}}/deliveries", deliveries, methods=["GET"]),
    ]
