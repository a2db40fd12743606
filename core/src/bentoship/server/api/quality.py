"""Model quality: labels in (``POST …/feedback``), joined to what each revision predicted, and
metrics out per revision and time bucket (``GET …/quality``)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import Invalid
from ..observe.hub import Observability
from ..observe.label_batches import REQUEST_ID, Unsettled, check_field
from ..observe.quality import MAX_BUCKETS, QualityQuery, Task, quality
from .common import Services
from .label_bodies import read_label_file
from .params import Moment, Params, moment, query

__all__ = [
    "FeedbackParams",
    "QualityParams",
    "WatermarkParams",
    "measure_quality",
    "monitor_table",
    "routes",
]

MAX_FEEDBACK_BYTES = 64 * 1024 * 1024
PARQUET = ("application/vnd.apache.parquet", "application/x-parquet", "application/octet-stream")
Field_ = Annotated[str, Field(max_length=128)]


class FeedbackParams(Params):
    """Which monitor's predictions the labels are for, and the record field holding their id."""

    monitor: Annotated[str, Field(min_length=1, max_length=128)]
    id_field: Field_ = REQUEST_ID
    source: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """The sender's source of labels, whose ``watermark`` these labels reach."""
    watermark: Annotated[int, Field(ge=-(2**63), lt=2**63)] | None = None


class WatermarkParams(Params):
    """Where the labels a source sent for a monitor reached."""

    monitor: Annotated[str, Field(min_length=1, max_length=128)]
    source: Annotated[str, Field(min_length=1, max_length=1024)]


class QualityParams(Params):
    """A monitor's predictions joined to their labels, from ``since`` to ``until`` (default:
    the last 24 hours) in buckets of ``step`` seconds, for every revision or one."""

    monitor: Annotated[str, Field(min_length=1, max_length=128)]
    since: Moment | None = None
    until: Moment | None = None
    step: Annotated[float, Field(ge=1, le=30 * 86400, allow_inf_nan=False)] = 3600.0
    revision: Annotated[str, Field(pattern=r"^r[0-9]{1,9}$")] | None = None
    task: Literal["classification", "regression"] | None = None
    prediction_field: Field_ | None = None
    score_field: Field_ | None = None
    id_field: Field_ = REQUEST_ID


async def _save_body(request: Request, uploads: Path | None) -> tuple[Path, bool, bool]:
    """The body written to a file alone in a new folder under ``uploads`` (the caller removes
    it); whether it starts as Parquet does, and whether it has a carriage return."""
    folder = Path(tempfile.mkdtemp(prefix="feedback-", dir=uploads))
    path = folder / "labels"
    size, head, returns = 0, b"", False
    try:
        with path.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_FEEDBACK_BYTES:
                    raise Invalid(
                        f"body: larger than {MAX_FEEDBACK_BYTES // 2**20} MiB; send the labels "
                        "in batches"
                    )
                if len(head) < 4:
                    head += chunk[:4]
                returns = returns or b"\r" in chunk
                handle.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path, head.startswith(b"PAR1"), returns


async def monitor_table(observability: Observability, name: str, monitor: str) -> str:
    """The table of ``monitor``'s records (once the newest are ingested); Invalid without one."""
    await observability.ingest()
    tables = await asyncio.to_thread(observability.monitoring.monitors)
    if monitor not in tables:
        known = ", ".join(sorted(tables)) or "none yet"
        raise Invalid(
            f"monitor: {monitor!r} has no records of {name}; its monitors: {known} "
            f"(GET /api/v2/deployments/{name}/monitoring)"
        )
    return tables[monitor]


async def measure_quality(
    observability: Observability, name: str, params: QualityParams
) -> dict[str, Any]:
    """The answer of ``GET …/quality`` for deployment ``name`` (the console shows it too)."""
    table = await monitor_table(observability, name, params.monitor)
    columns = await asyncio.to_thread(observability.monitoring.columns, params.monitor)
    prediction = params.prediction_field or next(
        (c["name"] for c in columns if c.get("role") == "prediction"), None
    )
    if prediction is None:
        raise Invalid(
            f"prediction_field: the schema of monitor {params.monitor!r} names no "
            "prediction; say which field of its records is the prediction"
        )
    declared = next((c.get("type") for c in columns if c["name"] == prediction), None)
    task = (
        Task(params.task)
        if params.task
        else (Task.REGRESSION if declared == "numerical" else Task.CLASSIFICATION)
    )
    now = time.time()
    until = moment(params.until, now) if params.until else now
    since = moment(params.since, now) if params.since else until - 86400.0
    if since >= until:
        raise Invalid("since: must be before until")
    if (until - since) / params.step > MAX_BUCKETS:
        raise Invalid(f"step: at most {MAX_BUCKETS} buckets; use a larger step")
    q = QualityQuery(
        name,
        params.monitor,
        table,
        check_field(prediction),
        since,
        until,
        params.step,
        task,
        id_field=check_field(params.id_field),
        score_field=check_field(params.score_field) if params.score_field else None,
        revision=params.revision,
    )
    if q.id_field == REQUEST_ID:
        fields = [q.prediction_field, *([q.score_field] if q.score_field else [])]
        refresh = functools.partial(observability.feedback.refresh, q.monitor, table, fields)
        await observability.writer.run(refresh)
    found = await asyncio.to_thread(lambda: quality(observability.readers(), q))
    counts = await asyncio.to_thread(observability.feedback.counts, name, params.monitor, table)
    return {
        "deployment": name,
        "monitor": params.monitor,
        "prediction_field": prediction,
        "score_field": params.score_field,
        "id_field": params.id_field,
        "since": since,
        "until": until,
        "step": params.step,
        **found,
        **counts,
    }


def routes(services: Services, observability: Observability) -> list[Route]:
    controller = services.controller
    feedback = observability.feedback

    async def receive(request: Request) -> JSONResponse:
        services.require_extensions()
        name = controller.get(request.path_params["name"]).name
        params = query(FeedbackParams, request)
        id_field = check_field(params.id_field)
        path, magic, returns = await _save_body(request, feedback.uploads)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        parquet = kind in PARQUET or magic
        reader = feedback.reader if feedback.uploads is not None else None
        try:
            labels = await asyncio.to_thread(
                read_label_file, path, parquet, id_field, carriage_returns=returns, reader=reader
            )
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        try:
            if (params.source is None) != (params.watermark is None):
                raise Invalid("watermark: send source and watermark together, or neither")
            table = await monitor_table(observability, name, params.monitor)
        except BaseException:
            labels.close()
            raise
        source = None
        if params.source is not None and params.watermark is not None:
            source = (params.source, params.watermark)

        store = functools.partial(
            feedback.add, name, params.monitor, table, id_field=id_field, source=source
        )
        batch = labels
        try:
            try:
                received = await observability.writer.run(functools.partial(store, batch))
            except Unsettled:  # read again with care, off the writer
                batch = await asyncio.to_thread(labels.settled)
                received = await observability.writer.run(functools.partial(store, batch))
        except BaseException:
            batch.close()
            raise
        answer = {"deployment": name, "monitor": params.monitor, **received.to_dict()}
        return JSONResponse(answer, background=BackgroundTask(batch.close))

    async def watermark(request: Request) -> JSONResponse:
        services.require_extensions()
        name = controller.get(request.path_params["name"]).name
        params = query(WatermarkParams, request)
        found = await asyncio.to_thread(feedback.watermark, name, params.monitor, params.source)
        return JSONResponse(
            {
                "deployment": name,
                "monitor": params.monitor,
                "source": params.source,
                "watermark": found,
            }
        )

    async def measure(request: Request) -> JSONResponse:
        services.require_extensions()
        name = controller.get(request.path_params["name"]).name
        params = query(QualityParams, request)
        return JSONResponse(await measure_quality(observability, name, params))

    one = "/api/v2/deployments/{name:str}"
    return [
        Route(f"{one}/feedback", receive, methods=["POST"]),
        Route(f"{one}/feedback", watermark, methods=["GET"]),
        Route(f"{one}/quality", measure, methods=["GET"]),
    ]
