"""The analytics database's one writer: writes from many threads and coroutines run one at a
time, in its thread, never on the loop; the control plane's observability starts and stops
again and again on one data dir under load without an error.

Unit tests: no process. DuckDB is a file in tmp_path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bentoship.server.observe.analytics import Readers, open_analytics, uploads_of
from bentoship.server.observe.hub import Observability
from bentoship.server.observe.logs import LogStore
from bentoship.server.observe.series import Sample, SeriesStore
from bentoship.server.observe.writer import AnalyticsWriter
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.phases import RevisionPhase
from bentoship.server.rollout.runner import stdout_path
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Store

from .records import deployment_record, revision_record

T = TypeVar("T")
REVISION_UID = "0123456789abcdef0123456789abcdef"


class Overlap:
    """Wraps calls, and counts how many run at once and on which threads."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def wrap(self, call: Callable[..., T]) -> Callable[..., T]:
        def wrapped(*args: Any, **kwargs: Any) -> T:
            with self._lock:
                self.active += 1
                self.most = max(self.most, self.active)
                self.threads.add(threading.current_thread().name)
            try:
                time.sleep(0.0005)  # widen the window an overlap would show in
                return call(*args, **kwargs)
            finally:
                with self._lock:
                    self.active -= 1

        return wrapped


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[AnalyticsWriter, SeriesStore, LogStore, Readers]]:
    path = tmp_path / "observe.duckdb"
    database = open_analytics(path)
    writer = AnalyticsWriter()
    readers = Readers(database)
    written = database.cursor()
    series = SeriesStore(written, path=path, retention=10**9, reader=readers)
    logs = LogStore(written, reader=readers, max_lines_per_revision=10**9)
    yield writer, series, logs, readers
    writer.close()
    logs.close()
    readers.close()
    database.close()


def sample(revision: str) -> Sample:
    return Sample("web", revision, {"requests_2xx": 1.0}, {"in_progress": 0.0}, {3: 1})


def test_writes_from_threads_and_coroutines_never_overlap_and_prune_never_fails(
    stores: tuple[AnalyticsWriter, SeriesStore, LogStore, Readers],
) -> None:
    writer, series, logs, readers = stores
    overlap = Overlap()
    write = overlap.wrap(series.write)
    prune = overlap.wrap(series.prune)
    append = overlap.wrap(logs.append)
    threads, rounds, now = 6, 20, time.time()

    def from_thread(index: int) -> None:
        futures = []
        for i in range(rounds):
            revision = f"r{index}"
            futures.append(writer.submit(functools.partial(write, [sample(revision)], at=now)))
            futures.append(
                writer.submit(
                    functools.partial(append, "web", revision, "stdout", [f"{i}"] * 5, now)
                )
            )
            if i % 10 == 0:
                futures.append(writer.submit(lambda: prune(now)))
            readers().execute("SELECT count(*) FROM logs").fetchone()  # reads meanwhile
        for future in futures:
            future.result(timeout=60)  # a prune's CHECKPOINT raised here before

    async def from_coroutines() -> None:
        async def one(i: int) -> None:
            await writer.run(lambda: write([sample("loop")], at=now))
            await writer.run(lambda: append("web", "loop", "stderr", [f"c{i}"], now))
            if i % 10 == 0:
                await writer.run(lambda: prune(now))

        await asyncio.gather(*(one(i) for i in range(100)))

    workers = [threading.Thread(target=from_thread, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    asyncio.run(from_coroutines())
    for worker in workers:
        worker.join()

    assert overlap.most == 1, "two writes ran at once"
    assert overlap.threads == {writer.name}, "a write ran outside the writer's thread"
    cursor = readers()
    counts = dict(
        cursor.execute("SELECT revision, count(*) FROM logs GROUP BY revision").fetchall()
    )
    assert counts == {**{f"r{n}": rounds * 5 for n in range(threads)}, "loop": 100}
    written = cursor.execute("SELECT count(*) FROM samples").fetchone()
    assert written == ((threads * rounds + 100) * 2,)  # a counter and a gauge per sample
    assert cursor.execute("SELECT count(*) FROM latency").fetchone() == (threads * rounds + 100,)
    assert len({seq for (seq,) in cursor.execute("SELECT seq FROM logs").fetchall()}) == sum(
        counts.values()
    )


def test_a_failed_write_fails_its_future_and_the_writer_goes_on(
    stores: tuple[AnalyticsWriter, SeriesStore, LogStore, Readers],
) -> None:
    writer, _, logs, _ = stores

    def fail() -> None:
        raise ValueError("no")

    failed = writer.submit(fail)
    with pytest.raises(ValueError, match="no"):
        failed.result(timeout=10)
    writer.call(lambda: logs.append("web", "r1", "stdout", ["after"], 1.0))
    assert [x.line for x in logs.search("web")] == ["after"]


def test_close_runs_what_is_queued_then_refuses_more(
    stores: tuple[AnalyticsWriter, SeriesStore, LogStore, Readers],
) -> None:
    writer, _, logs, _ = stores
    futures = [
        writer.submit(functools.partial(logs.append, "web", "r1", "stdout", [str(i)], 1.0))
        for i in range(500)
    ]
    writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(logs.search("web", limit=1000)) == 500
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(lambda: None)


# the control plane's observability, started again and again under load


def settings_with_a_revision(data_dir: Path) -> tuple[ServerSettings, Store]:
    settings = ServerSettings(data_dir=data_dir, token="t" * 32)
    store = Store(settings.db_path)
    store.insert_deployment(deployment_record("web", target=REVISION_UID, serving=REVISION_UID))
    store.insert_revision(
        replace(revision_record("web", 1, RevisionPhase.SERVING), uid=REVISION_UID)
    )
    return settings, store


def test_ten_starts_on_one_data_dir_under_load_log_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings, store = settings_with_a_revision(tmp_path / "plane")
    revision_log = settings.logs_dir / "web" / f"r1-{REVISION_UID}.log"
    revision_log.parent.mkdir(parents=True)
    stdout_path(revision_log).touch()
    written = 0

    async def run_once(start: int) -> int:
        """Open, start, load (a service's log lines, requests, prunes, searches), close."""
        controller = Controller(settings, store)  # a new process: its counts start at 0
        observed = Observability.open(settings, controller)
        observed.start(sampling=True)
        lines = 0
        stop = threading.Event()

        def service() -> None:  # a revision writing its stderr, about 5,000 lines a second
            nonlocal lines
            with revision_log.open("a") as out:
                while not stop.is_set():
                    out.write("".join(f"start {start} line {lines + i}\n" for i in range(10)))
                    out.flush()
                    lines += 10
                    time.sleep(0.002)

        async def requests() -> None:
            for _ in range(5):
                controller.traffic.record(REVISION_UID, 200, 0.01)
                await asyncio.wrap_future(observed.sampler.flush_traffic())
                await observed.writer.run(observed.series.prune)
                await asyncio.sleep(0.005)

        async def searches() -> None:
            for _ in range(4):
                await observed.read_logs()
                await asyncio.to_thread(observed.logs.search, "web", pattern="line [0-9]+5$")
                await asyncio.sleep(0.01)

        writing = threading.Thread(target=service)
        writing.start()
        try:
            await asyncio.gather(requests(), searches(), observed.ingest())
        finally:
            stop.set()
            writing.join()
            await observed.close()
        return lines

    with caplog.at_level(logging.WARNING, logger="bentoship"):
        for start in range(10):
            written += asyncio.run(run_once(start))

    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == [], [r.getMessage() for r in problems]
    database = open_analytics(settings.data_dir / "observe.duckdb")
    try:
        stored = database.execute("SELECT max(seq) FROM logs").fetchone()
        requests = database.execute(
            "SELECT sum(value) FROM samples WHERE metric = 'requests_2xx'"
        ).fetchone()
    finally:
        database.close()
        store.close()
    assert stored == (written,), "every line read once, across the restarts"
    assert requests == (50.0,)


def test_the_analytics_database_reads_its_uploads_folder_and_no_other_file(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "plane" / "observe.duckdb"
    database = open_analytics(path)
    uploads = uploads_of(path)
    (uploads / "labels.csv").write_text("id,label\n1,a\n")
    (tmp_path / "secret.csv").write_text("id,label\n2,b\n")
    read = "SELECT * FROM read_csv(?)"
    assert database.execute(read, [str(uploads / "labels.csv")]).fetchall() == [(1, "a")]
    for elsewhere in (tmp_path / "secret.csv", uploads / ".." / ".." / "secret.csv"):
        with pytest.raises(duckdb.PermissionException):
            database.execute(read, [str(elsewhere)])
    again = open_analytics(path)
    with pytest.raises(duckdb.PermissionException):
        again.execute(read, [str(tmp_path / "secret.csv")])
    database.close()
    again.close()
