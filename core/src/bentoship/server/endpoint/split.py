"""How the stable endpoint splits traffic between the serving revision and a canary.

BentoCloud's ``canary`` config names the rule: ``random`` sends each request to the canary with
the canary's weight in percent; ``header`` and ``query`` hash the value of the header or query
parameter ``route_by``, so a caller with the same value always lands on the same revision.
A request without that value goes to the serving revision.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["RouteType", "TrafficSplit"]


class RouteType(StrEnum):
    RANDOM = "random"
    HEADER = "header"
    QUERY = "query"


def _bucket(value: bytes) -> int:
    """A value's place in 0..99, the same in every process and run."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "big") % 100


@dataclass(frozen=True)
class TrafficSplit:
    """The canary's share of the endpoint's traffic, in percent, and how callers are split."""

    weight: int
    route_type: RouteType = RouteType.RANDOM
    route_by: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise ValueError(f"weight must be a whole percentage, got {self.weight!r}")
        if not 0 <= self.weight <= 100:
            raise ValueError(f"weight must be between 0 and 100, got {self.weight}")
        if self.route_type is not RouteType.RANDOM and not self.route_by:
            raise ValueError(f"route_type {self.route_type} needs route_by (the name to hash)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficSplit:
        return cls(
            weight=data["weight"],
            route_type=RouteType(data.get("route_type") or RouteType.RANDOM),
            route_by=data.get("route_by") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["route_type"] = str(self.route_type)
        return data

    def to_canary(self, scope: dict[str, Any]) -> bool:
        """True when this request (an ASGI scope) goes to the canary."""
        if self.weight <= 0:
            return False
        if self.weight >= 100:
            return True
        if self.route_type is RouteType.RANDOM:
            return random.random() * 100 < self.weight
        value = self._value(scope)
        return value is not None and _bucket(value) < self.weight

    def _value(self, scope: dict[str, Any]) -> bytes | None:
        assert self.route_by is not None
        if self.route_type is RouteType.HEADER:
            wanted = self.route_by.lower().encode("latin-1")
            return next((v for k, v in scope["headers"] if k == wanted), None)
        query = scope.get("query_string", b"").decode("latin-1")
        return next((v.encode() for k, v in parse_qsl(query) if k == self.route_by), None)
