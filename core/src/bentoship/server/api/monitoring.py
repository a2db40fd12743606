"""What a deployment's services logged with ``bentoml.monitor``: its monitors and records."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import NotFound
from ..observe.hub import Observability
from .common import Services
from .params import Moment, Params, moment, query

__all__ = ["MonitoringParams", "routes"]

MAX_RECORDS = 1_000_000


class MonitoringParams(Params):
    """A monitor's records: ingested in a time window, of one revision, as JSON or Parquet."""

    since: Moment | None = None
    until: Moment | None = None
    revision: Annotated[str, Field(pattern=r"^r[0-9]{1,9}$")] | None = None
    after: Annotated[int, Field(ge=0)] | None = None
    """Records after this ``seq``, oldest first (for paging, as an export does)."""
    limit: Annotated[int, Field(ge=1, le=MAX_RECORDS)] = 10_000
    format: Literal["json", "parquet"] = "json"


def parquet_of(records: list[dict[str, Any]]) -> bytes:
    """``records`` as one Parquet file."""
    from ...export.targets import write_parquet

    with tempfile.TemporaryDirectory(prefix="bentoship-monitoring-") as folder:
        out = Path(folder) / "records.parquet"
        write_parquet(records, out)
        return out.read_bytes()


def routes(services: Services, observability: Observability) -> list[Route]:
    controller = services.controller
    store = observability.monitoring

    async def monitors(request: Request) -> JSONResponse:
        """The monitors a deployment's services logged to, and how many records each has."""
        services.require_extensions()
        name = controller.get(request.path_params["name"]).name
        await observability.ingest()

        def counted() -> list[dict[str, Any]]:
            return [
                {"name": monitor, "records": store.count(name, monitor)}
                for monitor in sorted(store.monitors())
            ]

        found = await asyncio.to_thread(counted)
        return JSONResponse({"deployment": name, "monitors": [m for m in found if m["records"]]})

    async def records(request: Request) -> Response:
        """A monitor's records, oldest first (the newest ``limit``), each with its revision,
        bento and ingest time."""
        services.require_extensions()
        params = query(MonitoringParams, request)
        name = controller.get(request.path_params["name"]).name
        monitor = request.path_params["monitor"]
        await observability.ingest()
        if monitor not in await asyncio.to_thread(store.monitors):
            raise NotFound(
                f"monitor {monitor!r} of {name} has no records; list them with "
                f"GET /api/v2/deployments/{name}/monitoring"
            )
        now = time.time()
        found = await asyncio.to_thread(
            functools.partial(
                store.records,
                name,
                monitor,
                since=moment(params.since, now) if params.since else None,
                until=moment(params.until, now) if params.until else None,
                revision=params.revision,
                after=params.after,
                limit=params.limit,
            )
        )
        if params.format == "parquet":
            body = await asyncio.to_thread(parquet_of, found) if found else b""
            filename = f"{name}-{monitor}.parquet"
            return Response(
                body,
                media_type="application/vnd.apache.parquet",
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )
        return JSONResponse({"deployment": name, "monitor": monitor, "records": found})

    one = "/api/v2/deployments/{name:str}/monitoring"
    return [
        Route(one, monitors, methods=["GET"]),
        Route(f"{one}/{{monitor:str}}", records, methods=["GET"]),
    ]
