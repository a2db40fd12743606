"""Model quality: each monitor record's prediction joined to its label, as metrics per revision
and time bucket.

The join and the aggregates run in DuckDB: counts per (revision, bucket, predicted, actual)
for classification, sums of errors for regression, and label delays; Python only turns those
few rows into rates. The predictions and their labels come from the monitor's prediction index
(``feedback.joined_sql``: typed columns, the join made by the writer), and from the records
themselves only for what it does not hold yet. A prediction's time is its record's
``timestamp`` (the ingest time when it has none). The headline metric (accuracy, or MAE) gets a
95% bootstrap interval: resampling n labelled predictions with replacement makes the count of
correct ones Binomial(n, accuracy), drawn directly; MAE's is scipy's bootstrap over the
absolute errors (a sample of at most BOOTSTRAP_ROWS of them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from .label_batches import check_field
from .prediction_index import joined_sql

if TYPE_CHECKING:
    import duckdb

__all__ = ["QualityQuery", "Task", "joined_rows", "quality"]

T = TypeVar("T")

BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_ROWS = 20_000
CONFIDENCE = 0.95
MAX_BUCKETS = 2000


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class QualityQuery:
    deployment: str
    monitor: str
    table: str
    prediction_field: str
    since: float
    until: float
    step: float
    task: Task
    id_field: str = "request_id"
    score_field: str | None = None
    revision: str | None = None


def _joined(cursor: duckdb.DuckDBPyConnection, q: QualityQuery) -> tuple[str, dict[str, Any]]:
    """SQL of every prediction in the window, with its label (NULL when none yet)."""
    fields = [check_field(q.prediction_field)]
    if q.score_field:
        fields.append(check_field(q.score_field))
    rows, params = joined_sql(cursor, q.deployment, q.monitor, q.table, fields, q.id_field)
    score = "TRY_CAST(f1 AS DOUBLE)" if q.score_field else "NULL::DOUBLE"
    where = "t >= $since AND t < $until"
    params.update(since=q.since, until=q.until, step=q.step)
    if q.revision is not None:
        where += " AND revision = $revision"
        params["revision"] = q.revision
    sql = (
        "SELECT revision, t, floor((t - $since) / $step)::BIGINT AS bucket, f0 AS prediction, "
        f"actual, {score} AS score, labelled_at - t AS delay FROM ({rows}) WHERE {where}"
    )
    return sql, params


def _read(cursor: duckdb.DuckDBPyConnection, read: Callable[[], T]) -> T:
    """``read``'s result, its queries run in one transaction (one snapshot)."""
    cursor.execute("BEGIN TRANSACTION")
    try:
        found = read()
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return found


def joined_rows(cursor: duckdb.DuckDBPyConnection, q: QualityQuery) -> list[tuple[Any, ...]]:
    """Every labelled prediction of ``q``: (revision, time, prediction, label, score)."""

    def read() -> list[tuple[Any, ...]]:
        joined, params = _joined(cursor, q)
        return cursor.execute(
            f"SELECT revision, t, prediction, actual, score FROM ({joined}) "
            "WHERE actual IS NOT NULL ORDER BY t, revision",
            params,
        ).fetchall()

    return _read(cursor, read)


def quality(cursor: duckdb.DuckDBPyConnection, q: QualityQuery) -> dict[str, Any]:
    """The quality of ``q``'s predictions, per revision and bucket (run off the loop): from the
    monitor's prediction index where it is current (``FeedbackStore.refresh``)."""
    return _read(cursor, lambda: _quality(cursor, q))


def _quality(cursor: duckdb.DuckDBPyConnection, q: QualityQuery) -> dict[str, Any]:
    joined, params = _joined(cursor, q)

    def rows(sql: str) -> list[Any]:
        return cursor.execute(f"WITH quality_rows AS ({joined}) {sql}", params).fetchall()

    coverage = rows(
        "SELECT revision, bucket, count(*), count(actual), "
        "quantile_cont(delay, [0.5, 0.9]) FILTER (WHERE actual IS NOT NULL) "
        "FROM quality_rows GROUP BY ALL ORDER BY ALL"
    )
    classes = q.task is Task.CLASSIFICATION
    figures = _classification(rows, q) if classes else _regression(rows)
    revisions: dict[str, dict[str, Any]] = {}
    for revision, bucket, predicted, labelled, delays in coverage:
        delay_p50, delay_p90 = delays or (None, None)
        entry = revisions.setdefault(
            revision, {"revision": revision, "predicted": 0, "labelled": 0, "buckets": []}
        )
        entry["predicted"] += predicted
        entry["labelled"] += labelled
        metrics = figures["buckets"].get((revision, bucket), {})
        entry["buckets"].append(
            {
                "start": q.since + bucket * q.step,
                "predicted": predicted,
                "labelled": labelled,
                "coverage": labelled / predicted if predicted else None,
                "delay_p50": delay_p50,
                "delay_p90": delay_p90,
                **metrics,
            }
        )
    for revision, entry in revisions.items():
        entry["coverage"] = entry["labelled"] / entry["predicted"] if entry["predicted"] else None
        entry.update(figures["revisions"].get(revision, {}))
    return {
        "task": str(q.task),
        "metric": "accuracy" if q.task is Task.CLASSIFICATION else "mae",
        "revisions": [revisions[r] for r in sorted(revisions, key=_revision_order)],
    }


def _revision_order(name: str) -> tuple[int, str]:
    digits = name[1:]
    return (int(digits), name) if digits.isdigit() else (0, name)


Rows = Callable[[str], list[Any]]
"""Runs a query over ``quality_rows`` (the joined predictions)."""


def _classification(rows: Rows, q: QualityQuery) -> dict[str, Any]:
    cells = rows(
        "SELECT revision, bucket, prediction, actual, count(*) FROM quality_rows "
        "WHERE actual IS NOT NULL GROUP BY ALL"
    )
    by_bucket: dict[tuple[str, int], dict[tuple[str, str], int]] = defaultdict(dict)
    by_revision: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for revision, bucket, predicted, actual, count in cells:
        pair = (str(predicted), str(actual))
        by_bucket[(revision, bucket)][pair] = count
        by_revision[revision][pair] += count
    aucs = _auc(rows) if q.score_field else {}
    return {
        "buckets": {key: _class_metrics(matrix) for key, matrix in by_bucket.items()},
        "revisions": {
            revision: {
                **_class_metrics(matrix),
                "confusion": _confusion(matrix),
                "roc_auc": aucs.get(revision),
            }
            for revision, matrix in by_revision.items()
        },
    }


def _class_metrics(matrix: dict[tuple[str, str], int]) -> dict[str, Any]:
    """Accuracy with its bootstrap interval, and macro precision, recall and F1."""
    total = sum(matrix.values())
    correct = sum(n for (p, a), n in matrix.items() if p == a)
    classes = sorted({c for pair in matrix for c in pair})
    precisions, recalls, f1s = [], [], []
    for c in classes:
        tp = matrix.get((c, c), 0)
        predicted = sum(n for (p, _), n in matrix.items() if p == c)
        actual = sum(n for (_, a), n in matrix.items() if a == c)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    accuracy = correct / total if total else None
    return {
        "accuracy": accuracy,
        "interval": _binomial_interval(correct, total),
        "precision": _mean(precisions),
        "recall": _mean(recalls),
        "f1": _mean(f1s),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _binomial_interval(successes: int, n: int) -> list[float] | None:
    """The 95% percentile bootstrap interval of a rate: the resampled count is binomial."""
    if n == 0:
        return None
    import numpy as np

    rng = np.random.default_rng(successes * 1_000_003 + n)
    draws = rng.binomial(n, successes / n, BOOTSTRAP_DRAWS) / n
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return [float(low), float(high)]


def _confusion(matrix: dict[tuple[str, str], int]) -> dict[str, Any]:
    """Rows: actual labels; columns: predicted labels."""
    labels = sorted({c for pair in matrix for c in pair})
    return {
        "labels": labels,
        "matrix": [[matrix.get((p, a), 0) for p in labels] for a in labels],
    }


def _auc(rows: Rows) -> dict[str, float | None]:
    """ROC AUC per revision of two-class labels (the larger label is the positive one), from
    the ranks of the scores (Mann-Whitney), ties ranked at their mean."""
    ranks = rows(
        ", labelled AS (SELECT revision, score, actual FROM quality_rows "
        "WHERE actual IS NOT NULL AND score IS NOT NULL), "
        "classes AS (SELECT revision, max(actual) AS positive, count(DISTINCT actual) AS n "
        "FROM labelled GROUP BY revision), "
        "ranked AS (SELECT l.revision, l.actual = c.positive AS positive, "
        "rank() OVER (PARTITION BY l.revision ORDER BY l.score) + "
        "(count(*) OVER (PARTITION BY l.revision, l.score) - 1) / 2.0 AS position "
        "FROM labelled l JOIN classes c USING (revision) WHERE c.n = 2) "
        "SELECT revision, sum(position) FILTER (WHERE positive), "
        "count(*) FILTER (WHERE positive), count(*) FILTER (WHERE NOT positive) "
        "FROM ranked GROUP BY revision"
    )
    found: dict[str, float | None] = {}
    for revision, total, positives, negatives in ranks:
        if positives and negatives:
            found[revision] = (total - positives * (positives + 1) / 2) / (positives * negatives)
    return found


def _regression(rows: Rows) -> dict[str, Any]:
    aggregate = (
        "count(*), avg(abs(p - a)), sqrt(avg((p - a) ^ 2)), "
        "CASE WHEN var_pop(a) > 0 THEN 1 - avg((p - a) ^ 2) / var_pop(a) END, "
        "avg(abs((a - p) / a)) FILTER (WHERE a <> 0)"
    )
    numbers = (
        "SELECT revision, bucket, TRY_CAST(prediction AS DOUBLE) AS p, "
        "TRY_CAST(actual AS DOUBLE) AS a FROM quality_rows WHERE actual IS NOT NULL"
    )
    buckets = rows(
        f"SELECT revision, bucket, {aggregate} FROM ({numbers}) "
        "WHERE p IS NOT NULL AND a IS NOT NULL GROUP BY ALL"
    )
    revisions = rows(
        f"SELECT revision, {aggregate} FROM ({numbers}) "
        "WHERE p IS NOT NULL AND a IS NOT NULL GROUP BY ALL"
    )
    errors: dict[str, list[float]] = defaultdict(list)
    for revision, error in rows(
        f"SELECT revision, abs(p - a) FROM ({numbers}) WHERE p IS NOT NULL AND a IS NOT NULL "
        f"USING SAMPLE reservoir({BOOTSTRAP_ROWS} ROWS) REPEATABLE (7)"
    ):
        errors[revision].append(error)

    def figures(row: tuple[Any, ...]) -> dict[str, Any]:
        _, mae, rmse, r2, mape = row
        return {"mae": mae, "rmse": rmse, "r2": r2, "mape": mape}

    return {
        "buckets": {(r, b): figures(tuple(rest)) for r, b, *rest in buckets},
        "revisions": {
            r: {**figures(tuple(rest)), "interval": _mean_interval(errors.get(r, []))}
            for r, *rest in revisions
        },
    }


def _mean_interval(values: list[float]) -> list[float] | None:
    """The 95% bootstrap interval of the mean of ``values`` (scipy)."""
    if len(values) < 2:
        return None
    import numpy as np
    from scipy import stats

    sample = np.asarray(values)
    if float(sample.min()) == float(sample.max()):
        return [float(sample[0]), float(sample[0])]
    found = stats.bootstrap(
        (sample,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_DRAWS,
        method="percentile",
        random_state=np.random.default_rng(7),
    )
    low, high = found.confidence_interval
    return [float(low), float(high)] if math.isfinite(low) and math.isfinite(high) else None
