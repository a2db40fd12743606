"""A launcher of stand-in replicas and a clock that moves only when told: the rollout's two
injected parts (``bentoship.server.rollout.launcher``), for unit tests that start no process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bentoship.server.gpu.inventory import Inventory
from bentoship.server.rollout.runner import NotReadyError
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Revision

if TYPE_CHECKING:
    from bentoship.server.rollout.controller import Controller

_pids = itertools.count(90001)
_ports = itertools.count(41001)


class FakeReplica:
    """A replica that is ready (or fails) when its launcher says, and exits when told."""

    def __init__(
        self, rev: Revision, index: int, port: int | None, problem: str | None, hangs: bool
    ) -> None:
        self.revision = rev.uid
        self.name = f"r{rev.seq}"
        self.replica = index
        self.port = port or next(_ports)
        self.pid = next(_pids)
        self.marker = f"fake-{self.pid}"
        self.stopping = False
        self.watched = False
        self.problem = problem
        self.hangs = hangs
        self.code: int | None = None
        self.watch_fails = 0
        """How many times ``exited`` raises before it waits (an injected bug in a watcher)."""
        self._exit = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self.code is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self) -> Any:
        raise AssertionError("a unit test scrapes no replica")

    def connections(self) -> Any:
        raise AssertionError("a unit test proxies no request")

    async def wait_ready(self, deadline_seconds: float, crashes: int = 1) -> None:
        await asyncio.sleep(0)
        if self.hangs:
            await self._exit.wait()
            raise NotReadyError(f"exited with code {self.code} before it was ready")
        if self.problem is not None:
            self.exit(3)
            raise NotReadyError(self.problem)

    def exit(self, code: int) -> None:
        """The process ends on its own (a crash)."""
        if self.code is None:
            self.code = code
            self._exit.set()

    async def exited(self) -> int | None:
        if self.watch_fails:
            self.watch_fails -= 1
            raise RuntimeError("an injected bug in the watch")
        await self._exit.wait()
        return self.code

    async def stop(self) -> None:
        self.stopping = True
        self.exit(-15)


@dataclass
class FakeLauncher:
    """Launches :class:`FakeReplica`; a bento listed in ``failing`` never becomes ready."""

    failing: dict[str, str] = field(default_factory=dict)
    """Bento tag -> the reason its replicas give for not being ready."""
    broken: dict[str, str] = field(default_factory=dict)
    """Bento tags whose launch raises RuntimeError with this text (a bug, not a start error)."""
    hanging: set[str] = field(default_factory=set)
    """Bento tags whose replicas never answer their readiness check (still starting)."""
    flaky_watch: set[str] = field(default_factory=set)
    """Bento tags whose next replica's first watch fails (a bug in a watcher)."""
    launched: list[FakeReplica] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)

    async def launch(
        self, rev: Revision, index: int, port: int | None, envs: Mapping[str, str]
    ) -> FakeReplica:
        await asyncio.sleep(0)
        if rev.bento in self.broken:
            raise RuntimeError(self.broken[rev.bento])
        hangs = rev.bento in self.hanging
        replica = FakeReplica(rev, index, port, self.failing.get(rev.bento), hangs)
        if rev.bento in self.flaky_watch:
            self.flaky_watch.discard(rev.bento)
            replica.watch_fails = 1
        self.launched.append(replica)
        self.envs.append(dict(envs))
        return replica

    def of(self, uid: str) -> list[FakeReplica]:
        return [r for r in self.launched if r.revision == uid]

    def running(self) -> list[FakeReplica]:
        return [r for r in self.launched if r.alive]


class FakeTimer:
    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        clock.timers.append(self)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    """Monotonic time that moves on ``sleep`` (recorded) and ``advance`` (which fires timers)."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)
    timers: list[FakeTimer] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> FakeTimer:
        return FakeTimer(self, self.now + seconds, callback)

    def advance(self, seconds: float) -> None:
        """Move time on and run every timer that falls due."""
        self.now += seconds
        due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due and not t.cancelled]
        for timer in due:
            timer.callback()


Scenario = Callable[["Controller", FakeLauncher, FakeClock], Awaitable[None]]


def run_controller(
    settings: ServerSettings,
    scenario: Scenario,
    *,
    launcher: FakeLauncher | None = None,
    gpus: Inventory | None = None,
) -> None:
    """Run ``scenario`` on a real Controller over ``settings``' store, a fake launcher and a
    fake clock, in an event loop of its own; the controller is closed after it."""
    from bentoship.server.rollout.controller import Controller
    from bentoship.server.store import Store

    launcher = launcher or FakeLauncher()
    clock = FakeClock()
    store = Store(settings.db_path)
    controller = Controller(settings, store, gpus, launcher=launcher, clock=clock)

    async def main() -> None:
        try:
            await scenario(controller, launcher, clock)
        finally:
            await controller.close()

    asyncio.run(main())


async def settle(rounds: int = 50) -> None:
    """Let every ready task of the loop run (the fakes never wait on anything else)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
