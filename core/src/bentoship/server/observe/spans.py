"""Spans in the analytics database: each one once (by trace and span id), kept as long as the
metrics, attributed to the deployment and revision that sent it.

Spans arrive through the OTLP receiver and are written by the one writer thread; reads run on
the readers' cursors. A trace id is 32 hex digits, as in ``traceparent`` and the log lines;
the decimal trace id of a monitor record is the same number.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..endpoint.tracing import RequestSpan
from ..errors import Invalid
from .analytics import insert_columns
from .otlp import SpanRow
from .writer import AnalyticsWriter

if TYPE_CHECKING:
    import duckdb

__all__ = ["Origin", "SpanBuffer", "SpanStore", "trace_id_of"]

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS span_seq;
CREATE TABLE IF NOT EXISTS spans (
    trace_id VARCHAR, span_id VARCHAR, parent_id VARCHAR, name VARCHAR, kind INTEGER,
    service VARCHAR, deployment VARCHAR, revision VARCHAR, start DOUBLE, duration_ms DOUBLE,
    status INTEGER, status_message VARCHAR, attributes VARCHAR, received DOUBLE,
    seq BIGINT DEFAULT nextval('span_seq'), is_root BOOLEAN DEFAULT true,
    PRIMARY KEY (trace_id, span_id)
);
CREATE TABLE IF NOT EXISTS span_exports (endpoint VARCHAR PRIMARY KEY, watermark BIGINT);
"""
COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "service",
    "deployment",
    "revision",
    "start",
    "duration_ms",
    "status",
    "status_message",
    "attributes",
    "received",
)
HEX_TRACE = re.compile(r"[0-9a-f]{32}")
DECIMAL = re.compile(r"[0-9]{1,39}")
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
BATCH_SPANS = 500
CANDIDATES_PER_ROOT = 4
"""Spans stored without their parent in the same batch are root candidates; a search reads
this many candidates per root it answers, then drops those whose parent is stored."""


def trace_id_of(text: str) -> str:
    """A trace id as stored (32 hex digits), from hex (any case, ``0x`` or not) or decimal."""
    value = text.strip().lower().removeprefix("0x")
    if HEX_TRACE.fullmatch(value):
        return value
    if DECIMAL.fullmatch(value) and int(value) < 2**128:
        return f"{int(value):032x}"
    raise Invalid(
        "trace_id: 32 hex digits (as in traceparent and the log lines) or the decimal id of a "
        "monitor record"
    )


@dataclass(frozen=True)
class Origin:
    """Who sent a batch of spans: a revision of a deployment, or an API caller (neither)."""

    deployment: str | None
    revision: str | None


class SpanStore:
    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        *,
        retention: float,
    ) -> None:
        self.cursor = cursor
        self.reader = reader
        self.retention = retention
        cursor.execute(SCHEMA)

    def add(self, spans: Sequence[SpanRow], origin: Origin, now: float | None = None) -> int:
        """Store ``spans`` (run by the writer); a span already stored is kept as it was. How
        many were new."""
        return self.add_each([(span, origin) for span in spans], now)

    def add_each(self, spans: Sequence[tuple[SpanRow, Origin]], now: float | None = None) -> int:
        """Store spans, each with its origin (run by the writer); how many were new."""
        if not spans:
            return 0
        received = time.time() if now is None else now
        rows: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for span, origin in spans:
            for name in COLUMNS[:6]:
                rows[name].append(getattr(span, name))
            rows["deployment"].append(origin.deployment)
            rows["revision"].append(origin.revision)
            for name in COLUMNS[8:13]:
                rows[name].append(getattr(span, name))
            rows["received"].append(received)
        before = self._count()
        self.cursor.execute("BEGIN TRANSACTION")
        try:
            self.cursor.execute(
                "CREATE OR REPLACE TEMP TABLE span_batch AS "
                f"SELECT {', '.join(COLUMNS)} FROM spans LIMIT 0"
            )
            insert_columns(self.cursor, "span_batch", rows)
            self.cursor.execute(
                f"INSERT INTO spans ({', '.join(COLUMNS)}, is_root) SELECT b.*, "
                "b.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM span_batch c WHERE "
                "c.trace_id = b.trace_id AND c.span_id = b.parent_id) "
                "FROM span_batch b "
                "QUALIFY row_number() OVER (PARTITION BY b.trace_id, b.span_id) = 1 "
                "ON CONFLICT DO NOTHING"
            )
            self.cursor.execute("DROP TABLE span_batch")
            self.cursor.execute("COMMIT")
        except BaseException:
            self.cursor.execute("ROLLBACK")
            raise
        return self._count() - before

    def _count(self) -> int:
        row = self.cursor.execute("SELECT count(*) FROM spans").fetchone()
        return int(row[0]) if row else 0

    def roots(
        self,
        deployment: str,
        *,
        since: float,
        until: float,
        min_duration_ms: float | None = None,
        errors_only: bool = False,
        revision: str | None = None,
        text: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The deployment's traces whose root started in the window, newest first: each root
        span (one whose parent is not stored, such as a caller's) with its trace's span count
        and whether any span errored. The newest root candidates are read first (a span
        stored without its parent in the same batch), those whose parent is stored now are
        dropped, and only the remaining traces are counted."""
        where = ["deployment = ?", "is_root", "start >= ?", "start < ?"]
        params: list[Any] = [deployment, since, until]
        if min_duration_ms is not None:
            where.append("duration_ms >= ?")
            params.append(min_duration_ms)
        if revision is not None:
            where.append("revision = ?")
            params.append(revision)
        if text:
            where.append(
                "trace_id IN (SELECT trace_id FROM spans WHERE deployment = ? AND start >= ? "
                "AND (contains(lower(name), ?) OR contains(lower(attributes), ?)))"
            )
            params += [deployment, since - 3600, text.lower(), text.lower()]
        if errors_only:
            where.append(
                "trace_id IN (SELECT trace_id FROM spans WHERE status = 2 AND deployment = ? "
                "AND start >= ?)"
            )
            params += [deployment, since - 3600]
        sql = (
            "WITH candidates AS (SELECT trace_id, span_id, parent_id, name, service, revision, "
            f"start, duration_ms, status FROM spans WHERE {' AND '.join(where)} "
            "ORDER BY start DESC LIMIT ?), "
            "roots AS (SELECT trace_id, span_id, name, service, revision, start, duration_ms, "
            "status FROM candidates c WHERE c.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM "
            "spans p WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_id) "
            "ORDER BY start DESC LIMIT ?) "
            "SELECT r.*, count(t.span_id), bool_or(t.status = 2) FROM roots r "
            "JOIN spans t ON t.trace_id = r.trace_id GROUP BY ALL ORDER BY r.start DESC"
        )
        params.append(limit * CANDIDATES_PER_ROOT)
        found = self.reader().execute(sql, [*params, limit]).fetchall()
        names = ("trace_id", "span_id", "name", "service", "revision", "start", "duration_ms")
        return [
            {
                **dict(zip(names, row[:7], strict=True)),
                "status": STATUS_NAMES.get(row[7], "unset"),
                "spans": row[8],
                "error": bool(row[9]),
            }
            for row in found
        ]

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every span of one trace, by start."""
        rows = (
            self.reader()
            .execute(
                f"SELECT {', '.join(COLUMNS[:13])} FROM spans WHERE trace_id = ? "
                "ORDER BY start, span_id",
                [trace_id],
            )
            .fetchall()
        )
        spans = []
        for row in rows:
            span = dict(zip(COLUMNS[:13], row, strict=True))
            span["status"] = STATUS_NAMES.get(span["status"], "unset")
            span["attributes"] = json.loads(span["attributes"] or "{}")
            spans.append(span)
        return spans

    def after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """The stored spans after ``seq``, in the order they were stored (for onward export);
        each with its ``seq``."""
        rows = (
            self.reader()
            .execute(
                f"SELECT seq, {', '.join(COLUMNS[:13])} FROM spans WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                [seq, limit],
            )
            .fetchall()
        )
        return [dict(zip(("seq", *COLUMNS[:13]), row, strict=True)) for row in rows]

    def export_watermark(self, endpoint: str) -> int:
        row = (
            self.reader()
            .execute("SELECT watermark FROM span_exports WHERE endpoint = ?", [endpoint])
            .fetchone()
        )
        return int(row[0]) if row else 0

    def save_export_watermark(self, endpoint: str, watermark: int) -> None:
        """Run by the writer."""
        self.cursor.execute(
            "INSERT OR REPLACE INTO span_exports VALUES (?, ?)", [endpoint, watermark]
        )

    def prune(self, now: float | None = None) -> None:
        """Forget spans older than the retention (run by the writer)."""
        cutoff = (time.time() if now is None else now) - self.retention
        self.cursor.execute("DELETE FROM spans WHERE start < ?", [cutoff])

    def forget(self, deployment: str) -> None:
        self.cursor.execute("DELETE FROM spans WHERE deployment = ?", [deployment])


class SpanBuffer:
    """The endpoint's request spans, kept on the loop and written in batches by the writer
    (``endpoint.tracing.SpanSink``)."""

    SERVICE = "bentoship-endpoint"
    SERVER_KIND = 2

    def __init__(self, store: SpanStore, writer: AnalyticsWriter) -> None:
        self.store = store
        self.writer = writer
        self._pending: list[tuple[SpanRow, Origin]] = []

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
        row = SpanRow(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_id=span.parent_id,
            name=name,
            kind=self.SERVER_KIND,
            service=self.SERVICE,
            start=span.start,
            duration_ms=duration_ms,
            status=2 if error else 0,
            status_message="",
            attributes=json.dumps(attributes, default=str),
        )
        self._pending.append((row, Origin(deployment, revision)))
        if len(self._pending) >= BATCH_SPANS:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self.writer.post(lambda: self.store.add_each(pending), "writing request spans")

    async def flushed(self) -> None:
        self.flush()
        await self.writer.run(lambda: None)
