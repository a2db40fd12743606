"""Records that a 2-worker service logs with ``bentoml.monitor`` reach DuckDB exactly once, while
its files rotate and the control plane is killed with SIGKILL in the middle of the ingest."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
import psutil
import pytest

from bentoship.server import LocalControlPlane
from bentoship.server.observe.monitoring import table_of

from .api import Api

RECORDS = 100_000
BATCH = 2_000
SENDERS = 4
ROTATE_BYTES = 256 * 1024
KILL_AFTER = 10_000
"""Ingested records after which the control plane is killed (the rest are still coming)."""
DEPLOYMENT = "ledger"
MONITOR = "echo_records"
TWO_WORKERS = [{"name": "BENTOML_CONFIG_OPTIONS", "value": "services.Echo.workers=2"}]


@dataclass
class Sender:
    """Posts batches of records (each named by its first id) to the deployment's endpoint from
    ``SENDERS`` threads, each batch once; once ``stopping`` is set, those not yet taken go to
    ``unsent``. Each batch goes on a new connection to the replica's own port, which the worker
    idle at that moment accepts, so both workers get records and rotate their files. (Through
    the endpoint, its few pooled connections to the replica were once all accepted by one
    worker, which drains the backlog of a burst at once.)"""

    url: str
    batches: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue)
    answered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, firsts: list[int]) -> None:
        for first in firsts:
            self.batches.put(first)
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(SENDERS)]
        for thread in self.threads:
            thread.start()

    def _send(self) -> None:
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=120, limits=fresh, headers={"Connection": "close"}) as http:
            while True:
                try:
                    first = self.batches.get_nowait()
                except queue.Empty:
                    return
                if self.stopping.is_set():
                    self.unsent.append(first)
                    continue
                body = {"text": "x", "records": BATCH, "first": first}
                try:
                    ok = http.post(f"{self.url}/echo", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.answered if ok else self.failed).append(first)

    def join(self, timeout: float = 180) -> None:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a batch of records was not answered in time"


@pytest.fixture
def survivors() -> Iterator[list[psutil.Process]]:
    """Processes of a killed control plane; any still alive after the test is killed."""
    found: list[psutil.Process] = []
    yield found
    for process in found:
        if process.is_running():
            process.kill()


def replica_url(api: Api) -> str:
    """The URL of the deployment's one replica (its ``bentoml serve`` port)."""
    pods = api.http.get(f"/api/v2/deployments/{DEPLOYMENT}/pods").json()["items"]
    [port] = [pod["bentoship"]["port"] for pod in pods]
    return f"http://127.0.0.1:{port}"


def ingested(api: Api) -> int:
    monitors = api.http.get(f"/api/v2/deployments/{DEPLOYMENT}/monitoring").json()["monitors"]
    return sum(m["records"] for m in monitors if m["name"] == MONITOR)


def ids_in_files(data_dir: Path) -> tuple[list[int], list[str]]:
    """The ``id`` of every complete line of the monitor's data files, and the files' names."""
    files = list((data_dir / "monitoring" / DEPLOYMENT).glob(f"*/{MONITOR}/data/data.*.log*"))
    ids: list[int] = []
    for path in files:
        lines = path.read_bytes().split(b"\n")[:-1]
        ids += [json.loads(line)["id"] for line in lines if line]
    return ids, [path.name for path in files]


@pytest.mark.slow
def test_records_of_a_2_worker_service_reach_duckdb_once_across_rotation_and_kill_9(
    start_control_plane: Callable[..., LocalControlPlane],
    echo_v1: str,
    tmp_path: Path,
    survivors: list[psutil.Process],
) -> None:
    """The truth is what the workers wrote: the ids stored are exactly the ids of the complete
    lines of the data files on disk, each once, and include every id of every batch answered
    200 (a batch cut by the kill may have been logged in part, or whole)."""
    plane = start_control_plane(tmp_path / "plane", monitoring_rotate_bytes=ROTATE_BYTES)
    api = Api(plane)
    api.push(echo_v1)
    api.create(DEPLOYMENT, echo_v1, envs=TWO_WORKERS)
    api.wait_status(DEPLOYMENT, {"running"})
    sender = Sender(replica_url(api))
    sender.start(list(range(0, RECORDS, BATCH)))

    deadline = time.monotonic() + 120
    while (before := ingested(api)) < KILL_AFTER:
        assert time.monotonic() < deadline, f"only {before} records were ingested"
        time.sleep(0.2)
    sender.stopping.set()
    assert plane.process is not None
    survivors += psutil.Process(plane.process.pid).children(recursive=True)
    plane.kill()
    assert len(sender.answered) * BATCH < RECORDS, "every record was logged before the kill"
    sender.join()
    _, still = psutil.wait_procs(survivors, timeout=60)
    assert not still, f"processes of the killed control plane outlived it: {still}"

    plane.start()
    api = Api(plane)
    api.wait_status(DEPLOYMENT, {"running"}, timeout=120)
    lost = len(sender.failed)
    rest = Sender(replica_url(api))
    rest.start(sender.unsent + [RECORDS + i * BATCH for i in range(lost)])
    rest.join()
    assert rest.failed == [], "requests failed after the control plane was back"

    deadline = time.monotonic() + 120
    while ingested(api) != len(ids_in_files(plane.data_dir)[0]):
        assert time.monotonic() < deadline, "the ingest did not catch up with the files"
        time.sleep(0.5)
    plane.stop()

    logged, names = ids_in_files(plane.data_dir)
    with duckdb.connect(str(plane.data_dir / "observe.duckdb"), read_only=True) as db:
        rows = db.execute(
            f"SELECT CAST(record ->> 'id' AS BIGINT) FROM {table_of(MONITOR)} WHERE deployment = ?",
            [DEPLOYMENT],
        ).fetchall()
    stored = [row[0] for row in rows]
    answered = {i for first in sender.answered + rest.answered for i in range(first, first + BATCH)}
    assert len(answered) >= RECORDS and before < RECORDS
    rotated = [name for name in names if not name.endswith(".log")]
    assert len({name.split(".")[1] for name in rotated}) == 2 and len(rotated) >= 20
    assert len(logged) == len(set(logged))
    assert len(stored) == len(logged)
    assert set(stored) == set(logged)
    assert answered <= set(stored)
