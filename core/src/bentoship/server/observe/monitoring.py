"""What services log with ``bentoml.monitor``: collected from each revision's files into DuckDB.

Each revision's ``bentoml serve`` writes its monitors under a folder of its own
(:func:`~..rollout.monitoring_env.monitoring_dir`), set through bentoml's config, not by
editing the bento: ``<monitor>/data/data.<worker>.log`` (JSON lines, rotated by size) and
``<monitor>/schema/schema.<worker>.log``.

Every record is stored once, in a table per monitor with the deployment, revision, bento and
ingest time beside it. A file is known by its inode and the digest of its first line, so a
rename by rotation keeps its place; its offset is committed in the same transaction as its
rows, so a crash in the middle of an ingest (even ``kill -9``) repeats or loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "MonitoringStore",
    "table_of",
]

log = logging.getLogger(__name__)

READ_BYTES_PER_PASS = 8 * 1024 * 1024
"""At most this much of one file is read in one pass (the rest at the next)."""
PRESERVED = ("timestamp", "request_id", "trace_id")
MONITOR_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS monitor_seq;
CREATE TABLE IF NOT EXISTS monitors (
    name VARCHAR PRIMARY KEY, table_name VARCHAR, schema VARCHAR
);
CREATE TABLE IF NOT EXISTS monitor_files (
    deployment VARCHAR, revision VARCHAR, monitor VARCHAR, inode BIGINT, head VARCHAR,
    "offset" BIGINT, PRIMARY KEY (deployment, revision, monitor, inode, head)
);
"""


def table_of(monitor: str) -> str:
    """The table of a monitor's records: ``monitor_`` and its name made an identifier."""
    return "monitor_" + re.sub(r"[^a-z0-9_]", "_", monitor.lower())


@dataclass(frozen=True)
class Origin:
    """Whose records a folder holds."""

    deployment: str
    revision: str
    bento: str


class MonitoringStore:
    def __init__(self, cursor: duckdb.DuckDBPyConnection, *, retention: float = 7 * 86400) -> None:
        self.cursor = cursor
        self.retention = retention
        self._tables: set[str] = set()
        cursor.execute(SCHEMA)

    def monitors(self) -> dict[str, str]:
        """Each monitor's name and table."""
        return dict(self.cursor.execute("SELECT name, table_name FROM monitors").fetchall())

    def ingest(self, directory: Path, origin: Origin) -> int:
        """Store the complete new records of every monitor under ``directory``; how many."""
        stored = 0
        if not directory.is_dir():
            return 0
        for monitor_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            monitor = monitor_dir.name
            if not MONITOR_NAME.fullmatch(monitor):
                continue
            self._schema(monitor, monitor_dir / "schema")
            for path in sorted((monitor_dir / "data").glob("data.*.log*")):
                stored += self._ingest_file(path, monitor, origin)
        return stored

    def _ensure_table(self, monitor: str) -> str:
        table = table_of(monitor)
        if monitor in self._tables:
            return table
        self.cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (seq BIGINT DEFAULT nextval('monitor_seq'), "
            "deployment VARCHAR, revision VARCHAR, "
            "bento VARCHAR, ingested_at DOUBLE, timestamp VARCHAR, request_id VARCHAR, "
            "trace_id VARCHAR, record VARCHAR)"
        )
        self.cursor.execute(
            "INSERT INTO monitors VALUES (?, ?, NULL) ON CONFLICT DO NOTHING", [monitor, table]
        )
        self._tables.add(monitor)
        return table

    def _schema(self, monitor: str, schema_dir: Path) -> None:
        newest = max(schema_dir.glob("schema.*.log*"), default=None, key=_modified)
        if newest is None:
            return
        lines = [line for line in newest.read_text(errors="replace").splitlines() if line]
        if lines:
            self._ensure_table(monitor)
            self.cursor.execute(
                "UPDATE monitors SET schema = ? WHERE name = ?", [lines[-1], monitor]
            )

    def _ingest_file(self, path: Path, monitor: str, origin: Origin) -> int:
        try:
            handle = path.open("rb")
        except FileNotFoundError:  # rotated away or deleted since listed
            return 0
        with handle:
            first = handle.readline()
            if not first.endswith(b"\n"):
                return 0
            identity = [origin.deployment, origin.revision, monitor, _inode(handle)]
            head = hashlib.sha256(first).hexdigest()[:32]
            found = self.cursor.execute(
                'SELECT "offset" FROM monitor_files WHERE deployment = ? AND revision = ? '
                "AND monitor = ? AND inode = ? AND head = ?",
                [*identity, head],
            ).fetchone()
            offset = int(found[0]) if found else 0
            handle.seek(offset)
            chunk = handle.read(READ_BYTES_PER_PASS)
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            return 0
        text = chunk[:end].decode(errors="replace")
        table = self._ensure_table(monitor)
        self.cursor.execute("BEGIN TRANSACTION")
        try:
            stored = self.cursor.execute(
                f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, "
                "request_id, trace_id, record) "
                "SELECT $1, $2, $3, $4, line ->> 'timestamp', line ->> 'request_id', "
                "line ->> 'trace_id', line FROM unnest(string_split($5, chr(10))) AS lines(line) "
                "WHERE starts_with(line, '{') AND json_valid(line)",
                [origin.deployment, origin.revision, origin.bento, time.time(), text],
            ).fetchone()
            self.cursor.execute(
                "INSERT OR REPLACE INTO monitor_files VALUES (?, ?, ?, ?, ?, ?)",
                [*identity, head, offset + end],
            )
            self.cursor.execute("COMMIT")
        except BaseException:
            self.cursor.execute("ROLLBACK")
            raise
        count = int(stored[0]) if stored else 0
        lines = text.count("\n") - text.count("\n\n")
        if count < lines:
            log.warning(
                "monitoring: %d lines that are not JSON objects were skipped", lines - count
            )
        return count

    def records(
        self,
        deployment: str,
        monitor: str,
        *,
        since: float | None = None,
        until: float | None = None,
        revision: str | None = None,
        after: int | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` records of a monitor, oldest first, each with its origin and
        its ``seq`` (rising in ingest order); with ``after``, the oldest ``limit`` of those
        whose seq is above it (to page through them)."""
        table = self.monitors().get(monitor)
        if table is None:
            return []
        where: list[str] = ["deployment = ?"]
        params: list[Any] = [deployment]
        for clause, value in (
            ("ingested_at >= ?", since),
            ("ingested_at < ?", until),
            ("revision = ?", revision),
            ("seq > ?", after),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        newest = "ASC" if after is not None else "DESC"
        rows = self.cursor.execute(
            f"SELECT * FROM (SELECT seq, revision, bento, ingested_at, record FROM {table} "
            f"WHERE {' AND '.join(where)} ORDER BY seq {newest} LIMIT ?) ORDER BY seq",
            [*params, limit],
        ).fetchall()
        return [
            {"seq": seq, "revision": r, "bento": b, "ingested_at": at, **json.loads(record)}
            for seq, r, b, at, record in rows
        ]

    def count(self, deployment: str, monitor: str) -> int:
        table = self.monitors().get(monitor)
        if table is None:
            return 0
        found = self.cursor.execute(
            f"SELECT count(*) FROM {table} WHERE deployment = ?", [deployment]
        ).fetchone()
        return int(found[0]) if found else 0

    def per_minute(self, deployment: str, monitor: str, since: float) -> list[tuple[int, int]]:
        """How many records were ingested in each minute from ``since``: (minute start, count)."""
        table = self.monitors().get(monitor)
        if table is None:
            return []
        rows = self.cursor.execute(
            f"SELECT (ingested_at // 60 * 60)::BIGINT AS minute, count(*) FROM {table} "
            "WHERE deployment = ? AND ingested_at >= ? GROUP BY minute ORDER BY minute",
            [deployment, since],
        ).fetchall()
        return [(int(minute), int(count)) for minute, count in rows]

    def prune(self, now: float | None = None) -> None:
        """Forget records ingested before the retention."""
        cutoff = (time.time() if now is None else now) - self.retention
        for table in self.monitors().values():
            self.cursor.execute(f"DELETE FROM {table} WHERE ingested_at < ?", [cutoff])

    def forget(self, deployment: str) -> None:
        for table in self.monitors().values():
            self.cursor.execute(f"DELETE FROM {table} WHERE deployment = ?", [deployment])
        self.cursor.execute("DELETE FROM monitor_files WHERE deployment = ?", [deployment])


def _inode(handle: Any) -> int:
    import os

    return int(os.fstat(handle.fileno()).st_ino)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
