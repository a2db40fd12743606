"""Flyte tasks for ML monitoring: check drift, export records, send the labels that arrive
after the predictions, and check the serving revision's quality (the reports in Flyte Decks).

bentoship, numpy and scipy are imported inside the task bodies only.
"""

from typing import NamedTuple

import flytekit
from flytekit import task
from flytekit.types.file import FlyteFile

from ._connection import API_KEY_SECRET, client
from .image import IMAGE

__all__ = [
    "DriftOutputs",
    "ExportOutputs",
    "FeedbackOutputs",
    "QualityOutputs",
    "check_drift",
    "check_quality",
    "export_monitoring",
    "send_feedback",
]


class DriftOutputs(NamedTuple):
    drifted: bool
    share_drifted: float
    summary: str
    report: FlyteFile


class ExportOutputs(NamedTuple):
    records: int
    """Records written by this run."""
    watermark: int


class FeedbackOutputs(NamedTuple):
    sent: int
    stored: int
    """Labels new to the control plane."""
    duplicates: int
    corrections: int
    """Labels that replaced a different one."""
    pending: int
    """Labels whose prediction is not stored yet (they join once it is)."""


class QualityOutputs(NamedTuple):
    failed: bool
    verdict: str
    """``passed``, ``failed`` or ``not_enough_evidence``."""
    summary: str
    report: FlyteFile
    """The HTML report."""
    report_json: str
    """The report as JSON (``bentoship.QualityReport.from_dict``)."""


@task(
    cache=False,
    enable_deck=True,
    deck_fields=(),  # only the reports: the inputs deck would show the token
    secret_requests=[API_KEY_SECRET],
    container_image=IMAGE,
)
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


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def send_feedback(
    name: str,
    monitor: str,
    source: str | None = None,
    id_field: str | None = None,
    label_field: str = "label",
    id_column: str = "id",
    time_column: str | None = None,
    watermark_column: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> FeedbackOutputs:
    """Send the labels that arrived after the predictions (ground truth) for ``monitor``'s
    predictions of deployment ``name``; the control plane joins them and keeps each once.

    ``source`` is a Parquet file or folder, or JSON ``{"url": ..., "query": ...}`` (a SQL query
    on a SQLAlchemy URL); empty or None sends nothing. Each row names a prediction by
    ``id_column`` (the monitor record's ``request_id``, in hex as in the
    ``X-BentoML-Request-ID`` header or in decimal, or the record's field ``id_field``) and holds
    its label in ``label_field``; ``time_column``, when the label was known. With
    ``watermark_column`` (whole numbers that only rise) a re-run sends nothing twice.
    """
    if not source or not source.strip():
        return FeedbackOutputs(0, 0, 0, 0, 0)

    from bentoship.steps import send_feedback as send

    with client(endpoint, token) as api:
        result = send(
            name,
            source,
            monitor=monitor,
            id_field=id_field or None,
            label_field=label_field,
            id_column=id_column,
            time_column=time_column or None,
            watermark_column=watermark_column or None,
            client=api,
        )
    return FeedbackOutputs(
        result.sent, result.stored, result.duplicates, result.corrections, result.pending
    )


def _baseline(text: str) -> str | float:
    """``previous_revision``, ``training``, or a number given as text."""
    try:
        return float(text)
    except ValueError:
        return text


@task(
    cache=False,
    enable_deck=True,
    deck_fields=(),  # only the report: the inputs deck would show the token
    secret_requests=[API_KEY_SECRET],
    container_image=IMAGE,
)
def check_quality(
    name: str,
    monitor: str,
    metric: str = "accuracy",
    min_value: float | None = None,
    max_drop: float = 0.05,
    baseline: str = "previous_revision",
    training_value: float | None = None,
    min_labels: int = 200,
    since: str = "7d",
    prediction_field: str | None = None,
    score_field: str | None = None,
    id_field: str | None = None,
    raise_on_failure: bool = True,
    rollback_on_failure: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> QualityOutputs:
    """Hold the serving revision's quality (its predictions on ``monitor`` joined to their
    labels) against a baseline; the HTML report is the task's *Quality report* deck and its
    ``report`` output.

    It fails when ``metric`` is worse than ``baseline`` (``previous_revision``, ``training``
    with ``training_value``, or a number) by more than ``max_drop`` with its 95% interval clear
    of it, or worse than ``min_value``; with fewer than ``min_labels`` labels since ``since``
    it is ``not_enough_evidence``, which does not fail. Branch on ``failed``; with
    ``raise_on_failure`` a failed check fails the task, and with ``rollback_on_failure`` it
    first rolls the deployment back to the previous revision.
    """
    from bentoship import QualityFailed, QualityPolicy
    from bentoship.steps import check_quality as check

    policy = QualityPolicy(
        monitor=monitor,
        metric=metric,
        min_value=min_value,
        max_drop=max_drop,
        baseline=_baseline(baseline),
        training_value=training_value,
        min_labels=min_labels,
        since=since,
        prediction_field=prediction_field or None,
        score_field=score_field or None,
        id_field=id_field or None,
    )
    with client(endpoint, token) as api:
        report = check(
            name,
            policy,
            client=api,
            raise_on_failure=False,
            rollback_on_failure=rollback_on_failure,
        )
    page = report.html()
    path = flytekit.current_context().working_directory + "/quality-report.html"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    flytekit.Deck("Quality report", page)
    if report.failed and raise_on_failure:
        raise QualityFailed(report)
    return QualityOutputs(
        report.failed, report.verdict, report.summary(), FlyteFile(path), report.to_json()
    )
