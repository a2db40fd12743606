"""Metrics per revision as time series in DuckDB: 10 s buckets, bounded retention and size.

Counters are stored as what was added during a bucket (so a range's sum is exact), gauges as
readings; several rows may fall into one bucket and are summed (counters) or averaged (gauges)
when read. Latency is kept as histogram bucket counts (the endpoint's buckets, 25% apart), from
which percentiles are read by interpolation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..endpoint.traffic import LATENCY_BOUNDS
from ..errors import Invalid
from .analytics import insert_columns

if TYPE_CHECKING:
    import duckdb

__all__ = ["COUNTERS", "GAUGES", "RESOLUTION", "Sample", "SeriesStore", "percentile"]

RESOLUTION = 10
"""Seconds per bucket."""
COUNTERS = (
    "requests_1xx",
    "requests_2xx",
    "requests_3xx",
    "requests_4xx",
    "requests_5xx",
    "service_requests",
)
"""Counted per bucket: the endpoint's answers by status class, and bentoml's own count."""
GAUGES = (
    "in_progress",
    "service_in_progress",
    "cpu_percent",
    "memory_rss_bytes",
    "gpu_utilization_percent",
    "gpu_memory_bytes",
)
"""Read at each sample: requests in flight (endpoint, bentoml), the process tree, the GPUs."""
MAX_POINTS = 20_000
QUANTILES = (0.5, 0.95, 0.99)

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    t BIGINT, deployment VARCHAR, revision VARCHAR, metric VARCHAR, value DOUBLE
);
CREATE TABLE IF NOT EXISTS latency (
    t BIGINT, deployment VARCHAR, revision VARCHAR, bucket SMALLINT, count BIGINT
);
"""


@dataclass(frozen=True)
class Sample:
    """What one revision did since the last sample (counters) and its readings now (gauges)."""

    deployment: str
    revision: str
    counters: dict[str, float]
    gauges: dict[str, float]
    latency: dict[int, int]
    """Answers per latency bucket (index into LATENCY_BOUNDS, last is +Inf)."""


def bucket_of(t: float, step: int = RESOLUTION) -> int:
    return int(t // step * step)


def percentile(counts: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a latency histogram, interpolated inside its bucket."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS[index - 1] if index > 0 else 0.0
            high = LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]


class SeriesStore:
    """Writes samples, reads a deployment's series, and forgets what is older than retention."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        retention: float = 24 * 3600,
        max_bytes: int = 512 * 1024**2,
        path: Path | None = None,
    ) -> None:
        self.cursor = cursor
        self.retention = retention
        self.max_bytes = max_bytes
        self.path = path
        cursor.execute(SCHEMA)

    def write(self, samples: Iterable[Sample], at: float | None = None) -> None:
        """Store one round of samples, taken at ``at`` (now by default)."""
        self.write_rounds([(time.time() if at is None else at, samples)])

    def write_rounds(self, rounds: Iterable[tuple[float, Iterable[Sample]]]) -> None:
        """Store rounds of samples, each with its time, in one insert per table."""
        rows: dict[str, list[Any]] = {k: [] for k in ("t", "deployment", "revision", "metric")}
        rows["value"] = []
        hist: dict[str, list[Any]] = {k: [] for k in ("t", "deployment", "revision", "bucket")}
        hist["count"] = []
        for at, samples in rounds:
            t = bucket_of(at)
            for sample in samples:
                readings = [(k, v) for k, v in sample.counters.items() if v]
                for metric, value in [*readings, *sample.gauges.items()]:
                    for key, item in zip(
                        rows, (t, sample.deployment, sample.revision, metric, value), strict=True
                    ):
                        rows[key].append(item)
                for index, count in sample.latency.items():
                    if count:
                        for key, item in zip(
                            hist,
                            (t, sample.deployment, sample.revision, index, count),
                            strict=True,
                        ):
                            hist[key].append(item)
        insert_columns(self.cursor, "samples", rows)
        insert_columns(self.cursor, "latency", hist)

    def prune(self, now: float | None = None) -> None:
        """Forget buckets older than the retention; then, over the size bound, the oldest."""
        cutoff = bucket_of((time.time() if now is None else now) - self.retention)
        for table in ("samples", "latency"):
            self.cursor.execute(f"DELETE FROM {table} WHERE t < ?", [cutoff])
        if self.path is not None and self.path.exists() and self.size() > self.max_bytes:
            oldest, newest = self.cursor.execute(
                "SELECT min(t), max(t) FROM samples"
            ).fetchone() or (None, None)
            if oldest is not None:
                middle = bucket_of((oldest + newest) / 2)
                for table in ("samples", "latency"):
                    self.cursor.execute(f"DELETE FROM {table} WHERE t < ?", [middle])
        self.cursor.execute("CHECKPOINT")

    def size(self) -> int:
        """Bytes the database uses (its blocks in use, and its write-ahead log): DuckDB reuses
        freed blocks but does not shrink its file, so the file's size would not tell."""
        if self.path is None or not self.path.exists():
            return 0
        used = self.cursor.execute(
            "SELECT block_size * used_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchone()
        wal = self.path.with_name(self.path.name + ".wal")
        return int(used[0] if used else 0) + (wal.stat().st_size if wal.exists() else 0)

    def forget(self, deployment: str) -> None:
        for table in ("samples", "latency"):
            self.cursor.execute(f"DELETE FROM {table} WHERE deployment = ?", [deployment])

    def query(
        self,
        deployment: str,
        *,
        since: float,
        until: float,
        step: int = RESOLUTION,
        revision: str | None = None,
    ) -> dict[str, Any]:
        """The deployment's series per revision over ``[since, until)``, drawable as they are.

        ``t`` is the time axis (bucket starts, epoch seconds); each revision's series has one
        value per point, ``null`` where it has none. ``totals`` sums the whole range.
        """
        if step < RESOLUTION or step % RESOLUTION:
            raise Invalid(f"step must be a multiple of {RESOLUTION} seconds, got {step}")
        if not math.isfinite(since) or not math.isfinite(until) or until <= since:
            raise Invalid("the range is empty: until must be later than since")
        start, end = bucket_of(since, step), math.ceil(until / step) * step
        points = (end - start) // step
        if points > MAX_POINTS:
            least = math.ceil((end - start) / MAX_POINTS / RESOLUTION) * RESOLUTION
            raise Invalid(f"{points} points is too many; use a step of at least {least} s")
        where = "deployment = $1 AND t >= $2 AND t < $3" + (
            " AND revision = $4" if revision else ""
        )
        params: list[Any] = [deployment, start, end] + ([revision] if revision else [])
        rows = [
            (revision, *map(list, zip(*points, strict=True)))
            for revision, points in self.cursor.execute(
                _series_sql(where, start, end, step), params
            ).fetchall()
        ]
        totals = self.cursor.execute(
            f"SELECT revision, metric, sum(value) FROM samples WHERE {where} "
            f"AND metric IN ({', '.join(repr(c) for c in COUNTERS)}) GROUP BY revision, metric",
            params,
        ).fetchall()
        whole = self.cursor.execute(
            f"SELECT revision, bucket, sum(count) FROM latency WHERE {where} "
            "GROUP BY revision, bucket",
            params,
        ).fetchall()
        names = [*SERIES, *GAUGES]
        revisions = {
            row[0]: {
                name: values if any(v is not None for v in values) or name not in GAUGES else None
                for name, values in zip(names, row[1:], strict=True)
            }
            for row in rows
        }
        for series in revisions.values():
            for name in [n for n, v in series.items() if v is None]:
                del series[name]
        return {
            "step": step,
            "t": list(range(start, end, step)),
            "revisions": revisions,
            "totals": _totals(totals, whole),
        }


SERIES = (
    "requests",
    "requests_per_second",
    "success_rate",
    "requests_5xx",
    "service_requests",
    "latency_p50_seconds",
    "latency_p95_seconds",
    "latency_p99_seconds",
)
"""The series every revision has (then the gauges it has readings of)."""


def _series_sql(where: str, start: int, end: int, step: int) -> str:
    """One row per revision: its series over the axis, as lists (computed by DuckDB)."""
    lows = ", ".join(repr(b) for b in (0.0, *LATENCY_BOUNDS))
    highs = ", ".join(repr(b) for b in (*LATENCY_BOUNDS, LATENCY_BOUNDS[-1]))
    counters = ",\n".join(f"sum(value) FILTER (WHERE metric = '{c}') AS {c}" for c in COUNTERS)
    gauges = ",\n".join(f"avg(value) FILTER (WHERE metric = '{g}') AS {g}" for g in GAUGES)
    located = ",\n".join(
        f"arg_min([upto - c, c, low, high], bucket) FILTER (WHERE upto >= {q} * total) AS q{i}"
        for i, q in enumerate(QUANTILES)
    )

    def quantile(i: int, q: float) -> str:
        seen, count, low, high = (f"q{i}[{k}]" for k in (1, 2, 3, 4))
        return f"{low} + ({high} - {low}) * ({q} * total - {seen}) / {count}"

    answered = " + ".join(f"coalesce(requests_{c}xx, 0)" for c in range(1, 6))
    columns = {
        "requests": f"nullif({answered}, 0)",
        "requests_per_second": f"nullif({answered}, 0) / {step}",
        "success_rate": f"1 - coalesce(requests_5xx, 0) / nullif({answered}, 0)",
        "requests_5xx": "requests_5xx",
        "service_requests": "service_requests",
        **{f"latency_p{round(q * 100)}_seconds": quantile(i, q) for i, q in enumerate(QUANTILES)},
        **{g: g for g in GAUGES},
    }
    listed = ", ".join(f"({sql})::DOUBLE" for sql in columns.values())
    return f"""
        WITH axis AS (SELECT unnest(range({start}, {end}, {step})) AS b),
        s AS (
            SELECT revision, (t // {step}) * {step} AS b, {counters}, {gauges}
            FROM samples WHERE {where} GROUP BY revision, b
        ),
        h AS (
            SELECT revision, (t // {step}) * {step} AS b, bucket, sum(count) AS c
            FROM latency WHERE {where} GROUP BY revision, b, bucket
        ),
        bounds AS (
            SELECT unnest(range({len(LATENCY_BOUNDS) + 1})) AS bucket,
                unnest([{lows}]) AS low, unnest([{highs}]) AS high
        ),
        running AS (
            SELECT revision, b, bucket, c, low, high,
                sum(c) OVER (PARTITION BY revision, b ORDER BY bucket) AS upto,
                sum(c) OVER (PARTITION BY revision, b) AS total
            FROM h JOIN bounds USING (bucket)
        ),
        q AS (
            SELECT revision, b, any_value(total) AS total, {located}
            FROM running GROUP BY revision, b
        ),
        revisions AS (SELECT DISTINCT revision FROM s UNION SELECT DISTINCT revision FROM q),
        joined AS (
            SELECT * FROM revisions CROSS JOIN axis
            LEFT JOIN s USING (revision, b) LEFT JOIN q USING (revision, b)
        )
        SELECT revision, list([{listed}] ORDER BY b)
        FROM joined GROUP BY revision ORDER BY revision
    """


def _totals(
    counted: list[tuple[str, str, float]], whole: list[tuple[str, int, int]]
) -> dict[str, dict[str, float | None]]:
    by_revision: dict[str, dict[str, float]] = {}
    for revision, metric, value in counted:
        by_revision.setdefault(revision, {})[metric] = value
    histograms: dict[str, list[float]] = {}
    for revision, index, count in whole:
        histograms.setdefault(revision, [0.0] * (len(LATENCY_BOUNDS) + 1))[index] += count
    totals: dict[str, dict[str, float | None]] = {}
    for revision in sorted(set(by_revision) | set(histograms)):
        sums = by_revision.get(revision, {})
        classes = {f"{c}xx": sums.get(f"requests_{c}xx", 0.0) for c in range(1, 6)}
        answered = sum(classes.values())
        histogram = histograms.get(revision, [])
        totals[revision] = {
            "requests": answered,
            **classes,
            "service_requests": sums.get("service_requests", 0.0),
            "success_rate": 1 - classes["5xx"] / answered if answered else None,
            **{f"latency_p{round(q * 100)}_seconds": percentile(histogram, q) for q in QUANTILES},
        }
    return totals
