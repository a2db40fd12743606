"""Every deployment's log lines, kept in DuckDB: searched, followed live and downloaded.

Each line is also written as a JSON object to rotated JSON-lines files, one set per deployment
(``<files_dir>/<deployment>/<deployment>.jsonl``), which log shippers such as Fluent Bit or
Vector tail. Its writes (``append``, ``forget``) run in one thread at a time: the analytics
writer's, in the control plane. Its reads run on ``reader()``, a cursor of the calling thread
(the writing cursor when none is given). Its followers' queues are asyncio queues of the loop
that subscribed: lines appended on another thread reach them through that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import re2

from ...tags import SHOWN_CHARACTERS, shown
from ..errors import Invalid
from .analytics import insert_columns

if TYPE_CHECKING:
    import duckdb

__all__ = ["STREAMS", "LogLine", "LogStore", "compile_pattern", "iso_time"]

STREAMS = ("stdout", "stderr")
FOLLOW_QUEUE_LINES = 10_000
CHUNK_LINES = 5_000
SEARCH_CHUNK_LINES = 200
"""Rows a search converts and filters at a time: each fetch holds the interpreter throughout, so
a small one lets the loop that serves the endpoints in between."""
FILE_WRITE_BYTES = 64 * 1024
"""Lines go to the JSON-lines file in writes of about this size; rotation checks each write."""
COLUMNS = "t, deployment, revision, stream, line"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS logs (t DOUBLE, deployment VARCHAR, revision VARCHAR, "
    "stream VARCHAR, line VARCHAR, seq BIGINT)"
)
"""``seq`` numbers the lines in the order they were appended: it orders lines of equal ``t``."""


def iso_time(t: float) -> str:
    """``t`` (epoch seconds) as ISO-8601 UTC with milliseconds: ``2026-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a revision's process wrote to ``stream``, read at ``t`` (epoch seconds)."""

    t: float
    deployment: str
    revision: str
    stream: str
    line: str
    seq: int = field(default=0, compare=False)
    """The order the line was stored in (0 when not read from the store); not shown."""

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso_time(self.t),
            "t": self.t,
            "deployment": self.deployment,
            "revision": self.revision,
            "stream": self.stream,
            "line": self.line,
        }

    def to_text(self) -> str:
        """``ISO-time revision stream line``, without a newline."""
        return f"{iso_time(self.t)} {self.revision} {self.stream} {self.line}"


def shown_pattern(pattern: str) -> str:
    """``pattern`` quoted as typed (``(a+)\\1``, not its repr), cut to a short prefix; a
    pattern with a control character is shown as its repr, on one line."""
    if not pattern.isprintable():
        return shown(pattern)
    if len(pattern) <= SHOWN_CHARACTERS:
        return f"'{pattern}'"
    return f"'{pattern[:SHOWN_CHARACTERS]}'... ({len(pattern)} characters)"


def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear time, whatever the pattern), or Invalid in one line."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        reason = str(detail).split(":", 1)[0].strip()[:80] or "cannot be compiled"
        raise Invalid(
            f"pattern {shown_pattern(pattern)} is not a valid RE2 regular expression: {reason} "
            "(RE2 has no backreferences or lookaround)"
        ) from None


class LogStore:
    """Log lines per deployment and revision, at most ``max_lines_per_revision`` of each."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        max_lines_per_revision: int = 100_000,
        files_dir: Path | None = None,
        file_max_bytes: int = 10 * 1024**2,
        file_backups: int = 5,
        reader: Callable[[], duckdb.DuckDBPyConnection] | None = None,
    ) -> None:
        self._cursor = cursor
        self._reader = reader if reader is not None else lambda: cursor
        self._searching = threading.RLock()
        self.max_lines_per_revision = max(1, max_lines_per_revision)
        self.files_dir = files_dir
        self.file_max_bytes = file_max_bytes
        self.file_backups = file_backups
        cursor.execute(SCHEMA)
        last = cursor.execute("SELECT max(seq) FROM logs").fetchone()
        self._next_seq = int(last[0]) + 1 if last and last[0] is not None else 1
        self._runs: dict[tuple[str, str], deque[tuple[int, int]]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._files: dict[str, RotatingFileHandler] = {}
        self._followers: dict[str, set[asyncio.Queue[LogLine]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the followers' queues (None: subscribed outside a running loop)."""

    def append(
        self, deployment: str, revision: str, stream: str, lines: list[str], t: float
    ) -> None:
        """Store ``lines`` (read at ``t``), tell the followers, and write the JSON-lines file."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, not {shown(stream)}")
        if Path(deployment).name != deployment or deployment in ("", ".", ".."):
            raise ValueError(f"deployment name {shown(deployment)} is not a file name")
        if not lines:
            return
        count = len(lines)
        first = self._next_seq
        self._next_seq += count
        insert_columns(
            self._cursor,
            "logs",
            {
                "t": [t] * count,
                "deployment": [deployment] * count,
                "revision": [revision] * count,
                "stream": [stream] * count,
                "line": lines,
                "seq": range(first, first + count),
            },
        )
        self._retain(deployment, revision, first, count)
        if deployment in self._followers:
            items = [
                LogLine(t, deployment, revision, stream, x, first + i) for i, x in enumerate(lines)
            ]
            self._deliver(deployment, items)
        self._write_file(deployment, revision, stream, lines, t)

    def search(
        self,
        deployment: str,
        *,
        since: float | None = None,
        until: float | None = None,
        revision: str | None = None,
        pattern: str | None = None,
        limit: int = 1000,
        newest_first: bool = False,
        before: int | None = None,
    ) -> list[LogLine]:
        """The last ``limit`` lines with ``since <= t <= until`` of ``revision`` that
        ``pattern`` finds (RE2, anywhere in the line), oldest first unless ``newest_first``;
        with ``before`` (a line's ``seq``), only the lines older than that one (to page back).
        Blocks (RE2 runs over the rows here): the loop calls it in a worker thread. One search
        runs at a time, so that no more than one thread vies for the interpreter with the loop
        that serves the endpoints."""
        regex = compile_pattern(pattern) if pattern else None
        if limit <= 0:
            return []
        with self._searching:
            return self._search(
                deployment, since, until, revision, regex, limit, newest_first, before
            )

    def one_search(self) -> contextlib.AbstractContextManager[Any]:
        """Held while a search runs: hold it around a search and what is made of its lines
        (the console's JSON), so that one such thread at a time vies with the loop."""
        return self._searching

    def _search(
        self,
        deployment: str,
        since: float | None,
        until: float | None,
        revision: str | None,
        regex: Any,
        limit: int,
        newest_first: bool,
        before: int | None = None,
    ) -> list[LogLine]:
        where, params = _where(deployment, since, until, revision)
        cursor = self._reader()
        if before is not None:
            found_t = cursor.execute(
                "SELECT t FROM logs WHERE deployment = ? AND seq = ?", [deployment, before]
            ).fetchone()
            if found_t is None:
                where += " AND seq < ?"
                params.append(before)
            else:
                where += " AND (t < ? OR (t = ? AND seq < ?))"
                params += [found_t[0], found_t[0], before]
        order = f"SELECT {COLUMNS}, seq FROM logs WHERE {where} ORDER BY t DESC, seq DESC"
        found: list[LogLine] = []
        if regex is None:
            rows = cursor.execute(f"{order} LIMIT ?", [*params, limit]).fetchall()
            found = [LogLine(*row) for row in rows]
        else:
            result = cursor.execute(order, params)
            while len(found) < limit and (rows := result.fetchmany(SEARCH_CHUNK_LINES)):
                found.extend(LogLine(*row) for row in rows if regex.search(row[4]))
                time.sleep(0)  # hand the interpreter to the loop, if it waits, between chunks
            del found[limit:]
        if not newest_first:
            found.reverse()
        return found

    def lines(self, deployment: str) -> Iterator[LogLine]:
        """Every line of ``deployment`` stored when the iteration starts, oldest first, read in
        chunks (lines appended meanwhile are left out)."""
        for chunk in self.chunks(deployment):
            yield from chunk

    def chunks(self, deployment: str) -> Iterator[list[LogLine]]:
        """:meth:`lines` in lists of up to CHUNK_LINES, each read by one query (on the cursor
        of the thread that asks for it: each chunk may be read on another thread)."""
        last = (
            self._reader()
            .execute("SELECT max(seq) FROM logs WHERE deployment = ?", [deployment])
            .fetchone()
        )
        if not last or last[0] is None:
            return
        after: tuple[float, int] | None = None
        while True:
            keyset = "" if after is None else "AND (t > ? OR (t = ? AND seq > ?))"
            params: list[Any] = [deployment, last[0]]
            if after is not None:
                params += [after[0], after[0], after[1]]
            rows = (
                self._reader()
                .execute(
                    f"SELECT {COLUMNS}, seq FROM logs WHERE deployment = ? AND seq <= ? {keyset} "
                    "ORDER BY t, seq LIMIT ?",
                    [*params, CHUNK_LINES],
                )
                .fetchall()
            )
            if rows:
                yield [LogLine(*row) for row in rows]
            if len(rows) < CHUNK_LINES:
                return
            after = (rows[-1][0], rows[-1][5])

    def forget(self, deployment: str) -> None:
        """Delete the deployment's lines; its JSON-lines files stay for the shippers."""
        self._cursor.execute("DELETE FROM logs WHERE deployment = ?", [deployment])
        for key in [key for key in self._counts if key[0] == deployment]:
            del self._counts[key]
            self._runs.pop(key, None)
        handler = self._files.pop(deployment, None)
        if handler is not None:
            handler.close()

    @contextlib.contextmanager
    def subscribe(
        self, deployment: str, max_lines: int = FOLLOW_QUEUE_LINES
    ) -> Iterator[asyncio.Queue[LogLine]]:
        """A queue of the deployment's new lines while the block runs; a follower that falls
        more than ``max_lines`` behind loses the oldest."""
        queue: asyncio.Queue[LogLine] = asyncio.Queue(max(1, max_lines))
        self._loop = _running_loop()
        self._followers.setdefault(deployment, set()).add(queue)
        try:
            yield queue
        finally:
            followers = self._followers.get(deployment, set())
            followers.discard(queue)
            if not followers:
                self._followers.pop(deployment, None)

    def followers(self, deployment: str) -> int:
        """How many subscriptions to the deployment's new lines are open."""
        return len(self._followers.get(deployment, ()))

    def close(self) -> None:
        """Close the JSON-lines files."""
        for handler in self._files.values():
            handler.close()
        self._files.clear()

    def _retain(self, deployment: str, revision: str, first: int, count: int) -> None:
        """Delete the revision's lines appended before its last ``max_lines_per_revision``."""
        key = (deployment, revision)
        runs = self._runs.get(key)
        if runs is None:
            runs = self._runs[key] = self._load_runs(key)
            total = sum(n for _, n in runs)
        else:
            if runs and runs[-1][0] + runs[-1][1] == first:
                runs[-1] = (runs[-1][0], runs[-1][1] + count)
            else:
                runs.append((first, count))
            total = self._counts[key] + count
        excess = total - self.max_lines_per_revision
        if excess > 0:
            while excess >= runs[0][1]:
                excess -= runs.popleft()[1]
            if excess:
                start, n = runs.popleft()
                runs.appendleft((start + excess, n - excess))
            self._cursor.execute(
                "DELETE FROM logs WHERE deployment = ? AND revision = ? AND seq < ?",
                [deployment, revision, runs[0][0]],
            )
            total = self.max_lines_per_revision
        self._counts[key] = total

    def _load_runs(self, key: tuple[str, str]) -> deque[tuple[int, int]]:
        """The revision's stored ``seq`` numbers as runs ``(first, count)``, oldest first."""
        rows = self._cursor.execute(
            "SELECT seq FROM logs WHERE deployment = ? AND revision = ? ORDER BY seq", list(key)
        ).fetchall()
        runs: deque[tuple[int, int]] = deque()
        for (seq,) in rows:
            if runs and runs[-1][0] + runs[-1][1] == seq:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((seq, 1))
        return runs

    def _deliver(self, deployment: str, items: list[LogLine]) -> None:
        """Tell the followers, on their loop (at once when appended on it, or on no loop)."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._notify(deployment, items)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody follows
            loop.call_soon_threadsafe(self._notify, deployment, items)

    def _notify(self, deployment: str, items: list[LogLine]) -> None:
        for queue in self._followers.get(deployment, ()):
            for item in items[-queue.maxsize :]:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(item)

    def _write_file(
        self, deployment: str, revision: str, stream: str, lines: list[str], t: float
    ) -> None:
        if self.files_dir is None:
            return
        handler = self._files.get(deployment)
        if handler is None:
            folder = self.files_dir / deployment
            folder.mkdir(parents=True, exist_ok=True)
            handler = RotatingFileHandler(
                folder / f"{deployment}.jsonl",
                maxBytes=self.file_max_bytes,
                backupCount=self.file_backups,
                encoding="utf-8",
                delay=True,
            )
            self._files[deployment] = handler
        head = {"time": iso_time(t), "deployment": deployment, "revision": revision}
        prefix = json.dumps({**head, "stream": stream})[:-1] + ', "line": '
        group: list[str] = []
        size = 0
        for line in lines:
            group.append(f"{prefix}{json.dumps(line)}}}")
            size += len(group[-1]) + 1
            if size >= FILE_WRITE_BYTES:
                handler.handle(logging.makeLogRecord({"msg": "\n".join(group)}))
                group, size = [], 0
        if group:
            handler.handle(logging.makeLogRecord({"msg": "\n".join(group)}))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _where(
    deployment: str, since: float | None, until: float | None, revision: str | None
) -> tuple[str, list[Any]]:
    clauses = ["deployment = ?"]
    params: list[Any] = [deployment]
    for clause, value in (("t >= ?", since), ("t <= ?", until), ("revision = ?", revision)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), params
