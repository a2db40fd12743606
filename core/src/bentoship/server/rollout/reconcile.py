"""Reconcile: one loop per deployment moves what runs toward what the store wants.

Level-triggered, as controller-runtime's ``Reconcile``: each pass reads what is wanted (the
deployment's lifecycle, its target and serving revisions and their phases, the serving
revision's replica count) and what runs (the runtime's replica sets), and ``next_step`` picks
what brings them closer: start the target, restart the serving revision, hold or switch to a
ready target, stop what nothing wants, start the serving replicas it lacks (lost or scaled up)
and drain those beyond its count. The loop acts, then passes again until nothing is left to do;
a start that fails requeues the serving revision's (or a lost replica's) start after a backoff,
or fails the target. A command that changes what is wanted cancels the pass underway and asks
for a new one, so no step asks whether it has gone stale: the next pass reads the change.

Retiring a warm revision when its rollback window ends is a timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ...refs import revision_name
from ..deploy_config import min_replicas
from ..store import Deployment, Revision, now
from .autoscale import scale_steps
from .candidates import Candidates
from .context import HELD_PHASES, RolloutContext, problem_line
from .events import Restarted, Switched, Woken
from .phases import Lifecycle, RevisionPhase
from .placement import Placement
from .pools import START_ERRORS, Pools
from .runtime import DeploymentRuntime
from .serving_replicas import ServingReplicas

__all__ = [
    "GATHER_SECONDS",
    "SETTLE_SECONDS",
    "SUPERSEDED",
    "Reconciler",
    "Running",
    "Step",
    "next_step",
]

log = logging.getLogger("bentoship.server")

GATHER_SECONDS = 0.05
"""An update waits this long before it starts a process: the other updates of a burst, already
sent, reach the deployment's lock first and cancel it before it starts anything. A create
starts at once (there is no burst of creates)."""
SETTLE_SECONDS = 0.2
"""An update that follows another this closely waits this long, so a burst starts one process."""
SUPERSEDED = "superseded by a newer request"
BUG_BACKOFF_SECONDS = 1.0


@dataclass(frozen=True)
class Running:
    """What runs for one deployment, as a pass of reconcile sees it."""

    started: frozenset[str] = frozenset()
    """Revisions (uids) that have replicas."""
    ready: frozenset[str] = frozenset()
    """Of those, revisions whose every replica is ready."""
    serving: bool = False
    """The endpoint has replicas to forward to."""
    scaled_to_zero: bool = False
    recreated: str | None = None
    """The serving revision a Recreate stopped to free its GPUs for the target."""
    replicas: frozenset[int] = frozenset()
    """Indices of the serving replicas that take (or will take) requests: not draining, or
    starting."""
    occupied: frozenset[int] = frozenset()
    """Indices of every serving replica, draining ones too."""


@dataclass(frozen=True)
class Step:
    """What one pass does; nothing at all when the two states agree."""

    start: tuple[str, ...] = ()
    """Revisions to start: the serving revision when it does not run (first), the target."""
    hold: str | None = None
    """The ready target to hold as the candidate."""
    activate: str | None = None
    """The ready target to switch the endpoint to."""
    stop: tuple[str, ...] = ()
    """Started revisions that nothing wants any more."""
    add: tuple[int, ...] = ()
    """Indices of serving replicas to start: lost ones, or a scale-up's."""
    drain: tuple[int, ...] = ()
    """Indices of serving replicas to drain: a scale-down's."""

    def __bool__(self) -> bool:
        return bool(self.start or self.hold or self.activate or self.stop or self.add or self.drain)


def next_step(
    dep: Deployment,
    revisions: dict[str, Revision],
    running: Running,
    replicas_wanted: int | None = None,
) -> Step:
    """The step that moves what runs toward what ``dep`` wants (a pure function);
    ``replicas_wanted``: the serving revision's replica count (None: its minimum, at least 1)."""
    if dep.state != Lifecycle.ACTIVE:
        return Step()
    target = revisions.get(dep.target_revision or "")
    serving = dep.serving_revision
    wanted = {
        uid
        for uid, rev in revisions.items()
        if rev.phase in (RevisionPhase.SERVING, RevisionPhase.WARM)
        or (rev.phase in HELD_PHASES and target is not None and uid == target.uid)
    }
    if serving:
        wanted.add(serving)
    stop = tuple(sorted(running.started - wanted))
    starts_target = (
        target is not None and target.phase == RevisionPhase.STARTING and target.uid != serving
    )
    if target is not None and starts_target and target.uid in running.ready:
        if target.verify:
            return Step(hold=target.uid, stop=stop)
        return Step(activate=target.uid, stop=stop)
    recreating = running.recreated == serving and starts_target
    restart = serving and not running.serving and not running.scaled_to_zero and not recreating
    start = [serving] if serving and restart else []
    if target is not None and starts_target:
        start.append(target.uid)
    scale = revisions.get(serving or "") if running.serving else None
    if scale is None:
        return Step(start=tuple(start), stop=stop)
    count = max(1, min_replicas(scale.config)) if replicas_wanted is None else replicas_wanted
    steps = scale_steps(sorted(running.replicas), sorted(running.occupied), count)
    return Step(start=tuple(start), stop=stop, add=steps.start, drain=steps.drain)


class Reconciler:
    def __init__(
        self, ctx: RolloutContext, pools: Pools, placement: Placement, candidates: Candidates
    ) -> None:
        self.ctx = ctx
        self.pools = pools
        self.placement = placement
        self.candidates = candidates
        self.replicas = ServingReplicas(ctx, pools, self.nudge)

    # asking for a pass

    def reconcile(self, rt: DeploymentRuntime, *, after: float = 0.0) -> None:
        """Start a new pass of the deployment's reconcile in place of the one underway (what a
        command that changes what is wanted calls); it acts ``after`` seconds from now."""
        rt.cancel_reconcile()
        rt.reconciling = self.ctx.spawn(self._loop(rt, after), deployment=rt.name)

    def nudge(self, rt: DeploymentRuntime) -> None:
        """Make sure a pass runs: the one underway reads the change at its next pass."""
        if rt.reconciling is None or rt.reconciling.done():
            self.reconcile(rt)

    def wake(self, rt: DeploymentRuntime) -> None:
        """A request reached a deployment scaled to zero: its serving revision starts again."""
        if not rt.scaled_to_zero:
            return
        dep = self.ctx.store.get_deployment(rt.name)
        woken = self.ctx.serving_of(dep) if dep is not None else None
        if woken is None:
            return
        rt.scaled_to_zero = False
        rt.restarting = True
        rt.restart_failures = 0
        self.ctx.publish(rt.name, Woken(revision_name(woken.seq)))
        self.nudge(rt)
        rt.notify()

    # the loop

    def _running(self, rt: DeploymentRuntime) -> Running:
        replicas = rt.serving.replicas if rt.serving is not None else {}
        adding = frozenset(rt.adding)
        return Running(
            started=frozenset(rt.processes),
            ready=frozenset(uid for uid, pool in rt.processes.items() if pool.ready),
            serving=rt.serving is not None,
            scaled_to_zero=rt.scaled_to_zero,
            recreated=rt.recreated,
            replicas=frozenset(i for i, r in replicas.items() if not r.draining) | adding,
            occupied=frozenset(replicas) | adding,
        )

    def _plan(self, rt: DeploymentRuntime) -> tuple[Deployment | None, Step]:
        dep = self.ctx.store.get_deployment(rt.name)
        if dep is None:
            return None, Step()
        revisions = {rev.uid: rev for rev in self.ctx.store.list_revisions(rt.name)}
        return dep, next_step(dep, revisions, self._running(rt), rt.replicas_wanted)

    async def _loop(self, rt: DeploymentRuntime, after: float) -> None:
        if after > 0:
            await self.ctx.clock.sleep(after)
        delay = BUG_BACKOFF_SECONDS
        previous: Step | None = None
        while True:
            try:
                step = await self._pass(rt)
                delay = BUG_BACKOFF_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed_on_a_bug(rt, exc, delay)
                await self.ctx.clock.sleep(delay)
                delay = min(delay * 2, self.ctx.settings.restart_backoff_max)
                continue
            if not step or (step == previous and not step.start):
                if step:
                    log.warning("reconcile of %s made no progress with %s", rt.name, step)
                if rt.reconciling is asyncio.current_task():
                    rt.reconciling = None
                return
            previous = step
            await asyncio.sleep(0)

    async def _pass(self, rt: DeploymentRuntime) -> Step:
        """One pass: take the next step (none, when what runs is what is wanted)."""
        async with rt.lock:
            step, starting = await self._act(rt)
        if starting:
            errors = await self._start(rt, starting)
            async with rt.lock:
                backoff = await self._started(rt, starting, errors)
            if backoff:
                await self.ctx.clock.sleep(rt.restart_delay)
                rt.restart_delay = min(rt.restart_delay * 2, self.ctx.settings.restart_backoff_max)
        return step

    async def _act(self, rt: DeploymentRuntime) -> tuple[Step, list[Revision]]:
        """Plan, and take what of the step needs no wait; the revisions left to start."""
        dep, step = self._plan(rt)
        rt.restarting = dep is not None and (dep.serving_revision or "") in step.start
        for uid in step.stop:
            await self._stop_unwanted(rt, uid)
        pool = rt.serving
        if pool is not None:
            self.replicas.scale(rt, pool, step.add, step.drain)
        if step.activate is not None:
            self.activate(rt, step.activate)
        elif step.hold is not None:
            self.candidates.hold(rt, step.hold)
        starting = [rev for uid in step.start if (rev := self.ctx.store.get_revision(uid))]
        target = next((rev for rev in starting if dep and rev.uid == dep.target_revision), None)
        if target is not None:
            try:
                await self.placement.make_room(rt, target, min_replicas(target.config))
            except START_ERRORS as exc:
                await self._target_failed(rt, target.uid, exc)
                return step, []
        return step, starting

    async def _started(
        self, rt: DeploymentRuntime, revisions: list[Revision], errors: list[BaseException | None]
    ) -> bool:
        """Serve the serving revision started again, fail a target that did not start (a ready
        one is taken by the next pass); whether to wait before the serving one's next start."""
        dep = self.ctx.store.get_deployment(rt.name)
        backoff = False
        for rev, error in zip(revisions, errors, strict=True):
            serving = dep is not None and dep.serving_revision == rev.uid
            if error is None:
                active = dep is not None and dep.state == Lifecycle.ACTIVE
                if serving and active and rt.serving is None:
                    self.activate(rt, rev.uid)
            elif serving:
                await self._restart_failed(rt, rev.uid, error)
                backoff = True
            else:
                await self._target_failed(rt, rev.uid, error)
        return backoff

    async def _start(
        self, rt: DeploymentRuntime, revisions: list[Revision]
    ) -> list[BaseException | None]:
        """Start the revisions' replicas at once; what each start raised (a start error)."""
        starts = [asyncio.ensure_future(self.pools.start_ready(rt, rev)) for rev in revisions]
        try:
            results = await asyncio.gather(*starts, return_exceptions=True)
        except asyncio.CancelledError:
            for start in starts:
                start.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            await asyncio.shield(self._stop_started(rt, [rev.uid for rev in revisions]))
            raise
        errors: list[BaseException | None] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, START_ERRORS):
                raise result
            errors.append(result if isinstance(result, BaseException) else None)
        return errors

    async def _stop_started(self, rt: DeploymentRuntime, uids: list[str]) -> None:
        for uid in uids:
            await self.ctx.stop_unless_serving(rt, uid)

    async def _stop_unwanted(self, rt: DeploymentRuntime, uid: str) -> None:
        await self.ctx.stop_unless_serving(rt, uid)
        rev = self.ctx.store.get_revision(uid)
        if rev is not None and rev.phase in HELD_PHASES:
            self.ctx.move(uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)

    async def _target_failed(self, rt: DeploymentRuntime, uid: str, error: BaseException) -> None:
        await self.ctx.fail(rt, uid, str(error))
        recreated, rt.recreated = rt.recreated, None
        rev = self.ctx.store.get_revision(recreated) if recreated else None
        if rev is not None and rev.phase == RevisionPhase.SERVING and rt.serving is None:
            self.ctx.publish(rt.name, Restarted(revision_name(rev.seq), on_gpus=True))
            rt.restart_failures = 0

    async def _restart_failed(self, rt: DeploymentRuntime, uid: str, error: BaseException) -> None:
        delay = rt.restart_delay
        log.warning("restart of %s failed (%s); retrying in %.0f s", rt.name, error, delay)
        rt.restart_failures += 1
        stale = rt.processes.pop(uid, None)
        if stale is not None:
            await stale.stop()
        rt.notify()

    async def _failed_on_a_bug(self, rt: DeploymentRuntime, error: Exception, delay: float) -> None:
        """An unexpected error in a pass: logged with its traceback, an ``internal_error``
        event, and the target (if not serving yet) failed with it; the pass runs again."""
        log.error("reconcile of %s failed; it runs again in %g s", rt.name, delay, exc_info=error)
        problem = problem_line(error)
        async with rt.lock:
            if not self.ctx.internal_error(rt.name, problem):
                return
            target = self.ctx.get(rt.name).target_revision
            if target is not None and self.ctx.fail_on_a_bug(target, problem):
                await self.ctx.stop_unless_serving(rt, target)

    # what a pass (or a command) does

    def activate(self, rt: DeploymentRuntime, uid: str) -> None:
        """Switch the endpoint to revision ``uid``; the one it served before is kept warm."""
        ctx = self.ctx
        dep = ctx.get(rt.name)
        pool = rt.processes[uid]
        rev = ctx.store.get_revision(uid)
        stamp = now()
        ready_at = (rev.ready_at if rev else None) or stamp
        ctx.move(uid, RevisionPhase.SERVING, reason="", ready_at=ready_at, activated_at=stamp)
        ctx.store.update_deployment(rt.name, reason="")
        rt.serving = pool
        rt.recreated = None
        rt.scaled_to_zero = False
        rt.restarting = False
        rt.restart_failures = 0
        rt.restart_delay = 1.0
        rt.last_request = ctx.clock.monotonic()
        rt.cancel_retire(uid)
        previous = dep.serving_revision
        if rev is not None:
            if previous == uid:
                ctx.publish(rt.name, Restarted(pool.name))
            else:
                switched = Switched(pool.name, len(pool.replicas), ctx.name_of(previous))
                ctx.publish(rt.name, switched)
        if previous and previous != uid:
            old = ctx.store.get_revision(previous)
            if old is not None and old.phase == RevisionPhase.SERVING:
                if previous in rt.processes:
                    ctx.move(previous, RevisionPhase.WARM)
                    self._schedule_retire(rt, previous)
                else:
                    ctx.move(previous, RevisionPhase.RETIRED)
        for proc in pool.processes():
            self.pools.watch(rt, proc, self.replicas.exited)
        ports = ", ".join(str(p.port) for p in pool.processes())
        log.info("deployment %s now serves revision %s on port(s) %s", rt.name, pool.name, ports)
        rt.notify()

    def _schedule_retire(self, rt: DeploymentRuntime, uid: str) -> None:
        rt.cancel_retire(uid)
        rt.retire_timers[uid] = self.ctx.clock.call_later(
            self.ctx.settings.rollback_window,
            lambda: self.ctx.spawn(self._retire(rt, uid), deployment=rt.name),
        )

    async def _retire(self, rt: DeploymentRuntime, uid: str) -> None:
        async with rt.lock:
            rt.retire_timers.pop(uid, None)
            rev = self.ctx.store.get_revision(uid)
            if rev is None or rev.phase != RevisionPhase.WARM:
                return
            await self.ctx.stop_unless_serving(rt, uid)
            self.ctx.move(uid, RevisionPhase.RETIRED)

    def recover(self, rt: DeploymentRuntime, dep: Deployment) -> None:
        """After a restart: nothing runs, so warm revisions are retired and a pass starts what
        served and what was starting."""
        ctx = self.ctx
        for rev in ctx.store.list_revisions(dep.name):
            if rev.phase == RevisionPhase.WARM or (
                rev.phase == RevisionPhase.SERVING and rev.uid != dep.serving_revision
            ):
                ctx.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES and rev.uid != dep.target_revision:
                ctx.move(rev.uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)
            elif rev.phase == RevisionPhase.CANDIDATE:
                ctx.move(rev.uid, RevisionPhase.STARTING)
        if dep.state == Lifecycle.TERMINATING:
            self.retire_all(dep.name)
            ctx.store.update_deployment(dep.name, state=Lifecycle.TERMINATED)
            return
        if dep.state == Lifecycle.ACTIVE:
            rt.restart_failures = 0
            self.reconcile(rt)

    def retire_all(self, name: str) -> None:
        for rev in self.ctx.store.list_revisions(name):
            if rev.phase in (RevisionPhase.SERVING, RevisionPhase.WARM):
                self.ctx.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES:
                reason = "the deployment was terminated"
                self.ctx.move(rev.uid, RevisionPhase.CANCELLED, reason=reason)

    async def stop_all(self, rt: DeploymentRuntime) -> None:
        """Stop everything the deployment runs, and every task working on it."""
        rt.cancel_reconcile()
        rt.serving = None
        rt.candidate = None
        rt.scaled_to_zero = False
        rt.restarting = False
        rt.restart_failures = 0
        for uid in list(rt.retire_timers):
            rt.cancel_retire(uid)
        procs = list(rt.processes.values())
        rt.processes.clear()
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
