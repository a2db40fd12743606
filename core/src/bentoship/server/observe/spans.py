"""Spans in the analytics database: each one once (by trace and span id), kept as long as the
metrics, attributed to the deployment and revision that sent it.

Spans arrive through the OTLP receiver, or from the endpoint (``observe.span_buffer``), and are
written by the one writer thread, a batch as one columnar append; reads run on the readers'
cursors. There is no index: a batch is checked against the spans stored with a start in its own
range (a repeat has the same start, and the start's zone maps skip the rest of the table). A
trace id is 32 hex digits, as in ``traceparent`` and the log lines; the decimal trace id of a
monitor record is the same number.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..endpoint.tracing import DeployParent
from ..errors import Invalid
from .otlp import SPAN_FIELDS, SpanColumns, SpanRow

if TYPE_CHECKING:
    import duckdb

__all__ = ["Origin", "SpanStore", "trace_id_of"]

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS span_seq;
CREATE TABLE IF NOT EXISTS spans (
    trace_id VARCHAR, span_id VARCHAR, parent_id VARCHAR, name VARCHAR, kind INTEGER,
    service VARCHAR, deployment VARCHAR, revision VARCHAR, start DOUBLE, duration_ms DOUBLE,
    status INTEGER, status_message VARCHAR, attributes VARCHAR, received DOUBLE,
    seq BIGINT DEFAULT nextval('span_seq'), is_root BOOLEAN DEFAULT true
);
CREATE TABLE IF NOT EXISTS span_exports (endpoint VARCHAR PRIMARY KEY, watermark BIGINT);
CREATE TABLE IF NOT EXISTS first_requests (
    revision VARCHAR, deployment VARCHAR, name VARCHAR, trace_id VARCHAR, span_id VARCHAR,
    noted DOUBLE
);
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
INSERTED = (*SPAN_FIELDS, "deployment", "revision", "is_root")
BATCH_SQL = ", ".join(f"unnest(${n}) AS {name}" for n, name in enumerate(INSERTED, 1))
INSERT_SQL = (
    f"INSERT INTO spans ({', '.join(INSERTED)}, received) "
    f"SELECT *, ${len(INSERTED) + 1} FROM (SELECT {BATCH_SQL}) b{{unstored}}"
)
UNSTORED = (
    " WHERE NOT EXISTS (SELECT 1 FROM spans s WHERE s.start BETWEEN "
    f"${len(INSERTED) + 2} AND ${len(INSERTED) + 3} AND s.trace_id = b.trace_id AND "
    "s.span_id = b.span_id)"
)
HEX_TRACE = re.compile(r"[0-9a-f]{32}")
DECIMAL = re.compile(r"[0-9]{1,39}")
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
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
        _drop_primary_key(cursor)

    def add(
        self, spans: Sequence[SpanRow] | SpanColumns, origin: Origin, now: float | None = None
    ) -> int:
        """Store ``spans`` of ``origin`` (run by the writer); a span already stored is kept as
        it was. How many were new."""
        columns = spans if isinstance(spans, SpanColumns) else SpanColumns.of(spans)
        count = len(columns)
        return self.insert(columns, [origin.deployment] * count, [origin.revision] * count, now)

    def insert(
        self,
        columns: SpanColumns,
        deployments: Sequence[str | None],
        revisions: Sequence[str | None],
        now: float | None = None,
        *,
        fresh: bool = False,
    ) -> int:
        """Store spans, each with its deployment and revision, in one append (run by the
        writer); how many were new. A span whose trace and span id are stored already (a
        retried export) is skipped, unless ``fresh`` says that none can be (spans made here,
        with new ids); so is a span given twice. A span whose parent is not among them is a
        root candidate."""
        count = len(columns)
        if not count:
            return 0
        trace_ids, span_ids = columns.trace_id, columns.span_id
        keys = set(zip(trace_ids, span_ids, strict=True))
        if len(keys) < count:
            return self.insert(*_first_of_each(columns, deployments, revisions), now)
        roots = [
            parent is None or (trace, parent) not in keys
            for trace, parent in zip(trace_ids, columns.parent_id, strict=True)
        ]
        params: list[Any] = [*columns.lists(), list(deployments), list(revisions), roots]
        params.append(time.time() if now is None else now)
        if fresh:
            sql = INSERT_SQL.format(unstored="")
        else:
            sql = INSERT_SQL.format(unstored=UNSTORED)
            params += [min(columns.start), max(columns.start)]
        [(count,)] = self.cursor.execute(sql, params).fetchall()
        return int(count)

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
        slowest: bool = False,
    ) -> list[dict[str, Any]]:
        """The deployment's traces whose root started in the window, newest first (or with
        ``slowest``, the longest first): each root span (one whose parent is not stored, such
        as a caller's) with its trace's span count and whether any span errored. The first
        root candidates in that order are read first (a span stored without its parent in the
        same batch), those whose parent is stored now are dropped, and only the remaining
        traces are counted."""
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
        order = "duration_ms DESC, start DESC" if slowest else "start DESC"
        final = "r.duration_ms DESC, r.start DESC" if slowest else "r.start DESC"
        sql = (
            "WITH candidates AS MATERIALIZED (SELECT trace_id, span_id, parent_id, name, "
            f"service, revision, start, duration_ms, status FROM spans WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT ?), "
            "traces AS MATERIALIZED (SELECT trace_id, span_id, status FROM spans WHERE trace_id IN "
            "(SELECT trace_id FROM candidates)), "
            "roots AS (SELECT trace_id, span_id, name, service, revision, start, duration_ms, "
            "status FROM candidates c WHERE c.parent_id IS NULL OR NOT EXISTS (SELECT 1 FROM "
            "traces p WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_id) "
            f"ORDER BY {order} LIMIT ?) "
            "SELECT r.*, count(t.span_id), bool_or(t.status = 2) FROM roots r "
            f"JOIN traces t ON t.trace_id = r.trace_id GROUP BY ALL ORDER BY {final}"
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

    def note_first_request(self, parent: DeployParent, now: float | None = None) -> None:
        """Keep ``parent`` until its revision's first request is stored (run by the writer)."""
        self.cursor.execute(
            "INSERT INTO first_requests VALUES (?, ?, ?, ?, ?, ?)",
            [
                parent.uid,
                parent.deployment,
                parent.revision,
                parent.trace_id,
                parent.span_id,
                time.time() if now is None else now,
            ],
        )

    def awaited_first_requests(self) -> list[DeployParent]:
        """The deploys whose revision has not served a request yet, oldest first."""
        rows = (
            self.reader()
            .execute(
                "SELECT trace_id, span_id, deployment, name, revision FROM first_requests "
                "ORDER BY noted"
            )
            .fetchall()
        )
        return [DeployParent(*row) for row in rows]

    def first_requests_served(self, revisions: list[str]) -> None:
        """These revisions' first requests are stored (run by the writer)."""
        self.cursor.execute(
            "DELETE FROM first_requests WHERE list_contains(?, revision)", [revisions]
        )

    def prune(self, now: float | None = None) -> None:
        """Forget spans older than the retention (run by the writer)."""
        cutoff = (time.time() if now is None else now) - self.retention
        self.cursor.execute("DELETE FROM spans WHERE start < ?", [cutoff])
        self.cursor.execute("DELETE FROM first_requests WHERE noted < ?", [cutoff])

    def forget(self, deployment: str) -> None:
        self.cursor.execute("DELETE FROM spans WHERE deployment = ?", [deployment])
        self.cursor.execute("DELETE FROM first_requests WHERE deployment = ?", [deployment])


def _first_of_each(
    columns: SpanColumns, deployments: Sequence[str | None], revisions: Sequence[str | None]
) -> tuple[SpanColumns, list[str | None], list[str | None]]:
    """The spans without repeats: the first of each trace and span id."""
    seen: set[tuple[str, str]] = set()
    kept = SpanColumns()
    kept_deployments, kept_revisions = [], []
    for row, deployment, revision in zip(columns.rows(), deployments, revisions, strict=True):
        if (row.trace_id, row.span_id) not in seen:
            seen.add((row.trace_id, row.span_id))
            kept.append(row)
            kept_deployments.append(deployment)
            kept_revisions.append(revision)
    return kept, kept_deployments, kept_revisions


def _drop_primary_key(cursor: duckdb.DuckDBPyConnection) -> None:
    """A ``spans`` table made with a primary key (each insert paid for its index) is made
    again without it."""
    found = cursor.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'spans' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    if not found[0][0]:
        return
    cursor.execute("BEGIN TRANSACTION")
    try:
        cursor.execute("ALTER TABLE spans RENAME TO spans_keyed")
        cursor.execute(SCHEMA)
        cursor.execute("INSERT INTO spans SELECT * FROM spans_keyed")
        cursor.execute("DROP TABLE spans_keyed")
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
