"""What the deployment page's tabs read: its logs, its monitoring data, its model quality and
its traces, each through the same queries as the API, shaped for the page by the view modules
(``traces_view``, ``quality_view``, ``data_view``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from ..api.common import Services
from ..api.logs import LogSearchParams
from ..api.params import query
from ..api.quality import QualityParams, measure_quality
from ..api.traces import TracesParams, find_traces
from ..errors import DomainError
from ..observe.spans import trace_id_of
from ..store import Deployment
from .data_view import data_table
from .quality_view import WINDOW_NAMES, quality_panel, quality_window
from .traces_view import log_parts, search_form, search_query, trace_rows, waterfall, window_label

__all__ = [
    "TABS",
    "log_search",
    "monitoring_data",
    "quality_of",
    "traces_of",
]

TABS = ("overview", "revisions", "monitoring", "traces", "data", "quality", "logs", "events")
LOG_LINES_SHOWN = 500
DATA_SAMPLE_ROWS = 20
DATA_HOURS = 6


async def quality_of(request: Request, services: Services, dep: Deployment) -> dict[str, Any]:
    """The Quality tab: the monitors with records, the window, and the chosen monitor's
    figures as ``GET …/quality`` computes them."""
    observed = services.observed
    params = request.query_params
    window = quality_window(params.get("window", ""), params.get("step", ""))
    found: dict[str, Any] = {
        "window": window,
        "windows": WINDOW_NAMES,
        "monitors": [],
        "monitor": None,
        "asked": params.get("monitor", ""),
        "panel": None,
        "problem": "",
    }
    if observed is None or not services.settings.extensions:
        found["problem"] = (
            "this server measures no model quality: it runs without bentoship's extensions "
            "or without metrics"
        )
        return found
    await observed.ingest()
    monitors = await asyncio.to_thread(_monitors_of, services, dep.name)
    found["monitors"] = monitors
    chosen = found["asked"] or (monitors[0][0] if monitors else "")
    if chosen not in dict(monitors):
        return found
    found["monitor"] = chosen
    asked = QualityParams(monitor=chosen, since=window.window, step=window.step_seconds)
    try:
        answer = await measure_quality(observed, dep.name, asked)
    except DomainError as exc:
        found["problem"] = exc.message
        return found
    found["panel"] = quality_panel(
        answer, services.controller.name_of(dep.serving_revision), window
    )
    return found


async def traces_of(request: Request, services: Services, dep: Deployment) -> dict[str, Any]:
    """The Traces tab: the search form, the traces it finds (by their root span) and, with
    ``trace=<id>``, that trace's waterfall."""
    observed = services.observed
    params = request.query_params
    form = search_form(params)
    found: dict[str, Any] = {
        "form": form,
        "windows": WINDOW_NAMES,
        "window": window_label(form),
        "query": search_query(form),
        "any_duration": search_query({**form, "min_duration": ""}),
        "rows": (),
        "problem": "",
        "chosen": params.get("trace", "").strip(),
        "waterfall": None,
        "trace_problem": "",
    }
    if observed is None or not services.settings.extensions:
        found["problem"] = (
            "this server keeps no traces: it runs without bentoship's extensions or without metrics"
        )
        return found
    try:
        asked = query(TracesParams, request).model_copy(
            update={"since": form["since"], "until": form["until"] or None}
        )
        answer = await find_traces(observed.spans, dep.name, asked)
        found["rows"] = trace_rows(answer["traces"])
    except DomainError as exc:
        found["problem"] = exc.message
    if found["chosen"]:
        try:
            trace_id = trace_id_of(found["chosen"])
        except DomainError as exc:
            found["trace_problem"] = exc.message
            return found
        found["chosen"] = trace_id
        spans = await asyncio.to_thread(observed.spans.trace, trace_id)
        if spans:
            found["waterfall"] = waterfall(trace_id, spans)
        else:
            found["trace_problem"] = (
                f"trace {trace_id} has no stored span (it was not sampled, is older than "
                "the retention, or its spans are still on their way)"
            )
    return found


def monitoring_data(request: Request, services: Services, name: str) -> dict[str, Any]:
    """The Data tab: the deployment's monitors, and for the chosen one its records per minute
    over the last hours and a sample of its newest records."""
    observed = services.observed
    if observed is None:
        return {"monitors": [], "monitor": None}
    store = observed.monitoring
    monitors = _monitors_of(services, name)
    chosen = request.query_params.get("monitor") or (monitors[0][0] if monitors else None)
    if chosen not in dict(monitors):
        return {"monitors": monitors, "monitor": None}
    start = int(time.time() // 60 * 60) - DATA_HOURS * 3600 + 60
    minutes = store.per_minute(name, chosen, since=start)
    sample = [
        {**r, "ingested_at": _clock(r["ingested_at"])}
        for r in reversed(store.records(name, chosen, limit=DATA_SAMPLE_ROWS))
    ]
    return {
        "monitors": monitors,
        "monitor": chosen,
        "minutes": minutes,
        "start": start,
        "slots": DATA_HOURS * 60,
        "peak": max((c for _, c in minutes), default=1),
        "table": data_table(sample, store.columns(chosen)),
        "hours": DATA_HOURS,
    }


def _monitors_of(services: Services, name: str) -> list[tuple[str, int]]:
    """The monitors with records of deployment ``name``, by name, with their record counts."""
    if services.observed is None:
        return []
    store = services.observed.monitoring
    counts = {m: store.count(name, m) for m in sorted(store.monitors())}
    return [(m, n) for m, n in counts.items() if n]


def _clock(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def log_search(request: Request, services: Services, name: str) -> dict[str, Any]:
    """The Logs tab's form values and a page of the lines they find, newest first: the newest
    500, or with ``before`` (a line's seq) the 500 before that line; with the query strings
    of the page of older lines (when there are some) and of the newest page."""
    form = {
        key: request.query_params.get(key, "") for key in ("pattern", "since", "until", "revision")
    }
    paged = urlencode({"tab": "logs", **{k: v for k, v in form.items() if v}})
    found: dict[str, Any] = {
        "form": form,
        "lines": [],
        "problem": "",
        "paged": paged,
        "page_size": LOG_LINES_SHOWN,
        "older": "",
        "before": None,
    }
    observed = services.observed
    if observed is None:
        return {**found, "problem": "this server keeps no logs (--no-metrics)"}
    try:
        params = query(LogSearchParams, request)
        since, until = params.window(time.time())
        with observed.logs.one_search():
            lines = observed.logs.search(
                name,
                since=since,
                until=until,
                revision=params.revision,
                pattern=params.pattern,
                limit=LOG_LINES_SHOWN + 1,
                newest_first=True,
                before=params.before,
            )
            shown = [
                {**line.to_json(), "seq": line.seq, "parts": log_parts(line.line)}
                for line in lines[:LOG_LINES_SHOWN]
            ]
    except DomainError as exc:
        return {**found, "problem": exc.message}
    if len(lines) > LOG_LINES_SHOWN:
        found["older"] = f"{paged}&before={shown[-1]['seq']}"
    return {**found, "lines": shown, "before": params.before}
