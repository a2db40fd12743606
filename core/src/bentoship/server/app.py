"""The control plane's ASGI app: the API's routers behind token auth, and one error handler."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .api import deployments, extensions, logs, observability, platform, registry
from .api.common import Services
from .api.openapi import document
from .auth import OPENAPI_PATH, TokenAuth
from .errors import DomainError
from .observe.hub import Observability
from .registry.service import Registry
from .rollout.controller import Controller
from .settings import ServerSettings

__all__ = ["build_app", "error_response"]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(
    settings: ServerSettings,
    registry_service: Registry,
    controller: Controller,
    observed: Observability | None = None,
) -> ASGIApp:
    services = Services(
        settings=settings, controller=controller, registry=registry_service, observed=observed
    )
    watched = (
        [*logs.routes(services, observed.logs), *observability.routes(services, observed)]
        if observed is not None
        else []
    )
    routes = [
        *watched,
        *extensions.routes(services),
        *platform.routes(services),
        *deployments.routes(services),
        *registry.routes(services),
    ]

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return error_response(exc.status, exc.message)

    async def no_route(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no such API route: {request.method} {request.url.path}")

    async def openapi(request: Request) -> Response:
        return JSONResponse(described)

    routes.append(Route(OPENAPI_PATH, openapi, methods=["GET"]))
    described = document(routes)
    app = Starlette(
        routes=routes,
        exception_handlers={DomainError: domain_error, 404: no_route, 405: no_route},
    )
    return TokenAuth(app, settings.token)
