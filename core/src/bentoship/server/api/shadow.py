"""Shadow traffic: mirror a share of a deployment's requests to its held candidate, read the
figures and the report so far, and the pairs of answers themselves."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ...shadow import DEFAULT_TOLERANCE, ShadowReport, render_report
from ..errors import NotFound
from ..rollout.analysis_records import AnalysisKind
from .bodies import ShadowBody, parse
from .common import Services, json_body
from .params import ShadowPairsParams, query

__all__ = ["routes"]


def _body(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def routes(services: Services) -> list[Route]:
    controller = services.controller
    shadows = controller.shadows

    async def figures(name: str) -> dict[str, Any]:
        state = shadows.state(name)
        if state is None:
            return {"deployment": name, "active": False, "percent": 0, "report": None}
        report = await shadows.report(name, state.candidate, state.started_at, DEFAULT_TOLERANCE)
        return {"deployment": name, **state.to_api(), "report": report.to_dict()}

    async def put(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        body = parse(ShadowBody, await json_body(request))
        async with controller.runtime(name).lock:
            shadows.start(name, body.percent, body.apis)
        return JSONResponse(await figures(name))

    async def get(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        return JSONResponse(await figures(name))

    async def pairs(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        params = query(ShadowPairsParams, request)
        store = shadows.pairs
        rows = [] if store is None else await store.rows(name, params.since, params.limit)
        for row in rows:
            row.pop("candidate_uid", None)
            row["serving_body"] = _body(row["serving_body"])
            row["candidate_body"] = _body(row["candidate_body"])
        since = rows[-1]["time"] if rows else params.since
        return JSONResponse({"pairs": rows, "next_since": since})

    async def report(request: Request) -> HTMLResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        state = shadows.state(name)
        if state is not None:
            live = await shadows.report(name, state.candidate, state.started_at, DEFAULT_TOLERANCE)
            return HTMLResponse(render_report(live))
        record = controller.analyses.latest(name)
        stored = record.verdicts[-1].get("report") if record and record.verdicts else None
        if record is None or record.kind != AnalysisKind.SHADOW or stored is None:
            raise NotFound(
                f"deployment {name} mirrors nothing and has no shadow report; start with "
                f"PUT /api/v2/deployments/{name}/shadow or a shadow analysis"
            )
        return HTMLResponse(render_report(ShadowReport.from_dict(stored)))

    one = "/api/v2/deployments/{name:str}/shadow"
    return [
        Route(one, put, methods=["PUT"]),
        Route(one, get, methods=["GET"]),
        Route(f"{one}/pairs", pairs, methods=["GET"]),
        Route(f"{one}/report", report, methods=["GET"]),
    ]
