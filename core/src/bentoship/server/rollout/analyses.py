"""Canary analyses run by the control plane: ramp a held candidate's weight step by step, judge
each step from the endpoint's own counts, then promote or discard it.

A pipeline task submits the plan and only watches (``wait``); killed, it leaves the plan
running to its verdict. The plan is stored (``analysis_records``) and goes on after a restart of
the control plane, from the step it had reached, once the candidate is held again. Each pass
reads what is stored, so a runner whose candidate has left simply ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from typing import Any, Protocol

from ...canary import CanaryPolicy, StepVerdict, judge_step, window_stats
from ...errors import InvalidRequestError
from ...models import TrafficReport
from ...refs import revision_name
from ...shadow.policy import ShadowPolicy, judge_shadow
from ..endpoint.split import RouteType, TrafficSplit
from ..endpoint.traffic import LATENCY_BOUNDS
from ..errors import Conflict, DomainError, Invalid
from ..store import Deployment, Revision
from .analysis_records import AnalysisKind, AnalysisRecord, AnalysisRecords, AnalysisState
from .context import RolloutContext
from .events import AnalysisEnded, AnalysisStarted, ShadowJudged, StepJudged
from .phases import RevisionPhase
from .shadow import Shadows

__all__ = ["Analyses", "CandidateCommands"]

log = logging.getLogger("bentoship.server")

TICK_SECONDS = 1.0


class CandidateCommands(Protocol):
    """What an analysis does to its candidate: the controller's own commands."""

    async def promote(self, name: str, ref: str | None = None) -> Deployment: ...

    async def discard(self, name: str) -> Deployment: ...

    async def set_split(self, name: str, split: TrafficSplit) -> Deployment: ...


class Analyses:
    def __init__(self, ctx: RolloutContext, commands: CandidateCommands, shadows: Shadows) -> None:
        self.ctx = ctx
        self.commands = commands
        self.shadows = shadows
        self.records = AnalysisRecords(ctx.store.db)
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._progress: dict[str, dict[str, Any]] = {}
        ctx.phase_listeners.append(self._moved)

    def resume(self) -> None:
        """After a restart: every plan still running goes on once its candidate is held."""
        for record in self.records.running():
            rev = self.ctx.store.get_revision(record.revision)
            if rev is not None and rev.phase == RevisionPhase.CANDIDATE:
                self._start(record)

    def submit(self, name: str, canary: object) -> AnalysisRecord:
        """Run a canary analysis of ``name``'s held candidate; the same plan again is a no-op."""
        if not isinstance(canary, dict):
            raise Invalid("canary: send the policy as an object, such as {steps: [10, 50, 100]}")
        try:
            policy = CanaryPolicy.from_dict(canary)
        except (InvalidRequestError, TypeError, ValueError) as exc:
            raise Invalid(f"canary: {exc}") from None
        ramp = ", ".join(f"{weight}%" for weight in policy.steps)
        return self._submit(
            name,
            AnalysisKind.CANARY,
            policy.to_dict(),
            lambda label: AnalysisStarted(label, ramp, policy.interval),
        )

    def submit_shadow(self, name: str, shadow: object) -> AnalysisRecord:
        """Run a shadow analysis of ``name``'s held candidate; the same plan again is a no-op."""
        if not isinstance(shadow, dict):
            raise Invalid("shadow: send the policy as an object, such as {min_pairs: 200}")
        try:
            policy = ShadowPolicy.from_dict(shadow)
        except InvalidRequestError as exc:
            raise Invalid(f"shadow: {exc}") from None
        target = self.ctx.target_of(self.ctx.get(name))
        if target is not None and target.phase == RevisionPhase.CANDIDATE:
            self.shadows.check(name, target, policy.apis)
        return self._submit(
            name,
            AnalysisKind.SHADOW,
            policy.to_dict(),
            lambda label: AnalysisStarted(
                label, f"shadow {policy.percent}% until {policy.min_pairs} pairs", policy.timeout
            ),
        )

    def _submit(
        self,
        name: str,
        kind: AnalysisKind,
        plan: dict[str, Any],
        started: Any,
    ) -> AnalysisRecord:
        dep = self.ctx.get(name)
        target = self.ctx.target_of(dep)
        if target is None or target.phase != RevisionPhase.CANDIDATE:
            state = f"revision {revision_name(target.seq)} is {target.phase}" if target else ""
            raise Conflict(
                f"deployment {name} has no ready candidate to analyse ({state or 'no revision'});"
                " deploy it as a candidate and wait until it is ready"
            )
        existing = self.records.get(target.uid)
        if existing is not None and existing.kind == kind and existing.policy == plan:
            return existing
        if existing is not None and existing.running:
            raise Conflict(
                f"candidate {existing.name} of {name} is under analysis already, with another "
                "plan; wait for its verdict, or discard the candidate"
            )
        record = self.records.save(
            AnalysisRecord(
                revision=target.uid,
                deployment=name,
                name=revision_name(target.seq),
                policy=plan,
                baseline=dep.serving_revision,
                kind=kind,
            )
        )
        self.ctx.publish(name, started(record.name))
        self._start(record)
        return record

    def latest(self, name: str) -> AnalysisRecord | None:
        return self.records.latest(name)

    async def wait(self, name: str, seen: int, timeout: float) -> AnalysisRecord | None:
        """The latest analysis of ``name`` once it has judged more than ``seen`` steps or ended,
        or as it is after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = self.records.latest(name)
            if record is None or not record.running or len(record.verdicts) > seen:
                return record
            changed = self._changed.setdefault(name, asyncio.Event())
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return self.records.latest(name)

    def progress(self, record: AnalysisRecord) -> dict[str, Any] | None:
        """The running step's figures so far: requests, seconds, and what the step needs."""
        return self._progress.get(record.revision)

    def forget(self, name: str) -> None:
        """The deployment is deleted: its analyses go with it."""
        for uid, runner in list(self._runners.items()):
            record = self.records.get(uid)
            if record is not None and record.deployment == name:
                runner.cancel()
                self._progress.pop(uid, None)
        self.records.forget(name)
        changed = self._changed.pop(name, None)
        if changed is not None:
            changed.set()

    def _moved(self, rev: Revision, phase: RevisionPhase) -> None:
        if phase != RevisionPhase.CANDIDATE:
            return
        record = self.records.get(rev.uid)
        if record is not None and record.running:
            self._start(record)

    def _start(self, record: AnalysisRecord) -> None:
        running = self._runners.get(record.revision)
        if running is not None and not running.done():
            return
        task = self.ctx.spawn(
            self._run(record.revision), deployment=record.deployment, revision=record.revision
        )
        self._runners[record.revision] = task
        task.add_done_callback(lambda _: self._runners.pop(record.revision, None))

    def _save(self, record: AnalysisRecord) -> AnalysisRecord:
        saved = self.records.save(record)
        changed = self._changed.pop(record.deployment, None)
        if changed is not None:
            changed.set()
        return saved

    def _held(self, uid: str) -> bool:
        rev = self.ctx.store.get_revision(uid)
        return rev is not None and rev.phase == RevisionPhase.CANDIDATE

    def _report(self) -> TrafficReport:
        counts = self.ctx.traffic.revisions()
        return TrafficReport(
            latency_bounds=LATENCY_BOUNDS,
            requests={uid: c.requests for uid, c in counts.items()},
            errors={uid: c.errors for uid, c in counts.items()},
            latency_buckets={uid: tuple(c.buckets) for uid, c in counts.items()},
        )

    async def _run(self, uid: str) -> None:
        record = self.records.get(uid)
        if record is None or not record.running:
            return
        if record.kind == AnalysisKind.SHADOW:
            await self._run_shadow(record)
            return
        policy = CanaryPolicy.from_dict(record.policy)
        start = self._report()
        try:
            for index in range(record.step, len(policy.steps)):
                weight = policy.steps[index]
                split = TrafficSplit(weight, RouteType(policy.route_type), policy.route_by)
                await self.commands.set_split(record.deployment, split)
                verdict = await self._step(record, weight, policy, start)
                if verdict is None:
                    return self._end(record, AnalysisState.STOPPED, self._left(uid))
                record = self._save(
                    dataclasses.replace(
                        record, step=index + 1, verdicts=(*record.verdicts, verdict.to_dict())
                    )
                )
                held = StepJudged(record.name, weight, verdict.passed, verdict.describe())
                self.ctx.publish(record.deployment, held)
                if not verdict.passed:
                    await self.commands.discard(record.deployment)
                    reason = f"at {weight}%: {'; '.join(verdict.problems)}"
                    return self._end(record, AnalysisState.DISCARDED, reason)
            await self.commands.promote(record.deployment, uid)
            steps = ", ".join(f"{weight}%" for weight in policy.steps)
            self._end(record, AnalysisState.PROMOTED, f"every step held: {steps}")
        except DomainError as exc:
            current = self.records.get(uid)
            if current is not None and current.running:
                self._end(current, AnalysisState.STOPPED, str(exc))

    async def _step(
        self, record: AnalysisRecord, weight: int, policy: CanaryPolicy, start: TrafficReport
    ) -> StepVerdict | None:
        """Watch one step until it held for its interval with enough requests, or failed; None
        when the candidate left."""
        clock = self.ctx.clock
        began = clock.monotonic()
        before = self._report()
        while True:
            await clock.sleep(min(TICK_SECONDS, policy.interval))
            if not self._held(record.revision):
                return None
            now = self._report()
            verdict = judge_step(
                policy,
                weight,
                window_stats(before, now, record.revision),
                window_stats(start, now, record.baseline),
            )
            elapsed = clock.monotonic() - began
            self._progress[record.revision] = {
                "weight": weight,
                "requests": verdict.candidate.requests,
                "min_requests": policy.min_requests,
                "seconds": round(elapsed, 3),
                "wait_limit": policy.wait_limit,
            }
            if policy.step_over(verdict.candidate.requests, verdict.passed, elapsed):
                return verdict

    async def _run_shadow(self, record: AnalysisRecord) -> None:
        """Mirror until the policy's pairs are in (or its timeout), then judge the pairs and
        promote or discard the candidate; mirroring stops either way."""
        policy = ShadowPolicy.from_dict(record.policy)
        since = datetime.fromisoformat(record.created_at).timestamp()
        shadows, clock = self.shadows, self.ctx.clock
        try:
            state = shadows.start(record.deployment, policy.percent, policy.apis, by_analysis=True)
            if state is None:
                return
            before = await shadows.count(record.deployment, record.revision, since)
            began = clock.monotonic()
            while True:
                await clock.sleep(min(TICK_SECONDS, policy.timeout))
                if not self._held(record.revision):
                    return self._end(record, AnalysisState.STOPPED, self._left(record.revision))
                if shadows.state(record.deployment) is not state:
                    return self._end(record, AnalysisState.STOPPED, "mirroring was stopped")
                pairs, elapsed = before + state.pairs, clock.monotonic() - began
                self._progress[record.revision] = {
                    "pairs": pairs,
                    "min_pairs": policy.min_pairs,
                    "dropped": sum(state.dropped.values()),
                    "seconds": round(elapsed, 3),
                    "timeout": policy.timeout,
                }
                if pairs >= policy.min_pairs or elapsed >= policy.timeout:
                    break
            report = await shadows.report(
                record.deployment, record.revision, since, policy.tolerance
            )
            verdict = judge_shadow(policy, report)
            figures = verdict.describe(report)
            step = {"passed": verdict.passed, "problems": list(verdict.problems)}
            record = self._save(
                dataclasses.replace(
                    record, step=1, verdicts=({**step, "report": report.to_dict()},)
                )
            )
            self.ctx.publish(record.deployment, ShadowJudged(record.name, verdict.passed, figures))
            shadows.stop(record.deployment, "the shadow analysis reached its verdict")
            if not verdict.passed:
                await self.commands.discard(record.deployment)
                return self._end(record, AnalysisState.DISCARDED, "; ".join(verdict.problems))
            await self.commands.promote(record.deployment, record.revision)
            self._end(record, AnalysisState.PROMOTED, report.summary())
        except DomainError as exc:
            current = self.records.get(record.revision)
            if current is not None and current.running:
                self._end(current, AnalysisState.STOPPED, str(exc))
        finally:
            state_now = shadows.state(record.deployment)
            ours = state_now is not None and state_now.candidate == record.revision
            if (
                ours
                and state_now is not None
                and state_now.by_analysis
                and not self._running(record.revision)
            ):
                shadows.stop(record.deployment, "the shadow analysis ended")

    def _running(self, uid: str) -> bool:
        current = self.records.get(uid)
        return current is not None and current.running

    def _left(self, uid: str) -> str:
        rev = self.ctx.store.get_revision(uid)
        phase = rev.phase if rev is not None else "deleted"
        return f"the candidate left before the verdict (it is {phase})"

    def _end(self, record: AnalysisRecord, state: AnalysisState, reason: str) -> None:
        self._progress.pop(record.revision, None)
        self._save(dataclasses.replace(record, state=state, reason=reason))
        self.ctx.publish(record.deployment, AnalysisEnded(record.name, str(state), reason))
        log.info("analysis of %s %s: %s (%s)", record.deployment, record.name, state, reason)
