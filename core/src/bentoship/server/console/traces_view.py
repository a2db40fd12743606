"""The Traces tab: a deployment's traces (their root spans) as a list, and one trace as a
waterfall of its spans, each a bar placed by its start and sized by its duration, indented
under its parent; and the trace ids in log lines and monitor records, made into links."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ..errors import Invalid
from ..observe.span_buffer import SpanBuffer
from ..observe.spans import trace_id_of
from .quality_view import WINDOW_NAMES, WINDOWS
from .shadow_view import NONE, count, milliseconds

__all__ = [
    "DEFAULT_WINDOW",
    "SEARCH_FIELDS",
    "Attribute",
    "SpanBar",
    "TraceRow",
    "Waterfall",
    "log_parts",
    "monitor_trace",
    "search_form",
    "search_query",
    "span_time",
    "trace_rows",
    "waterfall",
    "window_label",
]

DEFAULT_WINDOW = "1h"
SEARCH_FIELDS = ("since", "until", "min_duration", "status", "revision", "q", "sort")
"""The search form's fields, named as ``GET /api/v2/deployments/{name}/traces`` reads them."""
SORTS = ("newest", "slowest")
EPOCH = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
ENDPOINT_SERVICE = SpanBuffer.SERVICE
MIN_WIDTH = 0.25
"""Percent of the waterfall's width that the shortest bar still takes, to stay visible."""
MAX_INDENT = 12
"""Depths past this are drawn at this one (the depth is still shown)."""
MAX_VALUE_CHARACTERS = 2000
TRACE_IN_LOG = re.compile(r"(?<![0-9A-Za-z_])trace=([0-9a-f]{32})(?![0-9A-Za-z])")
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def span_time(value: float) -> str:
    """A span's duration or start: under a millisecond in microseconds, else as milliseconds
    shows it."""
    if abs(value) < 1:
        return f"{value * 1000:.0f} µs"
    return milliseconds(value)


def log_parts(line: str) -> tuple[tuple[str, str], ...]:
    """``line`` cut around each ``trace=<32 hex>``: (text, trace id) pairs, the id empty for
    plain text (an all-zero id, which means no trace, stays text)."""
    parts: list[tuple[str, str]] = []
    at = 0
    for found in TRACE_IN_LOG.finditer(line):
        trace_id = found.group(1)
        if not trace_id.strip("0"):
            continue
        if found.start() > at:
            parts.append((line[at : found.start()], ""))
        parts.append((found.group(0), trace_id))
        at = found.end()
    if at < len(line) or not parts:
        parts.append((line[at:], ""))
    return tuple(parts)


def monitor_trace(value: object) -> str:
    """The trace id (32 hex digits) of a monitor record's ``trace_id`` (decimal); empty when
    it names no trace."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    try:
        found = trace_id_of(str(value))
    except Invalid:
        return ""
    return found if found.strip("0") else ""


def search_form(params: Mapping[str, str]) -> dict[str, str]:
    """The search form's values from a query: ``since`` one of the windows (the last hour
    unless it says), or ``since`` and ``until`` in epoch seconds, a window [since, until) as
    the latency chart links one bucket's traces; ``sort`` newest (empty) or slowest."""
    form = {key: str(params.get(key, "")).strip() for key in SEARCH_FIELDS}
    since, until = form["since"], form["until"]
    bucket = EPOCH.fullmatch(since) and EPOCH.fullmatch(until) and float(since) < float(until)
    if not bucket:
        form["until"] = ""
        if since not in WINDOWS:
            form["since"] = DEFAULT_WINDOW
    if form["sort"] not in SORTS[1:]:
        form["sort"] = ""
    return form


def window_label(form: Mapping[str, str]) -> str:
    """The window of a :func:`search_form`, as the heading names it."""
    if form.get("until"):
        since, until = _clock(float(form["since"])), _clock(float(form["until"]))
        return f"from {since} to {until[11:] if until[:10] == since[:10] else until}"
    return f"last {WINDOW_NAMES.get(form.get('since', ''), WINDOW_NAMES[DEFAULT_WINDOW])}"


def search_query(form: Mapping[str, str], **more: str) -> str:
    """The query string of the search ``form`` (and ``more``), without empty values."""
    values = {"tab": "traces", **{k: form.get(k, "") for k in SEARCH_FIELDS}, **more}
    return urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True)
class TraceRow:
    trace_id: str
    name: str
    service: str
    revision: str
    start: str
    duration: str
    spans: str
    error: bool


def trace_rows(roots: Sequence[Mapping[str, Any]]) -> tuple[TraceRow, ...]:
    """The list's rows from the listing route's ``traces``."""
    return tuple(
        TraceRow(
            str(r["trace_id"]),
            str(r.get("name") or ""),
            str(r.get("service") or ""),
            str(r.get("revision") or NONE),
            _clock(float(r["start"])),
            milliseconds(r.get("duration_ms")),
            count(r.get("spans")),
            bool(r.get("error")),
        )
        for r in roots
    )


@dataclass(frozen=True)
class Attribute:
    key: str
    value: str


@dataclass(frozen=True)
class SpanBar:
    span_id: str
    parent_id: str
    name: str
    service: str
    deployment: str
    revision: str
    kind: str
    depth: int
    indent: int
    """The depth the row is drawn at (at most MAX_INDENT)."""
    offset: float
    """Where the bar starts, in percent of the trace's duration."""
    width: float
    """The bar's length, in percent of the trace's duration (at least MIN_WIDTH)."""
    at: str
    """The start after the trace's first span, as text (``+1.2 ms``)."""
    duration: str
    status: str
    status_message: str
    orphan: bool
    """Its parent is not stored (a caller's span, or not sampled): drawn as a root."""
    attributes: tuple[Attribute, ...]

    @property
    def error(self) -> bool:
        return self.status == "error"

    @property
    def endpoint(self) -> bool:
        return self.service == ENDPOINT_SERVICE


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    spans: tuple[SpanBar, ...]
    total: str
    started: str
    ticks: tuple[tuple[float, str], ...]
    """Percent along the bars' track and the time there."""
    errors: int
    services: tuple[str, ...]
    deployments: tuple[str, ...]

    @property
    def summary(self) -> str:
        errors = f", {self.errors} with an error" if self.errors else ""
        return (
            f"{count(len(self.spans))} spans over {self.total}{errors}, from "
            f"{', '.join(self.services) or 'no service'}; started {self.started}."
        )


def _value(value: object) -> str:
    if isinstance(value, str):
        shown = value
    elif isinstance(value, bool) or value is None:
        shown = json.dumps(value)
    elif isinstance(value, int | float):
        shown = str(value)
    else:
        shown = json.dumps(value, sort_keys=True, default=str)
    if len(shown) > MAX_VALUE_CHARACTERS:
        return shown[:MAX_VALUE_CHARACTERS] + "…"
    return shown


def _attributes(span: Mapping[str, Any]) -> tuple[Attribute, ...]:
    found = span.get("attributes")
    attributes = found if isinstance(found, Mapping) else {}
    return tuple(Attribute(str(k), _value(v)) for k, v in sorted(attributes.items()))


def _order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int, bool]]:
    """Every span once, each after its parent and its earlier siblings: (span, depth, orphan).
    Roots (no parent, or one not stored) come first the endpoint's, then by start."""
    ids = {str(s["span_id"]) for s in spans}
    children: dict[str, list[Mapping[str, Any]]] = {}
    roots: list[Mapping[str, Any]] = []
    for span in spans:
        parent = span.get("parent_id")
        if parent and str(parent) in ids and str(parent) != str(span["span_id"]):
            children.setdefault(str(parent), []).append(span)
        else:
            roots.append(span)

    def by_start(span: Mapping[str, Any]) -> tuple[float, str]:
        return (float(span.get("start") or 0.0), str(span["span_id"]))

    roots.sort(key=lambda s: (s.get("service") != ENDPOINT_SERVICE, *by_start(s)))
    ordered: list[tuple[Mapping[str, Any], int, bool]] = []
    seen: set[str] = set()

    def visit(first: Mapping[str, Any], depth: int) -> None:
        stack = [(first, depth)]
        while stack:
            span, level = stack.pop()
            key = str(span["span_id"])
            if key in seen:
                continue
            seen.add(key)
            orphan = level == 0 and bool(span.get("parent_id"))
            ordered.append((span, level, orphan))
            below = sorted(children.get(key, ()), key=by_start, reverse=True)
            stack.extend((child, level + 1) for child in below)

    for root in roots:
        visit(root, 0)
    for span in sorted(spans, key=by_start):  # in a parent cycle: no root reaches them
        visit(span, 0)
    return ordered


def waterfall(trace_id: str, spans: Sequence[Mapping[str, Any]]) -> Waterfall:
    """The waterfall of one trace's ``spans`` (as ``GET /api/v2/traces/{id}`` lists them)."""
    starts = [float(s.get("start") or 0.0) for s in spans]
    ends = [
        float(s.get("start") or 0.0) + max(float(s.get("duration_ms") or 0.0), 0.0) / 1000
        for s in spans
    ]
    first = min(starts, default=0.0)
    # epoch seconds as floats hold about a microsecond: the figures are rounded to it
    total_ms = max(round((max(ends, default=first) - first) * 1000, 3), 0.001)
    bars = []
    for span, depth, orphan in _order(spans):
        duration = max(float(span.get("duration_ms") or 0.0), 0.0)
        at = round((float(span.get("start") or 0.0) - first) * 1000, 3)
        width = min(max(duration / total_ms * 100, MIN_WIDTH), 100.0)
        offset = min(max(at / total_ms * 100, 0.0), 100.0 - width)
        bars.append(
            SpanBar(
                span_id=str(span["span_id"]),
                parent_id=str(span.get("parent_id") or ""),
                name=str(span.get("name") or ""),
                service=str(span.get("service") or ""),
                deployment=str(span.get("deployment") or ""),
                revision=str(span.get("revision") or ""),
                kind=KINDS.get(int(span.get("kind") or 0), "unspecified"),
                depth=depth,
                indent=min(depth, MAX_INDENT),
                offset=round(offset, 3),
                width=round(width, 3),
                at="+" + span_time(at),
                duration=span_time(duration),
                status=str(span.get("status") or "unset"),
                status_message=str(span.get("status_message") or ""),
                orphan=orphan,
                attributes=_attributes(span),
            )
        )
    ticks = tuple((float(p), span_time(total_ms * p / 100)) for p in (0, 25, 50, 75, 100))
    return Waterfall(
        trace_id=trace_id,
        spans=tuple(bars),
        total=span_time(total_ms),
        started=_clock(first) if spans else NONE,
        ticks=ticks,
        errors=sum(bar.error for bar in bars),
        services=tuple(dict.fromkeys(bar.service for bar in bars if bar.service)),
        deployments=tuple(dict.fromkeys(bar.deployment for bar in bars if bar.deployment)),
    )
