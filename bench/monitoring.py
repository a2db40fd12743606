"""ML monitoring figures: ingest throughput, and check_drift on a million rows.

- Ingest: the records of two workers' rotated JSON-lines files into a fresh DuckDB file, by
  the control plane's ingest (offsets committed with the rows), against DuckDB's own
  ``read_json`` of the same files into a table.
- Drift: ``check_drift`` on 1,000,000 rows x 20 numeric columns (one shifted), against
  Evidently's default drift preset on the same data (the ``evidently`` extra, which the
  workspace installs; run once: it takes minutes). Both run warm (imported before timing).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .common import RUNS, Row, Sample

RECORDS_PER_WORKER = 100_000
ROTATE_LINES = 20_000
DRIFT_ROWS = 1_000_000
DRIFT_COLUMNS = 20


def write_records(folder: Path) -> int:
    """Two workers' rotated data files (``data.<worker>.log`` and ``.1``, ``.2``, ...)."""
    data = folder / "predictions" / "data"
    data.mkdir(parents=True)
    for worker in range(2):
        lines = [
            json.dumps(
                {
                    "sepal_length": 5.0 + (n % 30) / 10,
                    "sepal_width": 3.0 + (n % 7) / 10,
                    "species": ("setosa", "versicolor", "virginica")[n % 3],
                    "timestamp": "2026-11-30T00:00:00",
                    "request_id": f"{worker}-{n}",
                    "trace_id": "0",
                }
            )
            for n in range(RECORDS_PER_WORKER)
        ]
        chunks = [lines[i : i + ROTATE_LINES] for i in range(0, len(lines), ROTATE_LINES)]
        for index, chunk in enumerate(chunks):
            suffix = "" if index == len(chunks) - 1 else f".{len(chunks) - 1 - index}"
            (data / f"data.{worker}.log{suffix}").write_text("\n".join(chunk) + "\n")
    return 2 * RECORDS_PER_WORKER


def ingest_seconds(folder: Path, database: Path) -> float:
    from bentoship.server.observe.analytics import open_analytics
    from bentoship.server.observe.monitoring import MonitoringStore, Origin

    connection = open_analytics(database)
    try:
        store = MonitoringStore(connection.cursor())
        started = time.perf_counter()
        while store.ingest(folder, Origin("bench", "r1", "svc:v1")):
            pass
        return time.perf_counter() - started
    finally:
        connection.close()


def read_json_seconds(folder: Path, database: Path) -> float:
    import duckdb

    with duckdb.connect(str(database)) as db:
        started = time.perf_counter()
        db.execute(
            "CREATE TABLE records AS SELECT * FROM read_json(?, format='newline_delimited')",
            [str(folder / "predictions" / "data" / "data.*.log*")],
        )
        return time.perf_counter() - started


def drift_data() -> tuple[dict[str, object], dict[str, object]]:
    import numpy as np

    rng = np.random.default_rng(0)
    reference = {f"x{i}": rng.normal(0, 1, DRIFT_ROWS) for i in range(DRIFT_COLUMNS)}
    current = {f"x{i}": rng.normal(0, 1, DRIFT_ROWS) for i in range(DRIFT_COLUMNS)}
    current["x0"] = current["x0"] + 0.5
    return reference, current


def drift_seconds() -> float:
    """Timed warm: scipy is imported before it starts."""
    import scipy.stats  # noqa: F401

    from bentoship.steps import check_drift

    reference, current = drift_data()
    started = time.perf_counter()
    report = check_drift(reference, current)
    ours = time.perf_counter() - started
    assert report.drifted_columns == ["x0"], report.drifted_columns
    return ours


def evidently_seconds() -> float:
    """Evidently's default drift preset on the same data, timed warm (imported before)."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = drift_data()
    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=list(reference))
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
        Dataset.from_pandas(pd.DataFrame(reference), data_definition=definition),
    )
    theirs = time.perf_counter() - started
    drifted = [m for m in snapshot.dict()["metrics"] if m["config"].get("column") == "x0"]
    assert drifted and drifted[0]["value"] >= drifted[0]["config"]["threshold"], drifted
    return theirs


def run(workdir: Path) -> list[Row]:
    folder = workdir / "monitoring"
    records = write_records(folder)
    ours, theirs = [], []
    for run in range(RUNS):
        ours.append(records / ingest_seconds(folder, workdir / f"ingest-{run}.duckdb"))
        theirs.append(records / read_json_seconds(folder, workdir / f"read-json-{run}.duckdb"))
    shutil.rmtree(folder)
    checked = Sample.of([drift_seconds() for _ in range(max(1, RUNS // 2))])
    preset_time = Sample.of([evidently_seconds()])
    ingest, reader = Sample.of(ours), Sample.of(theirs)
    return [
        Row(
            "monitoring ingest, records/s",
            "rec/s",
            ingest,
            reader,
            "DuckDB read_json of the same files",
            ">= 0.5x",
            ingest.median >= 0.5 * reader.median,
        ),
        Row(
            "check_drift, 1M rows x 20 columns",
            "s",
            checked,
            preset_time,
            "Evidently's DataDriftPreset, same data",
            "faster, <= 5 s",
            checked.median < preset_time.median and checked.median <= 5.0,
        ),
    ]
