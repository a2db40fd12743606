"""Operators for ML monitoring: export a deployment's monitoring records, check drift, send
the labels that arrive after the predictions, and check the serving revision's quality.

Only ``airflow.sdk`` is imported at module level; bentoship, numpy and scipy are imported when
a task runs, so DAG parsing stays fast.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.branch import BranchMixIn
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from bentoship_airflow.links.drift import BentoDriftReportLink, persist_report_link
from bentoship_airflow.links.quality import BentoQualityReportLink, persist_quality_report_link
from bentoship_airflow.operators.bento import _BentoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from bentoship import QualityPolicy, QualityReport

__all__ = [
    "BentoDriftCheckOperator",
    "BentoMonitoringExportOperator",
    "BentoQualityCheckOperator",
    "BentoSendFeedbackOperator",
]


class BentoMonitoringExportOperator(_BentoOperator):
    """Export the records a deployment's service logged with ``bentoml.monitor``, the ones the
    target does not have yet; returns ``{"count", "watermark", "target"}``.

    The target keeps the watermark with the records, so a retried or re-run task writes no
    duplicate.

    :param deployment_name: the deployment (on the local control plane).
    :param monitor: the monitor's name, as in ``bentoml.monitor("<name>")``.
    :param target: a Parquet folder, a DuckDB file (``.duckdb``/``.db``), or a SQLAlchemy URL
        (PostgreSQL, BigQuery, Snowflake: install the dialect).
    :param table: the table of a DuckDB or SQL target (default ``monitor_<monitor>``).
    :param since: only records ingested since then: ISO-8601, epoch seconds or a time ago
        (``24h``); for a first export that skips old history.
    :param source: where the records are, when not on the local control plane (BentoCloud
        keeps none): a Parquet path, or ``{"url": ..., "query": ...}`` (a SQL query on a
        SQLAlchemy URL) that your collector fills.
    :param watermark_column: the column of ``source`` that only rises (a sequence, or epoch
        milliseconds); the records above the target's watermark are exported.
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "monitor",
        "target",
        "table",
        "since",
        "source",
    )
    template_fields_renderers = {"source": "json"}

    def __init__(
        self,
        *,
        deployment_name: str,
        monitor: str,
        target: str,
        table: str | None = None,
        since: str | None = None,
        source: str | dict[str, str] | None = None,
        watermark_column: str = "seq",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.monitor = monitor
        self.target = target
        self.table = table
        self.since = since
        self.source = source
        self.watermark_column = watermark_column

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError
        from bentoship.steps import export_monitoring

        try:
            with contextlib.ExitStack() as stack:
                client = None if self.source else stack.enter_context(self.hook.get_conn())
                result = export_monitoring(
                    self.deployment_name,
                    self.monitor,
                    self.target,
                    since=self.since or None,
                    source=self.source or None,
                    watermark_column=self.watermark_column,
                    table=self.table,
                    client=client,
                )
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info(
            "Exported %d records of %s/%s (watermark %d)",
            result.count,
            self.deployment_name,
            self.monitor,
            result.watermark,
        )
        return result.to_dict()


class BentoDriftCheckOperator(_BentoOperator, BranchMixIn):
    """Compare current data with a reference, column by column, and report; returns the
    report as a dict, or with branches, the task to follow.

    Each side is a Parquet file or folder, ``{"url": ..., "query": ...}`` (a SQL query on a
    SQLAlchemy URL), or ``{"deployment": ..., "monitor": ...}`` (a deployment's monitoring
    records on the local control plane). The HTML report is written to ``report_path``, shown
    in the task log, and linked from the task (the *Drift report* extra link).

    :param reference: the reference data (the training data).
    :param current: the current data (the service's traffic).
    :param columns: the columns to compare (default: all).
    :param categorical: columns to test as categories even when they hold numbers.
    :param missing_as_drift: count a column on one side only (reported as ``missing``) as
        drifted; by default it is not counted.
    :param p_value: a column drifts when its test's p-value is below this...
    :param psi: ...and its population stability index is at least this.
    :param share: the data drifts when at least this share of its columns drift.
    :param fail_on_drift: fail the task when the data drifts (unless branches are given).
    :param drift_branch: with ``no_drift_branch``, the task to follow when the data drifts.
    :param no_drift_branch: the task to follow when it does not.
    :param report_path: where to write the HTML report (default: a file in the temp folder
        named after the DAG, task and run).
    :param evidently: also run Evidently's default drift preset (the ``evidently`` extra):
        its verdicts go in the report and the log, its page beside ours
        (``<report>.evidently.html``).
    """

    template_fields: Sequence[str] = ("reference", "current", "columns", "report_path")
    template_fields_renderers = {"reference": "json", "current": "json"}
    operator_extra_links = (BentoDriftReportLink(),)

    def __init__(
        self,
        *,
        reference: Any,
        current: Any,
        columns: Sequence[str] | None = None,
        categorical: Sequence[str] = (),
        missing_as_drift: bool = False,
        p_value: float = 0.05,
        psi: float = 0.1,
        share: float = 0.5,
        fail_on_drift: bool = True,
        drift_branch: str | None = None,
        no_drift_branch: str | None = None,
        report_path: str | None = None,
        evidently: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (drift_branch is None) != (no_drift_branch is None):
            raise ValueError("give both drift_branch and no_drift_branch, or neither")
        self.reference = reference
        self.current = current
        self.columns = columns
        self.categorical = categorical
        self.missing_as_drift = missing_as_drift
        self.thresholds = {"p_value": p_value, "psi": psi, "share": share}
        self.fail_on_drift = fail_on_drift
        self.drift_branch = drift_branch
        self.no_drift_branch = no_drift_branch
        self.report_path = report_path
        self.evidently = evidently

    def _report_path(self, context: Context) -> Path:
        if self.report_path:
            return Path(self.report_path)
        run = str(context["run_id"]).replace("/", "_").replace(":", "_")
        name = f"drift-{self.dag_id}-{self.task_id}-{run}.html"
        return Path(tempfile.gettempdir()) / "bentoship-drift" / name

    def execute(self, context: Context) -> Any:
        from bentoship import BentoshipError
        from bentoship.drift import DriftThresholds, Monitor
        from bentoship.drift.tables import side_of
        from bentoship.steps import check_drift

        path = self._report_path(context)
        sides = [side_of(self.reference), side_of(self.current)]
        try:
            with contextlib.ExitStack() as stack:
                # a connection only when a side is a deployment's monitor
                wanted = any(isinstance(side, Monitor) for side in sides)
                client = stack.enter_context(self.hook.get_conn()) if wanted else None
                report = check_drift(
                    *sides,
                    columns=self.columns,
                    categorical=self.categorical,
                    missing_as_drift=self.missing_as_drift,
                    thresholds=DriftThresholds(**self.thresholds),
                    report_path=path,
                    evidently=self.evidently,
                    client=client,
                )
        except BentoshipError as exc:
            persist_report_link(context, None)
            raise self.fail(exc) from None
        persist_report_link(context, path)
        self.log.info("Drift report: %s (%s)", report.summary(), path.resolve().as_uri())
        for column in report.columns:
            self.log.info(
                "  %-24s %-11s %-5s statistic=%s p=%s psi=%s -> %s",
                column.name,
                column.kind,
                column.test or "-",
                _shown(column.statistic),
                _shown(column.p_value),
                _shown(column.psi),
                column.verdict,
            )
        for judged in report.evidently or ():
            self.log.info(
                "  Evidently: %-24s %s %.4g (threshold %g) -> %s",
                judged.name,
                judged.method,
                judged.score,
                judged.threshold,
                "drift" if judged.drifted else "no_drift",
            )
        if self.drift_branch is not None and self.no_drift_branch is not None:
            chosen = self.drift_branch if report.drifted else self.no_drift_branch
            return self.do_branch(context, chosen)
        if report.drifted and self.fail_on_drift:
            raise AirflowException(f"{report.summary()}; report: {path}")
        return report.to_dict()


class BentoSendFeedbackOperator(_BentoOperator):
    """Send the labels that arrived after the predictions (ground truth) for a monitor's
    predictions; returns ``{"sent", "stored", "duplicates", "corrections", "pending",
    "watermark"}``.

    Each row of ``source`` names a prediction by ``id_column`` (the monitor record's
    ``request_id``, in hex as in the ``X-BentoML-Request-ID`` header or in decimal, or the
    record's field ``id_field``) and holds its label in ``label_field``. The control plane keeps
    each label once; with ``watermark_column`` a re-run sends nothing twice. An empty ``source``
    (a param left blank) skips the task.

    :param deployment_name: the deployment whose predictions are labelled.
    :param monitor: the monitor's name, as in ``bentoml.monitor("<name>")``.
    :param source: a Parquet file or folder, or ``{"url": ..., "query": ...}`` (a SQL query on a
        SQLAlchemy URL), or its JSON.
    :param id_field: the record's field the ids are values of (default: its ``request_id``).
    :param label_field: the column of the label.
    :param id_column: the column of the id.
    :param time_column: the column of when the label was known (default: when it is received).
    :param watermark_column: a column that only rises (whole numbers): send only the rows above
        the watermark the control plane keeps for this source.
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "monitor",
        "source",
        "id_field",
        "label_field",
        "id_column",
        "time_column",
        "watermark_column",
    )
    template_fields_renderers = {"source": "json"}

    def __init__(
        self,
        *,
        deployment_name: str,
        monitor: str,
        source: str | dict[str, str],
        id_field: str | None = None,
        label_field: str = "label",
        id_column: str = "id",
        time_column: str | None = None,
        watermark_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.monitor = monitor
        self.source = source
        self.id_field = id_field
        self.label_field = label_field
        self.id_column = id_column
        self.time_column = time_column
        self.watermark_column = watermark_column

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError
        from bentoship.steps import send_feedback

        if not self.source or (isinstance(self.source, str) and not self.source.strip()):
            raise AirflowSkipException(f"{self.task_id}: no labels source given; nothing to send")
        try:
            with self.hook.get_conn() as client:
                result = send_feedback(
                    self.deployment_name,
                    self.source,
                    monitor=self.monitor,
                    id_field=self.id_field or None,
                    label_field=self.label_field,
                    id_column=self.id_column,
                    time_column=self.time_column or None,
                    watermark_column=self.watermark_column or None,
                    client=client,
                )
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info(
            "Sent %d labels for %s/%s: %d new, %d duplicates, %d corrections, %d waiting for "
            "their prediction",
            result.sent,
            self.deployment_name,
            self.monitor,
            result.stored,
            result.duplicates,
            result.corrections,
            result.pending,
        )
        return result.to_dict()


class BentoQualityCheckOperator(_BentoOperator, BranchMixIn):
    """Hold the serving revision's quality (its predictions on ``monitor`` joined to their
    labels) against a baseline, and report; returns the report as a dict, or with branches, the
    task to follow.

    The check fails when the metric is worse than the baseline by more than ``max_drop`` with
    its 95% interval clear of it, or worse than ``min_value``; with fewer than ``min_labels``
    labels it is ``not_enough_evidence``, which does not fail (and follows ``passed_branch``).
    The HTML report (the metric over time per revision with its interval band, the coverage,
    the confusion matrix) is written to ``report_path``, summed up in the task log, and linked
    from the task (the *Quality report* extra link).

    :param deployment_name: the deployment whose serving revision to check.
    :param monitor: the monitor whose predictions were labelled.
    :param metric: ``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc`` (classification),
        or ``mae``, ``rmse``, ``r2``, ``mape`` (regression).
    :param min_value: the metric must not be worse than this.
    :param max_drop: how much worse than the baseline the metric may be.
    :param baseline: ``previous_revision`` (the revision the serving one replaced),
        ``training`` (with ``training_value``), or a number.
    :param training_value: the metric at training time, for ``baseline="training"``.
    :param min_labels: fewer labels are not enough evidence either way.
    :param since: the predictions since then: a time ago (``7d``) or ISO-8601.
    :param prediction_field: the record's field of the prediction (default: the monitor's
        schema says).
    :param score_field: the record's field of a score, for ROC AUC.
    :param id_field: the record's field the labels' ids are values of (default: its
        ``request_id``).
    :param raise_on_failure: fail the task when the check fails (without branches).
    :param rollback_on_failure: when the check fails, roll the deployment back to the previous
        revision first (the event says why, with the figures).
    :param failed_branch: with ``passed_branch``, the task to follow when the check fails.
    :param passed_branch: the task to follow when it passes, or has not enough evidence.
    :param report_path: where to write the HTML report (default: a file in the temp folder
        named after the DAG, task and run).
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "monitor",
        "metric",
        "min_value",
        "max_drop",
        "baseline",
        "training_value",
        "min_labels",
        "since",
        "prediction_field",
        "score_field",
        "id_field",
        "report_path",
    )
    operator_extra_links = (BentoQualityReportLink(),)

    def __init__(
        self,
        *,
        deployment_name: str,
        monitor: str,
        metric: str = "accuracy",
        min_value: float | str | None = None,
        max_drop: float | str = 0.05,
        baseline: str | float = "previous_revision",
        training_value: float | str | None = None,
        min_labels: int | str = 200,
        since: str = "7d",
        prediction_field: str | None = None,
        score_field: str | None = None,
        id_field: str | None = None,
        raise_on_failure: bool = True,
        rollback_on_failure: bool = False,
        failed_branch: str | None = None,
        passed_branch: str | None = None,
        report_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (failed_branch is None) != (passed_branch is None):
            raise ValueError("give both failed_branch and passed_branch, or neither")
        self.deployment_name = deployment_name
        self.monitor = monitor
        self.metric = metric
        self.min_value = min_value
        self.max_drop = max_drop
        self.baseline = baseline
        self.training_value = training_value
        self.min_labels = min_labels
        self.since = since
        self.prediction_field = prediction_field
        self.score_field = score_field
        self.id_field = id_field
        self.raise_on_failure = raise_on_failure
        self.rollback_on_failure = rollback_on_failure
        self.failed_branch = failed_branch
        self.passed_branch = passed_branch
        self.report_path = report_path

    def policy(self) -> QualityPolicy:
        """The policy; templated numbers arrive as text and are read back as numbers (an empty
        or ``None`` text as no value)."""
        from bentoship import BentoshipError, QualityPolicy

        try:
            baseline = self.baseline
            if isinstance(baseline, str) and baseline not in ("previous_revision", "training"):
                baseline = float(baseline)
            return QualityPolicy(
                monitor=self.monitor,
                metric=self.metric,
                min_value=_optional(self.min_value, float),
                max_drop=float(self.max_drop),
                baseline=baseline,
                training_value=_optional(self.training_value, float),
                min_labels=int(self.min_labels),
                since=self.since,
                prediction_field=self.prediction_field or None,
                score_field=self.score_field or None,
                id_field=self.id_field or None,
            )
        except ValueError as exc:
            raise AirflowException(
                f"{self.task_id}: min_value, max_drop and training_value are numbers, min_labels "
                f"a whole number, baseline previous_revision, training or a number ({exc})"
            ) from None
        except BentoshipError as exc:
            raise AirflowException(f"{self.task_id}: {exc}") from None

    def _report_path(self, context: Context) -> Path:
        if self.report_path:
            return Path(self.report_path)
        run = str(context["run_id"]).replace("/", "_").replace(":", "_")
        name = f"quality-{self.dag_id}-{self.task_id}-{run}.html"
        return Path(tempfile.gettempdir()) / "bentoship-quality" / name

    def execute(self, context: Context) -> Any:
        from bentoship import BentoshipError
        from bentoship.steps import check_quality

        try:
            policy = self.policy()
            with self.hook.get_conn() as client:
                report = check_quality(
                    self.deployment_name,
                    policy,
                    client=client,
                    raise_on_failure=False,
                    rollback_on_failure=self.rollback_on_failure,
                )
        except BentoshipError as exc:
            persist_quality_report_link(context, None)
            raise self.fail(exc) from None
        except AirflowException:
            persist_quality_report_link(context, None)
            raise
        path = self._report_path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.html())
        persist_quality_report_link(context, path)
        self._tell(report, path)
        if self.failed_branch is not None and self.passed_branch is not None:
            chosen = self.failed_branch if report.failed else self.passed_branch
            return self.do_branch(context, chosen)
        if report.failed and self.raise_on_failure:
            raise AirflowException(f"{report.summary()}; report: {path}")
        return report.to_dict()

    def _tell(self, report: QualityReport, path: Path) -> None:
        """The verdict, then the metric of each revision, in the task log."""
        self.log.info("Quality report: %s (%s)", report.summary(), path.resolve().as_uri())
        for entry in report.quality.get("revisions") or ():
            interval = entry.get("interval")
            self.log.info(
                "  %-5s %s %s%s over %d of %d predictions labelled",
                entry.get("revision"),
                report.metric,
                _shown(entry.get(report.metric)),
                f" (95% interval {_shown(interval[0])}-{_shown(interval[1])})"
                if interval and report.metric in ("accuracy", "mae")
                else "",
                entry.get("labelled") or 0,
                entry.get("predicted") or 0,
            )


def _optional(value: Any, kind: type[float]) -> float | None:
    """A templated optional number: empty or ``None`` text is no value."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "none")):
        return None
    return kind(value)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
