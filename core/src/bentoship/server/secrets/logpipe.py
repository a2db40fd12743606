"""A masked log: a pipe whose reader thread masks secret values before they reach the file.

A revision that has secrets writes its stdout and stderr into such pipes instead of its log
files, so neither the files nor anything read from them (the log store, the logs API, the
console) ever holds a value. The thread ends when every writer has closed the pipe.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from .masking import Masker

__all__ = ["masked_pipe"]

READ_BYTES = 64 * 1024
MAX_PENDING = 256 * 1024
"""A line longer than this is masked and written in pieces."""


def _copy(read_fd: int, path: Path, masker: Masker) -> None:
    pending = b""
    with path.open("ab") as out, contextlib.closing(os.fdopen(read_fd, "rb", buffering=0)) as src:
        while chunk := src.read(READ_BYTES):
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut == 0 and len(pending) > MAX_PENDING:
                cut = len(pending)
            if cut:
                out.write(masker.mask(pending[:cut]))
                out.flush()
                pending = pending[cut:]
        if pending:
            out.write(masker.mask(pending))


def masked_pipe(path: Path, masker: Masker) -> int:
    """The write end of a pipe whose lines are appended to ``path`` masked; the caller hands it
    to the process and then closes its own copy."""
    read_fd, write_fd = os.pipe()
    thread = threading.Thread(
        target=_copy, args=(read_fd, path, masker), name=f"masked-log {path.name}", daemon=True
    )
    thread.start()
    return write_fd
