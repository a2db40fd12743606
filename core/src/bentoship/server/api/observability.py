"""A deployment's metrics and events, and the control plane's Prometheus page."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..observe.hub import Observability
from ..observe.series import RESOLUTION
from .common import Services
from .params import Moment, Params, moment, query

__all__ = ["PROMETHEUS_PATH", "EventsParams", "MetricsParams", "routes"]

PROMETHEUS_PATH = "/metrics"
Revision = Annotated[str, Field(pattern=r"^r[0-9]{1,9}$")]


class MetricsParams(Params):
    """A time range (default: the last hour), a step (multiple of 10 s), one revision or all."""

    since: Moment = "1h"
    until: Moment | None = None
    step: Annotated[int, Field(ge=RESOLUTION, le=86400)] = RESOLUTION
    revision: Revision | None = None


class EventsParams(Params):
    """With ``after`` (a cursor: the last id read, 0 for the first), the oldest ``limit``
    events after it; without, the newest ``limit``; from ``since``."""

    after: Annotated[int, Field(ge=0)] | None = None
    since: Moment | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 1000


def routes(services: Services, observability: Observability) -> list[Route]:
    controller = services.controller

    async def metrics(request: Request) -> Response:
        """A deployment's metrics per revision over a range, as series a chart draws."""
        services.require_extensions()
        params = query(MetricsParams, request)
        name = controller.get(request.path_params["name"]).name
        now = time.time()
        until = moment(params.until, now) if params.until else now
        await asyncio.wrap_future(observability.sampler.flush_traffic())
        answer = await asyncio.to_thread(
            functools.partial(
                observability.series.query_json,
                name,
                since=moment(params.since, now),
                until=until,
                step=params.step,
                revision=params.revision,
            )
        )
        return Response(answer, media_type="application/json")

    async def events(request: Request) -> JSONResponse:
        """A deployment's events, oldest first."""
        services.require_extensions()
        params = query(EventsParams, request)
        name = controller.get(request.path_params["name"]).name
        since = moment(params.since, time.time()) if params.since else 0.0
        found = controller.events.of(name, after=params.after, since=since, limit=params.limit)
        return JSONResponse({"deployment": name, "events": [e.to_json() for e in found]})

    async def prometheus(request: Request) -> Response:
        """Every revision's metrics in the Prometheus exposition format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from ..observe.exposition import registry_for

        page = generate_latest(registry_for(controller, observability.sampler))
        return Response(page, media_type=CONTENT_TYPE_LATEST)

    one = "/api/v2/deployments/{name:str}"
    return [
        Route(f"{one}/metrics", metrics, methods=["GET"]),
        Route(f"{one}/events", events, methods=["GET"]),
        Route(PROMETHEUS_PATH, prometheus, methods=["GET"]),
    ]
