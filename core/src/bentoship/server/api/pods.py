"""A deployment's replicas as BentoCloud lists its pods.

``bentoml``'s client reads them from the websocket ``/ws/v2/deployments/{name}/pods``: one
message ``{type, message, payload}`` whose payload is the list of pods. The same list is also
at ``GET /api/v2/deployments/{name}/pods`` for clients without websockets.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from .. import schemas
from ..errors import DomainError
from .common import Services, check_cluster
from .params import ClusterParams, query

__all__ = ["POD_SOCKET_PATH", "routes"]

POD_SOCKET_PATH = "/ws/v2/deployments/{name:str}/pods"


def routes(services: Services) -> list[BaseRoute]:
    controller = services.controller

    def pods_of(connection: HTTPConnection) -> list[dict[str, Any]]:
        check_cluster(query(ClusterParams, connection).cluster)
        dep = controller.get(connection.path_params["name"])
        return [schemas.pod(dep.name, view) for view in controller.views.replica_views(dep)]

    async def listed(request: Request) -> JSONResponse:
        """The deployment's running replicas, as BentoCloud's pods."""
        return JSONResponse(schemas.listing(pods_of(request)))

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            items = pods_of(websocket)
        except DomainError as exc:
            await websocket.send_json({"type": "error", "message": exc.message, "payload": None})
        else:
            await websocket.send_json({"type": "success", "message": "", "payload": items})
        await websocket.close()

    return [
        Route("/api/v2/deployments/{name:str}/pods", listed, methods=["GET"]),
        WebSocketRoute(POD_SOCKET_PATH, socket),
    ]
