"""One mirrored request: what the serving revision and the candidate revision answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ShadowPair", "is_error"]


def is_error(status: int) -> bool:
    """A 5xx answer, or none at all (status 0: a time-out or a refused connection)."""
    return status >= 500 or status < 100


@dataclass(frozen=True)
class ShadowPair:
    """The two answers to one request.

    ``serving_body`` and ``candidate_body`` are the parsed JSON answers, or None when a body
    is not JSON or too large to keep. ``serving_digest`` and ``candidate_digest`` are digests
    of the raw bodies (any string, e.g. SHA-256 hex): when a body is None and both digests
    are given, the pair compares its digests (equal digests agree) instead of its bodies.
    Without digests a None body is compared as JSON ``null``.
    """

    request_digest: str
    time: float
    """When the request came, in seconds since the epoch."""
    serving: str
    """The serving revision's id."""
    candidate: str
    """The candidate revision's id."""
    serving_status: int
    candidate_status: int
    serving_ms: float
    candidate_ms: float
    serving_body: Any = None
    candidate_body: Any = None
    serving_digest: str | None = None
    candidate_digest: str | None = None

    @property
    def errored(self) -> bool:
        """Whether either revision failed (5xx, or no answer); such a pair is not compared."""
        return is_error(self.serving_status) or is_error(self.candidate_status)

    @property
    def by_digest(self) -> bool:
        """Whether the pair compares the digests of its bodies rather than the bodies."""
        return (
            (self.serving_body is None or self.candidate_body is None)
            and self.serving_digest is not None
            and self.candidate_digest is not None
        )

    def answers(self) -> tuple[Any, Any]:
        """The two values compared: the bodies, or their digests (see :attr:`by_digest`)."""
        if self.by_digest:
            return self.serving_digest, self.candidate_digest
        return self.serving_body, self.candidate_body
