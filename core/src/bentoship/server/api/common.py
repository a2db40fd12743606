"""What every route module shares: the services, body parsing and the cluster check."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ...tags import shown
from .. import schemas
from ..errors import Invalid, NotFound
from ..observe.hub import Observability
from ..registry.service import Registry
from ..rollout.controller import Controller
from ..settings import ServerSettings

__all__ = ["Services", "check_cluster", "json_body"]


@dataclass(frozen=True)
class Services:
    settings: ServerSettings
    controller: Controller
    registry: Registry
    observed: Observability | None = None
    """Metrics, logs and their stores; None where a caller runs without them."""

    def require_extensions(self) -> None:
        if not self.settings.extensions:
            raise NotFound("not found")


MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


def json_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings not counted),
    read until the nesting passes ``limit``."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object: at most 1 MiB, nested at most 32 levels, else Invalid."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise Invalid(f"request body is larger than {MAX_JSON_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise Invalid(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body


def check_cluster(cluster: str | None) -> None:
    """NotFound unless ``cluster`` is the local control plane's one cluster (or not given)."""
    if (cluster or schemas.CLUSTER_NAME) != schemas.CLUSTER_NAME:
        raise NotFound(
            f"cluster {shown(cluster or '')} not found; "
            "the local control plane has one cluster, 'local'"
        )
