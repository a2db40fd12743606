"""Metrics figure: the metrics route's work for a day at full resolution, against an hour.

Two revisions with every 10 s bucket filled for 24 h, in a DuckDB file of its own; each run
times the store's query and the JSON the route sends (both made by ``query_json``), for the
day and for the last hour.
"""

from __future__ import annotations

import time
from pathlib import Path

from bentoship.server.observe.analytics import open_analytics
from bentoship.server.observe.series import Sample as Reading
from bentoship.server.observe.series import SeriesStore

from .common import RUNS, Row, Sample

DAY = 86_400


def fill(series: SeriesStore, now: float) -> None:
    """Every 10 s bucket of the day before ``now``, for two revisions under steady load."""
    readings = [
        Reading(
            "bench",
            revision,
            {"requests_2xx": 480.0, "requests_5xx": 2.0},
            {"in_progress": 3.0, "cpu_percent": 35.0, "memory_rss_bytes": 2.5e8},
            {18: 200, 19: 180, 20: 80, 24: 20, 30: 2},
        )
        for revision in ("r1", "r2")
    ]
    series.write_rounds((now - DAY + i * 10, readings) for i in range(DAY // 10))


def answer_seconds(series: SeriesStore, since: float, until: float) -> float:
    started = time.perf_counter()
    series.query_json("bench", since=since, until=until)
    return time.perf_counter() - started


def run(workdir: Path) -> list[Row]:
    path = workdir / "metrics" / "observe.duckdb"
    database = open_analytics(path)
    try:
        series = SeriesStore(database.cursor(), path=path)
        now = time.time()
        fill(series, now)
        day, hour = [], []
        for _ in range(RUNS):
            day.append(answer_seconds(series, now - DAY, now))
            hour.append(answer_seconds(series, now - 3600, now))
    finally:
        database.close()
    figure, baseline = Sample.of(day), Sample.of(hour)
    return [
        Row(
            "metrics route, 24 h at 10 s",
            "ms",
            figure,
            baseline,
            "the last hour",
            "< 200 ms",
            figure.median < 0.2,
        )
    ]
