"""What every route module shares: the services, body parsing and the cluster check."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from .. import schemas
from ..errors import Invalid, NotFound
from ..registry.service import Registry
from ..rollout.controller import Controller
from ..settings import ServerSettings

__all__ = ["Services", "check_cluster", "json_body", "whole_number"]


@dataclass(frozen=True)
class Services:
    settings: ServerSettings
    controller: Controller
    registry: Registry

    def require_extensions(self) -> None:
        if not self.settings.extensions:
            raise NotFound("not found")


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


def check_cluster(request: Request) -> None:
    cluster = request.query_params.get("cluster") or schemas.CLUSTER_NAME
    if cluster != schemas.CLUSTER_NAME:
        raise NotFound(
            f"cluster {cluster!r} not found; the local control plane has one cluster, 'local'"
        )


def whole_number(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise Invalid(f"{name} must be a whole number, got {raw[:20]!r}")
    return int(raw)
