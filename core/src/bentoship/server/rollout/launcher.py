"""What the rollout logic starts processes with, and tells time by: two protocols, so that
reconcile runs in unit tests over a fake launcher and a fake clock.

:class:`BentomlLauncher` starts a revision's replica as ``bentoml serve`` (its home, secrets,
TLS and log); :class:`LoopClock` is the event loop's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ...refs import revision_name
from ..endpoint.balancing import ReplicaProcess
from ..settings import ServerSettings
from ..store import Revision
from .home import prepare_revision_home
from .runner import start_serve
from .secrets import RevisionSecrets
from .tls import RevisionTLS

__all__ = ["BentomlLauncher", "Clock", "Launcher", "LoopClock", "ReplicaHandle", "TimerHandle"]


class ReplicaHandle(ReplicaProcess, Protocol):
    """One started replica of a revision, as pools and the endpoint hold it."""

    @property
    def replica(self) -> int: ...

    @property
    def port(self) -> int: ...

    @property
    def pid(self) -> int: ...

    @property
    def marker(self) -> str:
        """The value of the environment variable that every process of the replica carries."""

    @property
    def stopping(self) -> bool: ...

    watched: bool
    """Set once a watcher waits for its exit (one watcher per replica)."""

    async def wait_ready(self, deadline_seconds: float, crashes: int = 1) -> None:
        """Return once it answers its readiness check; NotReadyError (PortTaken) if it won't."""

    async def exited(self) -> int | None:
        """Wait until it ends on its own, clean up what it leaves, and return its exit code."""

    async def stop(self) -> None:
        """Stop it now (SIGTERM, then SIGKILL), with everything it started."""


class Launcher(Protocol):
    """Starts one replica of a revision (not ready yet: see :meth:`ReplicaHandle.wait_ready`)."""

    async def launch(
        self, rev: Revision, index: int, port: int | None, envs: Mapping[str, str]
    ) -> ReplicaHandle: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time as the rollout logic reads and waits for it."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle: ...


class LoopClock:
    """The running event loop's clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(seconds, callback)


class BentomlLauncher:
    """Starts replicas as ``bentoml serve`` in a home of their own, with their secrets."""

    def __init__(
        self,
        settings: ServerSettings,
        secrets: RevisionSecrets,
        tls: Callable[[], RevisionTLS],
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.tls = tls

    def log_path(self, rev: Revision) -> Path:
        return self.settings.logs_dir / rev.deployment / f"r{rev.seq}-{rev.uid[:8]}.log"

    async def launch(
        self, rev: Revision, index: int, port: int | None, envs: Mapping[str, str]
    ) -> ReplicaHandle:
        """Start it; a cancelled launch stops what it started and removes its secrets."""
        home = prepare_revision_home(
            self.settings.data_dir / "runtime" / rev.uid,
            rev.bento,
            self.settings.store_dir("bento"),
            self.settings.store_dir("model"),
        )
        given = self.secrets.deliver(rev)
        starting = asyncio.ensure_future(
            start_serve(
                revision=rev.uid,
                name=revision_name(rev.seq),
                replica=index,
                bento_tag=rev.bento,
                bentoml_home=home,
                log_path=self.log_path(rev),
                envs={**envs, **given.envs},
                port=port,
                tls=self.tls() if rev.config.get("access_authorization") else None,
                log_pipe=given.log_pipe,
                on_stop=given.remove,
            )
        )
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await starting).stop()
            given.remove()
            raise
        except Exception:
            given.remove()
            raise
