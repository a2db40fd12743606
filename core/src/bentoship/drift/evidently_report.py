"""Evidently's own data-drift report beside bentoship's (the ``evidently`` extra).

Only :func:`evidently_drift` imports evidently, and only ``check_drift(..., evidently=True)``
imports this module: the rest of bentoship never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..extras import require
from .report import DriftReport, EvidentlyColumn, Verdict
from .tables import Columns

__all__ = ["evidently_drift"]

FEATURE = "check_drift(evidently=True)"


def evidently_drift(
    reference: Columns, current: Columns, report: DriftReport, html_path: Path | None = None
) -> list[EvidentlyColumn]:
    """Each column's verdict under Evidently's default drift preset (``DataDriftPreset``), on the
    columns ``report`` could judge, typed as ``report`` typed them; its page is written to
    ``html_path`` when given."""
    pandas = require("pandas", feature=FEATURE, extra="evidently")
    require("evidently", feature=FEATURE, extra="evidently")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    judged = [c for c in report.columns if c.verdict in (Verdict.DRIFT, Verdict.NO_DRIFT)]
    if not judged:
        return []
    names = [c.name for c in judged]
    definition = DataDefinition(
        numerical_columns=[c.name for c in judged if c.kind == "numeric"],
        categorical_columns=[c.name for c in judged if c.kind == "categorical"],
    )

    def dataset(side: Columns) -> Any:
        frame = pandas.DataFrame({name: pandas.Series(side[name]) for name in names})
        return Dataset.from_pandas(frame, data_definition=definition)

    snapshot = Report([DataDriftPreset(columns=names)], include_tests=True).run(
        dataset(current), dataset(reference)
    )
    if html_path is not None:
        snapshot.save_html(str(html_path))
    return _columns(snapshot.dict(), names)


def _columns(data: dict[str, Any], names: list[str]) -> list[EvidentlyColumn]:
    """The per-column ``ValueDrift`` metrics and the pass/fail of their drift tests."""
    metrics = {
        m["config"]["column"]: m
        for m in data["metrics"]
        if m["config"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    failed = {
        t["metric_config"]["params"]["column"]: str(getattr(t["status"], "value", t["status"]))
        == "FAIL"
        for t in data["tests"]
        if t["id"] == "drift"
    }
    return [
        EvidentlyColumn(
            name=name,
            method=str(metrics[name]["config"]["method"]),
            score=float(metrics[name]["value"]),
            threshold=float(metrics[name]["config"]["threshold"]),
            drifted=failed[name],
        )
        for name in names
        if name in metrics and name in failed
    ]
