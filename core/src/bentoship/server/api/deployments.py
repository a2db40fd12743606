"""BentoCloud's v2 deployment routes: create, get, update, list, terminate, delete."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...statuses import DeploymentStatus
from .. import schemas
from ..deploy_config import normalize_config, validate_name
from ..store import Deployment, Revision
from .common import Services, check_cluster, json_body, whole_number

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
        extensions = services.controller.revision_extensions(rev, dep)
    return schemas.revision(
        rev, active=active, bento=bento_json(services, rev.bento), extensions=extensions
    )


def deployment_json(services: Services, dep: Deployment) -> dict[str, Any]:
    controller = services.controller
    target = controller.target_of(dep)
    extensions = None
    if services.settings.extensions:
        extensions = {
            "target_revision": dep.target_revision,
            "serving_revision": dep.serving_revision,
            "reason": controller.reason(dep),
            "requests": controller.requests(dep.name),
        }
    return schemas.deployment(
        dep,
        status=controller.status(dep),
        latest_revision=revision_json(services, target, dep, active=True) if target else None,
        url=controller.endpoint_url(dep),
        labels=target.config.get("labels", []) if target else [],
        extensions=extensions,
    )


def routes(services: Services) -> list[Route]:
    controller, registry = services.controller, services.registry

    async def create(request: Request) -> JSONResponse:
        check_cluster(request)
        body = await json_body(request)
        tag, entry = registry.resolve_bento(body.get("bento"))
        generated = f"{tag.split(':')[0].replace('_', '-')}-{secrets.token_hex(3)}"
        name = validate_name(body.get("name") or generated)
        dep = await controller.create(name, tag, normalize_config(body, entry))
        return JSONResponse(deployment_json(services, dep))

    async def get(request: Request) -> JSONResponse:
        check_cluster(request)
        dep = controller.get(request.path_params["name"])
        return JSONResponse(deployment_json(services, dep))

    async def update(request: Request) -> JSONResponse:
        check_cluster(request)
        name = request.path_params["name"]
        controller.get(name)
        body = await json_body(request)
        tag, entry = registry.resolve_bento(body.get("bento"))
        dep = await controller.update(name, tag, normalize_config(body, entry))
        return JSONResponse(deployment_json(services, dep))

    async def listing(request: Request) -> JSONResponse:
        check_cluster(request)
        needle = request.query_params.get("search") or request.query_params.get("q") or ""
        items = [d for d in controller.store.list_deployments() if needle in d.name]
        start = whole_number(request, "start", 0)
        count = whole_number(request, "count", len(items))
        page = [deployment_json(services, d) for d in items[start : start + count]]
        return JSONResponse(schemas.listing(page, start=start, total=len(items)))

    async def terminate(request: Request) -> JSONResponse:
        check_cluster(request)
        dep = await controller.terminate(request.path_params["name"])
        return JSONResponse(deployment_json(services, dep))

    async def delete(request: Request) -> JSONResponse:
        check_cluster(request)
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
