"""A quality report as one self-contained HTML page: the metric over time per revision with its
interval band, the label coverage, and the serving revision's confusion matrix. Inline SVG, no
script; every label and name is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any, Protocol

__all__ = ["QualityFigures", "render_quality"]

WIDTH, HEIGHT, PAD = 760, 220, 36
COLOURS = ("#2e6fe4", "#e4572e", "#17a398", "#8f5fd1", "#d18f1f", "#5f6b7a")
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:24px;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:12px 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6ec}
th{font-size:12px;color:#667085;text-transform:uppercase}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b42318;font-weight:600}.passed{color:#067647;font-weight:600}
.muted{color:#667085}
"""


class QualityFigures(Protocol):
    """What the page shows of a report (``report.QualityReport``)."""

    @property
    def deployment(self) -> str: ...

    @property
    def monitor(self) -> str: ...

    @property
    def metric(self) -> str: ...

    @property
    def serving(self) -> str | None: ...

    @property
    def quality(self) -> dict[str, Any]: ...

    @property
    def failed(self) -> bool: ...

    def summary(self) -> str: ...


def _number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%m-%d %H:%M")


def _chart(report: QualityFigures, key: str, title: str, band: bool) -> str:
    """One line per revision of ``key`` over the buckets, with the interval band."""
    revisions = report.quality.get("revisions") or []
    points = [
        (b["start"], b.get(key), b.get("interval"))
        for r in revisions
        for b in r.get("buckets") or []
        if b.get(key) is not None
    ]
    if not points:
        return f"<p class=muted>No {escape(title)} yet: no labelled prediction in the window.</p>"
    times = [t for t, _, _ in points]
    values = [v for _, v, _ in points]
    values += [x for _, _, i in points if band and i for x in i]
    t0, t1 = min(times), max(times) or 1
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5

    def x(t: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return float(HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v - low) / (high - low))

    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" role="img"><title>{escape(title)}</title>']
    legend = []
    for index, revision in enumerate(revisions):
        colour = COLOURS[index % len(COLOURS)]
        mine = [b for b in revision.get("buckets") or [] if b.get(key) is not None]
        if not mine:
            continue
        if band:
            upper = [(b["start"], b["interval"][1]) for b in mine if b.get("interval")]
            lower = [(b["start"], b["interval"][0]) for b in mine if b.get("interval")]
            if upper:
                outline = upper + lower[::-1]
                polygon = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in outline)
                parts.append(f'<polygon points="{polygon}" fill="{colour}" opacity="0.15"/>')
        line = " ".join(f"{x(b['start']):.1f},{y(b[key]):.1f}" for b in mine)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for b in mine:
            parts.append(
                f'<circle cx="{x(b["start"]):.1f}" cy="{y(b[key]):.1f}" r="3" fill="{colour}"/>'
            )
        legend.append(f'<span style="color:{colour}">&#9632; {escape(revision["revision"])}</span>')
    parts.append(
        f'<text x="4" y="{PAD}" font-size="10">{_number(high)}</text>'
        f'<text x="4" y="{HEIGHT - PAD}" font-size="10">{_number(low)}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10">{_when(t0)}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
        f"{_when(t1)}</text></svg>"
    )
    return "".join(parts) + f"<p>{' '.join(legend)}</p>"


def _revisions(report: QualityFigures) -> str:
    rows = []
    for revision in report.quality.get("revisions") or []:
        interval = revision.get("interval")
        rows.append(
            f"<tr><td>{escape(str(revision['revision']))}</td>"
            f"<td class=n>{revision.get('predicted', 0)}</td>"
            f"<td class=n>{revision.get('labelled', 0)}</td>"
            f"<td class=n>{_percent(revision.get('coverage'))}</td>"
            f"<td class=n>{_number(revision.get(report.metric))}</td>"
            f"<td class=n>{_number(interval[0]) if interval else '—'}-"
            f"{_number(interval[1]) if interval else '—'}</td></tr>"
        )
    if not rows:
        return "<p class=muted>No prediction in the window.</p>"
    return (
        "<table><thead><tr><th>revision</th><th>predictions</th><th>labelled</th>"
        f"<th>coverage</th><th>{escape(report.metric)}</th><th>95% interval</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _confusion(report: QualityFigures) -> str:
    serving = next(
        (r for r in report.quality.get("revisions") or [] if r["revision"] == report.serving),
        None,
    )
    confusion: dict[str, Any] | None = serving.get("confusion") if serving else None
    if not confusion or not confusion.get("labels"):
        return "<p class=muted>No confusion matrix (a regression, or no label yet).</p>"
    labels = [escape(str(label)) for label in confusion["labels"]]
    head = "".join(f"<th>{label}</th>" for label in labels)
    body = "".join(
        f"<tr><th>{label}</th>{''.join(f'<td class=n>{n}</td>' for n in row)}</tr>"
        for label, row in zip(labels, confusion["matrix"], strict=True)
    )
    return (
        f"<p>{escape(str(report.serving))}: actual (rows) against predicted (columns).</p>"
        f"<table><thead><tr><th>actual \\ predicted</th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def render_quality(report: QualityFigures) -> str:
    verdict = "failed" if report.failed else "passed"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Quality report</title><style>{STYLE}</style></head><body>"
        f"<h1>Quality of {escape(report.deployment)} ({escape(report.monitor)})</h1>"
        f"<p class={verdict}>{escape(report.summary())}</p>"
        f"<h2>{escape(report.metric)} over time</h2>"
        f"{_chart(report, report.metric, report.metric, band=True)}"
        f"<h2>Label coverage</h2>{_chart(report, 'coverage', 'label coverage', band=False)}"
        f"<h2>Revisions</h2>{_revisions(report)}"
        f"<h2>Confusion matrix</h2>{_confusion(report)}"
        "</body></html>"
    )
