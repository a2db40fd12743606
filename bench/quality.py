"""Model quality figures: feedback ingest of 1,000,000 labels, and quality over 1,000,000
joined rows. Records of classify calls (request ids in decimal), and labels for them in a
Parquet file and in JSON lines (``id``, ``label``, ``time``: an hour later).

- Ingest through the plane: ``POST …/feedback`` to a real control plane, for a monitor of a
  real ``bentoml serve`` deployment (the echo bento's ``classify_calls``): one monitored call
  makes the revision's monitor folder, and 2,000,000 records, written there as a data file
  beside the service's own, are ingested by the plane first; then the quality route is asked
  once (as the console's Quality tab does), which makes the monitor's prediction index. Then
  the Parquet file (labels of the first million records) and the JSON lines (of the second
  million: a second batch into a store holding one) are posted, one run each: a new plane per
  run costs a ``bentoml serve`` each.
- Ingest by the store alone: ``FeedbackStore.add`` of the Parquet file's labels, read and
  checked as the route does (not timed), on a DuckDB file opened as the plane opens it, holding
  a day of 1,000,000 records (two revisions) and their prediction index.
- Each against DuckDB's own read of the same file into a table of a new database file
  (``read_parquet``, ``read_json``), run just before and just after it: this machine's speed
  swings within a minute, so a baseline read minutes apart from its run says little.
- Quality: what the route runs on that store (the index made current, ``quality()`` at
  10-minute buckets over the day, the label counts), against a plain DuckDB ``count(*)`` of the
  same join. The goal is absolute. The first query on a store whose index is not made yet
  (it is made then, records and labels joined) is printed and reported beside it.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .common import RUNS, Row, Sample, build_fixture, timed

if TYPE_CHECKING:
    import duckdb

    from bentoship import Client
    from bentoship.server.observe.feedback import FeedbackStore

NAME = "quality-bench"
MONITOR = "classify_calls"
LABELS = 1_000_000
FIRST_ID = 10**18
DAY = 1_765_065_600.0
"""2025-12-07 00:00 UTC: the day of the records."""
STEP = 600.0
INGEST_TIMEOUT = 300.0


def records_sql(count: int) -> str:
    """``count`` records as the echo service logs them: x, its parity (the prediction), a score,
    a day of them."""
    return (
        "SELECT i AS x, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END AS label, "
        "(i % 100) / 100.0 AS score, "
        f"strftime(to_timestamp({DAY} + (i % {LABELS}) * {86400.0 / LABELS}) AT TIME ZONE "
        "'UTC', '%Y-%m-%dT%H:%M:%S.%f') AS timestamp, "
        f"({FIRST_ID} + i)::VARCHAR AS request_id, '0' AS trace_id FROM range({count}) t(i)"
    )


def labels_sql(first: int) -> str:
    """A label per record from the ``first``-th: the parity, but the other one for every fifth
    x (80% accuracy)."""
    return (
        f"SELECT ({FIRST_ID} + i)::VARCHAR AS id, "
        "CASE WHEN (i % 2 = 0) <> (i % 5 = 0) THEN 'even' ELSE 'odd' END AS label, "
        f"({DAY} + (i % {LABELS}) * {86400.0 / LABELS} + 3600)::DOUBLE AS time "
        f"FROM range({first}, {first + LABELS}) t(i)"
    )


def write_labels(parquet: Path, lines: Path) -> None:
    """The labels of the first million records as Parquet, of the second as JSON lines."""
    import duckdb

    with duckdb.connect() as db:
        db.execute(f"COPY ({labels_sql(0)}) TO '{parquet}' (FORMAT parquet)")
        db.execute(f"COPY ({labels_sql(LABELS)}) TO '{lines}' (FORMAT json)")


def read_seconds(path: Path, database: Path) -> float:
    """DuckDB's own read of ``path`` (Parquet, else JSON lines) into a new database file."""
    import duckdb

    reader = "read_parquet" if path.suffix == ".parquet" else "read_json"
    with duckdb.connect(str(database)) as db:
        started = time.perf_counter()
        db.execute(f"CREATE TABLE labels AS SELECT * FROM {reader}(?)", [str(path)])
        return time.perf_counter() - started


def _get(client: Client, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    url = f"{client.endpoint}/api/v2/deployments/{NAME}{path}"
    answer = httpx.get(url, headers=headers, params=params, timeout=300)
    answer.raise_for_status()
    return answer.json()


def _records_ingested(client: Client) -> int:
    counts = {m["name"]: int(m["records"]) for m in _get(client, "/monitoring")["monitors"]}
    return counts.get(MONITOR, 0)


def _feed_records(client: Client, data_dir: Path, url: str, count: int) -> None:
    """One monitored call, then ``count`` records written beside the service's own data file
    and waited for until the plane has ingested them all."""
    import duckdb

    answer = httpx.post(f"{url}/classify", json={"x": 1, "monitor": True}, timeout=30)
    answer.raise_for_status()
    [folder] = (data_dir / "monitoring" / NAME).glob(f"*/{MONITOR}/data")
    with duckdb.connect() as db:
        db.execute(f"COPY ({records_sql(count)}) TO '{folder / 'data.bench.log'}' (FORMAT json)")
    deadline = time.monotonic() + INGEST_TIMEOUT
    while (found := _records_ingested(client)) < 1 + count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the plane ingested {found} of {1 + count} records")
        time.sleep(0.5)


def around(workdir: Path, path: Path, run: Callable[[], float]) -> tuple[float, list[float]]:
    """Seconds of ``run``, and of DuckDB's own read of ``path`` just before and just after it."""
    before = read_seconds(path, workdir / f"read-{time.monotonic_ns()}.duckdb")
    seconds = run()
    after = read_seconds(path, workdir / f"read-{time.monotonic_ns()}.duckdb")
    return seconds, [before, after]


def posted_seconds(workdir: Path, parquet: Path, lines: Path) -> list[tuple[float, list[float]]]:
    """Seconds of ``POST …/feedback`` of the Parquet file, then of the JSON lines, to a real
    control plane, each with DuckDB's reads of its file around it."""
    from bentoship import Client
    from bentoship.server import LocalControlPlane
    from bentoship.steps import deploy, push, wait_until_ready

    tag = build_fixture("echo", workdir, "v1")
    with LocalControlPlane(workdir / "quality-plane") as plane:
        assert plane.connection is not None
        with Client(plane.endpoint, plane.connection.token) as client:
            push(tag, client=client)
            dep = wait_until_ready(deploy(NAME, tag, client=client), client=client)
            _feed_records(client, plane.data_dir, dep.url or "", 2 * LABELS)
            day = {"monitor": MONITOR, "since": DAY, "until": DAY + 86400, "step": STEP}
            first = timed(lambda: _get(client, "/quality", **day))
            print(f"  quality route, index made of 2M records: {first:.2f} s", file=sys.stderr)
            posted = []
            for path in (parquet, lines):
                body = path.read_bytes()

                def post(body: bytes = body) -> float:
                    started = time.perf_counter()
                    got = client.send_feedback(NAME, MONITOR, body)
                    assert (got["stored"], got["pending"]) == (LABELS, 0), got
                    return time.perf_counter() - started

                posted.append(around(workdir, path, post))
            report = _get(client, "/quality", **day)
            assert report["labels"] == 2 * LABELS and report["unmatched"] == 0, report
    print(
        f"  feedback: POST of Parquet {parquet.stat().st_size / 2**20:.1f} MiB "
        f"{posted[0][0]:.2f} s, of JSON lines {lines.stat().st_size / 2**20:.1f} MiB "
        f"{posted[1][0]:.2f} s; DuckDB's reads around them {posted[0][1]}, {posted[1][1]}",
        file=sys.stderr,
    )
    return posted


def quality_store(database: Path) -> tuple[duckdb.DuckDBPyConnection, FeedbackStore, str]:
    """A DuckDB file as the plane opens it, with a day of records (r1, then r2)."""
    from bentoship.server.observe.analytics import open_analytics
    from bentoship.server.observe.feedback import FeedbackStore
    from bentoship.server.observe.monitoring import MonitoringStore

    connection = open_analytics(database)
    table = MonitoringStore(connection.cursor())._ensure_table(MONITOR)
    connection.execute(
        f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, request_id, "
        f"trace_id, record) SELECT '{NAME}', CASE WHEN x < {LABELS // 2} THEN 'r1' ELSE 'r2' "
        "END, 'echo:v1', epoch(timestamp::TIMESTAMP), timestamp, request_id, trace_id, "
        f"to_json(r)::VARCHAR FROM ({records_sql(LABELS)}) r"
    )
    return connection, FeedbackStore(connection.cursor(), connection.cursor), table


def added_seconds(store: FeedbackStore, table: str, parquet: Path) -> float:
    """Seconds of ``FeedbackStore.add`` of the file's labels, read and checked as the route
    reads them (not timed), with the monitor's prediction index made before."""
    from bentoship.server.api.label_bodies import read_labels

    store.refresh(MONITOR, table, ["label"])
    with read_labels(parquet.read_bytes(), True, "request_id") as batch:
        started = time.perf_counter()
        got = store.add(NAME, MONITOR, table, batch)
        seconds = time.perf_counter() - started
    assert (got.stored, got.pending) == (LABELS, 0), got
    return seconds


def quality_seconds(
    connection: duckdb.DuckDBPyConnection, store: FeedbackStore, table: str
) -> tuple[list[float], list[float]]:
    """Seconds of what the quality route runs over the day, and of a plain count of the same
    join."""
    from bentoship.server.observe.quality import QualityQuery, Task, quality

    query = QualityQuery(
        NAME, MONITOR, table, "label", DAY, DAY + 86400.0, STEP, Task.CLASSIFICATION
    )
    join = (
        f"SELECT count(*) FROM {table} r JOIN feedback_labels f ON f.key = "
        "r.request_id::UHUGEINT JOIN feedback_sets s ON s.id = f.set_id AND s.deployment = "
        "r.deployment AND s.monitor = $2 AND s.id_field = 'request_id' WHERE r.deployment = $1"
    )
    cursor = connection.cursor()
    found: dict[str, Any] = {}

    def route() -> None:
        store.refresh(MONITOR, table, ["label"])
        found.update(quality(cursor, query))
        found.update(store.counts(NAME, MONITOR, table))

    ours, theirs = [], []
    counted: list[Any] = []
    for _ in range(RUNS):
        ours.append(timed(route))
        theirs.append(
            timed(lambda: counted.append(cursor.execute(join, [NAME, MONITOR]).fetchone()))
        )
    assert counted == [(LABELS,)] * RUNS, counted
    revisions = found["revisions"]
    assert [e["labelled"] for e in revisions] == [LABELS // 2] * 2, revisions
    assert sum(len(e["buckets"]) for e in revisions) == 86400 / STEP
    assert all(abs(e["accuracy"] - 0.8) < 0.01 for e in revisions), revisions
    assert (found["labels"], found["unmatched"]) == (LABELS, 0), found
    return ours, theirs


def first_quality_seconds(workdir: Path, parquet: Path) -> float:
    """Seconds of the first quality query on a store with the records and the labels and no
    prediction index yet (it is made then)."""
    from bentoship.server.api.label_bodies import read_labels
    from bentoship.server.observe.quality import QualityQuery, Task, quality

    connection, store, table = quality_store(workdir / "quality-cold.duckdb")
    try:
        with read_labels(parquet.read_bytes(), True, "request_id") as batch:
            store.add(NAME, MONITOR, table, batch)
        query = QualityQuery(
            NAME, MONITOR, table, "label", DAY, DAY + 86400.0, STEP, Task.CLASSIFICATION
        )
        cursor = connection.cursor()

        def route() -> None:
            store.refresh(MONITOR, table, ["label"])
            quality(cursor, query)
            store.counts(NAME, MONITOR, table)

        seconds = timed(route)
    finally:
        connection.close()
    print(f"  quality, first query (index made): {seconds * 1000:.0f} ms", file=sys.stderr)
    return seconds


def run(workdir: Path) -> list[Row]:
    parquet, lines = workdir / "labels.parquet", workdir / "labels.jsonl"
    write_labels(parquet, lines)
    (posted, read), (posted_lines, read_lines) = posted_seconds(workdir, parquet, lines)
    connection, store, table = quality_store(workdir / "quality.duckdb")
    try:
        adding, read_added = around(
            workdir, parquet, functools.partial(added_seconds, store, table, parquet)
        )
        measured, counted = quality_seconds(connection, store, table)
    finally:
        connection.close()
    cold = first_quality_seconds(workdir, parquet)
    reader, lines_reader, added_reader = (
        Sample.of([LABELS / s for s in seconds]) for seconds in (read, read_lines, read_added)
    )
    ingest, ingest_lines = Sample.of([LABELS / posted]), Sample.of([LABELS / posted_lines])
    added = Sample.of([LABELS / adding])
    seconds, joined = Sample.of(measured), Sample.of(counted)
    return [
        Row(
            "feedback ingest, 1M labels: POST .../feedback of a Parquet file (1 run)",
            "lab/s",
            ingest,
            reader,
            "DuckDB read_parquet of the file, around it",
            ">= 0.5x",
            ingest.median >= 0.5 * reader.median,
        ),
        Row(
            "feedback ingest, 1M labels: POST .../feedback of JSON lines (1 run)",
            "lab/s",
            ingest_lines,
            lines_reader,
            "DuckDB read_json of the file, around it",
            ">= 0.5x",
            ingest_lines.median >= 0.5 * lines_reader.median,
        ),
        Row(
            "feedback ingest, 1M labels: FeedbackStore.add alone (1 run)",
            "lab/s",
            added,
            added_reader,
            "DuckDB read_parquet of the file, around it",
            "(reported)",
            True,
        ),
        Row(
            "quality route, 1M joined rows, 10-minute buckets over a day",
            "ms",
            seconds,
            joined,
            "DuckDB count(*) of the same join",
            "<= 300 ms",
            seconds.median <= 0.3,
        ),
        Row(
            "quality route, first query: prediction index made (1 run)",
            "ms",
            Sample.of([cold]),
            joined,
            "DuckDB count(*) of the same join",
            "(reported)",
            True,
        ),
    ]
