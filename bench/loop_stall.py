"""Loop stall figure: how late a 10 ms timer on the control plane's loop fires while a service
writes 5,000 log lines a second and the console searches them, against the same load with
nothing searched.

In process, not a full control plane: the loop runs the control plane's observability as
``bentoship server`` starts it (``Observability.open`` and ``start``: the log tailer, the
monitoring ingest and the sampler, with the one analytics writer thread, and the interpreter's
switch interval the server sets), and the timer. A process of its own (as a revision's
``bentoml serve`` is) appends lines to a revision's log file at 5,000 a second, which the
tailer reads into the log store; in the searched phase, two coroutines call the console's
search (its Logs tab: an RE2 pattern, the newest 500 lines made JSON, in a worker thread as
the console does) back to back. The figure is the 99th percentile of the timer's lateness
over each phase; the loop serves every deployment's endpoint too, so this is how long a
request may wait behind the observability.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

from .common import RUNS, Row, Sample

LINES_PER_SECOND = 5_000
TICK = 0.010
PHASE_SECONDS = 4.0
SEARCHERS = 2
PATTERN = r"status=5\d\d .*user=[a-z]+7"
REVISION_UID = "0123456789abcdef0123456789abcdef"


def _service(path: Path, stop: Any) -> None:
    """Append LINES_PER_SECOND lines a second to ``path``, in batches every 10 ms."""
    batch = int(LINES_PER_SECOND * TICK)
    written = 0
    started = time.monotonic()
    with path.open("a") as out:
        while not stop.is_set():
            out.write(
                "".join(
                    f"INFO request id={written + i} status={200 + (written + i) % 7 * 50} "
                    f"user=user{(written + i) % 97} took={(written + i) % 13}ms\n"
                    for i in range(batch)
                )
            )
            out.flush()
            written += batch
            ahead = started + written / LINES_PER_SECOND - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


async def _lateness(seconds: float) -> list[float]:
    """How late each 10 ms sleep of the loop woke, for ``seconds``."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    end = loop.time() + seconds
    while loop.time() < end:
        asked = loop.time() + TICK
        await asyncio.sleep(TICK)
        late.append(max(0.0, loop.time() - asked))
    return late


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def _phase(observed: object, searching: bool) -> float:
    from bentoship.server.console.tabs_view import LOG_LINES_SHOWN
    from bentoship.server.observe.hub import Observability

    assert isinstance(observed, Observability)
    stop = asyncio.Event()

    def logs_tab() -> list[dict[str, object]]:  # as the console's log_search, in a thread
        with observed.logs.one_search():
            found = observed.logs.search("bench", pattern=PATTERN, limit=LOG_LINES_SHOWN)
            return [line.to_json() for line in found]

    async def search() -> None:
        while not stop.is_set():
            await asyncio.to_thread(logs_tab)
            await asyncio.sleep(0)

    searchers = [asyncio.create_task(search()) for _ in range(SEARCHERS if searching else 0)]
    try:
        late = await _lateness(PHASE_SECONDS)
    finally:
        stop.set()
        await asyncio.gather(*searchers)
    return _p99(late)


async def _measure(workdir: Path) -> tuple[list[float], list[float]]:
    from bentoship.server.main import share_the_interpreter
    from bentoship.server.observe.hub import Observability
    from bentoship.server.rollout.controller import Controller
    from bentoship.server.rollout.phases import Lifecycle, RevisionPhase
    from bentoship.server.rollout.runner import stdout_path
    from bentoship.server.settings import ServerSettings
    from bentoship.server.store import Deployment, Revision, Store

    settings = ServerSettings(data_dir=workdir / "loop-stall", token="t" * 32)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.db_path)
    store.insert_deployment(
        Deployment(
            name="bench",
            uid="bench-uid",
            cluster="local",
            created_at="2026-01-01T00:00:00Z",
            updated_at=None,
            state=Lifecycle.ACTIVE,
            target_revision=REVISION_UID,
            serving_revision=REVISION_UID,
            endpoint_port=None,
            reason="",
        )
    )
    store.insert_revision(
        Revision(
            uid=REVISION_UID,
            deployment="bench",
            seq=1,
            bento="bench:v1",
            config={},
            created_at="2026-01-01T00:00:00Z",
            phase=RevisionPhase.SERVING,
        )
    )
    log_file = settings.logs_dir / "bench" / f"r1-{REVISION_UID}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stdout_path(log_file).touch()
    share_the_interpreter()  # as `bentoship server` does at its start
    observed = Observability.open(settings, Controller(settings, store))
    observed.start(sampling=True)
    # the service is a process of its own, as a revision's `bentoml serve` is
    stop = multiprocessing.Event()
    service = multiprocessing.get_context("fork").Process(
        target=_service, args=(log_file, stop), daemon=True
    )
    service.start()
    searched, quiet = [], []
    try:
        await asyncio.sleep(2.0)  # lines stored, to search
        for _ in range(RUNS):
            quiet.append(await _phase(observed, searching=False))
            searched.append(await _phase(observed, searching=True))
    finally:
        stop.set()
        service.join(10)
        await observed.close()
        store.close()
    return searched, quiet


def run(workdir: Path) -> list[Row]:
    searched, quiet = asyncio.run(_measure(workdir))
    figure, baseline = Sample.of(searched), Sample.of(quiet)
    return [
        Row(
            "loop stall p99, 5k log lines/s + console search",
            "ms",
            figure,
            baseline,
            "same load, nothing searched",
            "p99 < 5 ms",
            figure.median < 0.005,
        )
    ]
