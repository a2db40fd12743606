"""Canary analyses run by the control plane, over a fake launcher and a fake clock: promote on
steps that hold, discard on a step that fails, stop when the candidate leaves, and go on after
a restart from the step reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from bentoship.server.errors import Conflict, Invalid
from bentoship.server.rollout.analysis_records import AnalysisState
from bentoship.server.rollout.controller import Controller
from bentoship.server.settings import ServerSettings

from .fakes import FakeClock, FakeLauncher, run_controller, settle

PLAN = {"steps": [50, 100], "interval": 2, "min_requests": 5, "step_timeout": 1e6}


def settings_in(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path, token="t" * 16, rollback_window=30)


async def held_candidate(controller: Controller) -> tuple[str, str]:
    """``web`` serving r1 with r2 held as its candidate: (r1's uid, r2's uid)."""
    await controller.create("web", "echo:v1", {})
    await settle()
    await controller.update("web", "echo:v2", {}, verify=True)
    await settle()
    dep = controller.get("web")
    assert dep.serving_revision is not None and dep.target_revision is not None
    return dep.serving_revision, dep.target_revision


def feed(controller: Controller, clock: FakeClock, traffic: dict[str, int]) -> None:
    """On every tick of the clock, each revision of ``traffic`` answers with that status."""

    def tick(seconds: float) -> None:
        for uid, status in traffic.items():
            controller.traffic.record(uid, status, 0.01)
            controller.traffic.record(uid, status, 0.01)

    clock.on_sleep = tick


async def until_ended(controller: Controller, rounds: int = 400) -> None:
    for _ in range(rounds):
        record = controller.analyses.latest("web")
        if record is not None and not record.running:
            return
        await settle(5)
    raise AssertionError(controller.analyses.latest("web"))


def test_steps_that_hold_promote_the_candidate_and_leave_no_weight(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, r2 = await held_candidate(controller)
        feed(controller, clock, {r1: 200, r2: 200})
        record = controller.analyses.submit("web", PLAN)
        assert record.running and record.name == "r2" and record.baseline == r1
        assert controller.analyses.submit("web", PLAN) == record  # the same plan: a no-op
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.PROMOTED
        assert [step["weight"] for step in done.verdicts] == [50, 100]
        assert all(step["passed"] for step in done.verdicts)
        assert done.reason == "every step held: 50%, 100%"
        dep = controller.get("web")
        assert dep.serving_revision == r2 and dep.canary is None
        kinds = [event.kind for event in controller.events.of("web")]
        assert kinds.count("analysis") == 3 and kinds[-1] == "verdict"
        assert kinds.index("canary") < kinds.index("promoted")
        api = done.to_api("r1")
        assert (api["state"], api["baseline"], api["weight"]) == ("promoted", "r1", None)

    run_controller(settings_in(tmp_path), scenario)


def test_a_failing_step_discards_the_candidate_and_the_baseline_serves_alone(
    tmp_path: Path,
) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, r2 = await held_candidate(controller)
        feed(controller, clock, {r1: 200, r2: 503})
        controller.analyses.submit("web", PLAN)
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.DISCARDED
        assert done.reason.startswith("at 50%: success rate 0.00%")
        assert len(done.verdicts) == 1 and not done.verdicts[0]["passed"]
        dep = controller.get("web")
        assert dep.serving_revision == r1 and dep.target_revision == r1 and dep.canary is None
        assert controller.store.get_revision(r2).phase == "cancelled"  # type: ignore[union-attr]

    run_controller(settings_in(tmp_path), scenario)


def test_a_candidate_discarded_by_hand_stops_the_analysis(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, _ = await held_candidate(controller)
        feed(controller, clock, {r1: 200})  # nothing reaches the candidate: the step waits
        controller.analyses.submit("web", PLAN)
        await settle(20)
        assert (controller.get("web").canary or {}).get("weight") == 50
        await controller.discard("web")
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.STOPPED
        assert "the candidate left before the verdict" in done.reason

    run_controller(settings_in(tmp_path), scenario)


def test_a_plan_needs_a_held_candidate_and_a_policy_that_reads(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        with pytest.raises(Conflict, match="no ready candidate to analyse"):
            controller.analyses.submit("web", PLAN)
        await controller.update("web", "echo:v2", {}, verify=True)
        await settle()
        with pytest.raises(Invalid, match="canary steps must rise"):
            controller.analyses.submit("web", {"steps": [50, 10]})
        with pytest.raises(Invalid, match="send the policy as an object"):
            controller.analyses.submit("web", [50])
        controller.analyses.submit("web", PLAN)
        with pytest.raises(Conflict, match="under analysis already, with another plan"):
            controller.analyses.submit("web", {**PLAN, "interval": 5})

    run_controller(settings_in(tmp_path), scenario)


def test_after_a_restart_the_plan_goes_on_from_the_step_it_reached(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    uids: dict[str, str] = {}

    async def first(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, r2 = await held_candidate(controller)
        uids.update(r1=r1, r2=r2)
        feed(controller, clock, {r1: 200, r2: 200})
        controller.analyses.submit("web", PLAN)
        for _ in range(400):
            record = controller.analyses.latest("web")
            if record is not None and record.step == 1:
                break
            await settle(1)
        feed(controller, clock, {r1: 200})  # the second step waits when the plane goes down

    run_controller(settings, first)

    async def second(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, r2 = uids["r1"], uids["r2"]
        feed(controller, clock, {r1: 200, r2: 200})
        await controller.start()
        await until_ended(controller)

        done = controller.analyses.latest("web")
        assert done is not None and done.state == AnalysisState.PROMOTED
        assert [step["weight"] for step in done.verdicts] == [50, 100], "step 50% not run again"
        assert controller.get("web").serving_revision == r2
        assert [r.revision for r in launcher.launched] == [r1, r2]  # both started again

    run_controller(settings, second)
