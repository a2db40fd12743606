"""Which replica of a revision answers a request: the one with the fewest outstanding requests.

Each replica is an upstream of its own for the endpoint proxy, with its revision's uid and name.
A request routed to it holds it (``started``) until the request ends (``finished``): that is
its count of outstanding requests. Ties go to the replica chosen least recently, so an idle
revision is served round-robin.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

import aiohttp

from .interface import Upstream
from .upstream import UpstreamPool

__all__ = ["Replica", "ReplicaProcess", "choose"]

DRAIN_POLL_SECONDS = 0.05

_turns = itertools.count(1)


class ReplicaProcess(Upstream, Protocol):
    """A serving process as the balancer needs it: an upstream that may have died, with its
    own routes' client (metrics scrapes)."""

    @property
    def alive(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def session(self) -> aiohttp.ClientSession: ...


P = TypeVar("P", bound=ReplicaProcess)


class Replica(Generic[P]):
    """One replica of a revision: its process, its outstanding requests and its answers."""

    def __init__(self, index: int, process: P) -> None:
        self.index = index
        self.process = process
        self.ready = False
        """Set once it answered its readiness check; only ready replicas get requests."""
        self.draining = False
        """Set when it is to stop: it gets no new request, and stops once it has answered."""
        self.outstanding = 0
        self.answered = 0
        self.turn = 0

    @property
    def revision(self) -> str:
        return self.process.revision

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def url(self) -> str:
        return self.process.url

    def session(self) -> aiohttp.ClientSession:
        return self.process.session()

    def connections(self) -> UpstreamPool:
        return self.process.connections()

    @property
    def eligible(self) -> bool:
        return self.ready and not self.draining and self.process.alive

    def started(self) -> None:
        self.outstanding += 1

    def finished(self, *, answered: bool) -> None:
        self.outstanding = max(0, self.outstanding - 1)
        if answered:
            self.answered += 1

    def answered_copy(self) -> None:
        """It answered a mirrored copy of a request (counted as answered; never outstanding: a
        copy holds no caller)."""
        self.answered += 1

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is outstanding (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        while self.outstanding > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        return True


def choose(replicas: Iterable[Replica[P]]) -> Replica[P] | None:
    """The eligible replica with the fewest outstanding requests (least recently chosen on a
    tie), now marked chosen; None when none is eligible."""
    best: Replica[P] | None = None
    for replica in replicas:
        if not replica.eligible:
            continue
        if best is None or (replica.outstanding, replica.turn) < (best.outstanding, best.turn):
            best = replica
    if best is not None:
        best.turn = next(_turns)
    return best
