"""Errors raised by bentoship. Each carries a one-line message that says what to do."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApprovalRejected",
    "AuthenticationError",
    "BentoshipError",
    "BuildFailed",
    "CanaryFailed",
    "ConfigError",
    "DeploymentFailed",
    "DriftDetected",
    "InvalidRequestError",
    "MissingExtraError",
    "NotFoundError",
    "QualityFailed",
    "ResponseLost",
    "ServerUnavailableError",
    "ShadowFailed",
    "SmokeTestFailed",
]


class BentoshipError(Exception):
    """Base class of every bentoship error."""


class ConfigError(BentoshipError):
    """Bad local configuration: missing endpoint or token, unreadable connection file."""


class MissingExtraError(ConfigError):
    """A step needs an optional part of bentoship that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs bentoship's {extra!r} extra: pip install 'bentoship[{extra}]'"
        )
        self.extra = extra


class AuthenticationError(BentoshipError):
    """The server rejected the API token."""


class NotFoundError(BentoshipError):
    """A deployment, revision or bento does not exist on the server."""


class InvalidRequestError(BentoshipError):
    """The server rejected the request as invalid (bad tag, bad config field)."""


class ServerUnavailableError(BentoshipError):
    """The server could not be reached, or kept failing, after bounded retries."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ResponseLost(ServerUnavailableError):
    """A non-idempotent request may have reached the server, but its answer was lost."""


class BuildFailed(BentoshipError):
    """``bentoml build`` failed: the project, its dependencies or its service are broken."""


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
        events: str = "",
    ) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.status = status
        self.reason = reason
        self.logs = logs
        self.events = events
        """The deployment's latest events, one per line (from the local control plane)."""


class SmokeTestFailed(BentoshipError):
    """The deployment answered its smoke test wrongly."""


class CanaryFailed(DeploymentFailed):
    """Canary analysis rejected the candidate, which was discarded: ``analysis`` holds why."""

    def __init__(self, message: str, *, deployment: str, analysis: dict[str, Any]) -> None:
        super().__init__(message, deployment=deployment, reason=str(analysis.get("reason", "")))
        self.analysis = analysis


class ShadowFailed(DeploymentFailed):
    """Shadow analysis rejected the candidate, which was discarded: ``analysis`` (a
    ``ShadowAnalysis``) holds why, and the report of its pairs."""

    def __init__(self, message: str, *, deployment: str, analysis: Any) -> None:
        super().__init__(message, deployment=deployment, reason=str(analysis.reason))
        self.analysis = analysis


class ApprovalRejected(DeploymentFailed):
    """The held candidate was not approved (rejected, expired or withdrawn) and was discarded:
    ``approval`` (an ``Approval``) says by whom and why."""

    def __init__(self, message: str, *, deployment: str, approval: Any) -> None:
        super().__init__(message, deployment=deployment, reason=str(approval.comment))
        self.approval = approval


class QualityFailed(BentoshipError):
    """A quality check used as a gate found the serving revision worse than its baseline:
    ``report`` (a ``QualityReport``) holds the figures."""

    def __init__(self, report: Any) -> None:
        super().__init__(report.summary())
        self.report = report


class DriftDetected(BentoshipError):
    """A drift check used as a gate found the current data drifted from the reference."""

    def __init__(self, report: Any, report_path: str | None = None) -> None:
        where = f"; report: {report_path}" if report_path else ""
        super().__init__(f"{report.summary()}{where}")
        self.report = report
        self.report_path = report_path
