"""The one writer of the analytics database: a thread of its own, fed by a queue.

Every write to the DuckDB file (log lines, series, prunes and checkpoints, monitoring ingest,
forgetting a deployment) is a call submitted here and run by this thread, one at a time, in
the order submitted: writes never overlap (DuckDB refuses a CHECKPOINT while another write
transaction is open) and never run on the event loop. The loop submits a call and, where it
needs the result, awaits it (:meth:`AnalyticsWriter.run`). Reads run elsewhere, each thread
on a cursor of its own (:class:`~.analytics.Readers`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["AnalyticsWriter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_Item = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"] | None


class AnalyticsWriter:
    """Runs submitted calls in one thread, in order; started at the first submit."""

    def __init__(self, name: str = "bentoship-analytics-writer") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._closed = False

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``call`` in the writer thread after every call submitted before it."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self.on_writer_thread():  # a write that makes another: run it now, in order
            _run(call, future)
            return future
        with self._starting:
            if self._closed:
                raise RuntimeError("the analytics writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put((call, future))
        return future

    async def run(self, call: Callable[[], T]) -> T:
        """``call``'s result, run by the writer thread; the loop goes on meanwhile."""
        return await asyncio.wrap_future(self.submit(call))

    def post(self, call: Callable[[], T], what: str) -> concurrent.futures.Future[T]:
        """Submit ``call`` with nobody waiting for it: its failure is logged as ``what``."""
        future = self.submit(call)
        future.add_done_callback(lambda done: _log_failure(done, what))
        return future

    def call(self, call: Callable[[], T]) -> T:
        """``call``'s result, run by the writer thread, waited for here (not on the loop)."""
        return self.submit(call).result()

    def on_writer_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def pending(self) -> int:
        """Calls submitted and not yet started (about)."""
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Run every call submitted so far, then stop the thread; later submits fail."""
        with self._starting:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            call, future = item
            _run(call, future)


def _run(call: Callable[[], T], future: concurrent.futures.Future[T]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:  # the caller gets it; the writer goes on
        future.set_exception(exc)
    else:
        future.set_result(result)


def _log_failure(future: concurrent.futures.Future[Any], what: str) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("%s failed", what, exc_info=exc)
