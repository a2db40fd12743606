"""GPU placement against a real control plane: a simulated 4-GPU inventory passed in with
``--gpu-inventory``; and, where NVML finds a GPU, the machine's own GPUs (marked ``gpu``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.errors import BentoshipError
from bentoship.server import LocalControlPlane
from bentoship.server.gpu.inventory import detect
from bentoship.steps import deploy, push, wait_until_ready

from .test_server_bentoml_sdk import bentoml_cli

A100 = "NVIDIA A100-SXM4-40GB"


def client_for(plane: LocalControlPlane) -> Client:
    assert plane.connection is not None
    return Client(plane.connection.endpoint, plane.connection.token)


def devices(url: str) -> dict[str, Any]:
    answer = httpx.post(f"{url}/devices", json={}, timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_gpus_are_placed_refused_and_recreated_on_a_simulated_inventory(
    start_control_plane: Any, gpu_bento: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inventory = tmp_path / "gpus.json"
    gpus = [{"index": i, "name": A100, "memory_bytes": 40 * 1024**3} for i in range(4)]
    inventory.write_text(json.dumps(gpus))
    plane = start_control_plane(gpu_inventory=inventory, readiness_timeout=60)
    with client_for(plane) as client:
        push(gpu_bento, client=client)
        first = deploy("probe", gpu_bento, client=client)
        with pytest.raises(BentoshipError) as refused:
            deploy("greedy", gpu_bento, {"instance_type": "gpu.a100.8"}, client=client)
        message = str(refused.value)
        assert "asks for 8 a100 GPUs (instance type gpu.a100.8)" in message
        assert f"this machine has 4 GPUs: 4 x {A100} (40Gi; GPU 0,1,2,3)" in message
        assert client.find_deployment("greedy") is None

        wait_until_ready(first, client=client, timeout=90)
        assert devices(first.endpoint_url)["cuda_visible_devices"] == "0,1"

        caplog.set_level(logging.WARNING, logger="bentoship")
        twice = {"instance_type": "gpu.a100.2", "min_replicas": 2}
        second = deploy("probe", gpu_bento, twice, client=client)
        wait_until_ready(second, client=client, timeout=90)
        assert devices(second.endpoint_url)["cuda_visible_devices"] in ("0,1", "2,3")
        told = [r.getMessage() for r in caplog.records if "Recreate rollout" in r.getMessage()]
        assert told and "r2 needs 2 replicas x 2 a100 GPUs" in told[0]
        assert "zero downtime" in told[0]

        events = [(e.kind, e.revision, e.message) for e in client.events("probe")]
        kinds = [kind for kind, _, _ in events]
        assert kinds.index("recreate") < kinds.index("retired")
        placed = "r1 gets GPU 0,1 (2 a100 GPUs (service GpuProbe resources.gpu=2))"
        assert ("gpus", "r1", placed) in events
        given = sorted(m.split(" (")[0] for k, r, m in events if k == "gpus" and r == "r2")
        assert given == ["r2 gets GPU 0,1", "r2 replica 1 gets GPU 2,3"]
        revisions = {r.name: r for r in client.list_revisions("probe")}
        assert (revisions["r1"].phase, revisions["r2"].phase) == ("retired", "serving")

    listed = bentoml_cli(plane, "deployment", "list-instance-types")
    assert listed.returncode == 0, listed.stderr[-2000:]
    for name in ("cpu.small", "gpu.a100.1", "gpu.a100.2", "gpu.a100.4"):
        assert name in listed.stdout
    assert "nvidia-a100" in listed.stdout


@pytest.mark.gpu
def test_a_service_sees_the_gpu_it_was_given(
    start_control_plane: Any, gpu_bento: str, tmp_path: Path
) -> None:
    found = detect()
    if not found:
        pytest.skip("NVML finds no GPU on this machine")
    gpu = found.gpus[0]
    plane = start_control_plane(gpus=(gpu.index,), readiness_timeout=120)
    with client_for(plane) as client:
        push(gpu_bento, client=client)
        rollout = deploy("probe", gpu_bento, {"instance_type": f"gpu.{gpu.model}.1"}, client=client)
        wait_until_ready(rollout, client=client, timeout=150)
        seen = devices(rollout.endpoint_url)
        assert plane.connection is not None
        exposition = ""
        deadline = time.monotonic() + 30
        while "bentoship_revision_gpu_memory_bytes{" not in exposition:
            assert time.monotonic() < deadline, "no GPU series for the revision in 30 s"
            time.sleep(1)
            exposition = httpx.get(
                f"{plane.connection.endpoint}/metrics",
                headers={"Authorization": f"Bearer {plane.connection.token}"},
            ).text
    assert 'bentoship_revision_gpu_utilization_percent{deployment="probe",revision="r1"}' in (
        exposition
    )
    assert seen["cuda_visible_devices"] == str(gpu.index)
    if seen["torch_device_count"] is not None:
        assert seen["torch_device_count"] == 1
    assert seen["nvml"] is not None and seen["nvml"]["count"] >= 1
