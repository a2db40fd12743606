"""Operators for ML monitoring: export a deployment's monitoring records, and check drift.

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
from airflow.sdk.exceptions import AirflowException

from bentoship_airflow.links.drift import BentoDriftReportLink, persist_report_link
from bentoship_airflow.operators.bento import _BentoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["BentoDriftCheckOperator", "BentoMonitoringExportOperator"]


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


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
