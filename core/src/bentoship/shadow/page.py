"""A shadow report as one self-contained HTML page: inline styles and SVG, no script, no
network access needed to view it. Every revision id and label is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Latency, RevisionFigures, ShadowReport

__all__ = ["render_report"]

WIDTH, HEIGHT, PAD = 560, 46, 12
RATE_COLOUR, BAND_COLOUR = "#e4572e", "#f3c1b3"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:24px;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:12px 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6ec}
th{font-size:12px;color:#667085;text-transform:uppercase}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th.label{text-transform:none;font-size:14px;color:#1d2330}
.flip{color:#b42318;font-weight:600}.same{color:#067647}.muted{color:#667085}
"""


def _figure(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _signed(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2%}" if percent else f"{value:+.4g}"


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _agreement_chart(report: ShadowReport) -> str:
    """The agreement rate on a 0-100% scale, with its interval as a band."""
    agreement = report.agreement
    if agreement.rate is None or agreement.low is None or agreement.high is None:
        return "<p class=muted>No pair was compared.</p>"
    span = WIDTH - 2 * PAD

    def x(share: float) -> float:
        return PAD + span * share

    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" role="img"><title>agreement '
        f"{_percent(agreement.rate)}, interval {_percent(agreement.low)} to "
        f'{_percent(agreement.high)}</title><rect x="{PAD}" y="14" width="{span}" height="12" '
        f'fill="#eef0f4"/><rect x="{x(agreement.low):.1f}" y="14" '
        f'width="{x(agreement.high) - x(agreement.low):.1f}" height="12" fill="{BAND_COLOUR}"/>'
        f'<rect x="{x(agreement.rate) - 1:.1f}" y="10" width="2" height="20" '
        f'fill="{RATE_COLOUR}"/><text x="{PAD}" y="42" font-size="10">0%</text>'
        f'<text x="{WIDTH - PAD}" y="42" font-size="10" text-anchor="end">100%</text></svg>'
    )


def _overview(report: ShadowReport) -> str:
    agreement = report.agreement
    rows = [
        ("pairs", str(report.pairs)),
        ("dropped", str(report.dropped)),
        ("compared (neither errored)", str(agreement.compared)),
        ("agreed", str(agreement.agreed)),
        ("agreement", _percent(agreement.rate)),
        (
            f"{agreement.confidence:.0%} interval (Wilson)",
            f"{_percent(agreement.low)} &ndash; {_percent(agreement.high)}",
        ),
        ("compared by body digest", str(report.by_digest)),
        ("numeric tolerance", f"{report.tolerance:g}"),
        ("from", _when(report.first_time)),
        ("to", _when(report.last_time)),
    ]
    body = "".join(f'<tr><th>{name}</th><td class="n">{value}</td></tr>' for name, value in rows)
    return f"<table>{body}</table>"


def _revision_row(role: str, side: RevisionFigures) -> str:
    latency = side.latency_ms
    return (
        f"<tr><td>{role}</td><td>{escape(side.revision)}</td><td class=n>{side.requests}</td>"
        f"<td class=n>{side.errors}</td><td class=n>{_percent(side.error_rate)}</td>"
        f"<td class=n>{_figure(latency.p50)}</td><td class=n>{_figure(latency.p95)}</td>"
        f"<td class=n>{_figure(latency.p99)}</td></tr>"
    )


def _change_row(report: ShadowReport, change: Latency) -> str:
    return (
        "<tr><td>change</td><td class=muted>candidate &minus; serving</td><td></td>"
        f"<td class=n>{report.candidate.errors - report.serving.errors:+d}</td>"
        f"<td class=n>{_signed(report.error_rate_change, percent=True)}</td>"
        f"<td class=n>{_signed(change.p50)}</td><td class=n>{_signed(change.p95)}</td>"
        f"<td class=n>{_signed(change.p99)}</td></tr>"
    )


def _revisions(report: ShadowReport) -> str:
    return (
        "<table><thead><tr><th>side</th><th>revision</th><th>requests</th><th>errors</th>"
        "<th>error rate</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr></thead><tbody>"
        + _revision_row("serving", report.serving)
        + _revision_row("candidate", report.candidate)
        + _change_row(report, report.latency_change_ms)
        + "</tbody></table>"
    )


def _flips(report: ShadowReport) -> str:
    if not report.flips:
        return "<p class=muted>No pair whose two answers are class labels.</p>"
    columns = sorted({now for row in report.flips.values() for now in row})
    head = "".join(f"<th class=label>{escape(now)}</th>" for now in columns)
    rows = []
    for was, row in report.flips.items():
        cells = "".join(
            f'<td class="n {"same" if now == was else "flip" if row.get(now) else "muted"}">'
            f"{row.get(now, 0)}</td>"
            for now in columns
        )
        rows.append(f"<tr><th class=label>{escape(was)}</th>{cells}</tr>")
    return (
        f"<p>{report.flipped} of {report.labelled} labelled pairs flipped "
        f"({_percent(report.flipped / report.labelled)}). Rows: the serving revision's label; "
        "columns: the candidate's.</p>"
        f"<table><thead><tr><th>serving \\ candidate</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _differences(report: ShadowReport) -> str:
    spread = report.differences
    if not spread.count:
        return "<p class=muted>No pair whose two answers are numbers of the same shape.</p>"
    figures = [
        ("pairs", str(spread.pairs)),
        ("numbers", str(spread.count)),
        ("mean", _figure(spread.mean)),
        ("p50", _figure(spread.p50)),
        ("p95", _figure(spread.p95)),
        ("p99", _figure(spread.p99)),
        ("max", _figure(spread.max)),
    ]
    head = "".join(f"<th>{name}</th>" for name, _ in figures)
    cells = "".join(f"<td class=n>{value}</td>" for _, value in figures)
    return (
        "<p>|candidate &minus; serving|, number by number.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
    )


def render_report(report: ShadowReport) -> str:
    """The page of ``report``."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Shadow report</title><style>{STYLE}</style></head><body>"
        f"<h1>Shadow report: {escape(report.summary())}</h1>"
        "<p>Each mirrored request was answered by both revisions. A pair where either errored "
        "(5xx, or no answer) counts in the error rates, not in the agreement; the others agree "
        "when both statuses are the same and the answers are equal, numbers within the "
        f"tolerance.</p>{_agreement_chart(report)}{_overview(report)}"
        f"<h2>Errors and latency</h2>{_revisions(report)}"
        f"<h2>Label flips</h2>{_flips(report)}"
        f"<h2>Numeric differences</h2>{_differences(report)}"
        "</body></html>"
    )
