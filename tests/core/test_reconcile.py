"""Reconcile over a fake launcher and a fake clock: the rollout's commands and what they start,
switch, hold, retire, replace and give up, with no process and no wait.

Each test drives a real Controller over a SQLite store in tmp_path; only the two injected parts
(the launcher of replicas, the clock) are stand-ins.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bentoship.server.endpoint.interface import Role
from bentoship.server.endpoint.split import TrafficSplit
from bentoship.server.errors import Conflict
from bentoship.server.rollout.autoscale import Autoscaler, ScalingPolicy
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.phases import Lifecycle, RevisionPhase
from bentoship.server.rollout.reconcile import (
    GATHER_SECONDS,
    SETTLE_SECONDS,
    Running,
    Step,
    next_step,
)
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Deployment, Revision

from .fakes import FakeClock, FakeLauncher, run_controller, settle

WINDOW = 30.0

Scenario = Callable[[Controller, FakeLauncher, FakeClock], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, launcher: FakeLauncher | None = None) -> None:
    settings = ServerSettings(
        data_dir=tmp_path, token="t" * 16, rollback_window=WINDOW, restart_backoff_max=8
    )
    run_controller(settings, scenario, launcher=launcher)


def phases(controller: Controller, name: str) -> list[str]:
    """The phases of the deployment's revisions, r1 first."""
    return [rev.phase for rev in sorted(controller.views.revisions(name), key=lambda r: r.seq)]


def kinds(controller: Controller, name: str) -> list[str]:
    return [event.kind for event in controller.events.of(name)]


async def serving_r1_with_candidate_r2(controller: Controller) -> None:
    """Deployment ``web``: echo v1 serving as r1, echo v2 held as candidate r2."""
    await controller.create("web", "echo:v1", {})
    await settle()
    await controller.update("web", "echo:v2", {}, verify=True)
    await settle()


def wanted(
    *phases: RevisionPhase,
    target: int | None = None,
    serving: int | None = None,
    verify: bool = False,
    state: Lifecycle = Lifecycle.ACTIVE,
) -> tuple[Deployment, dict[str, Revision]]:
    """A deployment whose revisions r1, r2... have ``phases``; ``target`` and ``serving`` are
    revision numbers."""
    revisions = {
        f"u{seq}": Revision(
            f"u{seq}", "web", seq, "echo:v1", {}, "", phase, verify=verify and seq == target
        )
        for seq, phase in enumerate(phases, start=1)
    }
    dep = Deployment(
        "web",
        "d",
        "default",
        "",
        None,
        state,
        f"u{target}" if target else None,
        f"u{serving}" if serving else None,
        None,
        "",
    )
    return dep, revisions


S, T, W = RevisionPhase.SERVING, RevisionPhase.STARTING, RevisionPhase.WARM
ONE_SERVES = Running({"u1"}, {"u1"}, serving=True, replicas={0}, occupied={0})


@pytest.mark.parametrize(
    ("state", "running", "step"),
    [
        (wanted(S, T, target=2, serving=1), ONE_SERVES, Step(("u2",))),
        (
            wanted(S, T, target=2, serving=1),
            Running({"u1", "u2"}, {"u1", "u2"}, serving=True, replicas={0}, occupied={0}),
            Step(activate="u2"),
        ),
        (
            wanted(S, T, target=2, serving=1, verify=True),
            Running({"u1", "u2"}, {"u1", "u2"}, serving=True, replicas={0}, occupied={0}),
            Step(hold="u2"),
        ),
        (wanted(S, target=1, serving=1), Running(), Step(("u1",))),
        (wanted(S, T, target=2, serving=1), Running(), Step(("u1", "u2"))),
        (wanted(S, target=1, serving=1), Running(scaled_to_zero=True), Step()),
        (wanted(S, T, target=2, serving=1), Running(recreated="u1"), Step(("u2",))),
        (wanted(S, target=1, serving=1), Running(recreated="u1"), Step(("u1",))),
        (
            wanted(W, RevisionPhase.CANCELLED, S, target=3, serving=3),
            Running(
                {"u1", "u2", "u3"}, {"u1", "u2", "u3"}, serving=True, replicas={0}, occupied={0}
            ),
            Step(stop=("u2",)),
        ),
        (wanted(S, target=1, serving=1), ONE_SERVES, Step()),
        (
            wanted(S, target=1, serving=1),
            Running({"u1"}, {"u1"}, serving=True),
            Step(add=(0,)),
        ),
        (
            wanted(S, T, target=2, serving=1),
            Running({"u1"}, {"u1"}, serving=True),
            Step(("u2",), add=(0,)),
        ),
        (wanted(S, T, target=2, serving=1, state=Lifecycle.TERMINATED), Running(), Step()),
        (wanted(T, target=1), Running({"u1"}), Step(("u1",))),
    ],
    ids=[
        "start-the-target",
        "switch-to-the-ready-target",
        "hold-the-ready-candidate",
        "restart-the-serving-revision",
        "start-both-after-a-restart",
        "scaled-to-zero-stays-down",
        "a-recreate-waits-for-its-target",
        "a-recreate-whose-target-ended-restarts",
        "stop-what-nothing-wants-keep-warm",
        "nothing-to-do",
        "a-lost-replica-starts-again",
        "a-lost-replica-starts-again-beside-the-target",
        "terminated-runs-nothing",
        "a-half-started-target-starts-again",
    ],
)
def test_the_next_step_follows_from_what_is_wanted_and_what_runs(
    state: tuple[Deployment, dict[str, Revision]], running: Running, step: Step
) -> None:
    dep, revisions = state
    assert next_step(dep, revisions, running) == step
    assert bool(step) == (step != Step())


def test_the_serving_replicas_follow_the_wanted_count() -> None:
    """A scale-up starts the lowest free indices (a draining replica keeps its index); a
    scale-down drains the highest; a revision with no wanted count keeps its minimum."""
    dep, revisions = wanted(S, target=1, serving=1)
    two_serve = Running({"u1"}, {"u1"}, serving=True, replicas={0, 1}, occupied={0, 1, 2})
    assert next_step(dep, revisions, two_serve, 4) == Step(add=(3, 4))
    assert next_step(dep, revisions, two_serve, 1) == Step(drain=(1,))
    assert next_step(dep, revisions, two_serve, 2) == Step()
    assert next_step(dep, revisions, two_serve) == Step(drain=(1,))
    revisions["u1"].config["services"] = {"Svc": {"scaling": {"min_replicas": 3}}}
    assert next_step(dep, revisions, two_serve) == Step(add=(3,))
    assert next_step(dep, revisions, Running(scaled_to_zero=True), 4) == Step()


def test_a_started_revision_nothing_wants_is_stopped_by_the_next_pass(tmp_path: Path) -> None:
    """Level-triggered: a replica set left behind (here: put there by hand) is found and
    stopped by the next pass, which no command had to ask for by name."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await serving_r1_with_candidate_r2(controller)
        rt = controller.runtime("web")
        r2 = controller.views.revision("web", "r2").uid
        held = rt.processes[r2]
        rt.candidate = None
        controller.move(r2, RevisionPhase.CANCELLED, reason="by hand")
        assert rt.processes[r2] is held and launcher.of(r2)[0].alive
        controller.reconciler.nudge(rt)
        await settle()
        assert r2 not in rt.processes and not launcher.of(r2)[0].alive
        assert [r.name for r in launcher.running()] == ["r1"]

    run(tmp_path, scenario)


def test_a_pass_that_makes_no_progress_ends_with_a_warning_instead_of_spinning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A runtime that contradicts the store (here: the serving replica set also filed under a
    revision nothing wants, which a pass may not stop) repeats the same step: the loop ends."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        rt = controller.runtime("web")
        assert rt.serving is not None
        rt.processes["ghost"] = rt.serving
        controller.reconciler.nudge(rt)
        await settle()
        assert rt.reconciling is None
        assert "ghost" in rt.processes and [r.alive for r in launcher.launched] == [True]

    run(tmp_path, scenario)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("reconcile of web made no progress" in line for line in warned), warned


def test_create_then_update_switches_keeps_the_old_warm_then_retires_it(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        dep = controller.get("web")
        assert controller.views.status(dep) == "running"
        assert phases(controller, "web") == ["serving"]
        assert clock.slept == [], "a create starts at once"

        clock.advance(1)
        await controller.update("web", "echo:v2", {})
        await settle()
        assert clock.slept == [GATHER_SECONDS], "a lone update waits only to gather a burst"
        assert phases(controller, "web") == ["warm", "serving"]
        assert [r.alive for r in launcher.launched] == [True, True]
        assert controller.name_of(controller.get("web").serving_revision) == "r2"

        clock.advance(WINDOW - 1)
        await settle()
        assert phases(controller, "web") == ["warm", "serving"], "not before the window ends"
        clock.advance(1)
        await settle()
        assert phases(controller, "web") == ["retired", "serving"]
        assert [r.alive for r in launcher.launched] == [False, True]
        assert kinds(controller, "web") == [
            "created",
            "starting",
            "ready",
            "switched",
            "created",
            "starting",
            "ready",
            "switched",
            "warm",
            "retired",
        ]

    run(tmp_path, scenario)


def test_a_revision_that_is_never_ready_fails_and_the_endpoint_keeps_serving(
    tmp_path: Path,
) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        await controller.update("web", "crash:v1", {})
        await settle()
        dep = controller.get("web")
        assert phases(controller, "web") == ["serving", "failed"]
        assert controller.views.status(dep) == "failed"
        assert controller.views.reason(dep) == (
            "revision r2 (crash:v1) failed: bentoml serve exited with code 3"
        )
        assert controller.name_of(dep.serving_revision) == "r1"
        assert [r.alive for r in launcher.launched] == [True, False]

    run(tmp_path, scenario, FakeLauncher({"crash:v1": "bentoml serve exited with code 3"}))


def test_an_update_close_behind_another_settles_and_cancels_the_first(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        clock.advance(1)
        await controller.update("web", "echo:v2", {})
        await controller.update("web", "echo:v3", {})
        await controller.update("web", "echo:v4", {})
        await settle()
        assert clock.slept == [SETTLE_SECONDS], "the burst's last one settles, the rest never ran"
        assert phases(controller, "web") == ["warm", "cancelled", "cancelled", "serving"]
        assert [r.name for r in launcher.launched] == ["r1", "r4"], "one process per burst"
        assert [r.name for r in launcher.running()] == ["r1", "r4"]

    run(tmp_path, scenario)


def test_a_candidate_is_held_gets_its_canary_share_and_is_promoted(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await serving_r1_with_candidate_r2(controller)
        rt = controller.runtime("web")
        assert phases(controller, "web") == ["serving", "candidate"]
        assert rt.candidate is not None and controller.backends.split("web") is None
        with pytest.raises(Conflict, match="not the candidate"):
            await controller.promote("web", "r1")

        await controller.set_split("web", TrafficSplit(weight=25))
        split = controller.backends.split("web")
        assert split is not None and split.weight == 25, "the endpoint reads the stored split"
        assert controller.get("web").canary == TrafficSplit(weight=25).to_dict()

        await controller.promote("web")
        await settle()
        assert phases(controller, "web") == ["warm", "serving"]
        assert rt.candidate is None and controller.backends.split("web") is None
        assert controller.get("web").canary is None
        assert "promoted" in kinds(controller, "web")

    run(tmp_path, scenario)


def test_a_discarded_candidate_stops_and_a_crashed_candidate_fails(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await serving_r1_with_candidate_r2(controller)
        await controller.discard("web")
        await settle()
        assert phases(controller, "web") == ["serving", "cancelled"]
        assert not launcher.of(controller.views.revision("web", "r2").uid)[0].alive

        await controller.update("web", "echo:v3", {}, verify=True)
        await settle()
        launcher.of(controller.views.revision("web", "r3").uid)[0].exit(1)
        await settle()
        r3 = controller.views.revision("web", "r3")
        assert r3.phase == "failed"
        assert "its process exited with code 1 while a candidate" in r3.reason
        assert controller.runtime("web").candidate is None

    run(tmp_path, scenario)


def test_a_lost_serving_replica_is_replaced_with_backoff(tmp_path: Path) -> None:
    """The one replica of the serving revision exits: the deployment is unhealthy until a new
    replica of the same revision is ready (tests/drills/ kills a real one)."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        launcher.failing["echo:v1"] = "not ready within the readiness deadline"
        attempts: list[float] = []
        statuses: list[str] = []

        def ready_on_the_third_wait(seconds: float) -> None:
            attempts.append(seconds)
            statuses.append(controller.views.status(controller.get("web")))
            if len(attempts) == 3:
                launcher.failing.clear()

        clock.on_sleep = ready_on_the_third_wait
        clock.slept.clear()
        launcher.launched[0].exit(137)
        await settle(200)
        dep = controller.get("web")
        assert clock.slept == [1.0, 2.0, 4.0]
        assert statuses == ["unhealthy"] * 3, "no replica served while it was replaced"
        assert controller.views.status(dep) == "running"
        assert controller.name_of(dep.serving_revision) == "r1"
        assert len(launcher.launched) == 5 and launcher.launched[-1].alive
        assert launcher.launched[-1].revision == launcher.launched[0].revision
        assert launcher.launched[-1].pid != launcher.launched[0].pid
        ports = [replica.port for replica in launcher.launched]
        assert ports[1] == ports[0], "the first replacement starts on the lost replica's port"
        assert ports[0] not in ports[2:], "a start that failed gives up the port"
        assert kinds(controller, "web")[-2:] == ["crashed", "restarted"]
        messages = [e.message for e in controller.events.of("web")]
        assert "r1 replica 0 exited (code 137); restarting" in messages

    run(tmp_path, scenario)


def test_the_autoscalers_count_is_reached_by_reconcile_up_and_down(tmp_path: Path) -> None:
    """The autoscaler only sets the count: reconcile starts the replicas a scale-up adds and
    drains the highest ones when it falls."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        rt = controller.runtime("web")
        pool = rt.serving
        assert pool is not None
        rt.autoscaler = (pool.revision, Autoscaler(ScalingPolicy(1, 3, 1, 0.0, 0.0)))
        pool.replicas[0].outstanding = 3
        controller.scaling.autoscale(rt)
        assert rt.replicas_wanted == 3
        await settle()
        assert sorted(pool.replicas) == [0, 1, 2] and all(r.ready for r in pool.serving())
        messages = [e.message for e in controller.events.of("web")][-3:]
        assert messages == [
            "r1 scales from 1 to 3 replicas (3 requests outstanding, concurrency 1)",
            "r1 replica 1 started (scale-up)",
            "r1 replica 2 started (scale-up)",
        ]

        pool.replicas[0].outstanding, pool.replicas[2].outstanding = 0, 1
        clock.advance(1.0)
        controller.scaling.autoscale(rt)
        await settle()
        assert pool.replicas[2].draining and 1 not in pool.replicas
        launcher.of(pool.revision)[2].exit(1)
        pool.replicas[2].outstanding = 0
        await asyncio.sleep(0.2)
        assert sorted(pool.replicas) == [0] and rt.replicas_wanted == 1
        assert [r.replica for r in launcher.running()] == [0]
        assert not any(r.watched and not r.stopping for r in launcher.launched[1:]), (
            "the drained replicas were stopped, not lost"
        )
        assert "crashed" not in kinds(controller, "web"), "a draining replica that exits is gone"

    run(tmp_path, scenario)


def test_a_lost_replica_whose_start_hangs_does_not_hold_up_a_rollout(tmp_path: Path) -> None:
    """The serving revision's one replica exits and its start hangs; an update still starts
    its target and switches to it, which cancels the hanging start and stops its process."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        launcher.hanging.add("echo:v1")
        launcher.launched[0].exit(137)
        await settle()
        rt = controller.runtime("web")
        assert list(rt.adding) == [0] and controller.views.status(controller.get("web")) == (
            "unhealthy"
        )
        hanging = launcher.launched[1]
        assert hanging.alive and hanging.name == "r1"

        await controller.update("web", "echo:v2", {})
        await settle(100)
        assert phases(controller, "web")[1] == "serving"
        assert controller.views.status(controller.get("web")) == "running"
        assert not hanging.alive and hanging.stopping, "the hanging start was stopped"
        assert rt.adding == {} and rt.lost == {}
        assert [r.name for r in launcher.running()] == ["r2"]

    run(tmp_path, scenario)


def test_rollback_to_a_warm_revision_switches_at_once(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        await controller.update("web", "echo:v2", {})
        await settle()
        await controller.rollback("web", None)
        assert phases(controller, "web") == ["serving", "warm"]
        assert len(launcher.launched) == 2, "a warm revision serves again with no new process"

        await controller.terminate("web")
        await settle()
        assert controller.views.status(controller.get("web")) == "terminated"
        assert launcher.running() == []
        assert phases(controller, "web") == ["retired", "retired"]

    run(tmp_path, scenario)


def test_a_deployment_allowed_zero_replicas_scales_to_zero_when_idle_and_wakes(
    tmp_path: Path,
) -> None:
    config = {"services": {"Svc": {"scaling": {"min_replicas": 0, "max_replicas": 1}}}}

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", config)
        await settle()
        rt = controller.runtime("web")
        await controller.scaling.tick()
        assert rt.serving is not None, "not idle yet"
        clock.advance(controller.settings.scale_to_zero_after)
        await controller.scaling.tick()
        assert controller.views.status(controller.get("web")) == "scaled-to-zero"
        assert launcher.running() == []

        waiting = asyncio.ensure_future(controller.backends.wait_route("web", Role.STABLE))
        await settle()
        route = await waiting
        assert route is not None and route.primary.name == "r1"
        route.lease.release(answered=True)
        assert controller.views.status(controller.get("web")) == "running"
        assert kinds(controller, "web")[-3:] == ["scaled_to_zero", "woken", "restarted"]

    run(tmp_path, scenario)


def test_after_a_restart_warm_revisions_retire_and_what_served_or_started_starts_again(
    tmp_path: Path,
) -> None:
    async def before(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("steady", "echo:v1", {})
        await settle()
        await controller.update("steady", "echo:v2", {})
        await controller.create("midway", "echo:v1", {})
        await settle()
        launcher.hanging.add("echo:v3")
        await controller.update("midway", "echo:v3", {})
        await settle()
        assert phases(controller, "midway") == ["serving", "starting"]

    run(tmp_path, before)

    async def after(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.start()
        await settle(100)
        assert phases(controller, "steady") == ["retired", "serving"]
        assert phases(controller, "midway") == ["warm", "serving"]
        assert sorted(r.name for r in launcher.running()) == ["r1", "r2", "r2"]
        for name in ("steady", "midway"):
            assert controller.views.status(controller.get(name)) == "running"

    run(tmp_path, after)


def test_health_follows_what_runs_through_a_restart_that_fails_then_succeeds(
    tmp_path: Path,
) -> None:
    """After a restart of the control plane the serving revision starts again: the deployment
    is deploying while it starts, unhealthy once a start failed, running once one succeeds."""

    async def before(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()

    run(tmp_path, before)

    async def after(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        statuses: list[str] = []
        clock.on_sleep = lambda seconds: statuses.append(
            controller.views.status(controller.get("web"))
        )
        launcher.hanging.add("echo:v1")
        await controller.start()
        await settle()
        assert controller.views.status(controller.get("web")) == "deploying", "restarting"
        launcher.hanging.clear()
        launcher.failing["echo:v1"] = "not ready within the readiness deadline"
        launcher.launched[-1].exit(1)
        await settle()
        launcher.failing.clear()
        await settle(200)
        seen = [status for status, _ in itertools.groupby(statuses)]
        assert seen[:3] == ["deploying", "unhealthy", "running"], seen
        assert controller.views.status(controller.get("web")) == "running"
        assert controller.runtime("web").restart_failures == 0

    run(tmp_path, after)


def test_a_rollout_task_that_fails_on_a_bug_fails_its_revision_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        launcher.broken["echo:v2"] = "an injected bug"
        await controller.update("web", "echo:v2", {})
        await settle()
        r2 = controller.views.revision("web", "r2")
        assert r2.phase == "failed"
        assert r2.reason == (
            "revision r2 (echo:v2) failed: internal error in its rollout (RuntimeError: an "
            "injected bug); the server's log has the traceback"
        )
        dep = controller.get("web")
        assert controller.views.status(dep) == "failed"
        assert controller.name_of(dep.serving_revision) == "r1", "r1 keeps serving"
        assert kinds(controller, "web")[-2:] == ["internal_error", "failed"]
        assert [r.name for r in launcher.running()] == ["r1"]

    run(tmp_path, scenario)
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info is not None, "logged with its traceback"


def test_a_watcher_that_fails_runs_again_after_a_backoff_and_still_replaces_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = FakeLauncher(flaky_watch={"echo:v1"})

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        assert phases(controller, "web") == ["serving"], "the revision is not failed"
        errors = [e for e in controller.events.of("web") if e.kind == "internal_error"]
        assert [e.message for e in errors] == [
            "internal error: RuntimeError: an injected bug in the watch; "
            "the watcher runs again in 1 s"
        ]
        assert 1.0 in clock.slept

        (first,) = launcher.of(controller.get("web").serving_revision or "")
        first.exit(137)
        await settle()
        assert kinds(controller, "web")[-2:] == ["crashed", "restarted"]
        assert len(launcher.running()) == 1 and launcher.running()[0] is not first

    run(tmp_path, scenario, launcher)
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(failures) == 1 and failures[0].exc_info is not None, "logged with its traceback"
