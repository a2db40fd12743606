"""Deployment statuses, as BentoCloud names them."""

from __future__ import annotations

from enum import StrEnum


class DeploymentStatus(StrEnum):
    DEPLOYING = "deploying"
    RUNNING = "running"
    FAILED = "failed"
    UNHEALTHY = "unhealthy"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    SCALED_TO_ZERO = "scaled-to-zero"
    UNKNOWN = "unknown"


READY_STATUSES = frozenset({DeploymentStatus.RUNNING, DeploymentStatus.SCALED_TO_ZERO})
FAILED_STATUSES = frozenset(
    {
        DeploymentStatus.FAILED,
        DeploymentStatus.UNHEALTHY,
        DeploymentStatus.TERMINATING,
        DeploymentStatus.TERMINATED,
        "image-build-failed",
    }
)
