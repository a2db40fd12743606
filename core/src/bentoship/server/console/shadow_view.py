"""The Shadow panel of a deployment with a held candidate: the live comparison of
``GET /api/v2/deployments/{name}/shadow`` as short, rounded texts, and the console's
mirroring form read into the arguments of ``Shadows.start``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import Invalid

__all__ = [
    "FlipCell",
    "FlipMatrix",
    "FlipRow",
    "ShadowPanel",
    "Side",
    "flip_matrix",
    "interval",
    "milliseconds",
    "mirror_request",
    "percent",
    "shadow_panel",
]

MAX_LABELS = 6
"""Labels the flip matrix shows; the rarer ones are summed into one ``(other)`` row and column."""
OTHER = "(other)"
NONE = "—"


def percent(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def interval(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return NONE
    return f"{low * 100:.{digits}f}-{high * 100:.{digits}f}%"


def milliseconds(value: float | None) -> str:
    if value is None:
        return NONE
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if abs(value) < 100 else f"{value:.0f} ms"


def signed_milliseconds(value: float | None) -> str:
    if value is None:
        return NONE
    shown = milliseconds(abs(value))
    return shown if shown.startswith(("0.0 ", "0 ")) else ("+" if value > 0 else "-") + shown


def signed_points(value: float | None) -> str:
    """A change of a rate, in percentage points."""
    if value is None:
        return NONE
    points = f"{abs(value) * 100:.2f} pp"
    return points if points.startswith("0.00 ") else ("+" if value > 0 else "-") + points


def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


@dataclass(frozen=True)
class FlipCell:
    count: str
    share: str
    """Of the row: how often the candidate answered this label when serving answered the row's."""
    kind: str
    """``same`` (the diagonal), ``flip``, ``empty`` (no pair) or ``mixed`` (within ``(other)``)."""


@dataclass(frozen=True)
class FlipRow:
    label: str
    cells: tuple[FlipCell, ...]
    total: str


@dataclass(frozen=True)
class FlipMatrix:
    """Serving label (rows) -> candidate label (columns) -> pairs."""

    labels: tuple[str, ...]
    rows: tuple[FlipRow, ...]
    flipped: int
    labelled: int
    merged: int
    """How many rare labels ``(other)`` sums."""

    @property
    def summary(self) -> str:
        line = f"{count(self.flipped)} of {count(self.labelled)} labels flipped"
        return line + (f"; {self.merged} rarer labels summed as {OTHER}" if self.merged else "")


def flip_matrix(
    flips: Mapping[str, Mapping[str, int]], max_labels: int = MAX_LABELS
) -> FlipMatrix | None:
    """The matrix of the report's ``flips``, labels by name; past ``max_labels`` the rarest are
    summed into ``(other)``. None without a labelled pair."""
    totals: dict[str, int] = {}
    for was, row in flips.items():
        for now, n in row.items():
            totals[was] = totals.get(was, 0) + n
            totals[now] = totals.get(now, 0) + n
    if not any(totals.values()):
        return None
    ranked = sorted(totals, key=lambda label: (-totals[label], label))
    kept = ranked if len(ranked) <= max_labels else ranked[: max_labels - 1]
    merged = len(ranked) - len(kept)
    labels = tuple(sorted(kept)) + ((OTHER,) if merged else ())

    def shown(label: str) -> str:
        return label if label in kept else OTHER

    cells: dict[tuple[str, str], int] = {}
    for was, row in flips.items():
        for now, n in row.items():
            key = (shown(was), shown(now))
            cells[key] = cells.get(key, 0) + n
    rows = []
    for was in labels:
        total = sum(cells.get((was, now), 0) for now in labels)
        if not total:
            continue
        row_cells = []
        for now in labels:
            n = cells.get((was, now), 0)
            if not n:
                kind = "empty"
            elif was == now:
                kind = "mixed" if was == OTHER else "same"
            else:
                kind = "flip"
            row_cells.append(FlipCell(count(n), percent(n / total, 0), kind))
        rows.append(FlipRow(was, tuple(row_cells), count(total)))
    flipped = sum(n for was, row in flips.items() for now, n in row.items() if now != was)
    labelled = sum(n for row in flips.values() for n in row.values())
    return FlipMatrix(labels, tuple(rows), flipped, labelled, merged)


@dataclass(frozen=True)
class Side:
    """One revision's row of the errors and latency table (or the change between them)."""

    role: str
    revision: str
    requests: str
    errors: str
    error_rate: str
    p50: str
    p95: str
    p99: str


def _side(role: str, figures: Mapping[str, Any]) -> Side:
    latency = figures.get("latency_ms") or {}
    return Side(
        role,
        str(figures.get("revision") or ""),
        count(figures.get("requests")),
        count(figures.get("errors")),
        percent(figures.get("error_rate"), 2),
        milliseconds(latency.get("p50")),
        milliseconds(latency.get("p95")),
        milliseconds(latency.get("p99")),
    )


def _change(report: Mapping[str, Any]) -> Side:
    latency = report.get("latency_change_ms") or {}
    return Side(
        "Change",
        "",
        "",
        "",
        signed_points(report.get("error_rate_change")),
        signed_milliseconds(latency.get("p50")),
        signed_milliseconds(latency.get("p95")),
        signed_milliseconds(latency.get("p99")),
    )


@dataclass(frozen=True)
class ShadowPanel:
    deployment: str
    candidate: str
    """The held candidate's name (``r2``)."""
    phase: str
    """The candidate's phase: ``starting`` until it is ready, then ``candidate``."""
    active: bool
    """Whether requests are mirrored to this candidate now."""
    percent: int
    apis: str
    """The mirrored APIs, comma-separated; empty for every API."""
    status: str
    """One line: what is mirrored since when, or that nothing is and how to start."""
    start_command: str
    by_analysis: bool = False
    mirrored: str = "0"
    pairs: str = "0"
    pair_count: int = 0
    dropped: str = "0"
    dropped_reasons: tuple[tuple[str, str], ...] = ()
    agreement: str = NONE
    agreement_interval: str = NONE
    confidence: str = "95%"
    compared: str = "0"
    agreed: str = "0"
    band: tuple[float, float, float] | None = None
    """Low, rate and high of the agreement in percent (0-100), to draw its interval."""
    flips: FlipMatrix | None = None
    sides: tuple[Side, ...] = ()
    differences: str = ""
    """The largest numeric difference, when answers held numbers."""

    @property
    def key(self) -> str:
        """What the page's controls were drawn for: a change makes the page reload."""
        return f"{self.candidate}.{self.phase}.{int(self.active)}"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def _status(deployment: str, candidate: str, phase: str, state: Mapping[str, Any] | None) -> str:
    if state is None:
        if phase != "candidate":
            return (
                f"Nothing is mirrored: candidate {candidate} is {phase}; mirroring can start "
                "once it is ready."
            )
        return (
            f"Nothing is mirrored to candidate {candidate}: start with "
            f"`bentoship shadow {deployment} --percent 100`, or the button below."
        )
    apis = state.get("apis")
    what = f"{', '.join(apis)} requests" if apis else "requests"
    started = state.get("started_at")
    since = f" since {_clock(started)}" if isinstance(started, int | float) else ""
    who = " (by a shadow analysis, which judges it)" if state.get("by_analysis") else ""
    serving = state.get("serving") or "the serving revision"
    return (
        f"Mirroring {state.get('percent')}% of {what} to candidate {candidate}{since}{who}; "
        f"callers get {serving}'s answers."
    )


def shadow_panel(
    deployment: str, candidate: str, phase: str, figures: Mapping[str, Any] | None
) -> ShadowPanel:
    """The panel of ``deployment``'s held ``candidate`` from the shadow API's answer (None, or
    one for another candidate, when nothing is mirrored to it)."""
    command = f"bentoship shadow {deployment} --percent 100"
    state = figures if figures and figures.get("candidate") == candidate else None
    if state is not None and not state.get("active"):
        state = None
    status = _status(deployment, candidate, phase, state)
    if state is None:
        return ShadowPanel(deployment, candidate, phase, False, 100, "", status, command)
    report: Mapping[str, Any] = state.get("report") or {}
    agreement: Mapping[str, Any] = report.get("agreement") or {}
    rate, low, high = agreement.get("rate"), agreement.get("low"), agreement.get("high")
    band = None
    if rate is not None and low is not None and high is not None:
        band = (round(low * 100, 2), round(rate * 100, 2), round(high * 100, 2))
    reasons = sorted((state.get("dropped_by_reason") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    differences = report.get("differences") or {}
    biggest = ""
    if differences.get("count") and differences.get("max") is not None:
        biggest = (
            f"largest numeric difference {differences['max']:.3g} "
            f"(p95 {differences.get('p95') or 0:.3g}) over {count(differences['count'])} numbers"
        )
    return ShadowPanel(
        deployment,
        candidate,
        phase,
        True,
        int(state.get("percent") or 0),
        ", ".join(state.get("apis") or ()),
        status,
        command,
        by_analysis=bool(state.get("by_analysis")),
        mirrored=count(state.get("mirrored") or 0),
        pairs=count(state.get("pairs") or 0),
        pair_count=int(state.get("pairs") or 0),
        dropped=count(state.get("dropped") or 0),
        dropped_reasons=tuple((reason.replace("_", " "), count(n)) for reason, n in reasons),
        agreement=percent(rate),
        agreement_interval=interval(low, high),
        confidence=f"{float(agreement.get('confidence') or 0.95) * 100:.0f}%",
        compared=count(agreement.get("compared") or 0),
        agreed=count(agreement.get("agreed") or 0),
        band=band,
        flips=flip_matrix(report.get("flips") or {}),
        sides=(
            (
                _side("Serving", report.get("serving") or {}),
                _side("Candidate", report.get("candidate") or {}),
                _change(report),
            )
            if report
            else ()
        ),
        differences=biggest,
    )


def mirror_request(share: str, apis: str) -> tuple[int, Sequence[str] | None]:
    """The console form's percent (0 stops) and APIs (comma-separated; empty for every API)."""
    try:
        value = int(share.strip().rstrip("%"))
    except ValueError:
        raise Invalid(f"percent: send a whole number from 0 to 100, not {share!r}") from None
    if not 0 <= value <= 100:
        raise Invalid(f"percent: send a whole number from 0 to 100, not {value}")
    names = [name.strip() for name in apis.split(",") if name.strip()]
    return value, (names or None)
