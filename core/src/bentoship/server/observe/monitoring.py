"""What services log with ``bentoml.monitor``: collected from each revision's files into DuckDB.

Each revision's ``bentoml serve`` writes its monitors under a folder of its own
(:func:`~..rollout.monitoring_env.monitoring_dir`), set through bentoml's config, not by
editing the bento: ``<monitor>/data/data.<worker>.log`` (JSON lines, rotated by size) and
``<monitor>/schema/schema.<worker>.log``.

Every record is stored once, in a table per monitor with the deployment, revision, bento and
ingest time beside it. A file is known by its inode and the digest of its first line, so a
rename by rotation keeps its place; its offset is committed in the same transaction as its
rows, so a crash in the middle of an ingest (even ``kill -9``) repeats or loses nothing.

Writes (ingest, pruning, forgetting) and reads use a cursor each, one call at a time on each:
a read answers while an ingest's transaction is open. In the control plane the writes all run
in the analytics writer's thread, and each reading thread has a cursor of its own
(``reader``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
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

READ_BYTES_PER_PASS = 32 * 1024 * 1024
"""About this much of one monitor's files is read in one pass (the rest at the next)."""
PRESERVED = ("timestamp", "request_id", "trace_id")
PRESERVED_PATHS = "[" + ", ".join(f"'{name}'" for name in PRESERVED) + "]"
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
    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        retention: float = 7 * 86400,
        reader: Callable[[], duckdb.DuckDBPyConnection] | None = None,
    ) -> None:
        self.cursor = cursor
        self.reader = cursor.cursor()
        self._readers = reader
        self.retention = retention
        self._tables: set[str] = set()
        self._writing = threading.Lock()
        self._reading = threading.Lock()
        cursor.execute(SCHEMA)

    def _read(self, sql: str, params: list[Any] | None = None) -> list[Any]:
        if self._readers is not None:
            return self._readers().execute(sql, params).fetchall()
        with self._reading:
            return self.reader.execute(sql, params).fetchall()

    def monitors(self) -> dict[str, str]:
        """Each monitor's name and table."""
        return dict(self._read("SELECT name, table_name FROM monitors"))

    def columns(self, monitor: str) -> list[dict[str, Any]]:
        """The columns the monitor's schema declares (name, role, type), newest schema."""
        found = self._read("SELECT schema FROM monitors WHERE name = ?", [monitor])
        if not found or not found[0][0]:
            return []
        try:
            columns = json.loads(found[0][0]).get("columns") or []
        except (ValueError, AttributeError):
            return []
        return [c for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str)]

    def ingest(self, directory: Path, origin: Origin) -> int:
        """Store the complete new records of every monitor under ``directory``; how many."""
        if not directory.is_dir():
            return 0
        with self._writing:
            return self._ingest(directory, origin)

    def _ingest(self, directory: Path, origin: Origin) -> int:
        stored = 0
        for monitor_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            monitor = monitor_dir.name
            if not MONITOR_NAME.fullmatch(monitor):
                continue
            self._schema(monitor, monitor_dir / "schema")
            paths = sorted((monitor_dir / "data").glob("data.*.log*"))
            if paths:
                stored += self._ingest_monitor(paths, monitor, origin)
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

    def _ingest_monitor(self, paths: list[Path], monitor: str, origin: Origin) -> int:
        """One transaction: the new complete lines of the monitor's files, and their offsets."""
        known = {
            (inode, head): offset
            for inode, head, offset in self.cursor.execute(
                'SELECT inode, head, "offset" FROM monitor_files WHERE deployment = ? '
                "AND revision = ? AND monitor = ?",
                [origin.deployment, origin.revision, monitor],
            ).fetchall()
        }
        slices: list[_Slice] = []
        taken: set[tuple[int, str]] = set()
        budget = READ_BYTES_PER_PASS
        for path in paths:
            found = _new_lines(path, known, budget)
            if found is None or (found.inode, found.head) in taken:
                continue  # renamed by rotation while listed: read once a pass
            taken.add((found.inode, found.head))
            slices.append(found)
            budget -= len(found.data)
            if budget <= 0:
                break
        if not slices:
            return 0
        table = self._ensure_table(monitor)
        self.cursor.execute("BEGIN TRANSACTION")
        try:
            stored = self.cursor.execute(
                f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, "
                "request_id, trace_id, record) "
                "SELECT $1, $2, $3, $4, fields[1], fields[2], fields[3], line FROM ("
                f"SELECT line, json_extract_string(line, {PRESERVED_PATHS}) AS fields "
                "FROM (SELECT unnest(string_split(chunk, chr(10))) AS line "
                "FROM (SELECT unnest($5) AS chunk)) "
                "WHERE starts_with(line, '{') AND json_valid(line))",
                [
                    origin.deployment,
                    origin.revision,
                    origin.bento,
                    time.time(),
                    [s.data.decode(errors="replace") for s in slices],
                ],
            ).fetchone()
            self.cursor.execute(
                "INSERT OR REPLACE INTO monitor_files "
                "SELECT $1, $2, $3, unnest($4), unnest($5), unnest($6)",
                [
                    origin.deployment,
                    origin.revision,
                    monitor,
                    [s.inode for s in slices],
                    [s.head for s in slices],
                    [s.offset + len(s.data) for s in slices],
                ],
            )
            self.cursor.execute("COMMIT")
        except BaseException:
            self.cursor.execute("ROLLBACK")
            raise
        count = int(stored[0]) if stored else 0
        lines = sum(s.data.count(b"\n") for s in slices)
        if count < lines:
            lines -= sum(s.data.count(b"\n\n") + s.data.startswith(b"\n") for s in slices)
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
        rows = self._read(
            f"SELECT * FROM (SELECT seq, revision, bento, ingested_at, record FROM {table} "
            f"WHERE {' AND '.join(where)} ORDER BY seq {newest} LIMIT ?) ORDER BY seq",
            [*params, limit],
        )
        return [
            {"seq": seq, "revision": r, "bento": b, "ingested_at": at, **json.loads(record)}
            for seq, r, b, at, record in rows
        ]

    def count(self, deployment: str, monitor: str) -> int:
        table = self.monitors().get(monitor)
        if table is None:
            return 0
        found = self._read(f"SELECT count(*) FROM {table} WHERE deployment = ?", [deployment])
        return int(found[0][0])

    def per_minute(self, deployment: str, monitor: str, since: float) -> list[tuple[int, int]]:
        """How many records were ingested in each minute from ``since``: (minute start, count)."""
        table = self.monitors().get(monitor)
        if table is None:
            return []
        rows = self._read(
            f"SELECT (ingested_at // 60 * 60)::BIGINT AS minute, count(*) FROM {table} "
            "WHERE deployment = ? AND ingested_at >= ? GROUP BY minute ORDER BY minute",
            [deployment, since],
        )
        return [(int(minute), int(count)) for minute, count in rows]

    def prune(self, now: float | None = None) -> None:
        """Forget records ingested before the retention."""
        cutoff = (time.time() if now is None else now) - self.retention
        tables = self.monitors().values()
        with self._writing:
            for table in tables:
                self.cursor.execute(f"DELETE FROM {table} WHERE ingested_at < ?", [cutoff])

    def forget(self, deployment: str) -> None:
        tables = self.monitors().values()
        with self._writing:
            for table in tables:
                self.cursor.execute(f"DELETE FROM {table} WHERE deployment = ?", [deployment])
            self.cursor.execute("DELETE FROM monitor_files WHERE deployment = ?", [deployment])


@dataclass(frozen=True)
class _Slice:
    """The complete lines of one file from its committed offset."""

    inode: int
    head: str
    offset: int
    data: bytes


def _new_lines(path: Path, known: dict[tuple[int, str], int], limit: int) -> _Slice | None:
    """The complete lines of ``path`` past its committed offset (at most ``limit`` bytes
    of them, unless one line is longer), or None when there are none."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # rotated away or deleted since listed
        return None
    with handle:
        first = handle.readline()
        if not first.endswith(b"\n"):
            return None
        status = os.fstat(handle.fileno())
        head = hashlib.sha256(first).hexdigest()[:32]
        offset = known.get((status.st_ino, head), 0)
        if status.st_size <= offset:
            return None
        handle.seek(offset)
        chunk = handle.read(min(limit, status.st_size - offset))
        if b"\n" not in chunk:  # a line being written, or one longer than the limit
            chunk += handle.readline()
    end = chunk.rfind(b"\n") + 1
    if end == 0:
        return None
    return _Slice(status.st_ino, head, offset, chunk[:end])


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
