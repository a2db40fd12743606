"""State-store records for tests that build a controller on a real Store without a server."""

from __future__ import annotations

from bentoship.server.rollout.phases import Lifecycle, RevisionPhase
from bentoship.server.store import Deployment, Revision


def deployment_record(
    name: str, *, target: str | None = None, serving: str | None = None
) -> Deployment:
    """An active deployment ``name`` targeting revision ``target``; ``serving`` is what a read
    would derive from its revisions (a store keeps only those)."""
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


SERVED = (RevisionPhase.SERVING, RevisionPhase.WARM, RevisionPhase.RETIRED)
"""The phases of a revision that the endpoint has switched to."""


def revision_record(
    deployment: str, seq: int, phase: RevisionPhase, ready_at: str | None = None
) -> Revision:
    """Revision ``seq`` of ``deployment`` (uid ``<deployment>-<seq>``, bento ``echo:v<seq>``)."""
    return Revision(
        uid=f"{deployment}-{seq}",
        deployment=deployment,
        seq=seq,
        bento=f"echo:v{seq}",
        config={},
        created_at=f"2026-01-01T00:00:0{seq}Z",
        phase=phase,
        ready_at=ready_at,
        activated_at=ready_at if phase in SERVED else None,
    )
