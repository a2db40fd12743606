"""The analysis the control plane runs on a deployment's held candidate: submit it, then watch
it with a long poll until its verdict."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import Invalid, NotFound
from ..rollout.analysis_records import AnalysisRecord
from .bodies import AnalysisBody, parse
from .common import Services, json_body
from .params import AnalysisParams, query

__all__ = ["routes"]


def routes(services: Services) -> list[Route]:
    controller = services.controller
    analyses = controller.analyses

    def answer(record: AnalysisRecord) -> JSONResponse:
        baseline = controller.name_of(record.baseline)
        return JSONResponse(record.to_api(baseline, analyses.progress(record)))

    async def submit(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        body = parse(AnalysisBody, await json_body(request))
        if (body.canary is None) == (body.shadow is None):
            raise Invalid(
                'canary: send one plan, canary or shadow, such as {"canary": {"steps": '
                '[10, 50, 100]}} or {"shadow": {"min_pairs": 200}}'
            )
        async with controller.runtime(name).lock:
            if body.canary is not None:
                record = analyses.submit(name, body.canary.model_dump(exclude_none=True))
            else:
                assert body.shadow is not None
                record = analyses.submit_shadow(name, body.shadow.model_dump(exclude_none=True))
        return answer(record)

    async def watch(request: Request) -> JSONResponse:
        services.require_extensions()
        name = request.path_params["name"]
        controller.get(name)
        params = query(AnalysisParams, request)
        record = await analyses.wait(name, params.seen, params.timeout)
        if record is None:
            raise NotFound(
                f"deployment {name} has had no analysis; start one with "
                f"PUT /api/v2/deployments/{name}/analysis"
            )
        return answer(record)

    one = "/api/v2/deployments/{name:str}/analysis"
    return [Route(one, submit, methods=["PUT"]), Route(one, watch, methods=["GET"])]
