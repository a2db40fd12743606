"""Shadow pairs in the analytics database: what the serving revision and the candidate
answered to each mirrored request, kept as long as the metrics.

Pairs arrive on the event loop (``add``) and are written in batches by the one writer thread
(``flush``); reads flush first, so they see every pair that came before them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...shadow import ShadowPair
from ..rollout.shadow import PairRecord
from .analytics import insert_columns
from .writer import AnalyticsWriter

if TYPE_CHECKING:
    import duckdb

__all__ = ["ShadowPairStore", "pair_of"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow_pairs (
    time DOUBLE, deployment VARCHAR, serving VARCHAR, candidate VARCHAR,
    candidate_uid VARCHAR, request_digest VARCHAR, serving_status INTEGER,
    candidate_status INTEGER, serving_ms DOUBLE, candidate_ms DOUBLE, serving_body VARCHAR,
    candidate_body VARCHAR, serving_digest VARCHAR, candidate_digest VARCHAR
);
"""
COLUMNS = tuple(field.name for field in dataclasses.fields(PairRecord))
BATCH_ROWS = 500
"""Pairs held before a write is submitted without waiting for the next flush."""
REPORT_PAIRS = 100_000
"""The most recent pairs a report reads."""


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def pair_of(row: dict[str, Any]) -> ShadowPair:
    """The comparable pair of a stored row: bodies parsed as JSON (None when not JSON)."""
    return ShadowPair(
        request_digest=row["request_digest"],
        time=row["time"],
        serving=row["serving"],
        candidate=row["candidate"],
        serving_status=row["serving_status"],
        candidate_status=row["candidate_status"],
        serving_ms=row["serving_ms"],
        candidate_ms=row["candidate_ms"],
        serving_body=_json(row["serving_body"]),
        candidate_body=_json(row["candidate_body"]),
        serving_digest=row["serving_digest"],
        candidate_digest=row["candidate_digest"],
    )


class ShadowPairStore:
    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        writer: AnalyticsWriter,
        reader: Callable[[], duckdb.DuckDBPyConnection],
        *,
        retention: float,
    ) -> None:
        self.cursor = cursor
        self.writer = writer
        self.reader = reader
        self.retention = retention
        self._pending: list[PairRecord] = []
        writer.call(lambda: cursor.execute(SCHEMA))

    def add(self, record: PairRecord) -> None:
        """Keep ``record``; it is written at the next flush (or now, with a full batch)."""
        self._pending.append(record)
        if len(self._pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Submit the pairs kept so far to the writer."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        columns = {name: [getattr(r, name) for r in pending] for name in COLUMNS}
        self.writer.post(
            lambda: insert_columns(self.cursor, "shadow_pairs", columns), "writing shadow pairs"
        )

    async def flushed(self) -> None:
        """Every pair added so far is written."""
        self.flush()
        await self.writer.run(lambda: None)

    async def read(
        self,
        deployment: str,
        *,
        candidate_uid: str | None = None,
        since: float | None = None,
        limit: int = REPORT_PAIRS,
        oldest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """``deployment``'s pairs (of one candidate, from ``since``): the first ``limit`` from
        ``since``, or with ``oldest_first=False`` the last ``limit``, in time order."""
        await self.flushed()
        query = self._query(deployment, candidate_uid, since, limit, oldest_first)
        return await asyncio.to_thread(query)

    def _query(
        self,
        deployment: str,
        candidate_uid: str | None,
        since: float | None,
        limit: int,
        oldest_first: bool,
    ) -> Callable[[], list[dict[str, Any]]]:
        where, params = ["deployment = ?"], list[Any]([deployment])
        if candidate_uid is not None:
            where.append("candidate_uid = ?")
            params.append(candidate_uid)
        if since is not None:
            where.append("time > ?")
            params.append(since)
        order = "ASC" if oldest_first else "DESC"
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM shadow_pairs WHERE {' AND '.join(where)} "
            f"ORDER BY time {order} LIMIT {int(limit)}"
        )

        def query() -> list[dict[str, Any]]:
            rows = self.reader().execute(sql, params).fetchall()
            found = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
            return found if oldest_first else found[::-1]

        return query

    async def rows(self, deployment: str, since: float, limit: int) -> list[dict[str, Any]]:
        """``deployment``'s first ``limit`` pairs after ``since``, as stored."""
        return await self.read(deployment, since=since, limit=limit)

    async def count(self, deployment: str, candidate_uid: str, since: float) -> int:
        """How many pairs of the candidate were stored after ``since``."""
        await self.flushed()
        sql = (
            "SELECT count(*) FROM shadow_pairs WHERE deployment = ? AND candidate_uid = ? "
            "AND time > ?"
        )

        def query() -> int:
            row = self.reader().execute(sql, [deployment, candidate_uid, since]).fetchone()
            return int(row[0]) if row else 0

        return await asyncio.to_thread(query)

    async def pairs(self, deployment: str, candidate_uid: str, since: float) -> list[ShadowPair]:
        """The candidate's most recent pairs after ``since`` (at most REPORT_PAIRS), read and
        parsed off the loop."""
        await self.flushed()
        query = self._query(deployment, candidate_uid, since, REPORT_PAIRS, False)
        return await asyncio.to_thread(lambda: [pair_of(row) for row in query()])

    def prune(self, now: float | None = None) -> None:
        """Forget pairs older than the retention (run by the writer)."""
        cutoff = (time.time() if now is None else now) - self.retention
        self.cursor.execute("DELETE FROM shadow_pairs WHERE time < ?", [cutoff])

    def forget(self, deployment: str) -> None:
        """Forget ``deployment``'s pairs (run by the writer, after a flush on the loop)."""
        self.cursor.execute("DELETE FROM shadow_pairs WHERE deployment = ?", [deployment])
