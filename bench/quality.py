"""Model quality figures: feedback ingest of 1,000,000 labels, and quality over 1,000,000
joined rows. One day of 1,000,000 classify records (two revisions, request ids in decimal)
and one Parquet file with a label for each (``id``, ``label``, ``time``: an hour later).

- Ingest through the plane: ``POST …/feedback`` of the file to a real control plane, for a
  monitor of a real ``bentoml serve`` deployment (the echo bento's ``classify_calls``): one
  monitored call makes the revision's monitor folder, and the records, written there as a
  data file beside the service's own, are ingested by the plane first. One run: a second
  batch of 1,000,000 into a store holding as many fails in the plane (DuckDB runs out of its
  256 MB), and a new plane per run costs a ``bentoml serve`` each.
- Ingest by the store alone: ``FeedbackStore.add`` of the same labels (decoded, not checked)
  on a DuckDB file opened as the plane opens it, holding the same records: what the route
  adds to it is reading the Parquet file into Python objects and checking each label.
- Both against DuckDB's ``CREATE TABLE AS SELECT * FROM read_parquet`` of the same file into
  a new database file.
- Quality: ``observe.quality.quality`` on that DuckDB file at 10-minute buckets over the day,
  against a plain DuckDB ``count(*)`` of the same join. The goal is absolute.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .common import RUNS, Row, Sample, build_fixture, timed

if TYPE_CHECKING:
    import duckdb

    from bentoship import Client

NAME = "quality-bench"
MONITOR = "classify_calls"
LABELS = 1_000_000
FIRST_ID = 10**18
DAY = 1_765_065_600.0
"""2025-12-07 00:00 UTC: the day of the records."""
STEP = 600.0
INGEST_TIMEOUT = 120.0
RECORDS = (
    "SELECT i AS x, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END AS label, "
    "(i % 100) / 100.0 AS score, "
    f"strftime(to_timestamp({DAY} + i * {86400.0 / LABELS}) AT TIME ZONE 'UTC', "
    "'%Y-%m-%dT%H:%M:%S.%f') AS timestamp, "
    f"({FIRST_ID} + i)::VARCHAR AS request_id, '0' AS trace_id FROM range({LABELS}) t(i)"
)
"""The records as the echo service logs them: x, its parity (the prediction), a score."""
LABELLED = (
    f"SELECT ({FIRST_ID} + i)::VARCHAR AS id, "
    "CASE WHEN (i % 2 = 0) <> (i % 5 = 0) THEN 'even' ELSE 'odd' END AS label, "
    f"({DAY} + i * {86400.0 / LABELS} + 3600)::DOUBLE AS time FROM range({LABELS}) t(i)"
)
"""A label per record: the parity, but the other one for every fifth x (80% accuracy)."""


def write_labels(path: Path) -> None:
    import duckdb

    with duckdb.connect() as db:
        db.execute(f"COPY ({LABELLED}) TO '{path}' (FORMAT parquet)")


def read_parquet_seconds(path: Path, database: Path) -> float:
    import duckdb

    with duckdb.connect(str(database)) as db:
        started = time.perf_counter()
        db.execute("CREATE TABLE labels AS SELECT * FROM read_parquet(?)", [str(path)])
        return time.perf_counter() - started


def _records_ingested(client: Client) -> int:
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    url = f"{client.endpoint}/api/v2/deployments/{NAME}/monitoring"
    answer = httpx.get(url, headers=headers, timeout=120)
    answer.raise_for_status()
    counts = {m["name"]: int(m["records"]) for m in answer.json()["monitors"]}
    return counts.get(MONITOR, 0)


def _feed_records(client: Client, data_dir: Path, url: str) -> None:
    """One monitored call, then the records written beside the service's own data file and
    waited for until the plane has ingested them all."""
    import duckdb

    answer = httpx.post(f"{url}/classify", json={"x": 1, "monitor": True}, timeout=30)
    answer.raise_for_status()
    [folder] = (data_dir / "monitoring" / NAME).glob(f"*/{MONITOR}/data")
    with duckdb.connect() as db:
        db.execute(f"COPY ({RECORDS}) TO '{folder / 'data.bench.log'}' (FORMAT json)")
    deadline = time.monotonic() + INGEST_TIMEOUT
    while (found := _records_ingested(client)) < 1 + LABELS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the plane ingested {found} of {1 + LABELS} records")


def posted_seconds(workdir: Path, labels: Path) -> float:
    """Seconds of ``POST …/feedback`` of the ``labels`` file to a real control plane."""
    from bentoship import Client
    from bentoship.server import LocalControlPlane
    from bentoship.steps import deploy, push, wait_until_ready

    tag = build_fixture("echo", workdir, "v1")
    body = labels.read_bytes()
    with LocalControlPlane(workdir / "quality-plane") as plane:
        assert plane.connection is not None
        with Client(plane.endpoint, plane.connection.token) as client:
            push(tag, client=client)
            dep = wait_until_ready(deploy(NAME, tag, client=client), client=client)
            _feed_records(client, plane.data_dir, dep.url or "")
            started = time.perf_counter()
            got = client.send_feedback(NAME, MONITOR, body)
            seconds = time.perf_counter() - started
    assert (got["stored"], got["pending"]) == (LABELS, 0), got
    print(f"  feedback: POST of {len(body) / 2**20:.1f} MiB, {seconds:.2f} s", file=sys.stderr)
    return seconds


def quality_store(database: Path, labels: Path) -> tuple[duckdb.DuckDBPyConnection, str, float]:
    """A DuckDB file as the plane opens it, with the records (r1, then r2) and the labels of
    the ``labels`` file stored by ``FeedbackStore.add``: the table, and add's seconds."""
    import duckdb

    from bentoship.server.observe.analytics import open_analytics
    from bentoship.server.observe.feedback import FeedbackStore, Label
    from bentoship.server.observe.monitoring import MonitoringStore

    with duckdb.connect() as db:
        rows = db.execute(
            "SELECT id, to_json(label)::VARCHAR, time FROM read_parquet(?)", [str(labels)]
        ).fetchall()
    decoded = [Label(rid, label, at) for rid, label, at in rows]
    del rows
    connection = open_analytics(database)
    table = MonitoringStore(connection.cursor())._ensure_table(MONITOR)
    connection.execute(
        f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, request_id, "
        f"trace_id, record) SELECT '{NAME}', CASE WHEN x < {LABELS // 2} THEN 'r1' ELSE 'r2' "
        "END, 'echo:v1', epoch(timestamp::TIMESTAMP), timestamp, request_id, trace_id, "
        f"to_json(r)::VARCHAR FROM ({RECORDS}) r"
    )
    store = FeedbackStore(connection.cursor(), connection.cursor)
    started = time.perf_counter()
    got = store.add(NAME, MONITOR, table, decoded)
    seconds = time.perf_counter() - started
    assert (got.stored, got.pending) == (LABELS, 0), got
    return connection, table, seconds


def quality_seconds(
    connection: duckdb.DuckDBPyConnection, table: str
) -> tuple[list[float], list[float]]:
    """Seconds of quality() over the day, and of a plain count of the same join."""
    from bentoship.server.observe.quality import QualityQuery, Task, quality

    query = QualityQuery(
        NAME, MONITOR, table, "label", DAY, DAY + 86400.0, STEP, Task.CLASSIFICATION
    )
    join = (
        f"SELECT count(*) FROM {table} r JOIN feedback f ON f.deployment = r.deployment "
        "AND f.monitor = $2 AND f.id_field = 'request_id' AND f.id = r.request_id "
        "WHERE r.deployment = $1"
    )
    cursor = connection.cursor()
    ours, theirs = [], []
    found: dict[str, Any] = {}
    counted: list[Any] = []
    for _ in range(RUNS):
        ours.append(timed(lambda: found.update(quality(cursor, query))))
        theirs.append(
            timed(lambda: counted.append(cursor.execute(join, [NAME, MONITOR]).fetchone()))
        )
    assert counted == [(LABELS,)] * RUNS, counted
    revisions = found["revisions"]
    assert [e["labelled"] for e in revisions] == [LABELS // 2] * 2, revisions
    assert sum(len(e["buckets"]) for e in revisions) == 86400 / STEP
    assert all(abs(e["accuracy"] - 0.8) < 0.01 for e in revisions), revisions
    return ours, theirs


def run(workdir: Path) -> list[Row]:
    labels = workdir / "labels.parquet"
    write_labels(labels)
    posted = posted_seconds(workdir, labels)
    connection, table, adding = quality_store(workdir / "quality.duckdb", labels)
    try:
        measured, counted = quality_seconds(connection, table)
    finally:
        connection.close()
    read = [read_parquet_seconds(labels, workdir / f"read-{n}.duckdb") for n in range(RUNS)]
    reader = Sample.of([LABELS / s for s in read])
    ingest, added = Sample.of([LABELS / posted]), Sample.of([LABELS / adding])
    seconds, joined = Sample.of(measured), Sample.of(counted)
    return [
        Row(
            "feedback ingest, 1M labels: POST .../feedback of a Parquet file (1 run)",
            "lab/s",
            ingest,
            reader,
            "DuckDB read_parquet of the file",
            ">= 0.5x",
            ingest.median >= 0.5 * reader.median,
        ),
        Row(
            "feedback ingest, 1M labels: FeedbackStore.add alone (1 run)",
            "lab/s",
            added,
            reader,
            "DuckDB read_parquet of the file",
            ">= 0.5x",
            added.median >= 0.5 * reader.median,
        ),
        Row(
            "quality(), 1M joined rows, 10-minute buckets over a day",
            "ms",
            seconds,
            joined,
            "DuckDB count(*) of the same join",
            "<= 300 ms",
            seconds.median <= 0.3,
        ),
    ]
