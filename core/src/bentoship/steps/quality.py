"""The quality steps: send labels that arrived after the predictions, and check the serving
revision's quality against its baseline (a gate, a branch for a retrain, or a rollback)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import Client
from ..errors import ConfigError, QualityFailed
from ..quality.policy import QualityPolicy, judge_quality
from ..quality.report import QualityReport

if TYPE_CHECKING:
    pass

__all__ = ["FeedbackResult", "check_quality", "send_feedback"]

log = logging.getLogger("bentoship.steps")
PAGE = 10_000
HEADLINE = {"accuracy", "mae"}
"""The metrics the control plane gives an interval for."""


@dataclass(frozen=True)
class FeedbackResult:
    sent: int
    stored: int
    duplicates: int
    corrections: int
    pending: int
    """Labels whose prediction is not stored yet (they join once it is)."""
    watermark: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _rows_of(source: Any, watermark_column: str | None) -> tuple[str | None, Any]:
    """``(key, read)``: the source's key for watermarks (None without one), and
    ``read(after, limit)`` giving its rows after a watermark (all of them without one)."""
    from ..drift.tables import SqlQuery, side_from_text, side_of
    from ..export.sources import ParquetSource, SqlSource

    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        rows = source.to_dict("records")
        if watermark_column is None:
            return None, lambda after, limit: rows if after is None else []
        ordered = sorted(rows, key=lambda r: r[watermark_column])
        return f"dataframe:{watermark_column}", lambda after, limit: [
            r for r in ordered if after is None or r[watermark_column] > after
        ][:limit]
    if isinstance(source, str):
        source = side_from_text(source)
    elif isinstance(source, Mapping):
        source = side_of(source)
    if isinstance(source, SqlQuery):
        reader: Any = SqlSource(source, watermark_column or "")
    elif isinstance(source, str | Path):
        reader = ParquetSource(Path(source), watermark_column or "")
    else:
        raise ConfigError(
            "send_feedback source: a DataFrame, a Parquet path, or SqlQuery(url, query) "
            '({"url", "query"})'
        )
    if watermark_column is None:
        everything = _all_rows(reader)
        return None, lambda after, limit: everything if after is None else []
    return str(reader.key), lambda after, limit: reader.after(
        after if after is not None else -(2**63), limit
    )


def _all_rows(reader: Any) -> list[dict[str, Any]]:
    """Every row of a Parquet or SQL source (no watermark: it is read whole)."""
    from ..export.sources import ParquetSource

    if isinstance(reader, ParquetSource):
        import duckdb

        path = reader.path
        if not path.exists():
            raise ConfigError(f"send_feedback source {path} does not exist")
        pattern = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
        with duckdb.connect() as db:
            cursor = db.execute("SELECT * FROM read_parquet(?)", [pattern])
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    import sqlalchemy

    engine = sqlalchemy.create_engine(reader.query.url)
    try:
        with engine.connect() as connection:
            result = connection.execute(sqlalchemy.text(reader.query.query))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def _label(
    row: dict[str, Any], id_column: str, label_field: str, time_column: str | None
) -> dict[str, Any]:
    if id_column not in row or label_field not in row:
        missing = id_column if id_column not in row else label_field
        raise ConfigError(
            f"send_feedback: a row has no {missing!r} column; name the columns with "
            "id_column= and label_field="
        )
    value = row[label_field]
    if hasattr(value, "item"):
        value = value.item()
    label: dict[str, Any] = {"id": str(row[id_column]), "label": value}
    if time_column and row.get(time_column) is not None:
        moment = row[time_column]
        label["time"] = moment.timestamp() if hasattr(moment, "timestamp") else float(moment)
    return label


def send_feedback(
    deployment: str,
    source: Any,
    *,
    monitor: str,
    id_field: str | None = None,
    label_field: str = "label",
    id_column: str = "id",
    time_column: str | None = None,
    watermark_column: str | None = None,
    client: Client | None = None,
    page: int = PAGE,
) -> FeedbackResult:
    """Send the labels of ``source`` for ``monitor``'s predictions of ``deployment``.

    ``source`` is a pandas DataFrame, a Parquet file or folder, or a SQL query
    (:class:`~bentoship.drift.SqlQuery`, or ``{"url", "query"}``), with a column ``id_column``
    (the monitor record's ``request_id``, or its field ``id_field``), the label in
    ``label_field`` and, optionally, when it was known in ``time_column``. With
    ``watermark_column`` (whole numbers that only rise), sending is incremental: the control
    plane keeps the watermark with the labels, so a re-run sends nothing twice. Without it,
    every run sends everything, and the control plane keeps each label once.
    """
    if page < 1:
        raise ConfigError("send_feedback page: at least 1")
    own = client is None
    api = client or Client.from_env()
    try:
        key, read = _rows_of(source, watermark_column)
        watermark = api.feedback_watermark(deployment, monitor, key) if key else None
        totals = {"received": 0, "stored": 0, "duplicates": 0, "corrections": 0, "pending": 0}
        while True:
            rows = read(watermark, page)
            if not rows:
                break
            labels = [_label(r, id_column, label_field, time_column) for r in rows]
            reached = None
            if key is not None and watermark_column is not None:
                reached = max(int(r[watermark_column]) for r in rows)
            for start in range(0, len(labels), page):
                chunk = labels[start : start + page]
                last = start + page >= len(labels)
                marked = (
                    (key, reached) if key is not None and reached is not None and last else None
                )
                got = api.send_feedback(
                    deployment, monitor, chunk, id_field=id_field, source=marked
                )
                for name in totals:
                    totals[name] += int(got.get(name, 0))
            if key is None:
                break
            watermark = reached
    finally:
        if own:
            api.close()
    result = FeedbackResult(
        totals["received"],
        totals["stored"],
        totals["duplicates"],
        totals["corrections"],
        totals["pending"],
        watermark,
    )
    log.info(
        "sent %d labels for %s/%s: %d new, %d duplicates, %d corrections, %d waiting for their "
        "prediction",
        result.sent,
        deployment,
        monitor,
        result.stored,
        result.duplicates,
        result.corrections,
        result.pending,
    )
    return result


def _number(name: str) -> int:
    digits = name[1:]
    return int(digits) if name.startswith("r") and digits.isdigit() else -1


def check_quality(
    deployment: str,
    policy: QualityPolicy | dict[str, Any],
    *,
    client: Client | None = None,
    raise_on_failure: bool = True,
    rollback_on_failure: bool = False,
) -> QualityReport:
    """Hold the serving revision's quality (its labelled predictions on ``policy.monitor``)
    against the policy's baseline: the revision it replaced, or a number such as the training
    score. Returns the report (``report.failed`` for a branch); a failed check raises
    QualityFailed with ``raise_on_failure``, and with ``rollback_on_failure`` first rolls the
    deployment back to the previous revision, the event saying why with the figures."""
    policy = policy if isinstance(policy, QualityPolicy) else QualityPolicy.from_dict(policy)
    own = client is None
    api = client or Client.from_env()
    try:
        serving = api.get_deployment(deployment).serving_revision
        wanted = {
            "since": policy.since,
            "prediction_field": policy.prediction_field,
            "score_field": policy.score_field,
            "id_field": policy.id_field,
        }
        figures = api.quality(deployment, policy.monitor, **wanted)
        revisions = {r["revision"]: r for r in figures.get("revisions") or []}
        mine = revisions.get(serving or "", {})
        value = mine.get(policy.metric)
        interval = mine.get("interval") if policy.metric in HEADLINE else None
        labels = int(mine.get("labelled") or 0)
        baseline_value = policy.baseline_value()
        baseline_name = "training" if policy.baseline == "training" else "the baseline"
        previous = None
        if baseline_value is None:
            older = [
                r
                for r in revisions.values()
                if _number(r["revision"]) < _number(serving or "") and r.get("labelled")
            ]
            if older:
                previous = max(older, key=lambda r: _number(r["revision"]))
                baseline_value = previous.get(policy.metric)
                baseline_name = str(previous["revision"])
            else:
                baseline_name = "previous revision with labels"
        verdict = judge_quality(
            policy,
            value,
            (float(interval[0]), float(interval[1])) if interval else None,
            labels,
            baseline_value,
            baseline_name,
        )
        rolled_back_to = None
        if verdict.failed and rollback_on_failure:
            target = str(previous["revision"]) if previous is not None else None
            done = api.rollback(
                deployment, target, reason=f"quality check failed: {verdict.reason}"
            )
            rolled_back_to = target or done.serving_revision or "the previous revision"
    finally:
        if own:
            api.close()
    report = QualityReport(
        deployment=deployment,
        monitor=policy.monitor,
        metric=policy.metric,
        serving=serving,
        value=value,
        interval=(float(interval[0]), float(interval[1])) if interval else None,
        labels=labels,
        coverage=mine.get("coverage"),
        baseline=baseline_name,
        baseline_value=baseline_value,
        verdict=verdict.state,
        reason=verdict.reason,
        rolled_back_to=rolled_back_to,
        quality=figures,
    )
    (log.error if report.failed else log.info)("%s", report.summary())
    if report.failed and raise_on_failure:
        raise QualityFailed(report)
    return report
