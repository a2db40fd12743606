"""The deploy step: create or update a deployment, idempotently, and record how to undo it."""

from __future__ import annotations

from typing import Any

from ..client import Client
from ..models import DeploymentConfig, DeploymentInfo, RevisionInfo, Rollout, config_matches
from ..refs import find_revision
from ..statuses import FAILED_STATUSES
from ..tags import check_tag

SERVED_PHASES = frozenset({"serving", "warm", "retired"})

Previous = tuple[str | None, str | None, dict[str, Any] | None]
NO_PREVIOUS: Previous = (None, None, None)


def _of(revision: RevisionInfo | None) -> Previous:
    return (revision.uid, revision.bento, revision.config) if revision else NO_PREVIOUS


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
    uids = [r.uid for r in revisions]
    older = (
        revisions[uids.index(current.target_revision) + 1 :]
        if current.target_revision in uids
        else []
    )
    return _of(next((r for r in older if r.phase in SERVED_PHASES), None))


def deploy(
    name: str,
    bento: str,
    config: DeploymentConfig | dict[str, Any] | None = None,
    *,
    client: Client | None = None,
) -> Rollout:
    """Create ``name`` running ``bento``, or update it; return the :class:`Rollout`.

    Re-applying the same bento and config creates no new revision, so a retried task is safe.
    """
    check_tag(bento)
    client = client or Client()
    settings = (
        config if isinstance(config, DeploymentConfig) else DeploymentConfig.from_dict(config)
    )
    body = settings.to_api(client.entry_service(bento))
    current = client.find_deployment(name)
    if current is None:
        created = client.create_deployment(name, bento, body)
        return Rollout(
            name=name,
            bento=bento,
            revision=created.target_revision,
            endpoint_url=created.url,
            created=True,
        )
    unchanged = (
        current.bento == bento
        and config_matches(body, current.config)
        and current.status not in FAILED_STATUSES
    )
    if unchanged:
        result, previous, changed = current, previous_of_target(client, current), False
    else:
        previous = previous_before_update(client, current)
        result = client.update_deployment(name, bento, body)
        changed = result.target_revision != current.target_revision
    return Rollout(
        name=name,
        bento=bento,
        revision=result.target_revision,
        endpoint_url=result.url,
        previous_revision=previous[0],
        previous_bento=previous[1],
        previous_config=previous[2],
        changed=changed,
    )
