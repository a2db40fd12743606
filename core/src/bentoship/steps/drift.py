"""The drift check step: compare current data with a reference, report, and optionally gate."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DriftDetected
from ..extras import require

if TYPE_CHECKING:
    from ..client import Client
    from ..drift.report import DriftReport, DriftThresholds

__all__ = ["check_drift"]

log = logging.getLogger(__name__)


def check_drift(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    missing_as_drift: bool = False,
    thresholds: DriftThresholds | None = None,
    gate: bool = False,
    report_path: str | Path | None = None,
    evidently: bool = False,
    client: Client | None = None,
) -> DriftReport:
    """Compare ``current`` with ``reference``, column by column.

    Each side is a DataFrame, a dict of columns, a Parquet file or folder, a
    :class:`~bentoship.drift.SqlQuery` (or ``{"url", "query"}``), or a deployment's monitor on
    the local control plane, :class:`~bentoship.drift.Monitor` (or ``{"deployment",
    "monitor"}``, read with ``client``). Numeric columns are tested with Kolmogorov-Smirnov and
    PSI, the others (and ``categorical``) with chi-squared and PSI. ``columns`` names the
    columns to compare (default: every column of either side); a column on one side only is
    reported as ``missing`` and counts as drifted only with ``missing_as_drift=True``. The
    report says which columns it compared and which were missing, and is written as
    HTML to ``report_path`` when given. With ``evidently=True`` (the ``evidently`` extra),
    Evidently's default drift preset judges the same columns too: its verdicts are in the
    report's ``evidently`` and its own page is written beside ours, as
    ``<report>.evidently.html``. With ``gate=True``, a drifted dataset raises
    :class:`~bentoship.errors.DriftDetected`.
    """
    for module in ("numpy", "scipy"):
        require(module, feature="check_drift", extra="drift")
    from ..drift.compare import compare_columns
    from ..drift.page import render_report
    from ..drift.tables import read_side

    reference_columns = read_side(reference, "reference", client)
    current_columns = read_side(current, "current", client)
    report = compare_columns(
        reference_columns,
        current_columns,
        columns=columns,
        categorical=categorical,
        thresholds=thresholds,
        missing_as_drift=missing_as_drift,
    )
    path = None if report_path is None else Path(report_path)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    evidently_page = None
    if evidently:
        from ..drift.evidently_report import evidently_drift

        evidently_page = None if path is None else path.with_suffix(".evidently.html")
        judged = evidently_drift(reference_columns, current_columns, report, evidently_page)
        report = replace(report, evidently=judged)
        log.info(
            "drift check: Evidently's default preset agrees on %d of %d columns%s",
            report.evidently_agreeing,
            len(judged),
            f" (its report: {evidently_page})" if evidently_page else "",
        )
    written = None
    if path is not None:
        path.write_text(
            render_report(report, evidently_page.name if evidently_page else None),
            encoding="utf-8",
        )
        written = str(path)
    log.info("drift check: %s%s", report.summary(), f" (report: {written})" if written else "")
    if gate and report.drifted:
        raise DriftDetected(report, written)
    return report
