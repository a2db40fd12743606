"""The shadow gate and mirroring state on the control plane, over a fake launcher and clock:
pairs are fed to the mirror observer as the endpoint would, and the analysis promotes or
discards on them; mirroring needs a held candidate and stops when the candidate leaves."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bentoship import ShadowPolicy
from bentoship.server.endpoint.mirror import Answer, DropReason, MirroredRequest
from bentoship.server.errors import Invalid
from bentoship.server.observe.shadow_pairs import pair_of
from bentoship.server.rollout.analysis_records import AnalysisKind, AnalysisState
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.shadow import PairRecord
from bentoship.shadow import ShadowPair, judge_shadow, shadow_report

from .fakes import FakeClock, FakeLauncher, run_controller, settle
from .test_analyses import held_candidate, settings_in


@dataclass
class Pairs:
    """An in-memory pair store."""

    records: list[PairRecord] = field(default_factory=list)

    def add(self, record: PairRecord) -> None:
        self.records.append(record)

    def _of(self, deployment: str, uid: str, since: float) -> list[PairRecord]:
        return [
            r
            for r in self.records
            if r.deployment == deployment and r.candidate_uid == uid and r.time > since
        ]

    async def count(self, deployment: str, candidate_uid: str, since: float) -> int:
        return len(self._of(deployment, candidate_uid, since))

    async def pairs(self, deployment: str, candidate_uid: str, since: float) -> list[ShadowPair]:
        return [pair_of(vars_of(r)) for r in self._of(deployment, candidate_uid, since)]

    async def rows(self, deployment: str, since: float, limit: int) -> list[dict[str, Any]]:
        return [vars_of(r) for r in self.records if r.time > since][:limit]


def vars_of(record: PairRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in PairRecord.__slots__}


@dataclass(frozen=True)
class Mirror:
    revision: str
    name: str = "r2"

    def connections(self) -> Any:
        raise AssertionError("no connection in these tests")

    def answered_copy(self) -> None:
        return None


def answer(label: str, status: int = 200, ms: float = 5.0) -> Answer:
    body = json.dumps({"label": label}).encode()
    return Answer(status, ms / 1000, body, "d" + label)


def mirrored(serving: str, candidate: str, n: int) -> MirroredRequest:
    label = "even" if n % 2 == 0 else "odd"
    return MirroredRequest(
        deployment="web",
        mirror=Mirror(candidate),
        method=b"POST",
        target=b"/classify",
        headers=[],
        body=b'{"x": %d}' % n,
        chunked=False,
        time=time.time(),
        served_by=serving,
        served=answer(label),
    )


def feed(controller: Controller, clock: FakeClock, flip_every: int) -> None:
    """Each tick of the clock, 20 pairs arrive; every ``flip_every``-th candidate label flips."""
    calls = iter(range(10**9))

    def tick(seconds: float) -> None:
        dep = controller.get("web")
        assert dep.serving_revision and dep.target_revision
        for _ in range(20):
            n = next(calls)
            request = mirrored(dep.serving_revision, dep.target_revision, n)
            label = "even" if n % 2 == 0 else "odd"
            if flip_every and n % flip_every == 0:
                label = "odd" if label == "even" else "even"
            controller.shadows.mirror_answered(request, answer(label))

    clock.on_sleep = tick


async def until_ended(controller: Controller) -> None:
    for _ in range(1000):
        record = controller.analyses.latest("web")
        if record is not None and not record.running:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(controller.analyses.latest("web"))


POLICY = ShadowPolicy(min_pairs=100, timeout=60).to_dict()


def test_an_agreeing_candidate_is_promoted_and_the_mirroring_stops(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        controller.shadows.pairs = Pairs()
        _, r2 = await held_candidate(controller)
        feed(controller, clock, flip_every=0)
        record = controller.analyses.submit_shadow("web", POLICY)
        assert record.kind == AnalysisKind.SHADOW and record.running
        assert controller.analyses.submit_shadow("web", POLICY) == record
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.PROMOTED, done
        api = done.to_api("r1")
        assert api["kind"] == "shadow" and api["report"]["agreement"]["rate"] == 1.0
        assert api["report"]["pairs"] >= 100
        assert controller.get("web").serving_revision == r2
        assert controller.shadows.state("web") is None
        kinds = [event.kind for event in controller.events.of("web")]
        assert kinds.count("shadow") == 2 and kinds[-1] == "verdict"

    run_controller(settings_in(tmp_path), scenario)


def test_a_disagreeing_candidate_is_discarded_with_its_agreement(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        controller.shadows.pairs = Pairs()
        r1, r2 = await held_candidate(controller)
        feed(controller, clock, flip_every=3)
        controller.analyses.submit_shadow("web", POLICY)
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.DISCARDED
        assert done.reason.startswith("agreement 6")
        assert controller.get("web").serving_revision == r1
        assert controller.store.get_revision(r2).phase == "cancelled"  # type: ignore[union-attr]
        assert controller.shadows.state("web") is None

    run_controller(settings_in(tmp_path), scenario)


def test_too_few_pairs_within_the_timeout_fail_the_gate(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        controller.shadows.pairs = Pairs()
        await held_candidate(controller)
        controller.analyses.submit_shadow("web", {"min_pairs": 100, "timeout": 5})
        await until_ended(controller)
        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.DISCARDED
        assert done.reason.startswith("only 0 of 100 pairs within 5 s")

    run_controller(settings_in(tmp_path), scenario)


def test_mirroring_needs_a_held_candidate_and_stops_when_it_leaves(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        shadows = controller.shadows
        shadows.pairs = Pairs()
        await controller.create("web", "echo:v1", {})
        await settle()
        with pytest.raises(Invalid, match=r"^percent: deployment web has no held candidate"):
            shadows.start("web", 50)
        await controller.update("web", "echo:v2", {}, verify=True)
        await settle()
        for bad in (101, -1, True, 2.5):
            with pytest.raises(Invalid, match=r"^percent: "):
                shadows.start("web", bad)  # type: ignore[arg-type]
        with pytest.raises(Invalid, match=r"^apis: send at least one"):
            shadows.start("web", 50, [])
        assert shadows.state("web") is None
        with pytest.raises(Invalid, match=r"^shadow: unknown shadow setting 'steps'"):
            controller.analyses.submit_shadow("web", {"steps": [10]})

        state = shadows.start("web", 100, ["classify"])
        assert state is not None and state.paths == frozenset({"/classify"})
        rt = controller.runtime("web")
        post = {"method": "POST", "path": "/classify"}
        assert shadows.mirror_for(rt, {**post, "method": "GET"}) is None
        assert shadows.mirror_for(rt, {**post, "path": "/other"}) is None
        assert shadows.mirror_for(rt, post) is not None and state.mirrored == 1
        shadows.mirror_dropped("web", DropReason.QUEUE_FULL)
        assert state.to_api()["dropped_by_reason"] == {"queue_full": 1}

        await controller.discard("web")
        assert shadows.state("web") is None
        assert shadows.mirror_for(rt, post) is None
        stopped = [e for e in controller.events.of("web") if e.kind == "shadow"][-1]
        assert "stopped after 0 pairs" in stopped.message

    run_controller(settings_in(tmp_path), scenario)


def test_the_policy_judges_agreement_errors_and_latency() -> None:
    def pair(serving: str, candidate: str, status: int = 200, ms: float = 5.0) -> ShadowPair:
        return ShadowPair("d", 1.0, "r1", "r2", 200, status, 5.0, ms, serving, candidate)

    policy = ShadowPolicy(min_pairs=10, max_error_rate_increase=0.05, p99_slack_ms=0)
    good = shadow_report([pair("a", "a")] * 20)
    assert judge_shadow(policy, good).passed
    flipped = shadow_report([pair("a", "a")] * 15 + [pair("a", "b")] * 5)
    assert judge_shadow(policy, flipped).problems == ("agreement 75.0% of 20 pairs is below 95.0%",)
    erring = shadow_report([pair("a", "a")] * 18 + [pair("a", "a", status=500)] * 2)
    assert judge_shadow(policy, erring).problems[0].startswith("error rate 10.00% is 10.00%")
    slow = shadow_report([pair("a", "a", ms=50.0)] * 20)
    assert judge_shadow(policy, slow).problems == ("p99 50 ms is above 8 ms",)
    few = judge_shadow(policy, shadow_report([pair("a", "a")] * 3, dropped=7))
    assert few.problems == ("only 3 of 10 pairs within 600 s (7 mirrored requests dropped)",)
    with pytest.raises(Exception, match="shadow percent: from 1 to 100"):
        ShadowPolicy(percent=0)
    assert ShadowPolicy.from_dict(policy.to_dict()) == policy
