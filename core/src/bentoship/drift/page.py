"""A drift report as one self-contained HTML page: inline styles and SVG, no script, no
network access needed to view it. Every name and value from the data is escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import ColumnDrift, DriftReport, EvidentlyColumn
    from .statistics import Histogram

__all__ = ["render_report"]

WIDTH, HEIGHT, PAD = 560, 150, 22
REFERENCE_COLOUR, CURRENT_COLOUR = "#7a8aa6", "#e4572e"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:24px;max-width:1100px}
h1{font-size:20px}table{border-collapse:collapse;width:100%;margin:12px 0}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6ec}
th{font-size:12px;color:#667085;text-transform:uppercase}
.drift{color:#b42318;font-weight:600}.no_drift{color:#067647}.missing{color:#b42318}
.empty{color:#667085}.col{border:1px solid #e3e6ec;padding:10px;margin:12px 0}
.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _figure(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _chart(histogram: Histogram) -> str:
    """Reference and current shares per bin, side by side, as SVG bars."""
    bins = len(histogram.labels)
    top = max([*histogram.reference, *histogram.current, 1e-9])
    slot = (WIDTH - 2 * PAD) / max(bins, 1)
    bar = slot * 0.4
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT + PAD}" role="img">']
    for i, label in enumerate(histogram.labels):
        x = PAD + i * slot
        for offset, share, colour in (
            (0.1, histogram.reference[i], REFERENCE_COLOUR),
            (0.5, histogram.current[i], CURRENT_COLOUR),
        ):
            height = (HEIGHT - PAD) * share / top
            parts.append(
                f'<rect x="{x + offset * slot:.1f}" y="{HEIGHT - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{escape(label)}: '
                f"{share:.1%}</title></rect>"
            )
        if bins <= 12:
            shown = label.split(" to ", 1)[0] if " to " in label else label
            short = escape(shown if len(shown) <= 9 else shown[:8] + "…")
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{HEIGHT + 14}" font-size="9" '
                f'text-anchor="middle">{short}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _column(column: ColumnDrift) -> str:
    chart = _chart(column.histogram) if column.histogram else "<p>No histogram.</p>"
    return (
        f'<div class="col" id="column-{escape(column.name)}"><h3>{escape(column.name)} '
        f'<span class="{column.verdict}">{column.verdict}</span></h3>'
        f"<p>{column.kind}; {column.test or 'no test'}: statistic {_figure(column.statistic)}, "
        f"p-value {_figure(column.p_value)}, PSI {_figure(column.psi)}; "
        f"{column.reference_count} reference and {column.current_count} current values, "
        f"{column.reference_nulls} and {column.current_nulls} nulls</p>{chart}</div>"
    )


def _evidently_cell(column: EvidentlyColumn | None) -> str:
    if column is None:
        return "<td>—</td>"
    verdict = "drift" if column.drifted else "no_drift"
    return (
        f'<td class="{verdict}">{verdict} <small>({escape(column.method)} '
        f"{_figure(column.score, 3)}, threshold {column.threshold:g})</small></td>"
    )


def _evidently_note(report: DriftReport, evidently_page: str | None) -> str:
    if report.evidently is None:
        return ""
    link = (
        f' Its own report: <a href="{escape(evidently_page)}">{escape(evidently_page)}</a>.'
        if evidently_page
        else ""
    )
    return (
        f"<p>Evidently's default drift preset agrees on {report.evidently_agreeing} of "
        f"{len(report.evidently)} columns.{link}</p>"
    )


def _columns_note(report: DriftReport) -> str:
    """Which columns were compared, and which are on one side only (and how they count)."""
    compared = ", ".join(escape(name) for name in report.compared_columns) or "none"
    note = f"<p>Compared ({len(report.compared_columns)}): {compared}.</p>"
    missing = [c for c in report.columns if c.verdict == "missing"]
    if not missing:
        return note
    counts = "counted" if any(c.drifted for c in missing) else "not counted"
    sides = ", ".join(f"{escape(c.name)} ({c.only_in or 'one side'} only)" for c in missing)
    return (
        f'{note}<p>Missing, on one side only ({counts} as drifted): <span class="missing">'
        f"{sides}</span>.</p>"
    )


def render_report(report: DriftReport, evidently_page: str | None = None) -> str:
    """The page; ``evidently_page`` is the address of Evidently's report, linked when given."""
    evidently = None if report.evidently is None else {c.name: c for c in report.evidently}
    rows = "".join(
        f'<tr><td><a href="#column-{escape(c.name)}">{escape(c.name)}</a></td><td>{c.kind}</td>'
        f"<td>{c.test or '—'}</td><td>{_figure(c.statistic)}</td><td>{_figure(c.p_value)}</td>"
        f'<td>{_figure(c.psi)}</td><td class="{c.verdict}">{c.verdict}</td>'
        + ("" if evidently is None else _evidently_cell(evidently.get(c.name)))
        + "</tr>"
        for c in report.columns
    )
    evidently_head = "" if evidently is None else "<th>Evidently</th>"
    limits = report.thresholds
    verdict = "drift" if report.drifted else "no_drift"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Drift report</title><style>{STYLE}</style></head><body>"
        f'<h1>Drift report: <span class="{verdict}">{escape(report.summary())}</span></h1>'
        f"<p>{report.reference_rows} reference rows, {report.current_rows} current rows. A "
        f"column drifts when its test's p-value is below {limits.p_value:g} and its PSI is "
        f"at least {limits.psi:g}; the data drifts when at least {limits.share:.0%} of its "
        "columns drift (a column on one side only counts as drifted only with "
        f"missing_as_drift).</p>{_columns_note(report)}"
        f'<p class="key"><span style="background:{REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{CURRENT_COLOUR}"></span>current</p>'
        "<table><thead><tr><th>column</th><th>kind</th><th>test</th><th>statistic</th>"
        f"<th>p-value</th><th>PSI</th><th>verdict</th>{evidently_head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>{_evidently_note(report, evidently_page)}"
        + "".join(_column(c) for c in report.columns)
        + "</body></html>"
    )
