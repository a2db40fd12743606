"""Stopping a step cleanly: SIGTERM, as orchestrators and ``timeout`` send it, raises."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "terminated_raises"]


class Terminated(SystemExit):
    """The process got SIGTERM; its exit code is 143, as a shell reports it."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextlib.contextmanager
def terminated_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (as SIGINT raises KeyboardInterrupt), so
    the cleanup of the block runs; a further SIGTERM is ignored until the block ends.

    A handler someone else installed (Airflow's task runner raises its own exception) is left
    as it is, and so is any thread but the main one, which cannot take signals.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
