"""The Data tab's table of a monitor's newest records: the ids first, then the monitor's
prediction, then its other fields and where each record came from; numbers shown to 4
significant digits and long values cut, each with its full value on hover."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .traces_view import monitor_trace

__all__ = ["ID_FIELDS", "Cell", "DataTable", "cell", "data_table", "record_fields"]

ID_FIELDS = ("request_id", "trace_id")
ORIGIN_FIELDS = ("timestamp", "revision", "bento", "ingested_at", "seq")
"""Shown last: when and where a record was made, and its number in the plane."""
SIGNIFICANT = 4
MAX_CELL_CHARACTERS = 80
MAX_TITLE_CHARACTERS = 2000


@dataclass(frozen=True)
class Cell:
    text: str
    title: str
    """The full value, when the text shows less of it; empty otherwise."""
    trace: str = ""
    """The trace a ``trace_id`` cell links to (32 hex digits); empty for none."""
    number: bool = False


@dataclass(frozen=True)
class DataTable:
    fields: tuple[str, ...]
    predictions: frozenset[str]
    rows: tuple[tuple[Cell, ...], ...]


def _short(value: float) -> float | str:
    if not math.isfinite(value):
        return str(value)
    return float(f"{value:.{SIGNIFICANT}g}")


def _rounded(value: Any) -> Any:
    """``value`` with each float in it to SIGNIFICANT digits."""
    if isinstance(value, float):
        return _short(value)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _cut(text: str, full: str) -> Cell:
    if len(text) > MAX_CELL_CHARACTERS:
        return Cell(text[: MAX_CELL_CHARACTERS - 1] + "…", full[:MAX_TITLE_CHARACTERS])
    return Cell(text, full[:MAX_TITLE_CHARACTERS] if text != full else "")


def cell(field: str, value: object) -> Cell:
    """How one value of a record is shown."""
    if field == "trace_id":
        shown = "" if value is None else str(value)
        return Cell(shown, "", trace=monitor_trace(value))
    if value is None:
        return Cell("", "")
    if isinstance(value, bool):
        return Cell(json.dumps(value), "")
    if isinstance(value, int):
        return Cell(str(value), "", number=True)
    if isinstance(value, float):
        text = f"{value:.{SIGNIFICANT}g}"
        return Cell(text, repr(value) if text != repr(value) else "", number=True)
    if isinstance(value, str):
        return _cut(value, value)
    full = json.dumps(value, default=str)
    return _cut(json.dumps(_rounded(value), default=str), full)


def record_fields(
    records: Sequence[Mapping[str, Any]], predictions: Sequence[str] = ()
) -> tuple[str, ...]:
    """The columns: the ids, the predictions, the record's other fields (in the order they
    come), then its origin."""
    present = list(dict.fromkeys(k for r in records for k in r if k != "record"))
    first = [f for f in (*ID_FIELDS, *predictions) if f in present]
    last = [f for f in ORIGIN_FIELDS if f in present]
    middle = [f for f in present if f not in first and f not in last]
    return (*dict.fromkeys(first), *middle, *last)


def data_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[Mapping[str, Any]]
) -> DataTable:
    """The table of ``records`` (as the monitoring store lists them), with the columns its
    monitor's schema declares (``role: prediction`` marks the predictions)."""
    predictions = [str(c["name"]) for c in columns if c.get("role") == "prediction"]
    fields = record_fields(records, predictions)
    rows = tuple(tuple(cell(f, r[f]) if f in r else Cell("", "") for f in fields) for r in records)
    return DataTable(fields, frozenset(predictions) & frozenset(fields), rows)
