"""Whole GPUs for each replica of a revision, and what a rollout must stop to get them.

A revision asks for GPUs in one setting: a ``gpu.<model>.<n>`` instance type in its deployment
config, else its service's ``resources.gpu`` (and ``gpu_type``) from the bento. Each replica
gets whole GPUs of its own; only a fractional ask (``resources.gpu: 0.5``) shares a GPU, and
then only with other fractional asks. :meth:`GpuAllocator.plan` says whether a new revision fits
beside what runs, fits once the deployment's warm revisions stop, needs its own serving
revision stopped first (a Recreate rollout), or cannot start because others hold the GPUs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import Any

from ..errors import Invalid
from .inventory import Gpu, Inventory, model_slug

__all__ = [
    "GPU_INSTANCE_TYPE",
    "GpuAllocator",
    "GpuPlan",
    "GpuRequest",
    "GpuUnavailable",
    "Holder",
    "PlanKind",
    "gpu_request",
]

GPU_INSTANCE_TYPE = re.compile(r"\Agpu\.([a-z0-9]+)\.([1-9][0-9]{0,2})\Z")


class GpuUnavailable(Exception):
    """The GPUs a revision needs are held by other deployments now."""


@dataclass(frozen=True)
class GpuRequest:
    """What one replica asks for: ``count`` GPUs (a fraction below 1 shares one) of ``model``."""

    count: float
    model: str | None
    setting: str
    """Where the ask comes from, as the messages name it."""

    @property
    def shared(self) -> bool:
        return self.count < 1

    @property
    def whole(self) -> int:
        return 1 if self.shared else int(self.count)

    def gpus_for(self, replicas: int) -> int:
        """The GPUs ``replicas`` replicas take at least: whole ones each, or shared ones packed."""
        if not self.shared:
            return self.whole * replicas
        return math.ceil(replicas / math.floor((1 + 1e-9) / self.count))

    def describe(self, replicas: int = 1) -> str:
        of = f" {self.model}" if self.model else ""
        amount = f"{self.count:g}" if self.shared else str(self.whole)
        plural = "s" if not self.shared and self.whole > 1 else ""
        if replicas > 1:
            return (
                f"{replicas} replicas x {amount}{of} GPU{plural} "
                f"({self.setting}; min_replicas {replicas})"
            )
        return f"{amount}{of} GPU{plural} ({self.setting})"


def _service_resources(manifest: Mapping[str, Any] | None, service: str) -> Mapping[str, Any]:
    services = (manifest or {}).get("services") or []
    for item in services:
        if isinstance(item, Mapping) and item.get("name") == service:
            config = item.get("config") or {}
            resources = config.get("resources") if isinstance(config, Mapping) else None
            return resources if isinstance(resources, Mapping) else {}
    return {}


def gpu_request(config: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> GpuRequest | None:
    """The GPU ask of a normalised deployment config and its bento's manifest, or None."""
    services = config.get("services") or {}
    for service, settings in services.items():
        instance_type = str((settings or {}).get("instance_type") or "")
        matched = GPU_INSTANCE_TYPE.match(instance_type)
        if matched:
            return GpuRequest(int(matched[2]), matched[1], f"instance type {instance_type}")
        resources = _service_resources(manifest, service)
        raw = resources.get("gpu")
        if raw is None or raw == 0:
            continue
        try:
            count = float(raw)
        except (TypeError, ValueError):
            raise Invalid(f"service {service}: resources.gpu is {raw!r}, not a number") from None
        if count < 0 or (count > 1 and not count.is_integer()):
            raise Invalid(
                f"service {service}: resources.gpu is {raw!r}; ask for whole GPUs, "
                "or a fraction below 1 to share one"
            )
        gpu_type = resources.get("gpu_type")
        model = model_slug(str(gpu_type)) if gpu_type else None
        return GpuRequest(count, model, f"service {service} resources.gpu={count:g}")
    return None


@dataclass(frozen=True)
class Holder:
    """One replica of one revision."""

    deployment: str
    revision: str
    """The revision's uid."""
    label: str = ""
    """The revision's short name (``r2``), for messages."""
    replica: int = 0


@dataclass(frozen=True)
class Holding:
    holder: Holder
    indices: tuple[int, ...]
    share: float
    """The part of each GPU it takes: 1, or a fraction when shared."""


class PlanKind(StrEnum):
    FITS = "fits"
    """Free GPUs are enough: blue/green, the old revision serves until the switch."""
    STOP_WARM = "stop-warm"
    """Enough once the deployment's warm (or still starting) revisions stop: still blue/green."""
    RECREATE = "recreate"
    """Only the GPUs of the deployment's serving revision make it fit: stop it, then start."""
    BUSY = "busy"
    """Other deployments hold the GPUs needed."""


@dataclass(frozen=True)
class GpuPlan:
    kind: PlanKind
    stop: tuple[str, ...] = ()
    """Revision uids of this deployment to stop before the new one starts."""
    reason: str = ""


class GpuAllocator:
    """The GPUs each running replica holds; every placement and plan is computed from these."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.holdings: dict[tuple[str, int], Holding] = {}

    def check(self, request: GpuRequest | None, replicas: int = 1) -> None:
        """Raise Invalid (a failed deploy, nothing changed) when the machine can never fit
        ``replicas`` replicas (``min_replicas``; 0 counts as the 1 that wakes) of ``request``."""
        if request is None:
            return
        replicas = max(1, replicas)
        empty = {g.index: 0.0 for g in self.inventory.gpus}
        if self._place_all(request, replicas, empty) is not None:
            return
        total = request.gpus_for(replicas)
        what = f"{total} {request.model} GPU" if request.model else f"{total} GPU"
        plural = "s" if total > 1 else ""
        if replicas == 1:
            raise Invalid(
                f"asks for {request.describe()}, but this machine has "
                f"{self.inventory.describe()}; no {what}{plural} to give it: ask for what "
                "exists (`bentoml deployment list-instance-types`)"
            )
        apart = "" if request.shared else ", no two replicas on one GPU"
        raise Invalid(
            f"asks for {request.describe(replicas)} = {total} GPU{plural}{apart}, but this "
            f"machine has {self.inventory.describe()}; no {what}{plural} to give it: "
            "lower min_replicas or the GPUs per replica to what exists "
            "(`bentoml deployment list-instance-types`)"
        )

    def held_by(self, revision: str) -> tuple[int, ...]:
        """The GPUs the replicas of ``revision`` hold, in index order."""
        found = {i for key, h in self.holdings.items() if key[0] == revision for i in h.indices}
        return tuple(sorted(found))

    def holders(self) -> dict[int, list[Holder]]:
        found: dict[int, list[Holder]] = {}
        for holding in self.holdings.values():
            for index in holding.indices:
                found.setdefault(index, []).append(holding.holder)
        return found

    def release(self, revision: str, replica: int | None = None) -> None:
        for key in [k for k in self.holdings if k[0] == revision]:
            if replica is None or key[1] == replica:
                del self.holdings[key]

    def keep_only(self, live: Iterable[str]) -> None:
        """Forget the holdings of revisions that run no process any more."""
        alive = set(live)
        for key in [k for k in self.holdings if k[0] not in alive]:
            del self.holdings[key]

    def acquire(self, holder: Holder, request: GpuRequest) -> tuple[int, ...]:
        """The GPUs of ``holder`` (the same again if it holds them), else GpuUnavailable."""
        held = self.holdings.get((holder.revision, holder.replica))
        if held is not None and len(held.indices) == request.whole:
            return held.indices
        self.release(holder.revision, holder.replica)
        placed = self._place(request, excluded=set())
        if placed is None:
            raise GpuUnavailable(self._busy_reason(request, excluded=set()))
        share = request.count if request.shared else 1.0
        self.holdings[(holder.revision, holder.replica)] = Holding(holder, placed, share)
        return placed

    def room(self, request: GpuRequest, wanted: int) -> int:
        """How many of ``wanted`` more replicas of ``request`` free GPUs take now."""
        return sum(1 for _ in islice(self._placements(request, self._usage(set())), wanted))

    def plan(
        self,
        request: GpuRequest | None,
        deployment: str,
        serving: str | None,
        label: str = "",
        replicas: int = 1,
    ) -> GpuPlan:
        """What a new revision ``label`` of ``deployment`` needs stopped before its ``replicas``
        replicas (its ``min_replicas``, at least one) start."""
        replicas = max(1, replicas)
        if request is None or self._fits(request, replicas, excluded=set()):
            return GpuPlan(PlanKind.FITS)
        asks = request.describe(replicas)
        own = {h.holder.revision: h.holder for h in self.holdings.values()}
        own = {uid: holder for uid, holder in own.items() if holder.deployment == deployment}
        others = {uid for uid in own if uid != serving}
        if others and self._fits(request, replicas, excluded=others):
            names = ", ".join(own[uid].label or uid for uid in sorted(others))
            return GpuPlan(
                PlanKind.STOP_WARM,
                tuple(sorted(others)),
                f"{label or 'the new revision'} needs {asks}: {names} stop(s) first "
                "to free them (the serving revision keeps serving)",
            )
        if serving in own and self._fits(request, replicas, excluded=set(own)):
            old = own[serving].label or serving
            gpus = ",".join(map(str, self.held_by(serving)))
            return GpuPlan(
                PlanKind.RECREATE,
                tuple(sorted(own)),
                f"Recreate rollout: {label or 'the new revision'} needs {asks} and "
                f"only the GPUs {old} holds ({gpus}) make that possible, so {old} stops before "
                f"{label or 'it'} starts; zero downtime is impossible, the endpoint answers "
                "again once it is ready",
            )
        return GpuPlan(
            PlanKind.BUSY, reason=self._busy_reason(request, excluded=set(own), replicas=replicas)
        )

    def full_reason(self, request: GpuRequest, starting: int = 0) -> str:
        """Why no replica of ``request`` fits beyond ``starting`` ones about to take GPUs: who
        holds which GPU."""
        placed = self._place_all(request, starting, self._usage(excluded=set())) or []
        model = f" {request.model}" if request.model else ""
        return f"no free{model} GPU ({self._held_text(i for p in placed for i in p)})"

    def _usage(self, excluded: set[str]) -> dict[int, float]:
        used: dict[int, float] = {g.index: 0.0 for g in self.inventory.gpus}
        for (revision, _), holding in self.holdings.items():
            if revision not in excluded:
                for index in holding.indices:
                    used[index] = used.get(index, 0.0) + holding.share
        return used

    def _fit(self, request: GpuRequest, used: Mapping[int, float]) -> tuple[int, ...] | None:
        """The GPUs one replica of ``request`` gets given ``used`` (the part of each taken)."""
        fitting: list[Gpu] = list(self.inventory.of_model(request.model))
        if request.shared:
            partly = [g for g in fitting if 0 < used[g.index] <= 1 - request.count + 1e-9]
            empty = [g for g in fitting if used[g.index] == 0]
            chosen = (partly or empty)[:1]
            return tuple(g.index for g in chosen) if chosen else None
        free = [g.index for g in fitting if used[g.index] == 0]
        return tuple(free[: request.whole]) if len(free) >= request.whole else None

    def _place(self, request: GpuRequest, excluded: set[str]) -> tuple[int, ...] | None:
        return self._fit(request, self._usage(excluded))

    def _placements(
        self, request: GpuRequest, used: Mapping[int, float]
    ) -> Iterator[tuple[int, ...]]:
        """GPUs for one replica after another, none on another's, while they fit."""
        taken = dict(used)
        share = request.count if request.shared else 1.0
        while (indices := self._fit(request, taken)) is not None:
            for index in indices:
                taken[index] += share
            yield indices

    def _place_all(
        self, request: GpuRequest, replicas: int, used: Mapping[int, float]
    ) -> list[tuple[int, ...]] | None:
        """GPUs for each of ``replicas`` replicas at once, none on another's, or None."""
        placed = list(islice(self._placements(request, used), replicas))
        return placed if len(placed) == replicas else None

    def _fits(self, request: GpuRequest, replicas: int, excluded: set[str]) -> bool:
        return self._place_all(request, replicas, self._usage(excluded)) is not None

    def _held_text(self, starting: Iterable[int] = ()) -> str:
        """Who holds each GPU; ``starting``: GPUs that replicas starting now are about to take."""
        named: dict[int, set[str]] = {}
        for index, holders in self.holders().items():
            named[index] = {f"{h.deployment} {h.label}".strip() for h in holders}
        for index in starting:
            named.setdefault(index, set()).add("a replica starting now")
        held = [f"GPU {i}: {', '.join(sorted(n))}" for i, n in sorted(named.items())]
        return "; ".join(held) or "nothing held"

    def _busy_reason(self, request: GpuRequest, excluded: set[str], replicas: int = 1) -> str:
        used = self._usage(excluded)
        fitting = self.inventory.of_model(request.model)
        free = [g.index for g in fitting if used[g.index] == 0]
        free_text = ",".join(map(str, free)) if free else "none"
        return (
            f"needs {request.describe(replicas)}, but other deployments hold them "
            f"({self._held_text()}); free GPUs: {free_text}; "
            "terminate or scale one of them, then deploy again"
        )
