"""BentoCloud's v2 deployment routes: create, get, update, list, terminate, delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...statuses import DeploymentStatus
from .. import schemas
from ..deploy_config import CanaryVersion, check_body, config_for, generated_name
from ..endpoint.interface import Role
from ..endpoint.split import RouteType, TrafficSplit
from ..errors import Invalid
from ..store import Deployment, Revision
from .common import Services, check_cluster, json_body
from .params import ClusterParams, ListParams, WriteParams, query
from .query import ListFilter
from .traces import await_first_request

__all__ = ["bento_json", "deployment_json", "revision_json", "routes"]


def bento_json(services: Services, tag: str) -> dict[str, Any] | None:
    name, _, version = tag.partition(":")
    store = services.registry.store
    item = store.get_artifact("bento", name, version)
    repo = store.get_repository("bento", name)
    return schemas.artifact(item, repo) if item and repo else None


def revision_json(services: Services, rev: Revision, dep: Deployment, *, active: bool) -> Any:
    extensions = None
    if services.settings.extensions:
        extensions = services.controller.views.revision_extensions(rev, dep)
    return schemas.revision(
        rev, active=active, bento=bento_json(services, rev.bento), extensions=extensions
    )


def deployment_json(services: Services, dep: Deployment) -> dict[str, Any]:
    controller = services.controller
    target = controller.target_of(dep)
    extensions = None
    if services.settings.extensions:
        candidate = controller.views.candidate_of(dep)
        serving = controller.serving_of(dep)
        extensions = {
            "target_revision": controller.name_of(dep.target_revision),
            "target_phase": target.phase if target else None,
            "serving_revision": controller.name_of(dep.serving_revision),
            "serving_bento": serving.bento if serving else None,
            "candidate_revision": controller.name_of(candidate.uid) if candidate else None,
            "candidate_bento": candidate.bento if candidate else None,
            "candidate_url": controller.views.endpoint_url(dep, Role.CANDIDATE),
            "canary": dep.canary,
            "reason": controller.views.reason(dep),
            "requests": controller.views.requests(dep.name),
            "recreate": controller.views.recreate_reason(dep),
            "replicas": controller.views.replica_count(dep),
        }
    return schemas.deployment(
        dep,
        status=controller.views.status(dep),
        latest_revision=revision_json(services, target, dep, active=True) if target else None,
        url=controller.views.endpoint_url(dep),
        labels=target.config.get("labels", []) if target else [],
        routing=_routing(target, dep),
        extensions=extensions,
    )


def _routing(target: Revision | None, dep: Deployment) -> dict[str, Any] | None:
    """BentoCloud's ``manifest.routing`` while a canary takes a share of the endpoint."""
    if target is None or dep.canary is None:
        return None
    version = (target.config.get("canary") or {}).get("name") or "candidate"
    return {
        "route_type": dep.canary.get("route_type"),
        "route_by": dep.canary.get("route_by"),
        "weights": {"main": 100 - int(dep.canary["weight"]), version: dep.canary["weight"]},
    }


def manual_promotion(request: Request) -> bool:
    """The cluster checked; whether ``?promotion=manual`` holds the new revision (an extension)."""
    params = query(WriteParams, request)
    check_cluster(params.cluster)
    return params.promotion == "manual"


def in_cluster(request: Request) -> None:
    check_cluster(query(ClusterParams, request).cluster)


def canary_split(canary: CanaryVersion) -> TrafficSplit:
    return TrafficSplit(canary.weight, RouteType(canary.route_type), canary.route_by)


def routes(services: Services) -> list[Route]:
    controller, registry = services.controller, services.registry

    def labels(dep: Deployment) -> list[dict[str, str]]:
        target = controller.target_of(dep)
        return list(target.config.get("labels") or []) if target else []

    # Create and update check a body in the same order: every rule that needs no state
    # (check_body), then the state (the deployment, on update; the bento), then the rules that
    # need the bento (config_for). A body that breaks a rule of the first step reads no state.

    async def create(request: Request) -> JSONResponse:
        verify = manual_promotion(request)
        checked = check_body(await json_body(request))
        if checked.canary is not None:
            raise Invalid(
                "canary: a canary needs a deployment that already serves its main bento; "
                "create it without a canary, then update it with one"
            )
        assert checked.bento is not None  # check_body requires it without a canary
        tag, entry = registry.resolve_bento(checked.bento)
        config = config_for(checked, entry)
        name = checked.name or generated_name(tag)
        dep = await controller.create(name, tag, config, verify=verify)
        await_first_request(services, request, dep, None)
        return JSONResponse(deployment_json(services, dep))

    async def get(request: Request) -> JSONResponse:
        in_cluster(request)
        dep = controller.get(request.path_params["name"])
        return JSONResponse(deployment_json(services, dep))

    async def update(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        verify = manual_promotion(request)
        checked = check_body(await json_body(request))
        dep = controller.get(name)
        before = dep.target_revision
        canary = checked.canary
        if canary is None:
            assert checked.bento is not None  # check_body requires it without a canary
            tag, entry = registry.resolve_bento(checked.bento)
            config = config_for(checked, entry)
            dep = await controller.update(name, tag, config, verify=verify)
            await_first_request(services, request, dep, before)
            return JSONResponse(deployment_json(services, dep))
        serving = controller.serving_of(dep)
        main = checked.bento or (serving.bento if serving else None)
        if serving is None or main != serving.bento:
            raise Invalid(
                f"canary: the main bento must be the one {name} serves now "
                f"({serving.bento if serving else 'none'}); give the new bento as the canary"
            )
        registry.resolve_bento(main)
        tag, entry = registry.resolve_bento(canary.bento)
        config = config_for(checked, entry)  # with the canary's envs and its name and weight
        dep = await controller.update(name, tag, config, split=canary_split(canary))
        await_first_request(services, request, dep, before)
        return JSONResponse(deployment_json(services, dep))

    async def listing(request: Request) -> JSONResponse:
        params = query(ListParams, request)
        check_cluster(params.cluster)
        wanted = ListFilter.of(params)
        items = [
            d for d in controller.store.list_deployments() if wanted.matches(d.name, labels(d))
        ]
        start = params.start
        count = len(items) if params.count is None else params.count
        page = [deployment_json(services, d) for d in items[start : start + count]]
        return JSONResponse(schemas.listing(page, start=start, total=len(items)))

    async def terminate(request: Request) -> JSONResponse:
        in_cluster(request)
        dep = await controller.terminate(request.path_params["name"])
        return JSONResponse(deployment_json(services, dep))

    async def delete(request: Request) -> JSONResponse:
        in_cluster(request)
        name = request.path_params["name"]
        controller.get(name)
        before = await controller.delete(name)
        data = deployment_json(services, before)
        data["status"] = DeploymentStatus.TERMINATED
        return JSONResponse(data)

    one = "/api/v2/deployments/{name:str}"
    return [
        Route("/api/v2/deployments", listing, methods=["GET"]),
        Route("/api/v2/deployments", create, methods=["POST"]),
        Route(one, get, methods=["GET"]),
        Route(one, update, methods=["PUT"]),
        Route(one, delete, methods=["DELETE"]),
        Route(f"{one}/terminate", terminate, methods=["POST"]),
    ]
