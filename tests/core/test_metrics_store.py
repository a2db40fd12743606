"""The metrics store (observe.series), the endpoint's traffic count, the sampler's traffic part,
the Prometheus exposition and the event log.

Unit tests: no process. DuckDB is a file in tmp_path; the controller is a real one over a
SQLite store in tmp_path, with Deployment and Revision rows inserted through the store. Times
are simulated (``write(..., at=t)``, ``prune(now=t)``), so nothing waits.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from bentoship.server.endpoint.interface import Outcome, RequestEnd
from bentoship.server.endpoint.traffic import LATENCY_BOUNDS, RevisionTraffic, TrafficBook
from bentoship.server.errors import Invalid
from bentoship.server.observe.analytics import insert_columns, open_analytics
from bentoship.server.observe.exposition import registry_for
from bentoship.server.observe.sampler import Sampler
from bentoship.server.observe.series import SERIES, Sample, SeriesStore, percentile
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.events import Created, EventLog, Terminated
from bentoship.server.rollout.phases import RevisionPhase
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Deployment, Event, Revision, Store

from .records import deployment_record, revision_record

T0 = 1_699_999_980
"""A simulated start time, a whole minute (so also a whole 10 s bucket)."""


def sample(
    revision: str,
    *,
    deployment: str = "web",
    counters: dict[str, float] | None = None,
    gauges: dict[str, float] | None = None,
    latency: dict[int, int] | None = None,
) -> Sample:
    return Sample(deployment, revision, counters or {}, gauges or {}, latency or {})


def on_disk(path: Path) -> int:
    """The database file and its write-ahead log, in bytes."""
    wal = path.with_name(path.name + ".wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def rows(store: SeriesStore, table: str) -> int:
    found = store.cursor.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert found is not None
    return int(found[0])


@pytest.fixture
def database(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_analytics(tmp_path / "observe.duckdb")
    yield connection
    connection.close()


@pytest.fixture
def series(database: duckdb.DuckDBPyConnection, tmp_path: Path) -> SeriesStore:
    return SeriesStore(database.cursor(), path=tmp_path / "observe.duckdb")


def deployment_row(name: str) -> Deployment:
    return deployment_record(name, target=f"{name}-2", serving=f"{name}-1")


def revision_row(name: str, seq: int, phase: RevisionPhase) -> Revision:
    return revision_record(name, seq, phase)


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    """A real controller (nothing started) with deployment ``web``: r1 serving, r2 starting."""
    settings = ServerSettings(data_dir=tmp_path, token="t" * 16)
    store = Store(settings.db_path)
    store.insert_deployment(deployment_row("web"))
    store.insert_revision(revision_row("web", 1, RevisionPhase.SERVING))
    store.insert_revision(revision_row("web", 2, RevisionPhase.STARTING))
    yield Controller(settings, store)
    store.close()


# the analytics database


def test_open_analytics_makes_its_folder_and_insert_columns_appends_rows(tmp_path: Path) -> None:
    connection = open_analytics(tmp_path / "deeper" / "a.duckdb")
    try:
        connection.execute("CREATE TABLE x (a BIGINT, b VARCHAR)")
        insert_columns(connection, "x", {"a": [], "b": []})
        insert_columns(connection, "x", {})
        insert_columns(connection, "x", {"a": [1, 2, 3], "b": ["p", "q", None]})
        assert connection.execute("SELECT a, b FROM x ORDER BY a").fetchall() == [
            (1, "p"),
            (2, "q"),
            (3, None),
        ]
    finally:
        connection.close()
    assert (tmp_path / "deeper" / "a.duckdb").is_file()


# retention and size


MINUTES = 15


def test_retention_keeps_the_last_minute_and_the_file_stays_flat(tmp_path: Path) -> None:
    path = tmp_path / "observe.duckdb"
    connection = open_analytics(path)
    store = SeriesStore(connection.cursor(), retention=60, path=path)
    rng = random.Random(0)

    def load(index: int) -> list[Sample]:
        """Round ``index`` of a constant load: 30 revisions, every kind of row, varied values."""
        return [
            sample(
                f"r{i}",
                deployment=f"dep{i % 3}",
                counters={"requests_2xx": 50 + index % 13, "requests_5xx": 1},
                gauges={"in_progress": rng.randrange(8), "cpu_percent": rng.random() * 100},
                latency={bucket: rng.randrange(1, 9) for bucket in range(10, 25)},
            )
            for i in range(30)
        ]

    sizes: list[int] = []
    now = T0
    started = time.perf_counter()
    for minute in range(MINUTES):
        for second in range(0, 60, 10):
            store.write(load(minute * 6 + second // 10), at=T0 + minute * 60 + second)
        now = T0 + minute * 60 + 50
        store.prune(now=now)  # it checkpoints, so freed blocks are reused
        sizes.append(on_disk(path))
    print(f"{MINUTES} simulated minutes in {time.perf_counter() - started:.2f} s; bytes: {sizes}")

    for table in ("samples", "latency"):
        found = store.cursor.execute(f"SELECT min(t), count(DISTINCT t) FROM {table}").fetchone()
        assert found == (now - 60, 7), table  # the 6 buckets of the minute, and the one before
    answer = store.query("dep0", since=now - 3600, until=now + 1)  # [since, until)
    kept = answer["revisions"]["r0"]["requests"]
    last = [50 + index % 13 + 1 for index in range(MINUTES * 6 - 7, MINUTES * 6)]
    assert all(value is None for value in kept[:-7])
    assert kept[-7:] == last
    assert answer["totals"]["r0"]["requests"] == sum(last)
    assert answer["totals"]["r0"]["5xx"] == 7
    assert max(sizes[-5:]) <= 1.5 * max(sizes[:5])
    connection.close()


def test_a_prune_over_the_size_bound_deletes_the_older_half_once(tmp_path: Path) -> None:
    path = tmp_path / "observe.duckdb"
    connection = open_analytics(path)
    store = SeriesStore(connection.cursor(), retention=10**9, max_bytes=1024**2, path=path)
    load = [
        sample(
            f"r{i}",
            counters={"requests_2xx": 3, "service_requests": 3},
            gauges={"cpu_percent": 1.0, "memory_rss_bytes": 1.0},
            latency={bucket: 2 for bucket in range(10, 25)},
        )
        for i in range(100)
    ]

    def buckets() -> int:
        found = store.cursor.execute("SELECT count(DISTINCT t) FROM samples").fetchone()
        assert found is not None
        return int(found[0])

    minute = 0
    while store.size() <= store.max_bytes and minute < 120:
        store.write_rounds((T0 + minute * 60 + second, load) for second in range(0, 60, 10))
        store.cursor.execute("CHECKPOINT")
        minute += 1
    before = buckets()
    store.prune(now=T0 + minute * 60)
    halved = buckets()
    store.prune(now=T0 + minute * 60)  # nothing written since: nothing more to delete
    again = buckets()
    print(f"buckets: {before} -> {halved} -> {again}; file {path.stat().st_size} bytes")
    connection.close()
    assert before // 2 - 1 <= halved < before
    assert again == halved


# totals and series


def test_counters_sum_exactly_per_revision_and_status_class(series: SeriesStore) -> None:
    series.write(
        [
            sample("r1", counters={"requests_2xx": 3, "requests_4xx": 1}),
            sample("r2", counters={"requests_2xx": 5}),
        ],
        at=T0,
    )
    series.write(  # the same 10 s bucket
        [sample("r1", counters={"requests_2xx": 2, "requests_5xx": 4, "service_requests": 7})],
        at=T0 + 4,
    )
    series.write(
        [sample("r1", counters={"requests_1xx": 1, "requests_2xx": 10, "requests_3xx": 2})],
        at=T0 + 30,
    )
    series.write([sample("r2", counters={"requests_5xx": 1, "requests_2xx": 0})], at=T0 + 55)
    series.write([sample("r1", deployment="other", counters={"requests_2xx": 100})], at=T0 + 10)

    answer = series.query("web", since=T0, until=T0 + 59)
    assert answer["step"] == 10
    assert answer["t"] == [T0 + 10 * i for i in range(6)]
    totals = answer["totals"]
    assert set(totals) == {"r1", "r2"}
    r1, r2 = totals["r1"], totals["r2"]
    assert {k: r1[k] for k in ("1xx", "2xx", "3xx", "4xx", "5xx")} == {
        "1xx": 1,
        "2xx": 15,
        "3xx": 2,
        "4xx": 1,
        "5xx": 4,
    }
    assert r1["requests"] == 23
    assert r1["service_requests"] == 7
    assert r1["success_rate"] == pytest.approx(1 - 4 / 23)
    assert (r2["requests"], r2["2xx"], r2["5xx"], r2["service_requests"]) == (6, 5, 1, 0)
    assert r2["latency_p50_seconds"] is None

    revisions = answer["revisions"]
    assert revisions["r1"]["requests"] == [10, None, None, 13, None, None]
    assert revisions["r2"]["requests"] == [5, None, None, None, None, 1]
    for name in ("r1", "r2"):
        assert sum(v for v in revisions[name]["requests"] if v) == totals[name]["requests"]
    assert revisions["r1"]["requests_5xx"] == [4, None, None, None, None, None]
    assert revisions["r1"]["service_requests"][0] == 7
    assert revisions["r1"]["requests_per_second"][:4] == [1.0, None, None, 1.3]
    assert revisions["r1"]["success_rate"][0] == pytest.approx(0.6)
    assert revisions["r2"]["success_rate"][5] == 0.0

    coarse = series.query("web", since=T0, until=T0 + 59, step=30)
    assert coarse["t"] == [T0, T0 + 30]
    assert coarse["revisions"]["r1"]["requests"] == [10, 13]
    assert coarse["revisions"]["r2"]["requests"] == [5, 1]
    assert coarse["totals"] == totals

    only = series.query("web", since=T0, until=T0 + 59, revision="r2")
    assert set(only["revisions"]) == set(only["totals"]) == {"r2"}
    assert only["totals"]["r2"] == r2
    assert series.query("web", since=T0, until=T0 + 59, revision="r9")["totals"] == {}
    assert series.query("other", since=T0, until=T0 + 59)["totals"]["r1"]["2xx"] == 100

    series.forget("web")
    gone = series.query("web", since=T0, until=T0 + 59)
    assert gone["revisions"] == {} and gone["totals"] == {}
    assert series.query("other", since=T0, until=T0 + 59)["totals"]["r1"]["2xx"] == 100


@pytest.mark.parametrize(
    ("since", "until", "step"),
    [
        (T0, T0, 10),
        (T0 + 60, T0, 10),
        (T0, math.nan, 10),
        (-math.inf, T0, 10),
        (T0, T0 + 60, 5),
        (T0, T0 + 60, 15),
        (T0, T0 + 60, 0),
        (T0, T0 + 60, -10),
    ],
)
def test_an_empty_range_or_a_bad_step_is_invalid(
    series: SeriesStore, since: float, until: float, step: int
) -> None:
    with pytest.raises(Invalid):
        series.query("web", since=since, until=until, step=step)


def test_too_many_points_is_invalid_and_names_the_least_step(series: SeriesStore) -> None:
    with pytest.raises(Invalid, match="use a step of at least 20 s"):
        series.query("web", since=T0, until=T0 + 3 * 86_400)
    assert len(series.query("web", since=T0, until=T0 + 3 * 86_400, step=20)["t"]) <= 20_000


def test_an_aligned_until_is_outside_the_range(series: SeriesStore) -> None:
    series.write([sample("r1", counters={"requests_2xx": 1})], at=T0 + 60)
    answer = series.query("web", since=T0, until=T0 + 60)
    assert answer["totals"] == {}
    assert len(answer["t"]) == 6


# latency percentiles


def latencies(seed: int, median: float, count: int = 4000) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), 0.7) for _ in range(count)]


def histogram(values: list[float]) -> list[int]:
    """The buckets the endpoint counts ``values`` in (RevisionTraffic.record)."""
    traffic = RevisionTraffic()
    for value in values:
        traffic.record(200, value)
    return traffic.buckets


def nonzero(buckets: list[int]) -> dict[int, int]:
    return {index: count for index, count in enumerate(buckets) if count}


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def test_percentile_of_a_histogram_is_within_15_percent() -> None:
    for seed, median in [(1, 0.004), (2, 0.12), (3, 2.5)]:
        values = latencies(seed, median)
        counts = histogram(values)
        for q in (0.5, 0.95, 0.99):
            found = percentile(counts, q)
            assert found == pytest.approx(exact(values, q), rel=0.15), (median, q)
    assert percentile([0] * (len(LATENCY_BOUNDS) + 1), 0.5) is None
    assert percentile([], 0.5) is None
    assert percentile(histogram([0.0005] * 10), 0.5) == pytest.approx(0.0005)
    assert percentile(histogram([100.0] * 3), 0.99) == 60.0


def test_query_percentiles_per_point_and_in_total_are_within_15_percent(
    series: SeriesStore,
) -> None:
    lists = [latencies(4, 0.02), latencies(5, 0.3), latencies(6, 1.5)]
    first = lists[0]
    halves = (first[: len(first) // 2], first[len(first) // 2 :])
    for at, values in [(T0, halves[0]), (T0 + 5, halves[1]), (T0 + 10, lists[1])]:
        series.write([sample("r1", latency=nonzero(histogram(values)))], at=at)
    series.write([sample("r1", latency=nonzero(histogram(lists[2])))], at=T0 + 20)

    answer = series.query("web", since=T0, until=T0 + 29)
    points = answer["revisions"]["r1"]
    totals = answer["totals"]["r1"]
    every = [value for values in lists for value in values]
    for q, name in [(0.5, "latency_p50_seconds"), (0.95, "latency_p95_seconds")]:
        for index, values in enumerate(lists):
            assert points[name][index] == pytest.approx(exact(values, q), rel=0.15), (name, index)
        assert totals[name] == pytest.approx(exact(every, q), rel=0.15)
    for index, values in enumerate(lists):
        p99 = points["latency_p99_seconds"][index]
        assert p99 == pytest.approx(exact(values, 0.99), rel=0.15)
        assert p99 == pytest.approx(percentile(histogram(values), 0.99))
    assert totals["latency_p99_seconds"] == pytest.approx(exact(every, 0.99), rel=0.15)
    assert points["requests"] == [None, None, None]  # latency alone answers no request


# gauges


def test_gauges_are_averaged_in_a_bucket_and_a_gauge_never_read_is_absent(
    series: SeriesStore,
) -> None:
    series.write([sample("r1", gauges={"cpu_percent": 10, "in_progress": 2})], at=T0)
    series.write([sample("r1", gauges={"cpu_percent": 30, "in_progress": 4})], at=T0 + 5)
    series.write([sample("r1", gauges={"cpu_percent": 50, "memory_rss_bytes": 0})], at=T0 + 20)
    series.write([sample("r2", counters={"requests_2xx": 1})], at=T0)

    revisions = series.query("web", since=T0, until=T0 + 29)["revisions"]
    r1, r2 = revisions["r1"], revisions["r2"]
    assert r1["cpu_percent"] == [20, None, 50]
    assert r1["in_progress"] == [3, None, None]
    assert r1["memory_rss_bytes"] == [None, None, 0]  # a reading of zero is kept
    for never in ("gpu_utilization_percent", "gpu_memory_bytes", "service_in_progress"):
        assert never not in r1
    assert set(r1) == {*SERIES, "cpu_percent", "in_progress", "memory_rss_bytes"}
    assert set(r2) == set(SERIES)
    assert r1["requests"] == [None, None, None]


# the endpoint's count and the Prometheus page


def test_traffic_book_counts_classes_latency_and_requests_in_flight() -> None:
    book = TrafficBook()
    book.started("a")
    book.started("a")
    book.started("a")
    assert book.of("a").in_progress == 3
    book.record("a", 200, 0.01)
    book.record("a", 503, 0.2)
    for _ in range(3):
        book.ended("a")
    book.record("a", 101, 0.001)
    book.record("a", 302, 0.0)
    book.record("a", 404, 61.0)
    book.record("a", 99, 1.0)  # below 100: counted as 1xx
    book.record("a", 700, 1.0)  # above 599: counted as 5xx
    traffic = book.of("a")
    assert traffic.in_progress == 0
    assert traffic.by_class == [2, 1, 1, 1, 2]
    assert (traffic.requests, traffic.errors) == (7, 2)
    assert traffic.seconds == pytest.approx(0.01 + 0.2 + 0.001 + 61.0 + 2.0)
    assert traffic.buckets[0] == 2  # 0.0 and exactly the first bound, 0.001
    assert traffic.buckets[-1] == 1  # over 60 s
    tenth = next(i for i, bound in enumerate(LATENCY_BOUNDS) if bound >= 0.01)
    assert LATENCY_BOUNDS[tenth - 1] < 0.01 < LATENCY_BOUNDS[tenth]
    assert traffic.buckets[tenth] == 1
    assert sum(traffic.buckets) == traffic.requests
    assert book.of("never").requests == 0 and "never" not in book.revisions()
    book.forget(["a"])
    assert book.revisions() == {}


def families(controller: Controller, sampler: Sampler | None = None) -> dict[str, list[PromSample]]:
    page = generate_latest(registry_for(controller, sampler)).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(page)}


def labelled(found: list[PromSample], name: str, **labels: str) -> list[PromSample]:
    return [
        s for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_exposition_counts_by_deployment_revision_and_status_class(
    controller: Controller,
) -> None:
    traffic = controller.traffic
    seconds = [0.004, 0.004, 0.05, 0.3, 2.0, 100.0]
    for status, value in zip([200, 200, 200, 404, 503, 503], seconds, strict=True):
        traffic.record("web-1", status, value)
    traffic.record("web-2", 201, 0.01)
    traffic.record("not-stored", 200, 0.01)

    found = families(controller)
    requests = found["bentoship_requests"]
    assert {s.name for s in requests} == {"bentoship_requests_total"}
    counts = {
        (s.labels["deployment"], s.labels["revision"], s.labels["status_class"]): s.value
        for s in requests
    }
    assert counts == {
        **{
            ("web", "r1", c): v
            for c, v in zip(["1xx", "2xx", "3xx", "4xx", "5xx"], [0, 3, 0, 1, 2], strict=True)
        },
        **{
            ("web", "r2", c): v
            for c, v in zip(["1xx", "2xx", "3xx", "4xx", "5xx"], [0, 1, 0, 0, 0], strict=True)
        },
    }

    latency = found["bentoship_request_duration_seconds"]
    buckets = labelled(latency, "bentoship_request_duration_seconds_bucket", revision="r1")
    assert len(buckets) == len(LATENCY_BOUNDS) + 1
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    values = [s.value for s in buckets]
    assert values == sorted(values)  # cumulative
    for bound, value in zip(bounds, values, strict=True):
        assert value == sum(1 for s in seconds if s <= bound), bound
    (count,) = labelled(latency, "bentoship_request_duration_seconds_count", revision="r1")
    (total,) = labelled(latency, "bentoship_request_duration_seconds_sum", revision="r1")
    assert values[-1] == count.value == len(seconds)
    assert total.value == pytest.approx(sum(seconds))

    info = found["bentoship_revision_info"]
    assert {(s.labels["revision"], s.labels["phase"], s.labels["bento"]) for s in info} == {
        ("r1", "serving", "echo:v1"),
        ("r2", "starting", "echo:v2"),
    }
    assert "not-stored" not in generate_latest(registry_for(controller)).decode()


@dataclass(frozen=True)
class To:
    """The upstream a request was routed to, as the request book reads it."""

    revision: str
    name: str = "r2"


@dataclass(frozen=True)
class Seen:
    """A request as the endpoint's observer sees it."""

    deployment: str
    upstream: To | None
    role: str = "stable"
    method: bytes = b"POST"
    target: bytes = b"/echo"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    mirrored: bool = False


def test_exposition_in_progress_follows_started_and_record(controller: Controller) -> None:
    def in_progress() -> float:
        found = families(controller)["bentoship_requests_in_progress"]
        (gauge,) = labelled(found, "bentoship_requests_in_progress", revision="r2")
        return gauge.value

    book = controller.backends.observer
    for _ in range(3):
        controller.traffic.started("web-2")
    assert in_progress() == 3
    book.request_ended(Seen("web", To("web-2")), RequestEnd(Outcome.ANSWERED, 200, 10, 0.1))
    controller.traffic.ended("web-2")
    assert in_progress() == 2
    book.request_ended(Seen("web", To("web-2")), RequestEnd(Outcome.CLIENT_GONE, 0, 0, 0.1))
    controller.traffic.ended("web-2")
    assert in_progress() == 1
    book.request_ended(Seen("web", To("web-2")), RequestEnd(Outcome.UPSTREAM_ERROR, 500, 9, 0.1))
    controller.traffic.ended("web-2")
    assert in_progress() == 0
    counts = families(controller)["bentoship_requests"]
    assert [s.value for s in labelled(counts, "bentoship_requests_total", revision="r2")] == [
        0,
        1,
        0,
        0,
        1,
    ]


def test_exposition_shows_the_sampler_readings_it_has(
    controller: Controller, series: SeriesStore
) -> None:
    sampler = Sampler(controller, series)
    sampler.latest = {"web-1": {"cpu_percent": 12.5, "memory_rss_bytes": 2048.0}, "gone": {}}
    found = families(controller, sampler)
    (cpu,) = found["bentoship_revision_cpu_percent"]
    assert (cpu.labels, cpu.value) == ({"deployment": "web", "revision": "r1"}, 12.5)
    assert found["bentoship_revision_memory_rss_bytes"][0].value == 2048.0
    assert "bentoship_revision_gpu_utilization_percent" not in found
    assert "bentoship_revision_gpu_memory_bytes" not in found


# the sampler's traffic part


def test_flush_traffic_writes_each_count_once(controller: Controller, series: SeriesStore) -> None:
    sampler = Sampler(controller, series)

    def totals() -> dict[str, Any]:
        now = time.time()
        found: dict[str, Any] = series.query("web", since=now - 600, until=now + 10)["totals"]
        return found

    assert totals() == {}
    sampler.flush_traffic()
    assert rows(series, "samples") == rows(series, "latency") == 0

    for status in (200, 200, 200, 404, 500):
        controller.traffic.record("web-1", status, 0.05)
    controller.traffic.record("not-stored", 200, 0.05)
    sampler.flush_traffic()
    first = totals()
    assert set(first) == {"r1"}
    assert (first["r1"]["requests"], first["r1"]["2xx"], first["r1"]["4xx"]) == (5, 3, 1)
    assert first["r1"]["5xx"] == 1
    written = rows(series, "samples"), rows(series, "latency")
    assert written == (3, 1)  # 2xx, 4xx and 5xx; one latency bucket; no in_progress reading

    sampler.flush_traffic()
    sampler.flush_traffic()
    assert totals() == first
    assert (rows(series, "samples"), rows(series, "latency")) == written

    controller.traffic.record("web-1", 200, 0.05)
    controller.traffic.record("web-2", 503, 2.0)
    sampler.flush_traffic()
    after = totals()
    assert (after["r1"]["requests"], after["r1"]["2xx"], after["r1"]["5xx"]) == (6, 4, 1)
    assert (after["r2"]["requests"], after["r2"]["5xx"]) == (1, 1)
    assert (rows(series, "samples"), rows(series, "latency")) == (written[0] + 2, written[1] + 2)
    assert after["r2"]["latency_p50_seconds"] == pytest.approx(2.0, rel=0.25)


# events


def test_events_are_listed_oldest_first_with_after_since_and_limit(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    for i in range(1, 11):
        store.add_event(Event("web", 1000.0 + i, "created", f"web {i}", f"r{i}"))
        store.add_event(Event("api", 1000.0 + i, "ready", f"api {i}"))

    every = store.list_events("web")
    assert [e.message for e in every] == [f"web {i}" for i in range(1, 11)]
    assert [e.id for e in every] == sorted(e.id for e in every)
    assert every[0] == Event("web", 1001.0, "created", "web 1", "r1", id=1)
    assert [e.message for e in store.list_events("web", after=every[6].id)] == [
        "web 8",
        "web 9",
        "web 10",
    ]
    assert [e.message for e in store.list_events("web", since=1008.0)] == [
        "web 8",
        "web 9",
        "web 10",
    ]
    assert [e.message for e in store.list_events("web", limit=2)] == ["web 9", "web 10"]
    assert [e.message for e in store.list_events("web", after=every[2].id, limit=2)] == [
        "web 4",
        "web 5",
    ], "after a cursor, the oldest ones: a reader pages on and misses none"
    assert store.list_events("web", after=every[-1].id) == []
    assert store.list_events("nobody") == []
    assert store.list_events("api")[0].revision is None
    assert every[0].to_json() == {
        "id": 1,
        "time": "1970-01-01T00:16:41.000Z",
        "kind": "created",
        "revision": "r1",
        "message": "web 1",
        "data": None,
    }
    store.close()


def test_controller_records_events_and_delete_deployment_deletes_them(
    controller: Controller,
) -> None:
    store = controller.store
    store.insert_deployment(deployment_row("api"))
    controller.events.publish("web", Created("r2", "echo:v2"))
    controller.move("web-2", RevisionPhase.FAILED, reason="readiness deadline")
    controller.events.publish("api", Terminated(None, "api"))

    found = controller.events.of("web")
    assert [(e.kind, e.revision, e.message) for e in found] == [
        ("created", "r2", "r2 created: echo:v2"),
        ("failed", "r2", "r2 failed: readiness deadline"),
    ]
    assert found[1].to_json()["data"] == {
        "type": "Failed",
        "revision": "r2",
        "reason": "readiness deadline",
    }
    assert all(e.time > 0 for e in found)
    assert [e.kind for e in EventLog(store).of("api")] == ["terminated"]

    store.delete_deployment("web")
    assert controller.events.of("web") == []
    assert store.list_revisions("web") == []
    assert [e.kind for e in controller.events.of("api")] == ["terminated"]


# a day at full resolution


def test_a_day_at_full_resolution(series: SeriesStore) -> None:
    points = 8640
    rounds = [
        (
            T0 + 10 * i,
            [
                sample(
                    "r1",
                    counters={"requests_2xx": i % 7 + 1},
                    gauges={"cpu_percent": float(i % 100)},
                    latency={20: 1 + i % 3},
                ),
                sample(
                    "r2",
                    counters={"requests_2xx": 1, "requests_5xx": i % 2},
                    latency={30: 2},
                ),
            ],
        )
        for i in range(points)
    ]
    started = time.perf_counter()
    series.write_rounds(rounds)
    written = time.perf_counter() - started
    started = time.perf_counter()
    answer = series.query("web", since=T0, until=T0 + 86_400 - 1)
    queried = time.perf_counter() - started
    print(f"a day, 2 revisions: write_rounds {written:.2f} s, query {queried:.2f} s")

    assert len(answer["t"]) == points
    assert answer["t"][-1] == T0 + 86_390
    r1, r2 = answer["revisions"]["r1"], answer["revisions"]["r2"]
    for name in (*SERIES, "cpu_percent"):
        assert len(r1[name]) == points, name
    for i in (0, 1, 6, 7, 4321, points - 1):
        assert r1["requests"][i] == i % 7 + 1
        assert r1["cpu_percent"][i] == i % 100
        assert r2["requests"][i] == 1 + i % 2
        assert LATENCY_BOUNDS[19] < r1["latency_p50_seconds"][i] <= LATENCY_BOUNDS[20]
        assert LATENCY_BOUNDS[29] < r2["latency_p99_seconds"][i] <= LATENCY_BOUNDS[30]
    totals = answer["totals"]
    assert totals["r1"]["requests"] == sum(i % 7 + 1 for i in range(points))
    assert (totals["r2"]["2xx"], totals["r2"]["5xx"]) == (points, points // 2)
    assert totals["r2"]["success_rate"] == pytest.approx(1 - 4320 / 12960)

    by_minute = series.query("web", since=T0, until=T0 + 86_400 - 1, step=60)
    assert len(by_minute["t"]) == 1440
    assert by_minute["revisions"]["r2"]["requests"] == [6 + 3] * 1440
    assert by_minute["revisions"]["r1"]["cpu_percent"][:2] == [2.5, 8.5]
    assert by_minute["totals"] == totals
