"""The embedded analytics store: one DuckDB file for metrics and logs.

One process opens it, once. Its writes all go through one writer thread
(:class:`~.writer.AnalyticsWriter`), on the stores' cursor; its reads run on a cursor per
thread (:class:`Readers`): a DuckDB connection is used by one thread at a time. Rows are
written in columns (``insert_columns``): DuckDB appends a thousand rows that way in
milliseconds, where row by row would take seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

__all__ = ["Readers", "insert_columns", "open_analytics", "uploads_of"]


def uploads_of(path: Path) -> Path:
    """The folder of the files the analytics database at ``path`` may read (uploads of labels):
    the only files it reads."""
    return path.with_name(f"{path.stem}-uploads")


def open_analytics(path: Path) -> duckdb.DuckDBPyConnection:
    """The analytics database at ``path``, made on first use (at most 2 threads, 1 GB), which
    reads no file but those in :func:`uploads_of` it."""
    import duckdb

    uploads = uploads_of(path)
    uploads.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(path), config={"threads": 2, "memory_limit": "1GB"})
    opened = connection.execute("SELECT current_setting('enable_external_access')").fetchone()
    if opened is not None and opened[0] is False:
        return connection  # the process has it open already, and closed to other files
    connection.execute("SET allowed_directories = [?]", [f"{uploads.resolve()}/"])
    connection.execute("SET enable_external_access = false")
    return connection


def insert_columns(
    cursor: duckdb.DuckDBPyConnection, table: str, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Append rows given column by column (all of the same length) to ``table``."""
    names = list(columns)
    if not names or not len(columns[names[0]]):
        return
    selected = ", ".join(f"unnest(${i + 1})" for i in range(len(names)))
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {selected}",
        [list(columns[name]) for name in names],
    )


class Readers:
    """A read cursor of ``database`` per thread, made at its first read; call to get it."""

    def __init__(self, database: duckdb.DuckDBPyConnection) -> None:
        self.database = database
        self._local = threading.local()
        self._making = threading.Lock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []

    def __call__(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._making:
                cursor = self.database.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    def close(self) -> None:
        """Close every thread's cursor (once no read runs)."""
        with self._making:
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            cursor.close()
