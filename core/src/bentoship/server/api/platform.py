"""The account around the deployments, as BentoCloud shows it: user, org, cluster, instances."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...tags import shown
from .. import schemas
from ..errors import NotFound
from .common import Services, check_cluster
from .params import ClusterParams, query

__all__ = ["routes"]


def routes(services: Services) -> list[Route]:
    async def current_user(request: Request) -> JSONResponse:
        return JSONResponse(schemas.USER)

    async def current_org(request: Request) -> JSONResponse:
        return JSONResponse(schemas.organization())

    async def clusters(request: Request) -> JSONResponse:
        return JSONResponse(schemas.listing([schemas.cluster()]))

    async def cluster(request: Request) -> JSONResponse:
        if request.path_params["cluster"] != schemas.CLUSTER_NAME:
            raise NotFound(f"cluster {shown(request.path_params['cluster'])} not found")
        return JSONResponse(schemas.cluster())

    async def instance_types(request: Request) -> JSONResponse:
        check_cluster(query(ClusterParams, request).cluster)
        return JSONResponse(schemas.instance_types(services.controller.gpus.inventory))

    async def secret(request: Request) -> JSONResponse:
        raise NotFound(
            f"secret {shown(request.path_params['name'])} not found (record not found); "
            "the local control plane has no secrets, pass envs instead"
        )

    return [
        Route("/api/v1/auth/current", current_user),
        Route("/api/v1/current_org", current_org),
        Route("/api/v1/clusters", clusters),
        Route("/api/v1/clusters/{cluster:str}", cluster),
        Route("/api/v1/instance_types", instance_types),
        Route("/api/v1/org_secrets/{name:str}", secret),
    ]
