"""Errors raised by bentoship. Each carries a one-line message that says what to do."""

from __future__ import annotations


class BentoshipError(Exception):
    """Base class of every bentoship error."""


class ConfigError(BentoshipError):
    """Bad local configuration: missing endpoint or token, unreadable connection file."""


class AuthenticationError(BentoshipError):
    """The server rejected the API token."""


class NotFoundError(BentoshipError):
    """A deployment, revision or bento does not exist on the server."""


class InvalidRequestError(BentoshipError):
    """The server rejected the request as invalid (bad tag, bad config field)."""


class ServerUnavailableError(BentoshipError):
    """The server could not be reached, or kept failing, after bounded retries."""


class DeploymentFailed(BentoshipError):
    """A rollout ended failed, unhealthy or terminated, or did not become ready in time."""

    def __init__(
        self,
        message: str,
        *,
        deployment: str = "",
        status: str = "",
        reason: str = "",
        logs: str = "",
    ) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.status = status
        self.reason = reason
        self.logs = logs


class SmokeTestFailed(BentoshipError):
    """The deployment answered its smoke test wrongly."""
