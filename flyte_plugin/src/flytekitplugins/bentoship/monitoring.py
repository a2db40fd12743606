"""Flyte tasks for ML monitoring: check drift (the report in a Flyte Deck), export records.

bentoship, numpy and scipy are imported inside the task bodies only.
"""

from typing import NamedTuple

import flytekit
from flytekit import task
from flytekit.types.file import FlyteFile

from ._connection import API_KEY_SECRET, client
from .image import IMAGE

__all__ = ["DriftOutputs", "ExportOutputs", "check_drift", "export_monitoring"]


class DriftOutputs(NamedTuple):
    drifted: bool
    share_drifted: float
    summary: str
    report: FlyteFile


class ExportOutputs(NamedTuple):
    records: int
    """Records written by this run."""
    watermark: int


@task(cache=False, enable_deck=True, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def check_drift(
    reference: str,
    current: str,
    columns: list[str] | None = None,
    categorical: list[str] | None = None,
    missing_as_drift: bool = False,
    p_value: float = 0.05,
    psi: float = 0.1,
    share: float = 0.5,
    fail_on_drift: bool = False,
    evidently: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> DriftOutputs:
    """Compare ``current`` with ``reference`` column by column (KS or chi-squared, and PSI);
    the HTML report is the task's *Drift report* deck and its ``report`` output.

    Each side is a Parquet path, or JSON: ``{"url": ..., "query": ...}`` (a SQL query on a
    SQLAlchemy URL) or ``{"deployment": ..., "monitor": ...}`` (a deployment's monitoring
    records on the local control plane). ``columns`` names the columns to compare (default:
    all); a column on one side only is ``missing``, counted as drifted only with
    ``missing_as_drift``. With ``fail_on_drift``, drift fails the task. With
    ``evidently`` (the ``evidently`` extra), Evidently's own page is the *Evidently report*
    deck.
    """
    import contextlib
    from pathlib import Path

    from bentoship.drift import DriftThresholds, Monitor, render_report
    from bentoship.drift.tables import side_from_text
    from bentoship.steps import check_drift as check

    sides = [side_from_text(reference), side_from_text(current)]
    monitors = [s for s in sides if isinstance(s, Monitor)]
    path = flytekit.current_context().working_directory + "/drift-report.html"
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(client(endpoint, token)) if monitors else None
        report = check(
            *sides,
            columns=columns or None,
            categorical=categorical or (),
            missing_as_drift=missing_as_drift,
            thresholds=DriftThresholds(p_value=p_value, psi=psi, share=share),
            report_path=path,
            evidently=evidently,
            client=api,
        )
    theirs = Path(path).with_suffix(".evidently.html")
    flytekit.Deck("Drift report", render_report(report, theirs.name if evidently else None))
    if evidently:
        flytekit.Deck("Evidently report", theirs.read_text(encoding="utf-8"))
    if fail_on_drift and report.drifted:
        from bentoship.errors import DriftDetected

        raise DriftDetected(report, path)
    return DriftOutputs(report.drifted, report.share_drifted, report.summary(), FlyteFile(path))


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def export_monitoring(
    name: str,
    monitor: str,
    target: str,
    table: str | None = None,
    since: str | None = None,
    source: str | None = None,
    watermark_column: str = "seq",
    endpoint: str | None = None,
    token: str | None = None,
) -> ExportOutputs:
    """Export the records of ``monitor`` that ``target`` (a Parquet folder, a DuckDB file or a
    SQLAlchemy URL) does not have yet; a re-run writes no duplicate. ``since`` (ISO-8601, epoch
    seconds or a time ago such as ``24h``) keeps only the records ingested since then.

    ``source`` is where the records are when not on the local control plane (BentoCloud keeps
    none): a Parquet path, or JSON ``{"url", "query"}`` (a SQL query on a SQLAlchemy URL) that
    your collector fills, with ``watermark_column``, a column that only rises.
    """
    from bentoship.steps import export_monitoring as export

    if source:
        result = export(
            name, monitor, target, source=source, watermark_column=watermark_column, table=table
        )
    else:
        with client(endpoint, token) as api:
            result = export(name, monitor, target, since=since, table=table, client=api)
    return ExportOutputs(result.count, result.watermark)
