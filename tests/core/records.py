"""State-store records for tests that build a controller on a real Store without a server."""

from __future__ import annotations

from bentoship.server.rollout.phases import Lifecycle
from bentoship.server.store import Deployment


def deployment_record(
    name: str, *, target: str | None = None, serving: str | None = None
) -> Deployment:
    """An active deployment ``name`` targeting and serving the given revision uids."""
    return Deployment(
        name=name,
        uid=f"{name}-uid",
        cluster="local",
        created_at="2026-01-01T00:00:00Z",
        updated_at=None,
        state=Lifecycle.ACTIVE,
        target_revision=target,
        serving_revision=serving,
        endpoint_port=None,
        reason="",
    )
