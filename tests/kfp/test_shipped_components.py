"""Components loaded from the shipped YAML, run with kfp.local against real control planes."""

# No `from __future__ import annotations`: kfp reads pipeline annotations as real types.
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from kfp import dsl

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import push, ship
from bentoship_kfp import load_component, load_components

from ..drift_data import drift_parquet
from .helpers import task_output, task_ran

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bentos"


def echo_project(workdir: Path, version: str) -> Path:
    project = workdir / f"echo-{version}"
    shutil.copytree(FIXTURES / "echo", project)
    (project / "version.txt").write_text(version + "\n")
    return project


def ship_echo_pipeline(homes: Path) -> Callable[..., dsl.PipelineTask]:
    """build -> push -> deploy a candidate -> [wait -> smoke test -> promote], rollback on
    failure; every task with its own BENTOML_HOME, the server given as parameters."""
    c = load_components()

    def alone(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        return task.set_env_variable("BENTOML_HOME", str(homes / name))

    @dsl.pipeline(name="verify-echo")
    def verify(rollout: str, expected: str, endpoint: str, token: str) -> None:
        server = {"endpoint": endpoint, "token": token}
        undo = alone(
            c["rollback_deployment"](rollout=rollout, timeout=120, poll_interval=0.5, **server),
            "rollback",
        )
        with dsl.ExitHandler(undo):
            ready = alone(
                c["wait_for_deployment"](rollout=rollout, timeout=120, poll_interval=0.5, **server),
                "wait",
            )
            smoke = c["smoke_test_deployment"](
                rollout=rollout, api="echo", payload={"text": "ok"}, expected=expected
            )
            alone(smoke, "smoke").after(ready)
            promote = c["promote_deployment"](rollout=rollout, timeout=120, **server)
            alone(promote, "promote").after(smoke)

    @dsl.pipeline(name="ship-echo")
    def ship_echo(project_dir: str, expected: str, endpoint: str, token: str) -> str:
        server = {"endpoint": endpoint, "token": token}
        built = alone(c["build_bento"](project_dir=project_dir, labels={"suite": "kfp"}), "build")
        pushed = alone(c["push_bento"](bento=built.outputs["bento"], **server), "push")
        deployed = c["deploy_bento"](
            deployment_name="echo",
            bento_tag=pushed.output,
            config={"min_replicas": 1, "envs": {"WORKERS": 2}},
            candidate=True,
            **server,
        )
        alone(deployed, "deploy")
        verify(rollout=deployed.outputs["rollout"], expected=expected, **server)
        return pushed.output

    return ship_echo


def expect(version: str) -> str:
    return json.dumps({"text": "ok", "version": version})


def test_shipped_components_roll_back_from_the_record_on_plain_bentocloud_api(
    start_control_plane: Callable[..., LocalControlPlane],
    kfp_local: Callable[[str], Path],
    echo_v1: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No revisions, rollback or candidate extensions: a candidate deploy is an ordinary one,
    # promotion has nothing to do, and the exit task must roll back from the rollout record
    # alone, by re-applying the previous bento and config.
    plane = start_control_plane(extensions=False)
    assert plane.connection is not None
    server = {"endpoint": plane.connection.endpoint, "token": plane.connection.token}
    homes = tmp_path / "homes"
    ship_echo = ship_echo_pipeline(homes)

    # The first version is served already (shipped by hand, as a plain BentoCloud would have
    # it); the pipeline ships the second, whose smoke test fails, so the exit task must put the
    # first back from the rollout record alone.
    with Client(**server) as client:
        shipped = push(echo_v1, client=client)
        ship("echo", shipped, {"envs": {"WORKERS": "2"}}, client=client, timeout=120)
        first = client.get_deployment("echo")
        assert (first.status, first.bento) == ("running", shipped)

        root = kfp_local("second")
        v2 = echo_project(tmp_path, "v2")
        capsys.readouterr()
        with pytest.raises(RuntimeError, match="smoke-test-deployment"):
            ship_echo(project_dir=str(v2), expected=expect("v1"), **server)
        assert "has no candidate revisions (plain BentoCloud)" in capsys.readouterr().out
        deployed = json.loads(task_output(root, "deploy-bento", "rollout"))
        assert not deployed["candidate"]  # the fallback: an ordinary deploy
        assert task_ran(root, "wait-for-deployment")
        assert not task_ran(root, "promote-deployment")
        assert task_output(root, "rollback-deployment") == (
            f"rolled back: echo serves {shipped} (running)"
        )

        # The task that built the bento and the task that pushed it each had their own store,
        # and the deploy task had none: the bento crossed between them as an artifact only.
        built = deployed["bento"].replace(":", "/")
        assert (homes / "build" / "bentos" / built).is_dir()
        assert (homes / "push" / "bentos" / built).is_dir()
        assert not (homes / "deploy" / "bentos").exists()
        session_store = Path(os.environ["BENTOML_HOME"]) / "bentos"
        assert not (session_store / built).exists()

        after = client.get_deployment("echo")
        assert (after.status, after.bento) == ("running", shipped)
        assert after.target_revision != first.target_revision  # re-applied, as on BentoCloud
        assert {"name": "WORKERS", "value": "2"} in after.config["envs"]
        assert httpx.post(f"{after.url}/echo", json={"text": "a"}).json()["version"] == "v1"

    # A canary analysis needs per-revision traffic counts, which plain BentoCloud lacks.
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="analyze-canary"):
        load_components()["analyze_canary"](
            rollout=json.dumps(deployed), steps=[50, 100], interval=1, **server
        )
    assert "promote after the smoke test instead" in capsys.readouterr().out


def test_failed_rollout_fails_the_wait_task_with_the_servers_reason(
    shared_plane: LocalControlPlane,
    kfp_local: Callable[[str], Path],
    crash_bento: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plane = shared_plane
    assert plane.connection is not None
    server = {"endpoint": plane.connection.endpoint, "token": plane.connection.token}
    c = load_components()
    kfp_local("crash")
    with Client(**server) as client:
        push(crash_bento, client=client)

    deployed = c["deploy_bento"](deployment_name="crashy", bento_tag=crash_bento, **server)
    rollout = json.loads(deployed.outputs["rollout"])
    assert rollout["created"] and rollout["bento"] == crash_bento
    capsys.readouterr()

    with pytest.raises(RuntimeError, match="wait-for-deployment"):
        c["wait_for_deployment"](rollout=deployed.outputs["rollout"], timeout=120, **server)
    logs = capsys.readouterr().out
    assert "DeploymentFailed: deployment crashy is failed" in logs
    assert "deliberate init failure: crash fixture" in logs


@pytest.mark.slow
def test_drift_report_is_an_html_artifact(kfp_local: Callable[[str], Path], tmp_path: Path) -> None:
    root = kfp_local("drift")
    check_drift = load_component("check_drift")
    reference = drift_parquet(tmp_path / "train.parquet", 0.0)
    task = check_drift(
        reference=reference,
        current=drift_parquet(tmp_path / "traffic.parquet", 0.6),
        share=0.1,
        evidently=True,
    )
    assert task.outputs["drifted"] is True
    assert task.outputs["summary"].startswith("drift: 1 of 2 columns drifted")
    reports = list(root.rglob("report"))
    assert len(reports) == 1 and 'id="column-x"' in reports[0].read_text()
    assert "Evidently's default drift preset agrees on 2 of 2 columns" in reports[0].read_text()
    (evidently,) = root.rglob("evidently_report")
    assert "Dataset Drift" in evidently.read_text()
    # kfp.local keeps the Metrics artifact's figures in the task's executor output
    executed = json.loads(next(root.rglob("executor_output.json")).read_text())
    (figures,) = executed["artifacts"]["figures"]["artifacts"]
    assert figures["metadata"]["share_drifted"] == 0.5
    assert figures["metadata"]["x.psi"] > 0.1 > figures["metadata"]["y.psi"]
