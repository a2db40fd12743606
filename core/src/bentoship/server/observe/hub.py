"""The control plane's observability, started and stopped with it: one analytics database,
the metrics store and its sampler, the log store and its tailer, the event log.

Nothing here blocks the event loop: every write to the database (log lines, series, prunes,
monitoring ingest, forgetting a deployment) runs in the one writer thread, in order, and the
log files are read there too; reads run in worker threads, each on its own cursor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..rollout.runner import stdout_path
from .analytics import Readers, open_analytics, uploads_of
from .feedback import FeedbackStore
from .log_tail import LogTailer
from .logs import LogStore
from .monitoring import MonitoringStore, Origin
from .sampler import Sampler
from .series import SeriesStore
from .shadow_pairs import ShadowPairStore
from .span_buffer import SpanBuffer
from .span_export import SpanExport
from .spans import SpanStore
from .writer import AnalyticsWriter

if TYPE_CHECKING:
    import duckdb

    from ..rollout.controller import Controller
    from ..settings import ServerSettings

__all__ = ["Observability"]

log = logging.getLogger(__name__)
LOG_POLL_SECONDS = 0.5
MONITORING_POLL_SECONDS = 1.0
MONITORING_PRUNE_SECONDS = 60.0
PAIRS_FLUSH_SECONDS = 0.5


@dataclass
class Observability:
    series: SeriesStore
    sampler: Sampler
    logs: LogStore
    tailer: LogTailer
    database: duckdb.DuckDBPyConnection
    controller: Controller
    logs_dir: Path
    monitoring: MonitoringStore
    monitoring_root: Path
    writer: AnalyticsWriter
    readers: Readers
    shadow_pairs: ShadowPairStore
    feedback: FeedbackStore
    spans: SpanStore
    request_spans: SpanBuffer
    span_export: SpanExport | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    def open(cls, settings: ServerSettings, controller: Controller) -> Observability:
        path = settings.data_dir / "observe.duckdb"
        database = open_analytics(path)
        writer = AnalyticsWriter()
        readers = Readers(database)
        written = database.cursor()  # the writer thread's: every store writes on it
        series = SeriesStore(
            written,
            retention=settings.metrics_retention,
            max_bytes=settings.metrics_max_bytes,
            path=path,
            reader=readers,
        )
        logs = LogStore(
            written,
            max_lines_per_revision=settings.log_lines_per_revision,
            files_dir=settings.logs_dir,
            reader=readers,
        )
        tailer = LogTailer(logs, settings.data_dir / "log-offsets.json", writer=writer)
        sampler = Sampler(controller, series, interval=settings.metrics_interval, writer=writer)
        monitoring = MonitoringStore(
            written, retention=settings.monitoring_retention, reader=readers
        )
        shadow_pairs = ShadowPairStore(
            written, writer, readers, retention=settings.metrics_retention
        )
        controller.shadows.pairs = shadow_pairs
        feedback = writer.call(lambda: FeedbackStore(written, readers, uploads=uploads_of(path)))
        spans = writer.call(
            lambda: SpanStore(written, readers, retention=settings.metrics_retention)
        )
        request_spans = SpanBuffer(spans, writer, controller.backends.tracing)
        export = None
        if settings.otlp_endpoint:
            headers = dict(settings.otlp_headers)
            export = SpanExport(spans, writer, settings.otlp_endpoint, headers)
        return cls(
            series,
            sampler,
            logs,
            tailer,
            database,
            controller,
            settings.logs_dir,
            monitoring,
            settings.data_dir / "monitoring",
            writer,
            readers,
            shadow_pairs,
            feedback,
            spans,
            request_spans,
            export,
        )

    def start(self, *, sampling: bool = True) -> None:
        """Read the revisions' logs; with ``sampling``, sample metrics every 10 s."""
        self._tasks = [
            asyncio.create_task(self._read_logs()),
            asyncio.create_task(self._ingest_monitoring_loop()),
            asyncio.create_task(self._flush_pairs()),
        ]
        if self.span_export is not None:
            self._tasks.append(asyncio.create_task(self.span_export.run()))
        if sampling:
            self._tasks.append(asyncio.create_task(self.sampler.run()))

    def watch_logs(self) -> None:
        """Read every revision's log files (``<logs>/<deployment>/r3-<uid>.log`` and its
        ``.stdout.log``), found on disk: a revision that failed at once is read too. Lists a
        folder: the loop calls :meth:`read_logs` instead."""
        for stderr in self.logs_dir.glob("*/r*-*.log"):
            if stderr.name.endswith(".stdout.log"):
                continue
            name = stderr.name.split("-", 1)[0]
            self.tailer.watch(stderr.parent.name, name, stderr, stdout_path(stderr))

    def forget(self, deployment: str) -> None:
        """A deleted deployment: its files are no longer read, its lines and series go (in the
        writer's thread, after every write submitted before; not waited for)."""
        self.forgetting(deployment)

    def forgetting(self, deployment: str) -> concurrent.futures.Future[None]:
        """:meth:`forget`, with its future (to wait for it)."""

        def forget() -> None:
            self.tailer.unwatch(deployment)
            self.logs.forget(deployment)
            self.series.forget(deployment)
            self.monitoring.forget(deployment)
            self.shadow_pairs.forget(deployment)
            self.feedback.forget(deployment)
            self.spans.forget(deployment)

        self.shadow_pairs.flush()

        return self.writer.post(forget, f"forgetting deployment {deployment}")

    async def read_logs(self) -> int:
        """Watch the revisions' log files found on disk, and store their new lines; how many
        (in the writer's thread)."""
        return await self.writer.run(self._read_logs_now)

    def _read_logs_now(self) -> int:
        self.watch_logs()
        return self.tailer.poll_now()

    async def _read_logs(self, interval: float = LOG_POLL_SECONDS) -> None:
        while True:
            try:
                await self.read_logs()
            except Exception:
                log.exception("reading the revisions' log files failed")
            await asyncio.sleep(interval)

    def ingest_monitoring(self) -> int:
        """Store the new records of every revision's monitors (``<data>/monitoring/<deployment>
        /<revision uid>/``); how many. Run by the writer's thread, one ingest at a time; this
        waits for it (call it off the loop, or await :meth:`ingest`)."""
        return self.writer.call(self._ingest_monitoring_folders)

    async def ingest(self) -> int:
        """:meth:`ingest_monitoring`, awaited on the loop."""
        return await self.writer.run(self._ingest_monitoring_folders)

    def _ingest_monitoring_folders(self) -> int:
        stored = 0
        for folder in sorted(self.monitoring_root.glob("*/*")):
            revision = self.controller.store.get_revision(folder.name)
            if revision is None or revision.deployment != folder.parent.name:
                continue
            origin = Origin(revision.deployment, f"r{revision.seq}", revision.bento)
            stored += self.monitoring.ingest(folder, origin)
        return stored

    async def _ingest_monitoring_loop(self) -> None:
        pruned = time.monotonic()
        while True:
            try:
                await self.ingest()
                if time.monotonic() - pruned > MONITORING_PRUNE_SECONDS:
                    pruned = time.monotonic()
                    await self.writer.run(self.monitoring.prune)
                    await self.writer.run(self.shadow_pairs.prune)
                    await self.writer.run(self.spans.prune)
                    await self.writer.run(lambda: self.feedback.prune(self.monitoring.monitors()))
            except Exception:
                log.exception("ingesting the revisions' monitoring records failed")
            await asyncio.sleep(MONITORING_POLL_SECONDS)

    async def _flush_pairs(self) -> None:
        while True:
            self.shadow_pairs.flush()
            self.request_spans.flush_due()
            await asyncio.sleep(PAIRS_FLUSH_SECONDS)

    async def close(self) -> None:
        """Stop the tasks, read the logs' last lines and write the last counts; then the writer
        runs what is queued and stops, and the database closes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.tailer.poll()
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(self.sampler.flush_traffic())
        self.shadow_pairs.flush()
        self.request_spans.flush()
        self.sampler.gpu.close()
        await asyncio.to_thread(self.writer.close)
        self.logs.close()
        self.readers.close()
        self.database.close()
