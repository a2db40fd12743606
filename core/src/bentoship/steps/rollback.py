"""The rollback step: return a deployment to its previous good revision, or to a named one."""

from __future__ import annotations

import logging

from ..client import Client
from ..errors import InvalidRequestError
from ..models import DeploymentInfo, Rollout, RolloutLike, rollout_target
from ..rollouts import RolloutState, judge
from ..step_spans import traced_step
from .wait import wait_until_ready

__all__ = ["abort", "rollback"]

log = logging.getLogger("bentoship.steps")


@traced_step("rollback")
def rollback(
    target: RolloutLike,
    *,
    revision: str | None = None,
    client: Client | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    force: bool = False,
) -> DeploymentInfo | None:
    """Roll ``target`` back and (by default) wait until the restored revision serves.

    A Rollout still held as a candidate is discarded: the endpoint never left the revision
    it serves. With a Rollout it returns to the revision the deploy step replaced; with a name,
    to ``revision`` or the server's previous good revision (one that served: a revision that
    failed or was discarded as a candidate is refused unless ``force``). Against plain
    BentoCloud it re-applies
    the previous bento and config recorded in the Rollout. Returns None when a Rollout has
    nothing to roll back to (its deploy created the deployment).
    """
    client = client or Client()
    resolved = rollout_target(target)
    rollout = resolved if isinstance(resolved, Rollout) else None
    name = rollout.name if rollout else str(resolved)
    if rollout is not None and rollout.candidate and revision is None:
        held = _held_candidate(client, rollout)
        if held is not None:
            return held
    wanted = revision or (rollout.previous_revision if rollout else None)
    if rollout is not None and wanted is None and rollout.previous_bento is None:
        log.warning("deployment %s has no earlier revision to roll back to; left as it is", name)
        return None
    if "rollback" in client.get_extensions():
        dep = client.rollback(name, wanted, force=force)
    elif rollout is not None and rollout.previous_bento:
        dep = client.update_deployment(name, rollout.previous_bento, rollout.previous_config or {})
    else:
        raise InvalidRequestError(
            f"this server has no rollback API: roll {name} back with the deploy step's rollout "
            "record, which holds the previous bento and config"
        )
    log.info("rolling %s back to revision %s", name, dep.target_revision)
    if not wait:
        return dep
    return wait_until_ready(
        Rollout(name=name, bento=dep.bento, revision=dep.target_revision, endpoint_url=dep.url),
        client=client,
        timeout=timeout,
        poll_interval=poll_interval,
    )


def _held_candidate(client: Client, rollout: Rollout) -> DeploymentInfo | None:
    """Discard the rollout's revision if it is still held as a candidate (it never served)."""
    if "candidates" not in client.get_extensions():
        return None
    dep = client.get_deployment(rollout.name)
    if dep.target_revision != rollout.revision or dep.candidate_revision != rollout.revision:
        return None
    discarded = client.discard(rollout.name)
    log.info(
        "discarded candidate %s of %s; the endpoint keeps revision %s",
        rollout.revision,
        rollout.name,
        discarded.serving_revision,
    )
    return discarded


def abort(target: RolloutLike, *, client: Client | None = None) -> str:
    """Undo ``rollout`` if it is still in progress; say in one line what was done.

    For a task killed mid-rollout: a rollout that already serves, that changed nothing, or that
    someone has since replaced is left alone; one that created the deployment has nothing to
    return to.
    """
    rollout = Rollout.parse(target)
    if not rollout.changed:
        return f"deployment {rollout.name} left as it is: this deploy changed nothing"
    client = client or Client()
    dep = client.find_deployment(rollout.name)
    if dep is None or dep.target_revision != rollout.revision:
        return f"deployment {rollout.name} left as it is: it no longer targets this rollout"
    if judge(dep, rollout.revision)[0] is RolloutState.READY:
        return f"deployment {rollout.name} left as it is: the rollout already serves"
    restored = rollback(rollout, client=client, wait=False)
    if restored is None:
        return f"deployment {rollout.name} left as it is: this rollout created it"
    return f"rolled {rollout.name} back to revision {restored.target_revision}"
