"""How many replicas a revision wants: its outstanding requests over its declared concurrency,
between ``min_replicas`` and ``max_replicas``, stabilized as BentoCloud's autoscaler (a
Kubernetes HPA) does.

A scale-up takes the lowest recommendation of the scale-up window (0 s by default: at once); a
scale-down takes the highest of the scale-down window (300 s by default), so a short lull does
not stop replicas that the next burst needs. The windows come from the config's
``scaling.policy`` (``scale_up_stabilization_window``, ``scale_down_stabilization_window``, in
seconds); the concurrency from the service's ``traffic.concurrency``. Without a declared
concurrency a revision keeps its minimum.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Autoscaler",
    "ScaleSteps",
    "ScalingPolicy",
    "declared_concurrency",
    "scale_steps",
    "scaling_policy",
]

SCALE_UP_WINDOW = 0.0
SCALE_DOWN_WINDOW = 300.0


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int
    max_replicas: int
    concurrency: int | None
    scale_up_window: float = SCALE_UP_WINDOW
    scale_down_window: float = SCALE_DOWN_WINDOW

    @property
    def floor(self) -> int:
        """The fewest replicas that run while the revision serves (scale to zero is apart)."""
        return max(1, self.min_replicas)

    def recommend(self, outstanding: int) -> int:
        if not self.concurrency:
            return self.floor
        wanted = math.ceil(outstanding / self.concurrency)
        return min(max(wanted, self.floor), max(self.max_replicas, self.floor))


def declared_concurrency(manifest: Mapping[str, Any] | None) -> int | None:
    """The entry service's ``traffic.concurrency`` from a bento's manifest, if it declares one."""
    services = (manifest or {}).get("services") or []
    for item in services:
        config = item.get("config") if isinstance(item, Mapping) else None
        traffic = config.get("traffic") if isinstance(config, Mapping) else None
        value = traffic.get("concurrency") if isinstance(traffic, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _seconds(policy: Mapping[str, Any], key: str, default: float) -> float:
    value = policy.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default


def scaling_policy(config: Mapping[str, Any], concurrency: int | None) -> ScalingPolicy:
    """The policy of a normalised deployment config (its first service's scaling)."""
    services = config.get("services") or {}
    scaling = next((s.get("scaling") or {} for s in services.values()), {})
    policy = scaling.get("policy") or {}
    return ScalingPolicy(
        min_replicas=int(scaling.get("min_replicas", 1)),
        max_replicas=int(scaling.get("max_replicas", 1)),
        concurrency=concurrency,
        scale_up_window=_seconds(policy, "scale_up_stabilization_window", SCALE_UP_WINDOW),
        scale_down_window=_seconds(policy, "scale_down_stabilization_window", SCALE_DOWN_WINDOW),
    )


class Autoscaler:
    """One revision's recommendations over time, and the replica count they settle on."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.history: deque[tuple[float, int]] = deque()

    def desired(self, now: float, outstanding: int, current: int) -> int:
        """The replicas to run now, given ``outstanding`` requests over ``current`` replicas."""
        recommended = self.policy.recommend(outstanding)
        self.history.append((now, recommended))
        keep = max(self.policy.scale_up_window, self.policy.scale_down_window)
        while self.history and self.history[0][0] < now - keep:
            self.history.popleft()
        up = [r for t, r in self.history if t >= now - self.policy.scale_up_window]
        down = [r for t, r in self.history if t >= now - self.policy.scale_down_window]
        if recommended > current:
            return max(current, min(up or [recommended]))
        if recommended < current:
            return min(current, max(down or [recommended]))
        return current


@dataclass(frozen=True)
class ScaleSteps:
    """What reaching a replica count takes: the indices to start, the indices to drain."""

    start: tuple[int, ...] = ()
    drain: tuple[int, ...] = ()


def scale_steps(active: list[int], occupied: list[int], desired: int) -> ScaleSteps:
    """From ``active`` replicas (taking requests, or starting), reach ``desired``: start the
    lowest indices no replica has (``occupied``: draining ones too), or drain the highest
    active ones."""
    current = len(active)
    if desired > current:
        taken = set(occupied)
        free = (i for i in range(len(taken) + desired) if i not in taken)
        return ScaleSteps(start=tuple(next(free) for _ in range(desired - current)))
    if desired < current:
        return ScaleSteps(drain=tuple(sorted(active)[desired - current :]))
    return ScaleSteps()
