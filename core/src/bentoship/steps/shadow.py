"""The shadow analysis step: mirror live requests to the candidate, compare its answers with
the serving revision's, then promote or discard it. The control plane runs the analysis; the
step submits it and watches."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..client import Client
from ..errors import InvalidRequestError, ShadowFailed
from ..models import Rollout, RolloutLike
from ..shadow.analysis import ShadowAnalysis
from ..shadow.policy import ShadowPolicy
from ..signals import terminated_raises
from ..step_spans import traced_step

__all__ = ["analyze_shadow", "shadow_rejection", "start_shadow"]

log = logging.getLogger("bentoship.steps")

POLL_SECONDS = 10.0


@traced_step("shadow")
def analyze_shadow(
    target: RolloutLike,
    policy: ShadowPolicy | dict[str, Any] | None = None,
    *,
    client: Client | None = None,
    raise_on_failure: bool = True,
    timeout: float | None = None,
) -> ShadowAnalysis:
    """Mirror ``policy.percent`` of the endpoint's live requests to the rollout's held
    candidate until ``policy.min_pairs`` pairs of answers are in (or ``policy.timeout``), then
    promote it when its answers agree with the serving revision's (and its errors and latency
    hold), else discard it. Callers get the serving revision's answers throughout.

    The control plane runs the analysis, so a step that dies leaves nothing mirroring: the
    analysis ends on its own. Returns the verdict and the report of the pairs; with
    ``raise_on_failure`` a discarded candidate raises ShadowFailed, which carries them too.
    ``timeout`` bounds the watch (default: the policy's timeout plus a minute).
    """
    policy = policy if isinstance(policy, ShadowPolicy) else ShadowPolicy.from_dict(policy)
    client = client or Client()
    rollout = Rollout.parse(target)
    name, revision = rollout.name, rollout.revision
    record = start_shadow(rollout, policy, client=client)
    limit = timeout if timeout is not None else policy.timeout + 60.0
    deadline = time.monotonic() + limit
    with terminated_raises():
        try:
            while record["state"] == "running":
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ShadowFailed(
                        f"shadow {revision} of {name} has no verdict after {limit:g} s; the "
                        "control plane goes on with it (`bentoship status` shows the verdict)",
                        deployment=name,
                        analysis=ShadowAnalysis.from_record(record),
                    )
                record = client.analysis(name, seen=0, timeout=min(left, POLL_SECONDS))
                _tell_progress(name, revision, record.get("progress"))
        except (KeyboardInterrupt, SystemExit):
            log.warning(
                "stopped watching; the control plane goes on with the shadow analysis of %s to "
                "its verdict",
                revision,
            )
            raise
    analysis = ShadowAnalysis.from_record(record)
    if analysis.promoted:
        log.info("shadow %s of %s promoted: %s", revision, name, analysis.reason)
        return analysis
    message = shadow_rejection(analysis)
    log.error("%s", message)
    if raise_on_failure:
        raise ShadowFailed(message, deployment=name, analysis=analysis)
    return analysis


def start_shadow(
    target: RolloutLike, policy: ShadowPolicy | dict[str, Any] | None = None, *, client: Client
) -> dict[str, Any]:
    """Check that ``target`` is a ready candidate on a control plane that mirrors, then have
    the control plane run the shadow analysis (the same plan again is a no-op); returns the
    analysis route's JSON, whose ``state`` is ``running`` until the verdict."""
    policy = policy if isinstance(policy, ShadowPolicy) else ShadowPolicy.from_dict(policy)
    rollout = Rollout.parse(target)
    name, revision = rollout.name, rollout.revision
    if "shadow" not in client.get_extensions():
        raise InvalidRequestError(
            f"shadow analysis needs a control plane that mirrors requests, which "
            f"{client.endpoint} does not (plain BentoCloud); use a smoke test or canary "
            "analysis there instead"
        )
    dep = client.get_deployment(name)
    if not rollout.candidate or dep.candidate_revision != revision:
        raise InvalidRequestError(
            f"revision {revision} of {name} is not a ready candidate; deploy it with "
            "candidate=True and wait until it is ready before the shadow analysis"
        )
    record = client.start_analysis(name, shadow=policy.to_dict())
    apis = ", ".join(policy.apis) if policy.apis else "every API"
    log.info(
        "shadow %s of %s: the control plane mirrors %d%% of the requests to %s until %d pairs "
        "(at most %g s)",
        revision,
        name,
        policy.percent,
        apis,
        policy.min_pairs,
        policy.timeout,
    )
    return record


def shadow_rejection(analysis: ShadowAnalysis) -> str:
    """Why the candidate was not promoted, in a line."""
    return (
        f"shadow {analysis.candidate} of {analysis.deployment} was {analysis.verdict}: "
        f"{analysis.reason}; {analysis.deployment} serves revision {analysis.baseline} still"
    )


def _tell_progress(name: str, revision: str | None, progress: dict[str, Any] | None) -> None:
    if progress:
        log.info(
            "shadow %s of %s: %d of %d pairs after %.0f s (%d dropped)",
            revision,
            name,
            progress["pairs"],
            progress["min_pairs"],
            progress["seconds"],
            progress["dropped"],
        )
