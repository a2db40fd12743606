"""The control plane's ASGI app: the API's routers and the console behind the access check."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from .api import (
    analyses,
    api_tokens,
    approvals,
    deployments,
    extensions,
    logs,
    monitoring,
    observability,
    platform,
    pods,
    quality,
    registry,
    secrets,
    shadow,
    traces,
    webhooks,
)
from .api.common import Services
from .api.openapi import document
from .auth import Access
from .console import pages
from .console.sessions import SessionBook
from .errors import DomainError
from .observe.hub import Observability
from .paths import OPENAPI_PATH, is_api
from .registry.service import Registry
from .responses import error_response
from .rollout.controller import Controller
from .settings import ServerSettings
from .tokens import TokenBook

__all__ = ["build_app"]


def build_app(
    settings: ServerSettings,
    registry_service: Registry,
    controller: Controller,
    observed: Observability | None = None,
) -> ASGIApp:
    services = Services(
        settings=settings, controller=controller, registry=registry_service, observed=observed
    )
    tokens = TokenBook(controller.store, settings.token)
    watched = (
        [
            *logs.routes(services, observed.logs),
            *traces.routes(services, observed, tokens),
            *observability.routes(services, observed),
            *monitoring.routes(services, observed),
            *quality.routes(services, observed),
        ]
        if observed is not None
        else []
    )
    sessions = SessionBook()
    routes: list[BaseRoute] = [
        *watched,
        *api_tokens.routes(tokens),
        *secrets.routes(controller.secrets.book),
        *extensions.routes(services),
        *analyses.routes(services),
        *shadow.routes(services),
        *approvals.routes(services),
        *webhooks.routes(services, controller.webhooks),
        *platform.routes(services),
        *pods.routes(services),
        *deployments.routes(services),
        *registry.routes(services),
    ]

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return error_response(exc.status, exc.message, request.url.path)

    async def no_route(request: Request, exc: Exception) -> Response:
        path = request.url.path
        what = "API route" if is_api(path) else "page"
        return error_response(404, f"no such {what}: {request.method} {path}", path)

    async def openapi(request: Request) -> Response:
        return JSONResponse(described)

    routes.append(Route(OPENAPI_PATH, openapi, methods=["GET"]))
    described = document([r for r in routes if isinstance(r, Route) and is_api(r.path)])
    routes.extend(pages.routes(services, tokens, sessions))
    app = Starlette(
        routes=routes,
        exception_handlers={DomainError: domain_error, 404: no_route, 405: no_route},
    )
    return Access(app, tokens, sessions)
