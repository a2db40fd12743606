"""The Quality tab: a monitor's predictions joined to their labels, from the answer of
``GET /api/v2/deployments/{name}/quality``, as short rounded texts, the series of its charts
and the serving revision's confusion matrix; and the tab's window and step controls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..observe.quality import MAX_BUCKETS
from .shadow_view import NONE, FlipMatrix, count, flip_matrix, interval, percent

__all__ = [
    "DEFAULT_WINDOW",
    "STEPS",
    "WINDOWS",
    "WINDOW_NAMES",
    "QualityPanel",
    "QualityWindow",
    "RevisionRow",
    "number",
    "quality_panel",
    "quality_window",
]

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
WINDOW_NAMES = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "1d": 86400}
DEFAULT_WINDOW = "24h"
DEFAULT_STEPS = {"1h": "5m", "24h": "1h", "7d": "6h"}
MAX_CONFUSION_LABELS = 8
"""Labels the confusion matrix shows; the rarer ones are summed into ``(other)``."""


def number(value: float | None) -> str:
    """A regression figure with four significant digits (thousands grouped)."""
    if value is None:
        return NONE
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    if value == 0 or abs(value) >= 0.001:
        return f"{value:.4g}"
    return f"{value:.2e}"


@dataclass(frozen=True)
class QualityWindow:
    """The tab's window (``1h``, ``24h``, ``7d``) and step of its time buckets."""

    window: str
    step: str
    chosen_step: str
    """The step as the form sent it; empty for the window's default."""
    note: str = ""
    """Why the step sent was not used."""

    @property
    def seconds(self) -> int:
        return WINDOWS[self.window]

    @property
    def step_seconds(self) -> int:
        return STEPS[self.step]

    @property
    def name(self) -> str:
        return WINDOW_NAMES[self.window]

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps this window offers: at most MAX_BUCKETS buckets, none longer than it."""
        return tuple(s for s in STEPS if _fits(self.window, s))

    @property
    def default_step(self) -> str:
        return DEFAULT_STEPS[self.window]


def _fits(window: str, step: str) -> bool:
    return STEPS[step] <= WINDOWS[window] and WINDOWS[window] / STEPS[step] <= MAX_BUCKETS


def quality_window(window: str, step: str) -> QualityWindow:
    """The form's window and step; an unknown window is the default one, and an unknown step,
    or one that does not fit the window, the window's default step."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    if not step:
        return QualityWindow(window, DEFAULT_STEPS[window], "")
    if step in STEPS and _fits(window, step):
        return QualityWindow(window, step, step)
    default = DEFAULT_STEPS[window]
    why = "is not a step" if step not in STEPS else f"does not fit a {WINDOW_NAMES[window]} window"
    shown = step if len(step) <= 8 else step[:8] + "…"
    return QualityWindow(window, default, "", f"Step {shown} {why}: showing {default}.")


@dataclass(frozen=True)
class RevisionRow:
    revision: str
    serving: bool
    predicted: str
    labelled: str
    coverage: str
    metric: str
    interval: str
    extras: tuple[str, ...]


@dataclass(frozen=True)
class QualityPanel:
    deployment: str
    monitor: str
    task: str
    metric: str
    """``accuracy`` or ``mae``."""
    metric_name: str
    serving: str
    status: str
    """One line: the serving revision's metric, interval, labels and coverage; or, without a
    label in the window, that there is none and how to send them."""
    labelled: bool
    """Whether any prediction in the window has its label."""
    rows: tuple[RevisionRow, ...] = ()
    extra_columns: tuple[str, ...] = ()
    confusion: FlipMatrix | None = None
    confusion_revision: str = ""
    confusion_note: str = ""
    confusion_summary: str = ""
    chart: Mapping[str, Any] | None = None
    """What the page's script draws: the window (``since``, ``until``), ``x`` (bucket starts,
    epoch seconds) and per revision the metric with its interval and the coverage, in the
    chart's units (None: no value)."""
    counts: str = ""


def feedback_hint(deployment: str, monitor: str) -> str:
    return (
        f"send them with POST /api/v2/deployments/{deployment}/feedback?monitor={monitor} "
        "or bentoship.steps.send_feedback"
    )


def _metric_text(metric: str, value: float | None) -> str:
    return percent(value) if metric == "accuracy" else number(value)


def _interval_text(metric: str, bounds: Sequence[float] | None) -> str:
    if not bounds or len(bounds) != 2:
        return NONE
    low, high = bounds
    if metric == "accuracy":
        return interval(low, high)
    return f"{number(low)}-{number(high)}"


def _extras(task: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    if task == "regression":
        return (number(entry.get("rmse")), number(entry.get("r2")))
    return tuple(percent(entry.get(k)) for k in ("precision", "recall", "f1"))


def _status(
    deployment: str,
    monitor: str,
    serving: str,
    entry: Mapping[str, Any] | None,
    metric: str,
    window: str,
) -> str:
    if entry is None:
        return f"{serving} (serving) made no prediction of {monitor} in the last {window}."
    labelled = int(entry.get("labelled") or 0)
    predicted = count(entry.get("predicted"))
    if not labelled:
        return f"{serving} (serving): none of its {predicted} predictions has a label yet."
    name = "accuracy" if metric == "accuracy" else "MAE"
    return (
        f"{serving} (serving): {name} {_metric_text(metric, entry.get(metric))}, "
        f"95% interval {_interval_text(metric, entry.get('interval'))}, "
        f"over {count(labelled)} labels of {predicted} predictions "
        f"(coverage {percent(entry.get('coverage'))}) in the last {window}."
    )


def _rounded(value: float | None, metric: str) -> float | None:
    if value is None:
        return None
    if metric == "accuracy":
        return round(value * 100, 2)
    return float(f"{value:.4g}")


def _chart(
    revisions: Sequence[Mapping[str, Any]], metric: str, since: float, until: float
) -> dict[str, Any]:
    starts = sorted({round(float(b["start"]), 3) for r in revisions for b in r["buckets"]})
    drawn = []
    for entry in revisions:
        by_start = {round(float(b["start"]), 3): b for b in entry["buckets"]}
        value, low, high, coverage = [], [], [], []
        for start in starts:
            bucket = by_start.get(start) or {}
            labelled = bool(bucket.get("labelled"))
            bounds = bucket.get("interval") if labelled else None
            value.append(_rounded(bucket.get(metric), metric) if labelled else None)
            low.append(_rounded(bounds[0], metric) if bounds else None)
            high.append(_rounded(bounds[1], metric) if bounds else None)
            shown = bucket.get("coverage")
            coverage.append(round(shown * 100, 2) if shown is not None else None)
        drawn.append(
            {
                "revision": entry["revision"],
                "value": value,
                "low": low,
                "high": high,
                "coverage": coverage,
            }
        )
    return {
        "metric": metric,
        "title": "Accuracy (%)" if metric == "accuracy" else "MAE",
        "percent": metric == "accuracy",
        "since": round(since, 3),
        "until": round(until, 3),
        "x": starts,
        "revisions": drawn,
    }


def _confusion(entry: Mapping[str, Any]) -> FlipMatrix | None:
    """The matrix of ``entry``'s ``confusion`` (rows: actual labels; columns: predicted)."""
    found = entry.get("confusion") or {}
    labels = [str(label) for label in found.get("labels") or ()]
    matrix = found.get("matrix") or ()
    cells = {
        actual: {predicted: int(n) for predicted, n in zip(labels, row, strict=False) if n}
        for actual, row in zip(labels, matrix, strict=False)
    }
    return flip_matrix(cells, MAX_CONFUSION_LABELS)


def quality_panel(
    answer: Mapping[str, Any], serving: str | None, window: QualityWindow
) -> QualityPanel:
    """The tab's figures from the quality route's ``answer``; ``serving``: the serving
    revision's name (``r1``)."""
    deployment = str(answer.get("deployment") or "")
    monitor = str(answer.get("monitor") or "")
    task = str(answer.get("task") or "classification")
    metric = str(answer.get("metric") or ("mae" if task == "regression" else "accuracy"))
    revisions: Sequence[Mapping[str, Any]] = answer.get("revisions") or ()
    served = serving or (revisions[-1]["revision"] if revisions else "")
    entry = next((r for r in revisions if r["revision"] == served), None)
    labelled = any(r.get("labelled") for r in revisions)
    stored = int(answer.get("labels") or 0)
    if labelled:
        status = _status(deployment, monitor, served, entry, metric, window.name)
    elif stored:
        status = (
            f"No prediction of {monitor} in the last {window.name} has a label yet "
            f"({count(stored)} labels are stored): {feedback_hint(deployment, monitor)}."
        )
    else:
        status = f"No labels yet for {monitor}: {feedback_hint(deployment, monitor)}."
    rows = tuple(
        RevisionRow(
            str(r["revision"]),
            r["revision"] == served,
            count(r.get("predicted")),
            count(r.get("labelled")),
            percent(r.get("coverage")),
            _metric_text(metric, r.get(metric)) if r.get("labelled") else NONE,
            _interval_text(metric, r.get("interval")) if r.get("labelled") else NONE,
            _extras(task, r) if r.get("labelled") else (),
        )
        for r in revisions
    )
    extra_columns = ("RMSE", "R²") if task == "regression" else ("Precision", "Recall", "F1")
    shown: Mapping[str, Any] = entry if entry is not None and entry.get("labelled") else {}
    confusion = _confusion(shown) if task == "classification" else None
    note = ""
    if task == "classification" and labelled and confusion is None:
        note = f"{served} (serving) has no labelled prediction in the last {window.name}."
    corrections = int(answer.get("corrections") or 0)
    unmatched = int(answer.get("unmatched") or 0)
    counts = (
        f"{count(stored)} labels stored for {monitor}, {count(corrections)} corrected, "
        f"{count(unmatched)} matching no stored prediction."
    )
    summary = ""
    if confusion is not None:
        summary = (
            f"{count(confusion.flipped)} of {count(confusion.labelled)} labelled predictions wrong"
        )
        if confusion.merged:
            summary += f"; {confusion.merged} rarer labels summed as (other)"
    return QualityPanel(
        deployment,
        monitor,
        task,
        metric,
        "Accuracy" if metric == "accuracy" else "MAE",
        served,
        status,
        labelled,
        rows=rows,
        extra_columns=extra_columns,
        confusion=confusion,
        confusion_revision=served,
        confusion_note=note,
        confusion_summary=summary,
        chart=(
            _chart(revisions, metric, float(answer["since"]), float(answer["until"]))
            if labelled
            else None
        ),
        counts=counts,
    )
