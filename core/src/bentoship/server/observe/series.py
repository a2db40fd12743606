"""Metrics per revision as time series in DuckDB: 10 s buckets, bounded retention and size.

Counters are stored as what was added during a bucket (so a range's sum is exact), gauges as
readings; several rows may fall into one bucket and are summed (counters) or averaged (gauges)
when read. Latency is kept as histogram bucket counts (the endpoint's buckets, 25% apart), from
which percentiles are read by interpolation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
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
    """Writes samples, reads a deployment's series, and forgets what is older than retention.

    Writes (``write``, ``prune``, ``forget``) go on ``cursor``, from one thread at a time (the
    analytics writer's, in the control plane); reads on ``reader()``, the calling thread's
    cursor (``cursor`` when none is given)."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        retention: float = 24 * 3600,
        max_bytes: int = 512 * 1024**2,
        path: Path | None = None,
        reader: Callable[[], duckdb.DuckDBPyConnection] | None = None,
    ) -> None:
        self.cursor = cursor
        self.reader = reader if reader is not None else lambda: cursor
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
        return dict(
            json.loads(
                self.query_json(deployment, since=since, until=until, step=step, revision=revision)
            )
        )

    def query_json(
        self,
        deployment: str,
        *,
        since: float,
        until: float,
        step: int = RESOLUTION,
        revision: str | None = None,
    ) -> bytes:
        """:meth:`query`'s answer as JSON: the series are computed with NumPy and written by
        orjson (a day at 10 s is about 4 MB), without a Python object per point."""
        import numpy as np
        import orjson

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
        counters = ", ".join(f"sum(value) FILTER (WHERE metric = '{c}') AS {c}" for c in COUNTERS)
        gauges = ", ".join(f"avg(value) FILTER (WHERE metric = '{g}') AS {g}" for g in GAUGES)
        cursor = self.reader()
        readings = cursor.execute(
            f"SELECT revision, (t - {start}) // {step} AS i, {counters}, {gauges} "
            f"FROM samples WHERE {where} GROUP BY ALL",
            params,
        ).fetchnumpy()
        histogram = cursor.execute(
            f"SELECT revision, (t - {start}) // {step} AS i, bucket, sum(count)::DOUBLE AS c "
            f"FROM latency WHERE {where} GROUP BY ALL",
            params,
        ).fetchnumpy()
        names = sorted(set(readings["revision"].tolist()) | set(histogram["revision"].tolist()))
        revisions, totals = {}, {}
        for name in names:
            revisions[name], totals[name] = _revision_series(
                np, readings, histogram, name, points, step
            )
        answer = {
            "deployment": deployment,
            "step": step,
            "t": np.arange(start, end, step, dtype=np.int64),
            "revisions": revisions,
            "totals": totals,
        }
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


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


def _revision_series(
    np: Any, readings: dict[str, Any], histogram: dict[str, Any], name: str, points: int, step: int
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """One revision's series over ``points`` buckets, NaN (JSON null) where it has none, and
    its totals over the whole range."""
    mine = readings["revision"] == name
    at = readings["i"][mine].astype(np.int64)

    def column(metric: str) -> Any:
        values = np.full(points, np.nan)
        found = np.ma.filled(readings[metric][mine].astype(float), np.nan)
        values[at] = found
        return values

    read = {metric: column(metric) for metric in (*COUNTERS, *GAUGES)}
    answered = sum(np.nan_to_num(read[f"requests_{c}xx"]) for c in range(1, 6))
    answered = np.where(answered == 0, np.nan, answered)
    series: dict[str, Any] = {
        "requests": answered,
        "requests_per_second": answered / step,
        "success_rate": 1 - np.nan_to_num(read["requests_5xx"]) / answered,
        "requests_5xx": read["requests_5xx"],
        "service_requests": read["service_requests"],
    }
    counts = _latency_counts(np, histogram, name, points)
    series.update(_latency_series(np, counts))
    series.update({g: read[g] for g in GAUGES if not np.isnan(read[g]).all()})
    classes = {f"{c}xx": float(np.nansum(read[f"requests_{c}xx"])) for c in range(1, 6)}
    total = sum(classes.values())
    whole = counts.sum(axis=0).tolist()
    totals: dict[str, float | None] = {
        "requests": total,
        **classes,
        "service_requests": float(np.nansum(read["service_requests"])),
        "success_rate": 1 - classes["5xx"] / total if total else None,
        **{f"latency_p{round(q * 100)}_seconds": percentile(whole, q) for q in QUANTILES},
    }
    return series, totals


def _latency_counts(np: Any, histogram: dict[str, Any], name: str, points: int) -> Any:
    """A revision's answers per point and latency bucket."""
    mine = histogram["revision"] == name
    counts = np.zeros((points, len(LATENCY_BOUNDS) + 1))
    np.add.at(
        counts,
        (histogram["i"][mine].astype(np.int64), histogram["bucket"][mine].astype(np.int64)),
        histogram["c"][mine].astype(float),
    )
    return counts


def _latency_series(np: Any, counts: Any) -> dict[str, Any]:
    """The latency quantiles of each point, interpolated inside the histogram bucket that
    holds them (as :func:`percentile` does for one histogram)."""
    points = counts.shape[0]
    running = counts.cumsum(axis=1)
    total = running[:, -1]
    lows = np.array([0.0, *LATENCY_BOUNDS])
    highs = np.array([*LATENCY_BOUNDS, LATENCY_BOUNDS[-1]])
    rows = np.arange(points)
    quantiles: dict[str, Any] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for q in QUANTILES:
            rank = q * total
            at = (running >= rank[:, None]).argmax(axis=1)
            count = counts[rows, at]
            seen = running[rows, at] - count
            value = lows[at] + (highs[at] - lows[at]) * (rank - seen) / count
            quantiles[f"latency_p{round(q * 100)}_seconds"] = np.where(total > 0, value, np.nan)
    return quantiles
