"""Approvals of held candidates: request one, list them, wait for a decision, and decide
(``approve`` needs the ``approve`` scope); the decision, who made it and why go into events."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictStr
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .api_tokens import principal_of
from .bodies import Body, parse
from .common import Services, json_body
from .params import AnalysisParams, query

__all__ = ["ApprovalBody", "DecisionBody", "routes"]


class ApprovalBody(Body):
    """A pending approval of the held candidate: what to tell the approver, how long they have
    (seconds), and the evidence (links and figures of the pipeline's checks)."""

    message: Annotated[StrictStr, Field(max_length=2000)] = ""
    timeout: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] = 86400.0
    evidence: dict[str, Any] | None = None


class DecisionBody(Body):
    comment: Annotated[StrictStr, Field(max_length=2000)] = ""


def routes(services: Services) -> list[Route]:
    controller = services.controller
    approvals = controller.approvals

    async def request_one(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        body = parse(ApprovalBody, await json_body(request))
        async with controller.runtime(name).lock:
            record = approvals.request(name, body.message, body.timeout, body.evidence)
        return JSONResponse(record.to_api())

    async def listing(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        return JSONResponse({"approvals": [r.to_api() for r in approvals.of(name)]})

    async def one(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        params = query(AnalysisParams, request)
        record = await approvals.wait(name, request.path_params["id"], params.timeout)
        return JSONResponse(record.to_api())

    def deciding(approve: bool) -> Any:
        async def decide(request: Request) -> JSONResponse:
            services.require_extensions()
            name = request.path_params["name"]
            controller.get(name)
            body = parse(DecisionBody, await json_body(request))
            by = principal_of(request).name
            record = await approvals.decide(
                name, request.path_params["id"], approve, by, body.comment
            )
            return JSONResponse(record.to_api())

        return decide

    base = "/api/v2/deployments/{name:str}/approvals"
    return [
        Route(base, request_one, methods=["POST"]),
        Route(base, listing, methods=["GET"]),
        Route(f"{base}/{{id:str}}", one, methods=["GET"]),
        Route(f"{base}/{{id:str}}/approve", deciding(True), methods=["POST"]),
        Route(f"{base}/{{id:str}}/reject", deciding(False), methods=["POST"]),
    ]
