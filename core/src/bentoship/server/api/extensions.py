"""bentoship's own routes beside BentoCloud's.

Discovery, revisions, rollback, logs, the long-poll wait, and for verified rollouts: promote,
discard, the canary's traffic split and each revision's traffic counts.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..._version import __version__
from ...refs import revision_name
from .. import schemas
from ..endpoint.split import RouteType, TrafficSplit
from ..endpoint.traffic import LATENCY_BOUNDS
from ..errors import Invalid
from ..paths import INFO_PATH
from .bodies import CanarySplitBody, RevisionBody, parse
from .common import Services, json_body
from .deployments import deployment_json, revision_json
from .params import LogsParams, WaitParams, query

__all__ = ["EXTENSIONS", "routes"]

EXTENSIONS = (
    "revisions",
    "rollback",
    "logs",
    "wait",
    "candidates",
    "canary",
    "traffic",
    "analysis",
    "shadow",
    "events",
    "metrics",
    "monitoring",
    "quality",
    "approvals",
    "traces",
)
MAX_LOG_LINES = 10000


def routes(services: Services) -> list[Route]:
    controller = services.controller

    async def info(request: Request) -> JSONResponse:
        services.require_extensions()
        return JSONResponse(
            {"server": "bentoship", "version": __version__, "extensions": list(EXTENSIONS)}
        )

    async def revisions(request: Request) -> JSONResponse:
        services.require_extensions()
        dep = controller.get(request.path_params["name"])
        items = [
            revision_json(services, rev, dep, active=rev.uid == dep.serving_revision)
            for rev in controller.views.revisions(dep.name)
        ]
        return JSONResponse(schemas.listing(items))

    async def revision_ref(request: Request) -> tuple[str, str | None]:
        """The deployment's name and the body's optional ``revision`` (a name or a uid)."""
        services.require_extensions()
        name = request.path_params["name"]
        ref = parse(RevisionBody, await json_body(request)).revision
        controller.get(name)
        return name, ref

    async def rollback(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        body = parse(RevisionBody, await json_body(request))
        controller.get(name)
        dep = await controller.rollback(
            name, body.revision, reason=body.reason or "", force=body.force
        )
        return JSONResponse(deployment_json(services, dep))

    async def promote(request: Request) -> JSONResponse:
        dep = await controller.promote(*(await revision_ref(request)))
        return JSONResponse(deployment_json(services, dep))

    async def discard(request: Request) -> JSONResponse:
        services.require_extensions()
        dep = await controller.discard(request.path_params["name"])
        return JSONResponse(deployment_json(services, dep))

    async def canary(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        body = parse(CanarySplitBody, await json_body(request))
        try:
            split = TrafficSplit(
                weight=body.weight,
                route_type=RouteType(body.route_type or RouteType.RANDOM),
                route_by=body.route_by or None,
            )
        except ValueError as exc:
            raise Invalid(f"canary: {exc}; send {{weight: 0-100, route_type, route_by}}") from None
        dep = await controller.set_split(name, split)
        return JSONResponse(deployment_json(services, dep))

    async def traffic(request: Request) -> JSONResponse:
        services.require_extensions()
        dep = controller.get(request.path_params["name"])
        items = []
        for rev in controller.views.revisions(dep.name):
            counts = controller.traffic.of(rev.uid)
            items.append({"revision": revision_name(rev.seq), "uid": rev.uid, **counts.to_dict()})
        return JSONResponse(
            {"deployment": dep.name, "latency_bounds": list(LATENCY_BOUNDS), "revisions": items}
        )

    async def logs(request: Request) -> JSONResponse:
        services.require_extensions()
        tail = min(query(LogsParams, request).tail, MAX_LOG_LINES)
        rev = controller.views.revision(
            request.path_params["name"], request.path_params["revision"]
        )
        observed = services.observed
        if observed is None:
            lines = controller.views.logs(rev, tail)
        else:
            await observed.read_logs()
            found = await asyncio.to_thread(
                observed.logs.search, rev.deployment, revision=revision_name(rev.seq), limit=tail
            )
            lines = [line.line for line in found]
        return JSONResponse({"revision": rev.uid, "name": revision_name(rev.seq), "lines": lines})

    async def wait(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        params = query(WaitParams, request)
        dep = controller.get(name)
        known = params.status or controller.views.status(dep)
        await controller.views.wait_for_change(
            name, known, params.timeout, known_phase=params.phase
        )
        return JSONResponse(deployment_json(services, controller.get(name)))

    one = "/api/v2/deployments/{name:str}"
    return [
        Route(INFO_PATH, info),
        Route(f"{one}/revisions", revisions, methods=["GET"]),
        Route(f"{one}/revisions/{{revision:str}}/logs", logs, methods=["GET"]),
        Route(f"{one}/rollback", rollback, methods=["POST"]),
        Route(f"{one}/promote", promote, methods=["POST"]),
        Route(f"{one}/discard", discard, methods=["POST"]),
        Route(f"{one}/canary", canary, methods=["PUT"]),
        Route(f"{one}/traffic", traffic, methods=["GET"]),
        Route(f"{one}/wait", wait, methods=["GET"]),
    ]
