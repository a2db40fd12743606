"""bentoship: ship BentoML services from ML pipelines.

The client and models are imported lazily, so ``import bentoship`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    AuthenticationError,
    BentoshipError,
    ConfigError,
    DeploymentFailed,
    InvalidRequestError,
    NotFoundError,
    ServerUnavailableError,
    SmokeTestFailed,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .models import DeploymentConfig, DeploymentInfo, RevisionInfo, Rollout

_LAZY = {
    "Client": "client",
    "AsyncClient": "client",
    "DeploymentConfig": "models",
    "DeploymentInfo": "models",
    "RevisionInfo": "models",
    "Rollout": "models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bentoship' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BentoshipError",
    "Client",
    "ConfigError",
    "DeploymentConfig",
    "DeploymentFailed",
    "DeploymentInfo",
    "InvalidRequestError",
    "NotFoundError",
    "RevisionInfo",
    "Rollout",
    "ServerUnavailableError",
    "SmokeTestFailed",
    "__version__",
]
