"""Shadow traffic: a share of the stable endpoint's requests mirrored to the held candidate.

:class:`Shadows` holds each deployment's mirroring (its share, its APIs, its counts), picks the
requests the endpoint mirrors (``mirror_for``), and is told how each copy ended
(``endpoint.mirror.MirrorObserver``): a pair of answers goes to the pair store, a dropped copy
is counted by reason. Only a held candidate is mirrored to; once it is promoted, discarded or
replaced, mirroring stops.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...refs import revision_name
from ...shadow import ShadowPair, ShadowReport, shadow_report
from ..endpoint.interface import Scope
from ..endpoint.mirror import Answer, DropReason, MirroredRequest, MirrorSender, MirrorTarget
from ..errors import Invalid
from ..store import Revision
from .context import RolloutContext
from .events import ShadowStarted, ShadowStopped
from .phases import RevisionPhase
from .runtime import DeploymentRuntime

__all__ = ["PairRecord", "PairStore", "ShadowState", "Shadows", "api_names"]

REPORT_COST_FACTOR = 10.0


@dataclass(frozen=True, slots=True)
class PairRecord:
    """One mirrored request's two answers, as stored (bodies as text, None when not kept)."""

    time: float
    deployment: str
    serving: str
    candidate: str
    candidate_uid: str
    request_digest: str
    serving_status: int
    candidate_status: int
    serving_ms: float
    candidate_ms: float
    serving_body: str | None
    candidate_body: str | None
    serving_digest: str
    candidate_digest: str


class PairStore(Protocol):
    """Where pairs are kept (``observe.shadow_pairs.ShadowPairStore``)."""

    def add(self, record: PairRecord) -> None: ...

    async def count(self, deployment: str, candidate_uid: str, since: float) -> int: ...

    async def pairs(
        self, deployment: str, candidate_uid: str, since: float
    ) -> list[ShadowPair]: ...

    async def rows(self, deployment: str, since: float, limit: int) -> list[dict[str, Any]]: ...


@dataclass
class ShadowState:
    """One deployment's mirroring to its held candidate, and its counts since it started."""

    deployment: str
    candidate: str
    """The candidate's uid."""
    candidate_name: str
    serving_name: str | None
    percent: int
    apis: tuple[str, ...] | None
    paths: frozenset[str] | None
    started_at: float = field(default_factory=time.time)
    by_analysis: bool = False
    mirrored: int = 0
    pairs: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    """Revision names by uid, of the revisions that answered callers."""

    def to_api(self) -> dict[str, Any]:
        return {
            "active": self.percent > 0,
            "percent": self.percent,
            "apis": list(self.apis) if self.apis is not None else None,
            "candidate": self.candidate_name,
            "serving": self.serving_name,
            "started_at": self.started_at,
            "by_analysis": self.by_analysis,
            "mirrored": self.mirrored,
            "pairs": self.pairs,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(self.dropped),
        }


def api_names(manifest: dict[str, Any] | None) -> dict[str, str] | None:
    """A bento's APIs, name to route, from its manifest; None when it does not say."""
    if not manifest:
        return None
    routes = (manifest.get("schema") or {}).get("routes") or []
    found = {r["name"]: r.get("route") or f"/{r['name']}" for r in routes if r.get("name")}
    for name, api in (manifest.get("apis") or {}).items():
        found.setdefault(name, (api or {}).get("route") or f"/{name}")
    return found or None


def _text(body: bytes | None) -> str | None:
    if body is None:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


class Shadows:
    """Every deployment's mirroring; the endpoint's mirror observer."""

    def __init__(self, ctx: RolloutContext) -> None:
        self.ctx = ctx
        self.sender = MirrorSender(self, b"Bearer " + ctx.settings.token.encode())
        self.pairs: PairStore | None = None
        """Set by the control plane once its analytics store is open."""
        self._states: dict[str, ShadowState] = {}
        self._reports: dict[
            tuple[str, str, float, float], tuple[tuple[int, int], ShadowReport, float, float]
        ] = {}
        ctx.phase_listeners.append(self._moved)

    def state(self, name: str) -> ShadowState | None:
        return self._states.get(name)

    def start(
        self,
        name: str,
        percent: int,
        apis: Sequence[str] | None = None,
        *,
        by_analysis: bool = False,
    ) -> ShadowState | None:
        """Mirror ``percent`` of ``name``'s requests (to ``apis``, or every API) to its held
        candidate; 0 stops. The state, or None once stopped."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise Invalid(f"percent: send a whole number from 0 to 100, not {percent!r}")
        dep = self.ctx.get(name)
        if percent == 0:
            self.stop(name, "stopped by request")
            return None
        target = self.ctx.target_of(dep)
        if target is None or target.phase != RevisionPhase.CANDIDATE:
            now = f"revision {revision_name(target.seq)} is {target.phase}" if target else ""
            raise Invalid(
                f"percent: deployment {name} has no held candidate to mirror to "
                f"({now or 'no revision'}); deploy one with manual promotion "
                "(`bentoship deploy --candidate`) and wait until it is ready"
            )
        if self.pairs is None:
            raise Invalid("percent: this control plane keeps no analytics store for pairs")
        paths = self.check(name, target, apis)
        chosen = tuple(apis) if apis is not None else None
        current = self._states.get(name)
        if current is not None and current.candidate == target.uid:
            current.percent, current.apis, current.paths = percent, chosen, paths
            current.by_analysis = current.by_analysis or by_analysis
            return current
        state = ShadowState(
            name,
            target.uid,
            revision_name(target.seq),
            self.ctx.name_of(dep.serving_revision),
            percent,
            chosen,
            paths,
            by_analysis=by_analysis,
        )
        self._states[name] = state
        self.ctx.publish(name, ShadowStarted(state.candidate_name, percent, ", ".join(apis or ())))
        return state

    def stop(self, name: str, reason: str) -> None:
        """Stop mirroring ``name``'s requests; copies waiting or in flight are dropped."""
        state = self._states.pop(name, None)
        self.sender.stop(name)
        if state is not None and self.ctx.store.get_deployment(name) is not None:
            self.ctx.publish(name, ShadowStopped(state.candidate_name, state.pairs, reason))

    def check(
        self, name: str, target: Revision, apis: Sequence[str] | None
    ) -> frozenset[str] | None:
        """The paths of ``apis`` (None for every API), checked against ``target``'s bento."""
        if apis is None:
            return None
        if not isinstance(apis, list | tuple) or not all(isinstance(a, str) for a in apis):
            raise Invalid('apis: send a list of API names, such as ["predict"], or null')
        if not apis:
            raise Invalid("apis: send at least one API name, or null for every API")
        known = api_names(self.ctx.manifest(target.bento))
        if known is None:
            return frozenset(f"/{api.strip('/')}" for api in apis)
        unknown = [api for api in apis if api not in known]
        if unknown:
            raise Invalid(
                f"apis: {', '.join(map(repr, unknown))} not an API of {target.bento}; "
                f"its APIs are {', '.join(sorted(known))}"
            )
        return frozenset(known[api] for api in apis)

    def mirror_for(self, rt: DeploymentRuntime, scope: Scope) -> MirrorTarget | None:
        """The candidate replica a copy of this request goes to, if it is mirrored."""
        state = self._states.get(rt.name)
        if state is None or scope["method"] != "POST":
            return None
        if state.paths is not None and scope["path"] not in state.paths:
            return None
        if state.percent < 100 and random.random() * 100 >= state.percent:
            return None
        state.mirrored += 1
        replica = rt.candidate.choose() if rt.candidate is not None else None
        if replica is None:
            state.dropped[DropReason.NO_ANSWER] += 1
        return replica

    # endpoint.mirror.MirrorObserver

    def mirror_answered(self, request: MirroredRequest, answer: Answer) -> None:
        state = self._states.get(request.deployment)
        if state is None or request.mirror.revision != state.candidate:
            return
        state.pairs += 1
        if self.pairs is None:
            return
        served = request.served
        self.pairs.add(
            PairRecord(
                time=request.time,
                deployment=request.deployment,
                serving=self._name(state, request.served_by),
                candidate=state.candidate_name,
                candidate_uid=state.candidate,
                request_digest=request.digest,
                serving_status=served.status,
                candidate_status=answer.status,
                serving_ms=served.seconds * 1000,
                candidate_ms=answer.seconds * 1000,
                serving_body=_text(served.body),
                candidate_body=_text(answer.body),
                serving_digest=served.digest,
                candidate_digest=answer.digest,
            )
        )

    def _name(self, state: ShadowState, uid: str) -> str:
        name = state.names.get(uid)
        if name is None:
            name = state.names[uid] = self.ctx.name_of(uid) or uid
        return name

    def mirror_dropped(self, deployment: str, reason: DropReason) -> None:
        state = self._states.get(deployment)
        if state is not None:
            state.dropped[reason] += 1

    def _moved(self, rev: Revision, phase: RevisionPhase) -> None:
        state = self._states.get(rev.deployment)
        if state is not None and state.candidate == rev.uid and phase != RevisionPhase.CANDIDATE:
            self.stop(rev.deployment, f"{state.candidate_name} is {phase}")

    async def count(self, name: str, candidate_uid: str, since: float) -> int:
        """Pairs of ``name``'s candidate ``candidate_uid`` stored since ``since``."""
        return 0 if self.pairs is None else await self.pairs.count(name, candidate_uid, since)

    async def report(
        self, name: str, candidate_uid: str, since: float, tolerance: float
    ) -> ShadowReport:
        """The report of the candidate's pairs since ``since``, computed off the loop: again
        only once more pairs or drops came, and not sooner than ten times what the last one
        cost (a report of many pairs, polled, takes at most a tenth of a core)."""
        state = self._states.get(name)
        ours = state is not None and state.candidate == candidate_uid
        dropped = sum(state.dropped.values()) if state is not None and ours else 0
        key = (name, candidate_uid, since, tolerance)
        seen = (state.pairs if state is not None and ours else -1, dropped)
        cached = self._reports.get(key)
        now = time.monotonic()
        if cached is not None and seen[0] >= 0:
            was, report, at, cost = cached
            if was == seen or now - at < REPORT_COST_FACTOR * cost:
                return report
        pairs = [] if self.pairs is None else await self.pairs.pairs(name, candidate_uid, since)
        report = await asyncio.to_thread(shadow_report, pairs, dropped=dropped, tolerance=tolerance)
        self._reports = {k: v for k, v in self._reports.items() if k[0] != name}
        self._reports[key] = (seen, report, now, time.monotonic() - now)
        return report

    def forget(self, name: str) -> None:
        self._states.pop(name, None)
        self._reports = {k: v for k, v in self._reports.items() if k[0] != name}
        self.sender.stop(name)
