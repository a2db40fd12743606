"""The ship step: push, deploy a candidate, wait, smoke-test it, then promote (or canary).

Any failure discards the candidate, so no live request ever reaches a revision that failed
its verification.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..canary import CanaryPolicy
from ..client import Client
from ..errors import InvalidRequestError
from ..models import DeploymentConfig, Rollout
from ..shadow.policy import ShadowPolicy
from ..step_spans import traced_step
from .canary import analyze_canary
from .deploy import deploy
from .promote import discard, promote, promoted_record
from .push import push
from .shadow import analyze_shadow
from .smoke import SmokeTest, smoke_test
from .wait import wait_until_ready

log = logging.getLogger("bentoship.steps")


@traced_step("ship")
def ship(
    name: str,
    bento: str | Path,
    config: DeploymentConfig | dict[str, Any] | None = None,
    *,
    smoke: SmokeTest | None = None,
    canary: CanaryPolicy | dict[str, Any] | None = None,
    shadow: ShadowPolicy | dict[str, Any] | None = None,
    verify: bool = True,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    token: str | None = None,
) -> Rollout:
    """Push ``bento`` and ship it as ``name``: verified before it takes live traffic.

    The new revision starts as a candidate; once ready, ``smoke`` is run against the candidate
    URL; then, with ``shadow`` (a :class:`ShadowPolicy`), a copy of live requests is mirrored
    to it and its answers compared with the serving revision's, which promotes it or discards
    it; else it is promoted, or ramped up by canary analysis with ``canary`` (a
    :class:`CanaryPolicy`, which promotes or discards by itself). Any failure discards the
    candidate before the error is re-raised. ``verify=False`` (and plain BentoCloud, which has
    no candidates) deploys straight to the endpoint and smoke-tests it there, rolling back on
    failure.
    """
    if shadow is not None and canary is not None:
        raise InvalidRequestError("ship: pass shadow= or canary=, not both; each one promotes")
    client = client or Client()
    tag = push(bento, client=client)
    rollout = deploy(name, tag, config, candidate=verify, client=client)
    try:
        wait_until_ready(rollout, client=client, timeout=timeout, poll_interval=poll_interval)
        if smoke is not None:
            smoke_test(rollout, smoke, token=token, client=client)
        if shadow is not None and rollout.candidate:
            analyze_shadow(rollout, shadow, client=client)  # promotes, or raises
            return promoted_record(rollout)
        if canary is not None and rollout.candidate:
            analyze_canary(rollout, canary, client=client, timeout=timeout)  # promotes, or raises
            return promoted_record(rollout)
        return promote(rollout, client=client, timeout=timeout, poll_interval=poll_interval)
    except Exception as exc:
        log.error("shipping %s to %s failed (%s); discarding it", tag, name, exc)
        discard(rollout, client=client, timeout=timeout, poll_interval=poll_interval)
        raise
