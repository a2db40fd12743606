"""Read the revisions' log files as they grow, into the log store.

Each file is read from the byte offset where the last read stopped; the offsets are saved in a
JSON file, so a restarted control plane goes on where it stopped, without repeating or losing a
line. A file that shrank, or was replaced, is read again from its start.

The files are read, and their lines stored, off the event loop: by the analytics writer's
thread when the tailer has one (the control plane's), else by a worker thread; one poll at a
time. ``watch`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .logs import LogStore
from .writer import AnalyticsWriter

__all__ = ["MAX_LINE_BYTES", "LogTailer"]

MAX_LINE_BYTES = 64 * 1024
"""A longer line is cut to this many bytes, and the rest of it dropped."""
READ_BYTES = 1024 * 1024
READS_PER_POLL = 4
"""At most this many reads of ``READ_BYTES`` of one file per poll; the next poll goes on."""

log = logging.getLogger(__name__)


@dataclass
class _File:
    deployment: str
    revision: str
    stream: str
    path: Path
    offset: int = 0
    inode: int | None = None
    skipping: bool = False
    """Within a line longer than MAX_LINE_BYTES whose first part was stored."""
    partial_at: tuple[int, float] | None = None
    """Where an unfinished last line starts, and since when (monotonic) it is there."""

    def state(self) -> dict[str, Any]:
        return {"offset": self.offset, "inode": self.inode, "skipping": self.skipping}


class LogTailer:
    """Tail each watched revision's stderr and stdout files into ``store``."""

    def __init__(
        self,
        store: LogStore,
        state_path: Path,
        *,
        partial_after: float = 2.0,
        writer: AnalyticsWriter | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.state_path = state_path
        self.partial_after = partial_after
        """An unfinished last line is stored as it is after this many seconds."""
        self._files: dict[str, _File] = {}
        self._saved: dict[str, dict[str, Any]] = self._load()
        self._dirty = False
        self._listing = threading.Lock()
        """Held while ``_files`` changes or is listed."""
        self._reading = threading.Lock()
        """Held by a poll or an unwatch: one at a time reads the files."""

    def watch(
        self, deployment: str, revision_name: str, stderr_path: Path, stdout_path: Path
    ) -> None:
        """Read the revision's two files from where the last read stopped (else from start)."""
        for stream, path in (("stderr", stderr_path), ("stdout", stdout_path)):
            key = str(path)
            if key in self._files:
                continue
            saved = self._saved.get(key, {})
            with self._listing:
                self._files.setdefault(
                    key,
                    _File(
                        deployment,
                        revision_name,
                        stream,
                        path,
                        offset=int(saved.get("offset", 0)),
                        inode=saved.get("inode"),
                        skipping=bool(saved.get("skipping", False)),
                    ),
                )

    def unwatch(self, deployment: str, revision_name: str | None = None) -> int:
        """Stop reading the revision's files (every revision's when None), after reading what
        they hold now, an unfinished last line too; returns the lines read. Blocks: call it
        off the loop (the control plane calls it in the writer's thread)."""
        count = 0
        with self._reading:
            with self._listing:
                files = list(self._files.items())
            for key, file in files:
                if file.deployment == deployment and revision_name in (None, file.revision):
                    count += self._read(file, final=True)
                    with self._listing:
                        del self._files[key]
            self._save()
        return count

    def watched(self) -> list[tuple[str, str, str, Path]]:
        """``(deployment, revision, stream, path)`` of every file read."""
        with self._listing:
            files = list(self._files.values())
        return [(f.deployment, f.revision, f.stream, f.path) for f in files]

    async def poll(self) -> int:
        """Store the new complete lines of every watched file; returns how many. The files are
        read off the loop (in the writer's thread, or else a worker thread)."""
        if self.writer is not None:
            return await self.writer.run(self.poll_now)
        return await asyncio.to_thread(self.poll_now)

    def poll_now(self) -> int:
        """:meth:`poll`, in the calling thread (blocks: not on the loop)."""
        count = 0
        with self._reading:
            with self._listing:
                files = list(self._files.values())
            for file in files:
                count += self._read(file, final=False)
            if self._dirty:
                self._save()
        return count

    async def run(self, interval: float = 0.5) -> None:
        """Poll every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("reading the revisions' log files failed")
            await asyncio.sleep(interval)

    def _read(self, file: _File, *, final: bool) -> int:
        count = 0
        for _ in range(READS_PER_POLL):
            data = self._read_bytes(file)
            if not data:
                break
            at_end = len(data) < READ_BYTES
            lines, consumed, skipping = self._split(file, data, flush=final and at_end)
            if lines:
                self.store.append(file.deployment, file.revision, file.stream, lines, time.time())
                count += len(lines)
            if consumed:
                file.offset += consumed
                file.skipping = skipping
                self._saved[str(file.path)] = file.state()
                self._dirty = True
            if at_end:
                break
        return count

    def _read_bytes(self, file: _File) -> bytes:
        try:
            with file.path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size < file.offset or file.inode not in (None, stat.st_ino):
                    file.offset, file.skipping, file.partial_at = 0, False, None
                    self._dirty = True
                if file.inode != stat.st_ino:
                    file.inode = stat.st_ino
                    self._saved[str(file.path)] = file.state()
                    self._dirty = True
                handle.seek(file.offset)
                return handle.read(READ_BYTES)
        except OSError:
            return b""

    def _split(self, file: _File, data: bytes, *, flush: bool) -> tuple[list[str], int, bool]:
        """The lines to store from ``data`` (read at ``file.offset``), the bytes they use, and
        whether the bytes after those still belong to a line cut at MAX_LINE_BYTES."""
        end = data.rfind(b"\n") + 1
        pieces = data[:end].split(b"\n")[:-1]
        skipping = file.skipping
        if pieces and skipping:
            pieces.pop(0)
            skipping = False
        rest = data[end:]
        if not rest:
            file.partial_at = None
            return [_text(piece) for piece in pieces], end, skipping
        start = file.offset + end
        if file.partial_at is None or file.partial_at[0] != start:
            file.partial_at = (start, time.monotonic())
        aged = time.monotonic() - file.partial_at[1] >= self.partial_after
        long = len(rest) >= MAX_LINE_BYTES
        if not (long or flush or (aged and len(data) < READ_BYTES)):
            return [_text(piece) for piece in pieces], end, skipping
        if not skipping:
            pieces.append(rest)
        file.partial_at = None
        return [_text(piece) for piece in pieces], len(data), long and not flush

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            saved = json.loads(self.state_path.read_text())
            files = saved["files"]
            if isinstance(files, dict):
                return {str(k): v for k, v in files.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable log offsets in %s: reading from the start", self.state_path)
        return {}

    def _save(self) -> None:
        """Write the offsets atomically: of the watched files, and of the others still there."""
        self._saved = {
            key: value
            for key, value in self._saved.items()
            if key in self._files or Path(key).exists()
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_name(f"{self.state_path.name}.tmp")
        temporary.write_text(json.dumps({"version": 1, "files": self._saved}))
        os.replace(temporary, self.state_path)
        self._dirty = False


def _text(piece: bytes) -> str:
    return piece[:MAX_LINE_BYTES].decode(errors="replace").removesuffix("\r")
