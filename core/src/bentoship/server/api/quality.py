"""Model quality: labels in (``POST …/feedback``), joined to what each revision predicted, and
metrics out per revision and time bucket (``GET …/quality``)."""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import Invalid
from ..observe.feedback import REQUEST_ID, Label, check_field, labels_from
from ..observe.hub import Observability
from ..observe.quality import MAX_BUCKETS, QualityQuery, Task, quality
from .common import MAX_JSON_DEPTH, Services, json_depth
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


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FEEDBACK_BYTES:
            raise Invalid(
                f"body: larger than {MAX_FEEDBACK_BYTES // 2**20} MiB; send the labels in batches"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _json_items(raw: bytes) -> list[Any]:
    """A JSON array of labels, or JSON lines (one label per line)."""
    text = raw.strip()
    if not text:
        raise Invalid("body: send labels as a JSON array, JSON lines or a Parquet file")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise Invalid(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if text.startswith(b"["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise Invalid(f"body: not a JSON array ({exc})") from None
        return list(items)
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError:
            raise Invalid(
                f"body: line {number} is not JSON; send one label object per line"
            ) from None
    return items


def _parquet_items(raw: bytes) -> list[Any]:
    """The labels of a Parquet file: its ``id``, ``label`` and optional ``time`` columns."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="bentoship-feedback-") as folder:
        path = Path(folder) / "labels.parquet"
        path.write_bytes(raw)
        connection = duckdb.connect(config={"threads": 1})
        try:
            relation = connection.read_parquet(str(path))
            names = relation.columns
            missing = [c for c in ("id", "label") if c not in names]
            if missing:
                raise Invalid(f"body: the Parquet file has no {missing[0]!r} column")
            wanted = ["id", "label", *(["time"] if "time" in names else [])]
            rows = relation.select(*wanted).fetchall()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0][:120]
            raise Invalid(f"body: not a readable Parquet file ({message})") from None
        finally:
            connection.close()
    return [dict(zip(wanted, row, strict=True)) for row in rows]


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
        raw = await _body(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in PARQUET or raw.startswith(b"PAR1"):
            items = await asyncio.to_thread(_parquet_items, raw)
        else:
            items = await asyncio.to_thread(_json_items, raw)
        labels: list[Label] = await asyncio.to_thread(labels_from, items, id_field)
        if (params.source is None) != (params.watermark is None):
            raise Invalid("watermark: send source and watermark together, or neither")
        table = await monitor_table(observability, name, params.monitor)
        source = None
        if params.source is not None and params.watermark is not None:
            source = (params.source, params.watermark)
        received = await observability.writer.run(
            functools.partial(
                feedback.add, name, params.monitor, table, labels, id_field=id_field, source=source
            )
        )
        return JSONResponse({"deployment": name, "monitor": params.monitor, **received.to_dict()})

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
