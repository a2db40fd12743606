"""The promote and discard steps: end a candidate's verification one way or the other."""

from __future__ import annotations

import dataclasses
import logging

from ..client import Client
from ..models import DeploymentInfo, Rollout, RolloutLike, rollout_target
from ..step_spans import traced_step
from .rollback import rollback
from .wait import wait_until_ready

__all__ = ["discard", "promote", "promoted_record"]

log = logging.getLogger("bentoship.steps")


def promoted_record(rollout: Rollout) -> Rollout:
    """The rollout record once its candidate took the endpoint."""
    return dataclasses.replace(rollout, candidate=False, candidate_url="")


@traced_step("promote")
def promote(
    target: RolloutLike,
    *,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
) -> Rollout:
    """Switch the deployment's endpoint to the candidate, wait until it serves, return it.

    ``target`` is the deploy step's Rollout (promoting exactly its revision) or a deployment
    name (promoting its current candidate). A rollout that is not a candidate (deployed without
    verification, or to plain BentoCloud) already serves: it is returned as it is.
    """
    client = client or Client()
    resolved = rollout_target(target)
    rollout = resolved if isinstance(resolved, Rollout) else None
    if rollout is not None and not rollout.candidate:
        log.info(
            "%s: revision %s is not a candidate; nothing to promote", rollout.name, rollout.revision
        )
        return rollout
    name = rollout.name if rollout else str(resolved)
    dep = client.promote(name, rollout.revision if rollout else None)
    promoted = (
        promoted_record(rollout)
        if rollout is not None
        else Rollout(name=name, bento=dep.bento, revision=dep.target_revision, endpoint_url=dep.url)
    )
    wait_until_ready(promoted, client=client, timeout=timeout, poll_interval=poll_interval)
    log.info("promoted %s revision %s: it serves %s", name, promoted.revision, dep.url)
    return promoted


def discard(
    target: RolloutLike,
    *,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
) -> DeploymentInfo | None:
    """Stop the candidate; the endpoint keeps serving what it served.

    ``target`` is the deploy step's Rollout, or a deployment name (its current candidate). A
    Rollout that already took the endpoint (promoted, or deployed without verification) is
    rolled back instead, as :func:`rollback` does. Returns the deployment, or None when there
    was nothing to undo.
    """
    client = client or Client()
    resolved = rollout_target(target)
    if isinstance(resolved, Rollout):
        if not resolved.candidate:
            dep = client.find_deployment(resolved.name)
            if dep is None or dep.target_revision != resolved.revision:
                log.info("%s no longer targets %s; left as it is", resolved.name, resolved.revision)
                return None
        return rollback(resolved, client=client, timeout=timeout, poll_interval=poll_interval)
    dep = client.get_deployment(resolved)
    if dep.candidate_revision is None:
        log.info("deployment %s has no candidate to discard", resolved)
        return None
    discarded = client.discard(resolved)
    log.info("discarded candidate %s of %s", dep.candidate_revision, resolved)
    return discarded
