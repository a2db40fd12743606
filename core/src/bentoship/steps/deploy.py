"""The deploy step: create or update a deployment, idempotently, and record how to undo it."""

from __future__ import annotations

import logging
from typing import Any

from ..client import Client
from ..models import DeploymentConfig, DeploymentInfo, RevisionInfo, Rollout, config_matches
from ..refs import find_revision
from ..statuses import FAILED_STATUSES
from ..step_spans import traced_step
from ..tags import check_tag

log = logging.getLogger("bentoship.steps")

SERVED_PHASES = frozenset({"serving", "warm", "retired"})
HELD_PHASES = frozenset({"starting", "candidate"})

Previous = tuple[str | None, str | None, dict[str, Any] | None]
NO_PREVIOUS: Previous = (None, None, None)


def _of(revision: RevisionInfo | None) -> Previous:
    return (
        (revision.name or revision.uid, revision.bento, revision.config)
        if revision
        else NO_PREVIOUS
    )


def previous_before_update(client: Client, current: DeploymentInfo) -> Previous:
    """What serves now, which an update replaces."""
    if "revisions" not in client.get_extensions():
        return current.target_revision, current.bento or None, current.config or None
    if not current.serving_revision:
        return NO_PREVIOUS
    if current.serving_revision == current.target_revision:
        return current.target_revision, current.bento, current.config
    return _of(find_revision(client.list_revisions(current.name), current.serving_revision))


def previous_of_target(client: Client, current: DeploymentInfo) -> Previous:
    """The newest revision before the target that served (for a deploy that changed nothing)."""
    if "revisions" not in client.get_extensions():
        return NO_PREVIOUS
    revisions = client.list_revisions(current.name)
    target = find_revision(revisions, current.target_revision or "")
    older = revisions[revisions.index(target) + 1 :] if target is not None else []
    return _of(next((r for r in older if r.phase in SERVED_PHASES), None))


def secrets_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """Secrets both configs give whose pinned versions differ (the server's ``secret_versions``)."""
    old = (before or {}).get("secret_versions") or {}
    new = after.get("secret_versions") or {}
    return [name for name, version in new.items() if name in old and old[name] != version]


@traced_step("deploy")
def deploy(
    name: str,
    bento: str,
    config: DeploymentConfig | dict[str, Any] | None = None,
    *,
    candidate: bool = False,
    client: Client | None = None,
) -> Rollout:
    """Create ``name`` running ``bento``, or update it; return the :class:`Rollout`.

    With ``candidate``, the new revision is held for verification once ready: it answers on
    the deployment's candidate URL (``Rollout.url``) and takes no live traffic until
    :func:`promote`. A server without candidates (plain BentoCloud) gets an ordinary update,
    and the step logs that it did. Re-applying the same bento and config creates no new
    revision, so a retried task is safe. With ``secrets`` on the local control plane, the update
    is always sent: a secret updated since the serving revision started gives a new revision
    with its new version, and the step logs which secrets changed.
    """
    check_tag(bento)
    client = client or Client()
    if candidate and "candidates" not in client.get_extensions():
        log.warning(
            "%s has no candidate revisions (plain BentoCloud): %s goes straight to the endpoint, "
            "and it is verified only after it takes traffic",
            client.endpoint,
            bento,
        )
        candidate = False
    settings = (
        config if isinstance(config, DeploymentConfig) else DeploymentConfig.from_dict(config)
    )
    bento, entry = client.resolve_bento(bento)
    body = settings.to_api(entry)
    current = client.find_deployment(name)
    if current is None:
        created = client.create_deployment(name, bento, body, candidate=candidate)
        return _rollout(name, bento, created, candidate, created=True)
    held = current.target_phase in HELD_PHASES and current.target_revision is not None
    pinned = bool(body.get("secrets")) and "revisions" in client.get_extensions()
    unchanged = (
        not pinned
        and current.bento == bento
        and config_matches(body, current.config)
        and current.status not in FAILED_STATUSES
        and (not held or (current.candidate_revision is not None) == candidate)
    )
    if unchanged:
        result, previous, changed = current, previous_of_target(client, current), False
    else:
        previous = previous_before_update(client, current)
        result = client.update_deployment(name, bento, body, candidate=candidate)
        changed = result.target_revision != current.target_revision
        if pinned and not changed:
            previous = previous_of_target(client, current)
        if changed:
            for secret in secrets_changed(previous[2], result.config):
                log.warning(
                    "%s: secret %r changed since %s; revision %s gets its new version",
                    name,
                    secret,
                    previous[0],
                    result.target_revision,
                )
    return _rollout(name, bento, result, candidate, previous=previous, changed=changed)


def _rollout(
    name: str,
    bento: str,
    dep: DeploymentInfo,
    candidate: bool,
    *,
    previous: Previous = NO_PREVIOUS,
    created: bool = False,
    changed: bool = True,
) -> Rollout:
    held = candidate and dep.target_phase in HELD_PHASES
    if dep.recreate and changed:
        log.warning("deployment %s: %s", name, dep.recreate)
    return Rollout(
        name=name,
        bento=bento,
        revision=dep.target_revision,
        endpoint_url=dep.url,
        previous_revision=previous[0],
        previous_bento=previous[1],
        previous_config=previous[2],
        created=created,
        changed=changed,
        candidate=held,
        candidate_url=dep.candidate_url if held else "",
    )
