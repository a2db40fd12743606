"""The canary analysis step: ramp the candidate's share, check it at each step, then decide."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..canary import CanaryAnalysis, CanaryPolicy, StepVerdict, judge_step, window_stats
from ..client import Client
from ..errors import CanaryFailed, InvalidRequestError
from ..models import Rollout, RolloutLike, TrafficReport
from ..signals import terminated_raises
from ..step_spans import traced_step
from .promote import promote

__all__ = ["analysis_from", "analyze_canary", "rejection"]

log = logging.getLogger("bentoship.steps")

TICK_SECONDS = 1.0


@traced_step("canary")
def analyze_canary(
    target: RolloutLike,
    policy: CanaryPolicy | dict[str, Any] | None = None,
    *,
    client: Client | None = None,
    raise_on_failure: bool = True,
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryAnalysis:
    """Ramp the rollout's candidate over ``policy.steps`` and promote it, or discard it.

    At each step the candidate gets that percentage of the endpoint's live traffic for
    ``policy.interval`` seconds; its success rate and p99 in that window, from the endpoint's
    per-revision counts, are checked against the policy and against the baseline (the revision
    serving until now, over the whole analysis). A step that fails discards the candidate at
    once: the endpoint goes back to the baseline alone. Returns the verdict and every step's
    figures; with ``raise_on_failure`` a discarded candidate raises CanaryFailed, which carries
    them too.
    """
    policy = policy if isinstance(policy, CanaryPolicy) else CanaryPolicy.from_dict(policy)
    client = client or Client()
    rollout = Rollout.parse(target)
    missing = {"candidates", "canary", "traffic"} - client.get_extensions()
    if missing:
        raise InvalidRequestError(
            f"canary analysis needs per-revision traffic counts, which {client.endpoint} does not "
            "have (plain BentoCloud); promote after the smoke test instead"
        )
    dep = client.get_deployment(rollout.name)
    if not rollout.candidate or dep.candidate_revision != rollout.revision:
        raise InvalidRequestError(
            f"revision {rollout.revision} of {rollout.name} is not a ready candidate; deploy it "
            "with candidate=True and wait until it is ready before the analysis"
        )
    if "analysis" in client.get_extensions():
        return _watch_plan(client, rollout, policy, raise_on_failure, timeout)
    log.info(
        "%s runs no analysis plans; this step runs the canary analysis of %s itself",
        client.endpoint,
        rollout.revision,
    )
    baseline = dep.serving_revision
    verdicts: list[StepVerdict] = []
    with terminated_raises():
        try:
            start = client.traffic(rollout.name)
            for weight in policy.steps:
                client.set_canary(rollout.name, weight, policy.route_type, policy.route_by)
                log.info(
                    "canary %s of %s: %d%% of the traffic", rollout.revision, rollout.name, weight
                )
                verdict = _run_step(client, rollout, baseline, weight, policy, start, sleep)
                verdicts.append(verdict)
                log.info("canary %s of %s %s", rollout.revision, rollout.name, verdict.describe())
                if not verdict.passed:
                    return _reject(client, rollout, baseline, policy, verdicts, raise_on_failure)
        except CanaryFailed:
            raise
        except BaseException as exc:
            log.error(
                "canary analysis of %s stopped (%s); discarding the candidate",
                rollout.name,
                _stopped_by(exc),
            )
            client.discard(rollout.name)
            raise
    promote(rollout, client=client, timeout=timeout)
    analysis = CanaryAnalysis(
        rollout.name,
        rollout.revision,
        baseline,
        "promoted",
        f"every step held: {', '.join(f'{w}%' for w in policy.steps)}",
        verdicts,
        policy,
    )
    log.info("canary %s of %s promoted: %s", rollout.revision, rollout.name, analysis.reason)
    return analysis


def _watch_plan(
    client: Client,
    rollout: Rollout,
    policy: CanaryPolicy,
    raise_on_failure: bool,
    timeout: float,
) -> CanaryAnalysis:
    """Submit the plan to the control plane, then watch it to its verdict; a watcher stopped
    from outside leaves the plan running."""
    name, revision = rollout.name, rollout.revision
    record = client.start_analysis(name, policy.to_dict())
    log.info(
        "canary %s of %s: the control plane runs the analysis (steps %s, %g s each); "
        "this step watches it",
        revision,
        name,
        ", ".join(f"{weight}%" for weight in policy.steps),
        policy.interval,
    )
    deadline = time.monotonic() + timeout
    seen = 0
    with terminated_raises():
        try:
            while True:
                for step in record["steps"][seen:]:
                    log.info(
                        "canary %s of %s %s", revision, name, StepVerdict.from_dict(step).describe()
                    )
                seen = len(record["steps"])
                if record["state"] != "running":
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CanaryFailed(
                        f"canary {revision} of {name} has no verdict after {timeout:g} s; the "
                        "control plane goes on with it (`bentoship status` shows the verdict)",
                        deployment=name,
                        analysis=record,
                    )
                record = client.analysis(name, seen=seen, timeout=min(left, policy.interval, 30.0))
                if record["state"] == "running" and len(record["steps"]) == seen:
                    _tell_progress(name, revision, record.get("progress"))
        except (KeyboardInterrupt, SystemExit) as exc:
            log.warning(
                "stopped watching (%s); the control plane goes on with the analysis of %s to "
                "its verdict",
                _stopped_by(exc),
                revision,
            )
            raise
    analysis = analysis_from(record)
    if analysis.promoted:
        log.info("canary %s of %s promoted: %s", revision, name, analysis.reason)
        return analysis
    log.error("%s", rejection(analysis, record["state"]))
    if raise_on_failure:
        raise CanaryFailed(
            rejection(analysis, record["state"]), deployment=name, analysis=analysis.to_dict()
        )
    return analysis


def analysis_from(record: dict[str, Any]) -> CanaryAnalysis:
    """The :class:`CanaryAnalysis` of an analysis the control plane ran (its route's JSON)."""
    promoted = record["state"] == "promoted"
    return CanaryAnalysis(
        str(record["deployment"]),
        record.get("revision"),
        record.get("baseline"),
        "promoted" if promoted else "rolled_back",
        str(record.get("reason") or ""),
        [StepVerdict.from_dict(step) for step in record.get("steps") or ()],
        CanaryPolicy.from_dict(record.get("policy")),
    )


def rejection(analysis: CanaryAnalysis, state: str) -> str:
    """Why a candidate was not promoted, in a line: ``state`` is ``discarded`` or ``stopped``."""
    return (
        f"canary {analysis.candidate} of {analysis.deployment} was {state} {analysis.reason}; "
        f"{analysis.deployment} serves revision {analysis.baseline} again"
    )


def _tell_progress(name: str, revision: str | None, progress: dict[str, Any] | None) -> None:
    """Say what the running step waits for, from the control plane's figures so far."""
    if not progress:
        return
    if progress["requests"] < progress["min_requests"]:
        _tell_waiting(
            name,
            revision,
            progress["weight"],
            progress["requests"],
            progress["min_requests"],
            progress["seconds"],
            progress["wait_limit"],
        )
    else:
        log.info(
            "canary %s of %s at %d%%: %d requests after %.0f s; the step goes on",
            revision,
            name,
            progress["weight"],
            progress["requests"],
            progress["seconds"],
        )


def _tell_waiting(
    name: str,
    revision: str | None,
    weight: int,
    requests: int,
    needed: int,
    seconds: float,
    wait_limit: float,
) -> None:
    log.info(
        "canary %s of %s at %d%%: waiting for traffic, %d of %d requests after %.0f s "
        "(the step fails after %.0f s)",
        revision,
        name,
        weight,
        requests,
        needed,
        seconds,
        wait_limit,
    )


def _stopped_by(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, SystemExit):
        return "terminated"
    return f"{type(exc).__name__}: {exc}"


def _run_step(
    client: Client,
    rollout: Rollout,
    baseline: str | None,
    weight: int,
    policy: CanaryPolicy,
    start: TrafficReport,
    sleep: Callable[[float], None],
) -> StepVerdict:
    """Watch one step until it has held for its interval with enough requests, or failed."""
    began = time.monotonic()
    told = began
    before = client.traffic(rollout.name)
    while True:
        sleep(min(TICK_SECONDS, policy.interval))
        now = client.traffic(rollout.name)
        verdict = judge_step(
            policy,
            weight,
            window_stats(before, now, rollout.revision),
            window_stats(start, now, baseline),
        )
        elapsed = time.monotonic() - began
        requests = verdict.candidate.requests
        if policy.step_over(requests, verdict.passed, elapsed):
            return verdict
        if requests < policy.min_requests and time.monotonic() - told >= policy.interval:
            told = time.monotonic()
            _tell_waiting(
                rollout.name,
                rollout.revision,
                weight,
                requests,
                policy.min_requests,
                elapsed,
                policy.wait_limit,
            )


def _reject(
    client: Client,
    rollout: Rollout,
    baseline: str | None,
    policy: CanaryPolicy,
    verdicts: list[StepVerdict],
    raise_on_failure: bool,
) -> CanaryAnalysis:
    failed = verdicts[-1]
    reason = f"at {failed.weight}%: {'; '.join(failed.problems)}"
    client.discard(rollout.name)
    analysis = CanaryAnalysis(
        rollout.name, rollout.revision, baseline, "rolled_back", reason, verdicts, policy
    )
    message = (
        f"canary {rollout.revision} of {rollout.name} was discarded {reason}; "
        f"{rollout.name} serves revision {baseline} again"
    )
    log.error("%s", message)
    if raise_on_failure:
        raise CanaryFailed(message, deployment=rollout.name, analysis=analysis.to_dict())
    return analysis
