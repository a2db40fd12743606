"""Tell a service that keeps crashing while it starts from one that is only slow.

``bentoml serve`` does not exit when a service raises in ``__init__``: it logs the traceback,
the worker exits ("Application startup failed"), and the worker is respawned about 10 s later,
forever, each time with the same traceback. :class:`CrashLoopDetector` reads the revision's log
as it grows and counts those crash episodes; a revision that crashes ``crashes`` times (the
server's ``--crash-loop-after``, 1 by default) is failed at once, with the exception as its
reason, instead of at the readiness deadline.
"""

from __future__ import annotations

import re
from datetime import datetime

from ...logtail import last_error_line

__all__ = ["CrashLoopDetector"]

CRASH_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d{4}|Z)?) \[ERROR\] .*"
    r"(?:Application startup failed|Initializing service error|Worker .* (?:exited|died))"
)
EPISODE_SECONDS = 2.0
"""Crash lines closer than this to an episode's first line belong to that episode."""


def _moment(text: str) -> float:
    for layout in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.replace("Z", "+0000"), layout).timestamp()
        except ValueError:
            continue
    return 0.0


class CrashLoopDetector:
    """Count crash episodes in a starting revision's log lines."""

    def __init__(self, crashes: int = 1) -> None:
        self.crashes = max(1, crashes)
        self.episodes: list[float] = []
        self.error = ""
        self._partial = ""

    def feed(self, text: str) -> None:
        """Take the next chunk of the log (it may end in the middle of a line)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            match = CRASH_LINE.match(line)
            if match is not None:
                moment = _moment(match["time"])
                if not self.episodes or moment - self.episodes[-1] >= EPISODE_SECONDS:
                    self.episodes.append(moment)
            cause = last_error_line([line])
            if cause:
                self.error = cause

    @property
    def crash_looping(self) -> bool:
        return len(self.episodes) >= self.crashes

    def reason(self) -> str:
        """One line: how often it crashed, and the exception it raised."""
        cause = f": {self.error}" if self.error else ""
        if len(self.episodes) == 1:
            return f"the service crashed while starting (bentoml would respawn it forever){cause}"
        return f"the service crashed {len(self.episodes)} times while starting{cause}"
