"""Spans on their way to the span store: the endpoint's request spans, kept on the loop as
columns, and the batches the OTLP receiver decoded, stored by the writer thread in one append;
and each revision's first request, recorded as a span of the deploy that made the revision."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import time
from dataclasses import dataclass, field

from ..endpoint.tracing import DeployParent, RequestSpan, SpanIds, Tracing
from .otlp import SpanColumns
from .spans import Origin, SpanStore
from .writer import AnalyticsWriter

__all__ = ["FIRST_REQUEST", "SpanBuffer"]

BATCH_SPANS = 500
FIRST_REQUEST = "first request"
"""The span of a revision's first request, in the trace of the deploy that made it."""
INTERNAL_KIND, SERVER_KIND = 1, 2


@dataclass
class _Batch:
    """Spans to store in one append, each with its deployment and revision."""

    columns: SpanColumns = field(default_factory=SpanColumns)
    deployments: list[str | None] = field(default_factory=list)
    revisions: list[str | None] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    """Revisions (uids) whose first request is among the spans."""
    fresh: bool = True
    """Made here, with new ids: none can be stored already."""

    def extend(self, other: _Batch) -> None:
        self.columns.extend(other.columns)
        self.deployments += other.deployments
        self.revisions += other.revisions
        self.served += other.served
        self.fresh = self.fresh and other.fresh


class SpanBuffer:
    """Where spans wait to be stored: the endpoint's request spans, kept on the loop as
    columns, and the batches the OTLP receiver decoded. The writer stores whatever waits in
    one append (a transaction costs about a millisecond, whatever its size): a received batch
    takes the endpoint's waiting spans along, and the endpoint's spans are written on their own
    once ``BATCH_SPANS`` wait or the oldest waited ``FLUSH_SECONDS``. Each revision's first
    request is recorded too, as a span of the deploy that made the revision, when that deploy
    sent its trace context (``endpoint.tracing.SpanSink``)."""

    SERVICE = "bentoship-endpoint"
    SERVER_KIND = SERVER_KIND
    FLUSH_SECONDS = 2.0

    def __init__(
        self, store: SpanStore, writer: AnalyticsWriter, tracing: Tracing | None = None
    ) -> None:
        self.store = store
        self.writer = writer
        self.tracing = tracing
        self.ids = SpanIds()
        self._batch = _Batch()
        self._since = 0.0
        """When the oldest waiting endpoint span was added (monotonic seconds)."""
        self._queued: collections.deque[tuple[_Batch, concurrent.futures.Future[None] | None]] = (
            collections.deque()
        )
        if tracing is not None:
            tracing.sink = self
            for parent in store.awaited_first_requests():
                tracing.await_first(parent)

    def await_first(self, parent: DeployParent) -> None:
        """Record the first request that ``parent.uid`` serves as a span under ``parent`` (a
        revision awaited already keeps its first deploy)."""
        if self.tracing is not None and self.tracing.await_first(parent):
            self.writer.post(
                lambda: self.store.note_first_request(parent), "noting a deploy's trace"
            )

    def _add(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        name: str,
        kind: int,
        start: float,
        duration_ms: float,
        error: bool,
        attributes: str,
        deployment: str,
        revision: str | None,
    ) -> None:
        batch = self._batch
        columns = batch.columns
        if not columns.trace_id:
            self._since = time.monotonic()
        columns.trace_id.append(trace_id)
        columns.span_id.append(span_id)
        columns.parent_id.append(parent_id)
        columns.name.append(name)
        columns.kind.append(kind)
        columns.service.append(self.SERVICE)
        columns.start.append(start)
        columns.duration_ms.append(duration_ms)
        columns.status.append(2 if error else 0)
        columns.status_message.append("")
        columns.attributes.append(attributes)
        batch.deployments.append(deployment)
        batch.revisions.append(revision)

    def request_span(
        self,
        span: RequestSpan,
        name: str,
        deployment: str,
        revision: str | None,
        attributes: dict[str, object],
        duration_ms: float,
        error: bool,
    ) -> None:
        self._add(
            span.trace_id,
            span.span_id,
            span.parent_id,
            name,
            SERVER_KIND,
            span.start,
            duration_ms,
            error,
            json.dumps(attributes, default=str),
            deployment,
            revision,
        )
        first = span.first
        if first is not None:
            about = {
                **attributes,
                "bentoship.revision": first.revision,
                "bentoship.request.trace_id": span.trace_id,
                "bentoship.request.span_id": span.span_id,
            }
            self._add(
                first.trace_id,
                self.ids.span_id(),
                first.span_id,
                FIRST_REQUEST,
                INTERNAL_KIND,
                span.start,
                duration_ms,
                error,
                json.dumps(about, default=str),
                deployment,
                first.revision,
            )
            self._batch.served.append(first.uid)
        if len(self._batch.columns) >= BATCH_SPANS:
            self.flush()

    async def received(self, columns: SpanColumns, origin: Origin) -> None:
        """Store spans the receiver decoded, with the endpoint's waiting spans; returns once
        they are stored (a span stored already is skipped)."""
        count = len(columns)
        batch = _Batch(columns, [origin.deployment] * count, [origin.revision] * count)
        batch.fresh = False
        waiting, self._batch = self._batch, _Batch()
        waiting.extend(batch)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queued.append((waiting, done))
        self.writer.post(self._store_queued, "storing spans")
        await asyncio.wrap_future(done)

    def flush_due(self) -> None:
        """Write the endpoint's waiting spans once the oldest waited ``FLUSH_SECONDS``."""
        if self._batch.columns.trace_id and time.monotonic() - self._since >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the endpoint's waiting spans (not waited for)."""
        if not len(self._batch.columns):
            return
        waiting, self._batch = self._batch, _Batch()
        self._queued.append((waiting, None))
        self.writer.post(self._store_queued, "writing request spans")

    def _store_queued(self) -> None:
        """Store every queued batch in one append (run by the writer); those queued while an
        append runs go in the next."""
        taken: list[tuple[_Batch, concurrent.futures.Future[None] | None]] = []
        while self._queued:
            taken.append(self._queued.popleft())
        if not taken:
            return
        merged = _Batch()
        for batch, _ in taken:
            merged.extend(batch)
        try:
            self.store.insert(
                merged.columns, merged.deployments, merged.revisions, fresh=merged.fresh
            )
            if merged.served:
                self.store.first_requests_served(merged.served)
        except BaseException as exc:
            for _, done in taken:
                if done is not None:
                    done.set_exception(exc)
            raise
        for _, done in taken:
            if done is not None:
                done.set_result(None)

    async def flushed(self) -> None:
        self.flush()
        await self.writer.run(lambda: None)
