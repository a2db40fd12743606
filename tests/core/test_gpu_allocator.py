"""The GPU allocator with a simulated inventory of 4 GPUs passed in: no NVML, no process (the
autoscaler's GPU cap runs on a real controller over a fake launcher and clock)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bentoship.server import schemas
from bentoship.server.deploy_config import ConfigInvalid, normalize_config
from bentoship.server.errors import Invalid
from bentoship.server.gpu.allocator import (
    GpuAllocator,
    GpuRequest,
    GpuUnavailable,
    Holder,
    PlanKind,
    gpu_request,
)
from bentoship.server.gpu.inventory import (
    Gpu,
    Inventory,
    InventoryError,
    load_inventory,
    model_slug,
)
from bentoship.server.rollout.autoscale import Autoscaler, ScalingPolicy
from bentoship.server.rollout.controller import Controller
from bentoship.server.settings import ServerSettings

from .fakes import FakeClock, FakeLauncher, Scenario, run_controller, settle

A100 = "NVIDIA A100-SXM4-40GB"
FOUR = Inventory(tuple(Gpu(i, A100, 40 * 1024**3) for i in range(4)), "a test")


def ask(count: float, model: str | None = "a100") -> GpuRequest:
    return GpuRequest(count, model, f"instance type gpu.a100.{count:g}")


def holder(deployment: str, revision: str, replica: int = 0) -> Holder:
    return Holder(deployment, revision, revision, replica)


def test_placement_gives_whole_free_gpus_in_index_order() -> None:
    gpus = GpuAllocator(FOUR)
    assert gpus.acquire(holder("web", "r1"), ask(2)) == (0, 1)
    assert gpus.acquire(holder("api", "r1a"), ask(1)) == (2,)
    assert gpus.acquire(holder("web", "r1"), ask(2)) == (0, 1), "the same again, not more"
    gpus.release("r1")
    assert gpus.acquire(holder("job", "r9"), ask(3, None)) == (0, 1, 3)


def test_no_two_replicas_share_a_gpu() -> None:
    gpus = GpuAllocator(FOUR)
    placed = [gpus.acquire(holder("web", "r1", replica), ask(1)) for replica in range(4)]
    assert sorted(i for p in placed for i in p) == [0, 1, 2, 3]
    with pytest.raises(GpuUnavailable, match=r"GPU 0: web r1.*free GPUs: none"):
        gpus.acquire(holder("web", "r1", 4), ask(1))


def test_only_a_fractional_ask_shares_a_gpu() -> None:
    gpus = GpuAllocator(FOUR)
    assert gpus.acquire(holder("a", "ra"), ask(0.5)) == (0,)
    assert gpus.acquire(holder("b", "rb"), ask(0.5)) == (0,)
    assert gpus.acquire(holder("c", "rc"), ask(1)) == (1,)
    assert gpus.acquire(holder("d", "rd"), ask(0.5)) == (2,)


def test_more_gpus_than_exist_is_refused_naming_what_exists() -> None:
    gpus = GpuAllocator(FOUR)
    with pytest.raises(Invalid) as refused:
        gpus.check(ask(8))
    message = str(refused.value)
    assert "\n" not in message
    assert "asks for 8 a100 GPUs (instance type gpu.a100.8)" in message
    assert f"this machine has 4 GPUs: 4 x {A100} (40Gi; GPU 0,1,2,3)" in message
    with pytest.raises(Invalid, match=r"1 h100 GPU .*this machine has 4 GPUs"):
        gpus.check(GpuRequest(1, "h100", "service Svc resources.gpu=1"))
    with pytest.raises(Invalid, match=r"this machine has no GPU \(NVML finds none\)"):
        GpuAllocator(Inventory()).check(ask(1, None))
    gpus.check(ask(4))
    gpus.check(None)
    assert gpus.holdings == {}


def test_an_update_needing_its_own_serving_gpus_is_a_recreate() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.acquire(holder("web", "r1"), ask(2))
    gpus.acquire(holder("other", "o1"), ask(1))
    assert gpus.plan(ask(1), "web", "r1", "r2").kind is PlanKind.FITS
    plan = gpus.plan(ask(2), "web", "r1", "r2")
    assert plan.kind is PlanKind.RECREATE
    assert plan.stop == ("r1",)
    assert "Recreate rollout: r2 needs 2 a100 GPUs" in plan.reason
    assert "r1 stops before r2 starts; zero downtime is impossible" in plan.reason
    gpus.release("r1")
    assert gpus.acquire(holder("web", "r2"), ask(2)) == (0, 1)


def test_warm_revisions_stop_before_a_recreate_is_needed() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.acquire(holder("web", "r1"), ask(2))
    gpus.acquire(holder("web", "r2"), ask(2))
    plan = gpus.plan(ask(2), "web", "r2", "r3")
    assert (plan.kind, plan.stop) == (PlanKind.STOP_WARM, ("r1",))
    assert "the serving revision keeps serving" in plan.reason


def test_gpus_held_by_other_deployments_are_busy() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.acquire(holder("other", "o1"), ask(3))
    gpus.acquire(holder("web", "r1"), ask(1))
    plan = gpus.plan(ask(2), "web", "r1", "r2")
    assert plan.kind is PlanKind.BUSY
    assert "GPU 0: other o1" in plan.reason and "free GPUs: none" not in plan.reason
    gpus.keep_only({"r1"})
    assert gpus.plan(ask(2), "web", "r1", "r2").kind is PlanKind.FITS


def test_the_one_setting_instance_type_else_the_services_resources() -> None:
    manifest = {
        "entry_service": "Svc",
        "services": [{"name": "Svc", "config": {"resources": {"gpu": 2, "gpu_type": "nvidia-l4"}}}],
    }
    config = normalize_config({}, "Svc")
    assert gpu_request(config, manifest) == GpuRequest(2, "l4", "service Svc resources.gpu=2")
    typed = normalize_config({"services": {"Svc": {"instance_type": "gpu.a100.1"}}}, "Svc")
    assert gpu_request(typed, manifest) == GpuRequest(1, "a100", "instance type gpu.a100.1")
    assert gpu_request(config, {"services": [{"name": "Svc", "config": {}}]}) is None
    with pytest.raises(ConfigInvalid, match=r"gpu\.<model>\.<n>"):
        normalize_config({"services": {"Svc": {"instance_type": "gpu.a100"}}}, "Svc")


def test_model_names_and_instance_types() -> None:
    assert model_slug(A100) == model_slug("nvidia-tesla-a100") == "a100"
    assert model_slug("nvidia-a100-80gb") == "a100"
    assert model_slug("NVIDIA GeForce RTX 4090") == "rtx4090"
    assert model_slug("Tesla T4") == "t4"
    assert model_slug("nvidia-l4") == "l4"
    types = schemas.instance_types(FOUR)
    names = [t["display_name"] for t in types]
    assert names == [
        *("cpu.small", "cpu.medium", "cpu.large"),
        *("gpu.a100.1", "gpu.a100.2", "gpu.a100.4"),
    ]
    four = types[-1]["config"]
    assert four["resources"]["requests"]["gpu"] == "4"
    assert four["gpu_config"] == {"type": "nvidia-a100", "memory": "40Gi"}


def test_an_inventory_file_and_gpus_restriction(tmp_path: Path) -> None:
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps([{"index": i, "name": A100, "memory_bytes": 1} for i in range(4)]))
    inventory = load_inventory(path)
    assert [g.index for g in inventory.restrict([3, 1]).gpus] == [1, 3]
    with pytest.raises(InventoryError, match="--gpus names GPU 7"):
        inventory.restrict([7])
    path.write_text(json.dumps([{"name": A100}]))
    with pytest.raises(InventoryError, match="memory_bytes"):
        load_inventory(path)


def test_min_replicas_times_gpus_that_fit_get_distinct_gpus() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.check(ask(2), 2)
    gpus.check(ask(4), 0)
    assert gpus.plan(ask(2), "web", None, "r1", replicas=2).kind is PlanKind.FITS
    placed = [gpus.acquire(holder("web", "r1", replica), ask(2)) for replica in range(2)]
    assert placed == [(0, 1), (2, 3)]
    assert gpus.held_by("r1") == (0, 1, 2, 3)


def test_replicas_times_gpus_beyond_the_machine_are_refused_at_check() -> None:
    gpus = GpuAllocator(FOUR)
    with pytest.raises(Invalid) as refused:
        gpus.check(ask(2), 3)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "asks for 3 replicas x 2 a100 GPUs (instance type gpu.a100.2; min_replicas 3) = 6 GPUs, "
        "no two replicas on one GPU, but this machine has "
        f"4 GPUs: 4 x {A100} (40Gi; GPU 0,1,2,3)"
    )
    assert "lower min_replicas or the GPUs per replica" in message
    with pytest.raises(Invalid, match=r"5 replicas x 1 a100 GPU .*= 5 GPUs"):
        gpus.check(ask(1), 5)
    with pytest.raises(Invalid, match=r"asks for 5 a100 GPUs \(instance type gpu.a100.5\), but"):
        gpus.check(ask(5), 0)
    gpus.check(ask(0.5), 8)
    with pytest.raises(Invalid, match=r"9 replicas x 0.5 a100 GPU .*= 5 GPUs, but"):
        gpus.check(ask(0.5), 9)
    assert gpus.holdings == {}


def test_a_plan_places_every_minimum_replica_of_the_new_revision() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.acquire(holder("web", "r1"), ask(2))
    fits = gpus.plan(ask(1), "web", "r1", "r2", replicas=2)
    assert fits.kind is PlanKind.FITS
    plan = gpus.plan(ask(2), "web", "r1", "r2", replicas=2)
    assert (plan.kind, plan.stop) == (PlanKind.RECREATE, ("r1",))
    assert "r2 needs 2 replicas x 2 a100 GPUs (instance type gpu.a100.2; min_replicas 2)" in (
        plan.reason
    )
    assert gpus.plan(ask(2), "web", "r1", "r2", replicas=1).kind is PlanKind.FITS

    gpus.acquire(holder("web", "r0"), ask(1))
    warm = gpus.plan(ask(1), "web", "r1", "r2", replicas=2)
    assert (warm.kind, warm.stop) == (PlanKind.STOP_WARM, ("r0",))

    gpus.release("r0")
    gpus.acquire(holder("other", "o1"), ask(1))
    busy = gpus.plan(ask(2), "web", "r1", "r2", replicas=2)
    assert busy.kind is PlanKind.BUSY
    assert "needs 2 replicas x 2 a100 GPUs" in busy.reason and "GPU 2: other o1" in busy.reason


def test_room_counts_only_free_gpus_and_says_who_holds_them() -> None:
    gpus = GpuAllocator(FOUR)
    gpus.acquire(holder("web", "r1", 0), ask(1))
    gpus.acquire(holder("web", "r1", 1), ask(1))
    gpus.acquire(holder("other", "o1"), ask(1))
    assert gpus.room(ask(1), 3) == 1
    assert gpus.room(ask(2), 1) == 0
    assert gpus.room(ask(0.5), 3) == 2
    gpus.acquire(holder("web", "r1", 2), ask(1))
    assert gpus.room(ask(1), 1) == 0
    assert gpus.full_reason(ask(1)) == (
        "no free a100 GPU (GPU 0: web r1; GPU 1: web r1; GPU 2: other o1; GPU 3: web r1)"
    )


def gpu_config(min_replicas: int, max_replicas: int) -> dict[str, Any]:
    scaling = {"min_replicas": min_replicas, "max_replicas": max_replicas}
    return normalize_config(
        {"services": {"Svc": {"instance_type": "gpu.a100.1", "scaling": scaling}}}, "Svc"
    )


def run_on_four_gpus(tmp_path: Path, scenario: Scenario) -> None:
    """Run ``scenario`` on a controller over the 4 simulated GPUs, a fake launcher and clock."""
    run_controller(ServerSettings(data_dir=tmp_path, token="t" * 16), scenario, gpus=FOUR)


def test_a_scale_up_holds_at_the_replicas_free_gpus_take(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("other", "echo:v1", gpu_config(1, 1))
        await controller.create("web", "echo:v1", gpu_config(2, 4))
        await settle()
        rt = controller.runtime("web")
        pool = rt.serving
        assert pool is not None and sorted(pool.replicas) == [0, 1]
        rt.autoscaler = (pool.revision, Autoscaler(ScalingPolicy(2, 4, 1)))
        for replica in pool.replicas.values():
            replica.outstanding = 2

        controller.scaling.autoscale(rt)
        await settle()
        web = [r.replica for r in launcher.launched if r.revision == pool.revision]
        assert web == [0, 1, 2]
        assert [e["CUDA_VISIBLE_DEVICES"] for e in launcher.envs] == ["0", "1", "2", "3"]
        controller.scaling.autoscale(rt)
        await settle()
        assert len(launcher.launched) == 4, "no replica beyond the free GPUs"
        scaled = [e.message for e in controller.events.of("web") if e.kind == "scaled"]
        assert scaled == [
            "r1 scales from 2 to 3 replicas (4 requests outstanding, concurrency 1)",
            "r1 scale-up to 4 held at 3: no free a100 GPU "
            "(GPU 0: other r1; GPU 1: web r1; GPU 2: web r1; GPU 3: a replica starting now)",
            "r1 replica 2 started (scale-up)",
        ]

    run_on_four_gpus(tmp_path, scenario)


def test_a_scale_up_that_loses_the_gpu_race_gives_up_and_a_lost_replica_retries(
    tmp_path: Path,
) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", gpu_config(1, 2))
        await controller.create("other", "echo:v1", gpu_config(3, 3))
        await settle()
        rt = controller.runtime("web")
        pool = rt.serving
        assert pool is not None and len(launcher.launched) == 4

        rt.replicas_wanted = 2
        controller.reconciler.nudge(rt)
        await settle()
        assert len(launcher.launched) == 4 and clock.slept == [], (
            "a scale-up the GPUs no longer allow is neither started nor retried"
        )
        assert sorted(pool.replicas) == [0] and rt.replicas_wanted == 1

        def settle_for_one_on_the_third_wait(seconds: float) -> None:
            if len(clock.slept) == 3:
                rt.replicas_wanted = 1

        clock.on_sleep = settle_for_one_on_the_third_wait
        rt.lost[1] = None
        rt.replicas_wanted = 2
        controller.reconciler.nudge(rt)
        await settle(200)
        assert clock.slept == [1.0, 2.0, 4.0], "a lost replica retries (backoff) while wanted"
        assert len(launcher.launched) == 4 and rt.reconciling is None and rt.lost == {}

    run_on_four_gpus(tmp_path, scenario)
