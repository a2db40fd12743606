"""Live traffic for end-to-end tests: clients calling an endpoint in a loop, noting who answered."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

REVISION_HEADER = "x-bentoship-revision"


@dataclass(frozen=True)
class Answer:
    status: int
    revision: str
    body: Any
    seconds: float = 0.0
    """How long the call took, as the client measured it."""


@dataclass
class TrafficLoop:
    """``clients`` threads POST ``payload`` to ``url`` until stopped; every answer is kept.

    Use as a context manager; ``pause`` sleeps between calls (0 for as fast as they go);
    ``payloads``, if given, makes the n-th call's payload (n counts every client's calls).
    """

    url: str
    payload: Any = field(default_factory=lambda: {"text": "live"})
    clients: int = 4
    pause: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    payloads: Callable[[int], Any] | None = None
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _calls: int = 0

    def _run(self) -> None:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    payload = self.payload
                    if self.payloads is not None:
                        with self._lock:
                            self._calls += 1
                            payload = self.payloads(self._calls)
                    started = time.perf_counter()
                    response = http.post(self.url, json=payload, headers=self.headers)
                    seconds = time.perf_counter() - started
                    if response.status_code >= 500:
                        with self._lock:
                            self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(type(exc).__name__)
                    time.sleep(0.05)
                    continue
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                answer = Answer(
                    response.status_code, response.headers.get(REVISION_HEADER, ""), body, seconds
                )
                with self._lock:
                    self.answers.append(answer)
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> Self:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Block until at least ``count`` answers were recorded."""
        deadline = time.monotonic() + timeout
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.answers) >= count, f"only {len(self.answers)} answers in {timeout} s"

    def versions(self) -> Counter[str]:
        """Successful answers by the ``version`` field of their body (the echo test bento's)."""
        with self._lock:
            return Counter(
                str(a.body.get("version"))
                for a in self.answers
                if a.status == 200 and isinstance(a.body, dict)
            )

    def by_revision(self) -> Counter[str]:
        with self._lock:
            return Counter(a.revision for a in self.answers)


def wait_for_records(client: Any, deployment: str, monitor: str, at_least: int) -> int:
    """How many records of ``monitor`` the control plane holds, once at least ``at_least``
    (ingest runs every second)."""
    deadline = time.monotonic() + 30
    while True:
        held = len(client.monitoring_records(deployment, monitor, limit=100_000))
        if held >= at_least or time.monotonic() > deadline:
            assert held >= at_least, f"{held} records of {monitor}, expected {at_least}"
            return held
        time.sleep(0.5)


def send_drifted_traffic(client: Any, deployment: str, rows: list[list[float]]) -> int:
    """POST ``rows`` to the example classifier 4 times, once its monitor holds every record
    logged before; return how many records it holds after them."""
    logged = wait_for_records(client, deployment, "classifier", 0)
    url = client.get_deployment(deployment).url
    for _ in range(4):
        httpx.post(f"{url}/predict", json={"features": rows}, timeout=30).raise_for_status()
    return wait_for_records(client, deployment, "classifier", logged + 4 * len(rows))
