"""bentoship: ship BentoML services from ML pipelines.

The client, the models and the rollout checks are imported lazily, so ``import bentoship``
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    ApprovalRejected,
    AuthenticationError,
    BentoshipError,
    BuildFailed,
    CanaryFailed,
    ConfigError,
    DeploymentFailed,
    InvalidRequestError,
    MissingExtraError,
    NotFoundError,
    QualityFailed,
    ResponseLost,
    ServerUnavailableError,
    ShadowFailed,
    SmokeTestFailed,
)
from .statuses import DeploymentStatus

if TYPE_CHECKING:
    from ._http import RetryPolicy
    from .canary import CanaryAnalysis, CanaryPolicy
    from .client import AsyncClient, Client
    from .models import (
        DeploymentConfig,
        DeploymentInfo,
        ReplicaCount,
        RevisionInfo,
        Rollout,
        RolloutLike,
        TrafficReport,
    )
    from .quality import QualityPolicy, QualityReport
    from .rollouts import RolloutCheck, RolloutState, acheck_rollout, check_rollout
    from .shadow import (
        ShadowAnalysis,
        ShadowPair,
        ShadowPolicy,
        ShadowReport,
        compare_answers,
    )

_LAZY = {
    "Client": "client",
    "AsyncClient": "client",
    "RetryPolicy": "_http",
    "CanaryAnalysis": "canary",
    "CanaryPolicy": "canary",
    "TrafficReport": "models",
    "DeploymentConfig": "models",
    "DeploymentInfo": "models",
    "ReplicaCount": "models",
    "RevisionInfo": "models",
    "Rollout": "models",
    "RolloutLike": "models",
    "RolloutCheck": "rollouts",
    "RolloutState": "rollouts",
    "check_rollout": "rollouts",
    "acheck_rollout": "rollouts",
    "QualityPolicy": "quality",
    "QualityReport": "quality",
    "ShadowAnalysis": "shadow",
    "ShadowPolicy": "shadow",
    "ShadowPair": "shadow",
    "ShadowReport": "shadow",
    "compare_answers": "shadow",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bentoship' has no attribute {name!r}")


__all__ = [
    "ApprovalRejected",
    "AsyncClient",
    "AuthenticationError",
    "BentoshipError",
    "BuildFailed",
    "CanaryAnalysis",
    "CanaryFailed",
    "CanaryPolicy",
    "Client",
    "ConfigError",
    "DeploymentConfig",
    "DeploymentFailed",
    "DeploymentInfo",
    "DeploymentStatus",
    "InvalidRequestError",
    "MissingExtraError",
    "NotFoundError",
    "QualityFailed",
    "QualityPolicy",
    "QualityReport",
    "ReplicaCount",
    "ResponseLost",
    "RetryPolicy",
    "RevisionInfo",
    "Rollout",
    "RolloutCheck",
    "RolloutLike",
    "RolloutState",
    "ServerUnavailableError",
    "ShadowAnalysis",
    "ShadowFailed",
    "ShadowPair",
    "ShadowPolicy",
    "ShadowReport",
    "SmokeTestFailed",
    "TrafficReport",
    "__version__",
    "acheck_rollout",
    "check_rollout",
    "compare_answers",
]
