"""The components as KFP sees them: shipped YAML, pinned image, no pip, caching, light imports."""

# No `from __future__ import annotations`: kfp reads pipeline annotations as real types.

import importlib.metadata
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, dsl
from kfp.dsl.base_component import BaseComponent

import bentoship_kfp
from bentoship import Client, Rollout
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready
from bentoship_kfp import COMPONENT_NAMES, DEFAULT_IMAGE, IMAGE_ENV, load_component, load_components
from bentoship_kfp.compile import main as compile_main
from bentoship_kfp.components import BASE_IMAGE, COMPONENTS, UNCACHED, with_image

from ..traffic import TrafficLoop
from .helpers import executor_labels

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "kfp_components" / "src" / "bentoship_kfp" / "component_yaml"
EXAMPLE = ROOT / "dags_examples" / "kfp_retrain_and_ship.py"


def spec_of(text: str) -> dict:
    return next(yaml.safe_load_all(text))


def images_of(component: BaseComponent) -> set[str]:
    """The container images of a component as it compiles (for a YAML one, from its text)."""
    spec = json_format.MessageToDict(component.pipeline_spec)
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def import_afresh(name: str = "bentoship_kfp.components") -> ModuleType:
    """A module imported again, into a new module object (sys.modules untouched)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_yaml_equals_a_fresh_compile(tmp_path: Path) -> None:
    assert set(COMPONENTS) == set(COMPONENT_NAMES)
    assert sorted(p.stem for p in SHIPPED.glob("*.yaml")) == sorted(COMPONENT_NAMES)
    # the shipped files hold the default image, whatever BENTOSHIP_KFP_IMAGE says
    for name, component in with_image(DEFAULT_IMAGE).items():
        fresh = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(component, str(fresh))
        assert bentoship_kfp.yaml_text(name) == fresh.read_text(), (
            f"{name}.yaml is stale: run `python -m bentoship_kfp.compile`"
        )
        assert bentoship_kfp.yaml_path(name) == SHIPPED / f"{name}.yaml"


@pytest.mark.slow
def test_compile_check_runs_as_a_module() -> None:
    # with the image setting in the environment: it must not leak into the shipped files
    env = {**os.environ, IMAGE_ENV: "registry.example.com/elsewhere:1"}
    check = subprocess.run(
        [sys.executable, "-m", "bentoship_kfp.compile", "--check"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_default_image_is_tagged_with_the_package_version(monkeypatch: pytest.MonkeyPatch) -> None:
    version = importlib.metadata.version("bentoship-kfp")
    assert version == bentoship_kfp.__version__
    assert f"ghcr.io/bentoship/bentoship-kfp:{version}-python3.11" == DEFAULT_IMAGE
    # derived from the version, not written down: another version gives another tag
    monkeypatch.setattr(bentoship_kfp._version, "__version__", "9.8.7")
    bumped = import_afresh("bentoship_kfp._image").DEFAULT_IMAGE
    assert bumped == "ghcr.io/bentoship/bentoship-kfp:9.8.7-python3.11"
    monkeypatch.undo()
    configured = os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE
    assert configured == BASE_IMAGE
    dockerfiles = ROOT / "kfp_components"
    assert f"-t {DEFAULT_IMAGE} ." in (dockerfiles / "Dockerfile").read_text()
    example = (dockerfiles / "Dockerfile.example").read_text()
    assert f"ARG BASE_IMAGE={DEFAULT_IMAGE}\nFROM ${{BASE_IMAGE}}\n" in example
    for name in COMPONENT_NAMES:
        assert images_of(load_component(name, DEFAULT_IMAGE)) == {DEFAULT_IMAGE}, name


def test_image_setting_changes_the_image_of_every_component(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    custom = "registry.example.com:5000/ml/bentoship-kfp:7.7-custom"
    monkeypatch.setenv(IMAGE_ENV, custom)
    # the variable is read when the components module is imported: import it afresh
    fresh = import_afresh()
    assert custom == fresh.BASE_IMAGE
    assert sorted(fresh.COMPONENTS) == sorted(COMPONENT_NAMES)
    for name, component in fresh.COMPONENTS.items():
        assert images_of(component) == {custom}, name
    # the shipped YAML, loaded while it is set
    for name, loaded in load_components().items():
        assert images_of(loaded) == {custom}, name
        assert (name in UNCACHED) == (type(loaded).__name__ == "UncachedYamlComponent")

    # the same in code, without the variable; and unset, the default again
    monkeypatch.delenv(IMAGE_ENV)
    other = "registry.example.com/other:2"
    for c in (with_image(other), load_components(image=other)):
        assert sorted(c) == sorted(COMPONENT_NAMES)
        assert all(images_of(component) == {other} for component in c.values())
    assert import_afresh().BASE_IMAGE == DEFAULT_IMAGE
    assert all(images_of(c) == {DEFAULT_IMAGE} for c in load_components().values())

    # only the image differs from the shipped YAML; component YAML for another image
    assert compile_main(["--image", other, "--output-dir", str(tmp_path)]) == 0
    for name in COMPONENT_NAMES:
        written = (tmp_path / f"{name}.yaml").read_text()
        assert written == bentoship_kfp.yaml_text(name).replace(
            f"image: {DEFAULT_IMAGE}", f"image: {other}"
        )
    with pytest.raises(SystemExit):
        compile_main(["--image", other])  # never into the shipped files


def test_every_component_runs_without_pip() -> None:
    for name in COMPONENT_NAMES:
        (executor,) = spec_of(bentoship_kfp.yaml_text(name))["deploymentSpec"]["executors"].values()
        container = executor["container"]
        assert container["image"] == DEFAULT_IMAGE, name
        program = " ".join(container["command"] + container["args"])
        assert "pip install" not in program, f"{name} would pip-install when its task starts"
        assert "kfp.dsl.executor_main" in program, name


@pytest.mark.slow
def test_component_modules_import_only_kfp() -> None:
    code = (
        "import sys, runpy\n"
        "import bentoship_kfp, bentoship_kfp.components, bentoship_kfp.compile\n"
        f"runpy.run_path({str(EXAMPLE)!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'bentoship', 'bentoml'})\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _caching_by_task(pipeline_spec: dict) -> dict[str, bool]:
    tasks = dict(pipeline_spec["root"]["dag"]["tasks"])
    for component in pipeline_spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {
        name: bool(task.get("cachingOptions", {}).get("enableCache"))
        for name, task in tasks.items()
        if not name.startswith("exit-handler")
    }


@pytest.mark.parametrize("source", ["python", "shipped-yaml"])
def test_only_build_tasks_are_cached(source: str, tmp_path: Path) -> None:
    c = COMPONENTS if source == "python" else load_components()

    @dsl.pipeline(name="caching")
    def flat(project_dir: str, rollout: str) -> None:
        built = c["build_bento"](project_dir=project_dir)
        pushed = c["push_bento"](bento=built.outputs["bento"])
        c["deploy_bento"](deployment_name="svc", bento_tag=pushed.output, candidate=True)
        undo = c["rollback_deployment"](rollout=rollout)
        with dsl.ExitHandler(undo):
            ready = c["wait_for_deployment"](rollout=rollout)
            smoke = c["smoke_test_deployment"](rollout=rollout, api="hello").after(ready)
            c["promote_deployment"](rollout=rollout).after(smoke)
        c["analyze_canary"](rollout=rollout, steps=[50, 100], interval=5)
        c["analyze_shadow"](rollout=rollout, min_pairs=50, apis=["predict"])
        c["check_drift"](reference="train.parquet", current="traffic.parquet")
        c["export_monitoring"](deployment_name="svc", monitor="m", target="w.duckdb")
        sent = c["send_feedback"](deployment_name="svc", monitor="m", source="labels.parquet")
        c["check_quality"](deployment_name="svc", monitor="m").after(sent)
        c["request_approval"](rollout=rollout, message="ship it?")

    path = tmp_path / "caching.yaml"
    compiler.Compiler().compile(flat, str(path))
    caching = _caching_by_task(spec_of(path.read_text()))
    assert caching == {
        "build-bento": True,
        "push-bento": False,
        "deploy-bento": False,
        "wait-for-deployment": False,
        "smoke-test-deployment": False,
        "promote-deployment": False,
        "analyze-canary": False,
        "analyze-shadow": False,
        "rollback-deployment": False,
        "check-drift": False,
        "export-monitoring": False,
        "send-feedback": False,
        "check-quality": False,
        "request-approval": False,
    }
    assert {name.replace("-", "_") for name, cached in caching.items() if not cached} == UNCACHED


def test_load_component_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="no bentoship component 'deploy'"):
        load_component("deploy")


def test_rollback_does_nothing_when_the_group_succeeded(monkeypatch: pytest.MonkeyPatch) -> None:
    # No server is configured: the component must not even build a client.
    for name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    status = dsl.PipelineTaskFinalStatus(
        state="SUCCEEDED",
        pipeline_job_resource_name="run",
        pipeline_task_name="exit-handler-1",
        error_code=None,
        error_message=None,
    )
    rollout = json.dumps({"name": "svc", "bento": "svc:v2", "revision": "r2", "endpoint_url": ""})
    outcome = COMPONENTS["rollback_deployment"].python_func(rollout=rollout, status=status)
    assert outcome == "no rollback: exit-handler-1 succeeded"


@pytest.mark.slow
def test_example_pipeline_compiles_with_rollback_exit_task_and_secret(tmp_path: Path) -> None:
    output = tmp_path / "retrain.yaml"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--output", str(output)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(output.read_text()))
    spec, platform = documents[0], documents[1]

    verify = spec["components"]["comp-verify-rollout"]["dag"]["tasks"]
    exit_task = verify["rollback-deployment"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert exit_task["inputs"]["parameters"]["status"] == {
        "taskFinalStatus": {"producerTask": "exit-handler-1"}
    }
    assert exit_task["inputs"]["parameters"]["rollout"] == {"componentInputParameter": "rollout"}
    guarded = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(guarded) == {"wait-for-deployment", "smoke-test-deployment", "condition-branches-2"}
    # verified: the candidate is promoted (by the shadow gate, or at once) only after its
    # quality gate passed
    assert guarded["smoke-test-deployment"]["dependentTasks"] == ["wait-for-deployment"]
    assert guarded["condition-branches-2"]["dependentTasks"] == ["smoke-test-deployment"]
    branches = spec["components"]["comp-condition-branches-2"]["dag"]["tasks"]
    promoting = {
        branch["triggerPolicy"]["condition"]: set(
            spec["components"][f"comp-{name}"]["dag"]["tasks"]
        )
        for name, branch in branches.items()
    }
    approval = "inputs.parameter_values['pipelinechannel--require_approval'] == true"
    shadow = "int(inputs.parameter_values['pipelinechannel--shadow_min_pairs']) > 0"
    assert promoting == {
        approval: {"gate-evidence", "request-approval"},
        f"!({approval}) && {shadow}": {"analyze-shadow"},
        f"!({approval}) && !({shadow})": {"promote-deployment"},
    }
    approving = spec["components"]["comp-condition-3"]["dag"]["tasks"]
    assert approving["request-approval"]["inputs"]["parameters"]["evidence"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "gate-evidence"}
    }
    assert not approving["request-approval"]["cachingOptions"].get("enableCache")
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["require_approval"]["defaultValue"] is False
    )
    root_tasks = spec["root"]["dag"]["tasks"]
    assert root_tasks["deploy-bento"]["inputs"]["parameters"]["candidate"] == {
        "runtimeValue": {"constant": True}
    }
    assert root_tasks["verify-rollout"]["inputs"]["parameters"]["rollout"] == {
        "taskOutputParameter": {"outputParameterKey": "rollout", "producerTask": "deploy-bento"}
    }

    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {
        label
        for label, config in executors.items()
        for secret in config.get("secretAsEnv", [])
        if secret["secretName"] == "bentoship-api"
        and {item["envVar"] for item in secret["keyToEnv"]}
        == {"BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"}
    }
    assert with_secret == {
        "exec-push-bento",
        "exec-deploy-bento",
        "exec-wait-for-deployment",
        "exec-promote-deployment",
        "exec-analyze-shadow",
        "exec-request-approval",
        "exec-rollback-deployment",
    }
    text = output.read_text()
    assert "pip install" not in text
    assert executor_labels(text) >= {"exec-train-model", "exec-build-bento"}
    images = {
        label: executor["container"]["image"]
        for label, executor in spec["deploymentSpec"]["executors"].items()
    }
    example_image = images.pop("exec-train-model")
    assert images.pop("exec-holdout-set") == images.pop("exec-build-bento") == example_image
    assert images.pop("exec-gate-evidence") == DEFAULT_IMAGE
    assert set(images.values()) == {BASE_IMAGE}
    assert f"-t {example_image} ." in (ROOT / "kfp_components" / "Dockerfile.example").read_text()


def test_verified_rollout_components_are_shipped_and_compiled() -> None:
    names = ("promote_deployment", "analyze_canary")
    assert set(names) <= set(COMPONENT_NAMES) & set(COMPONENTS) & UNCACHED
    for name in names:
        spec = spec_of(bentoship_kfp.yaml_text(name))
        (component,) = spec["components"].values()
        declared = inspect.signature(COMPONENTS[name].python_func).parameters
        assert set(component["inputDefinitions"]["parameters"]) == set(declared), name
        assert component["outputDefinitions"]["parameters"] == {
            "Output": {"parameterType": "STRING"}
        }
        loaded = load_component(name)
        assert type(loaded).__name__ == "UncachedYamlComponent", name
        assert loaded.component_spec.inputs.keys() == COMPONENTS[name].component_spec.inputs.keys()
    deploy_inputs = spec_of(bentoship_kfp.yaml_text("deploy_bento"))["root"]["inputDefinitions"]
    candidate = deploy_inputs["parameters"]["candidate"]
    assert (candidate["parameterType"], candidate["defaultValue"]) == ("BOOLEAN", False)


def _canary_policy_of(monkeypatch: pytest.MonkeyPatch, **inputs: object) -> dict:
    """The policy the analyze_canary body hands the step (the step itself replaced)."""
    import bentoship.steps
    from bentoship.canary import CanaryAnalysis, CanaryPolicy

    seen: dict = {}

    def fake(rollout: str, policy: dict, *, client: object) -> CanaryAnalysis:
        seen.update(policy)
        return CanaryAnalysis("svc", "r2", "r1", "promoted", "held", [], CanaryPolicy())

    monkeypatch.setattr(bentoship.steps, "analyze_canary", fake)
    server = {"endpoint": "http://127.0.0.1:9", "token": "unused"}  # the fake never calls it
    answer = COMPONENTS["analyze_canary"].python_func(rollout="{}", **server, **inputs)
    assert json.loads(answer)["verdict"] == "promoted"
    return seen


def test_analyze_canary_defaults_are_the_policy_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from bentoship.canary import CanaryPolicy

    assert CanaryPolicy.from_dict(_canary_policy_of(monkeypatch)) == CanaryPolicy()
    # as KFP hands them over: a list of floats (a protobuf Struct), empty text for no route_by
    given = _canary_policy_of(
        monkeypatch, steps=[25.0, 100.0], interval=5, route_type="header", route_by="X-User"
    )
    assert CanaryPolicy.from_dict(given) == CanaryPolicy(
        steps=(25, 100), interval=5.0, route_type="header", route_by="X-User"
    )


def test_analyze_canary_fails_the_task_with_the_figures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bentoship.steps
    from bentoship import CanaryFailed

    figures = {"verdict": "rolled_back", "reason": "at 10%: success rate 0.5 below 0.99"}

    def fake(rollout: str, policy: dict, *, client: object) -> None:
        raise CanaryFailed("canary r2 of svc was discarded", deployment="svc", analysis=figures)

    monkeypatch.setattr(bentoship.steps, "analyze_canary", fake)
    with pytest.raises(CanaryFailed, match="discarded"):
        COMPONENTS["analyze_canary"].python_func(
            rollout="{}", endpoint="http://127.0.0.1:9", token="unused"
        )
    assert f"canary analysis: {json.dumps(figures)}" in capsys.readouterr().out


CANDIDATE = Rollout(
    name="svc",
    bento="svc:v2",
    revision="r2",
    endpoint_url="http://127.0.0.1:9",
    previous_revision="r1",
    candidate=True,
    candidate_url="http://127.0.0.1:9/candidate",
)
UNUSED_SERVER = {"endpoint": "http://127.0.0.1:9", "token": "unused"}  # the fakes never call it


def _run_shadow_body(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: object, **inputs: object
) -> tuple[str, str]:
    """The analyze_shadow body with ``fake`` as the step: its output and the report it wrote."""
    import bentoship.steps

    monkeypatch.setattr(bentoship.steps, "analyze_shadow", fake)
    report = SimpleNamespace(path=str(tmp_path / "artifacts" / "report"))
    answer = COMPONENTS["analyze_shadow"].python_func(
        rollout=CANDIDATE.to_json(), report=report, **UNUSED_SERVER, **inputs
    )
    return answer, Path(report.path).read_text()


def test_analyze_shadow_hands_the_policy_over_and_outputs_the_promoted_rollout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bentoship import ShadowAnalysis, ShadowPolicy

    seen: list[ShadowPolicy] = []

    def fake(rollout: str, policy: dict, *, client: object) -> ShadowAnalysis:
        seen.append(ShadowPolicy.from_dict(policy))
        return ShadowAnalysis("svc", "r2", "r1", "promoted", "all 9 pairs agree", None, seen[-1])

    answer, page = _run_shadow_body(monkeypatch, tmp_path, fake)
    promoted = Rollout.from_json(answer)
    assert promoted.revision == "r2" and not promoted.candidate and not promoted.candidate_url
    assert "promoted: all 9 pairs agree" in page
    # the defaults are the policy's; no apis (or an empty list) mirrors every API
    _run_shadow_body(monkeypatch, tmp_path, fake, apis=[])
    assert seen == [ShadowPolicy(), ShadowPolicy()]
    # as KFP hands them over: whole numbers for the int inputs, a list of API names
    _run_shadow_body(
        monkeypatch,
        tmp_path,
        fake,
        percent=50.0,
        min_pairs=100.0,
        timeout=120,
        p99_slack_ms=250,
        apis=["classify"],
    )
    assert seen[-1] == ShadowPolicy(
        percent=50, min_pairs=100, timeout=120.0, p99_slack_ms=250.0, apis=("classify",)
    )


def test_analyze_shadow_writes_the_report_then_fails_the_task(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bentoship import ShadowAnalysis, ShadowFailed

    analysis = ShadowAnalysis("svc", "r2", "r1", "discarded", "agreement 70% is below 95%")

    def fake(rollout: str, policy: dict, *, client: object) -> None:
        raise ShadowFailed("shadow r2 of svc was discarded", deployment="svc", analysis=analysis)

    with pytest.raises(ShadowFailed, match="discarded"):
        _run_shadow_body(monkeypatch, tmp_path, fake)
    page = (tmp_path / "artifacts" / "report").read_text()
    assert "discarded: agreement 70% is below 95%" in page
    assert "shadow analysis: discarded: agreement 70% is below 95%" in capsys.readouterr().out


def test_analyze_shadow_is_shipped_with_an_html_report() -> None:
    assert "analyze_shadow" in set(COMPONENT_NAMES) & UNCACHED
    spec = spec_of(bentoship_kfp.yaml_text("analyze_shadow"))
    (component,) = spec["components"].values()
    declared = set(inspect.signature(COMPONENTS["analyze_shadow"].python_func).parameters)
    inputs = component["inputDefinitions"]["parameters"]
    assert set(inputs) == declared - {"report"}
    assert inputs["apis"]["parameterType"] == "LIST"
    outputs = component["outputDefinitions"]
    assert outputs["parameters"] == {"Output": {"parameterType": "STRING"}}
    assert outputs["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert type(load_component("analyze_shadow")).__name__ == "UncachedYamlComponent"


SHADOW_DEPLOYMENT = "shadow-kfp"


def test_analyze_shadow_discards_a_disagreeing_candidate_and_keeps_its_report(
    shared_plane: LocalControlPlane,
    kfp_local: Callable[[str], Path],
    echo_v1: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shared_plane.connection is not None
    server = {"endpoint": shared_plane.connection.endpoint, "token": shared_plane.connection.token}
    root = kfp_local("shadow")
    with Client(**server) as client:
        push(echo_v1, client=client)
        wait_until_ready(deploy(SHADOW_DEPLOYMENT, echo_v1, client=client), client=client)
        serving = client.get_deployment(SHADOW_DEPLOYMENT).serving_revision
        envs = {"envs": {"CLASSIFY_FLIP_PERCENT": "30"}}
        rollout = deploy(SHADOW_DEPLOYMENT, echo_v1, envs, candidate=True, client=client)
        wait_until_ready(rollout, client=client, timeout=120)
        capsys.readouterr()
        traffic = TrafficLoop(
            f"{rollout.endpoint_url}/classify", clients=3, pause=0.05, payloads=lambda n: {"x": n}
        )
        with traffic as live, pytest.raises(RuntimeError, match="analyze-shadow"):
            load_component("analyze_shadow")(
                rollout=rollout.to_json(),
                min_pairs=100,
                timeout=120,
                apis=["classify"],
                p99_slack_ms=250,
                **server,
            )
        logs = capsys.readouterr().out
        assert "ShadowFailed" in logs and "shadow analysis: discarded:" in logs
        assert "agreement" in logs
        # the report was written before the task failed, and shows the flipped labels
        (report,) = root.rglob("report")
        page = report.read_text()
        assert "<title>Shadow report</title>" in page and "labelled pairs flipped" in page
        assert f"candidate {rollout.revision} agrees with serving {serving}" in page
        dep = client.get_deployment(SHADOW_DEPLOYMENT)
        assert dep.serving_revision == serving and dep.candidate_revision is None
        assert live.failures == [] and set(live.by_revision()) == {serving}


def _run_approval_body(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: object = None, **inputs: object
) -> tuple[tuple[str, str, str], str]:
    """The request_approval body (with ``fake`` as the step, if given): its outputs and the
    decision page it wrote."""
    import bentoship.steps

    if fake is not None:
        monkeypatch.setattr(bentoship.steps, "request_approval", fake)
    report = SimpleNamespace(path=str(tmp_path / "artifacts" / "report"))
    try:
        outputs = COMPONENTS["request_approval"].python_func(
            rollout=CANDIDATE.to_json(), report=report, **inputs
        )
    finally:
        page = Path(report.path).read_text() if Path(report.path).exists() else ""
    return outputs, page


def test_request_approval_not_required_asks_nobody(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY", "BENTOSHIP_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no server anywhere: none is asked
    outputs, page = _run_approval_body(
        monkeypatch, tmp_path, required=False, evidence={"rows": 3.0, "note": "<b>bold</b>"}
    )
    assert outputs == ("not_required", "", "")
    assert "Approval of svc r2: <span class=not_required>not_required</span>" in page
    assert "No approval was required" in page
    # KFP's float conversion undone, and the evidence escaped
    assert "<th>rows</th><td>3</td>" in page and "&lt;b&gt;bold&lt;/b&gt;" in page


def test_request_approval_writes_the_decision_then_fails_or_branches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bentoship import ApprovalRejected
    from bentoship.steps import Approval

    seen: list[dict] = []

    def reject(
        rollout: str, message: str, timeout: float, evidence: dict, **kwargs: object
    ) -> Approval:
        seen.append({"message": message, "timeout": timeout, "evidence": evidence, **kwargs})
        approval = Approval("a1", "svc", "r2", "rejected", message, evidence, "lead", "p99 <high>")
        if kwargs["raise_on_failure"]:
            raise ApprovalRejected(
                "candidate r2 of svc was not approved", deployment="svc", approval=approval
            )
        return approval

    link = "https://grafana.example/d?run=7&panel=2"
    with pytest.raises(ApprovalRejected, match="was not approved"):
        _run_approval_body(
            monkeypatch,
            tmp_path,
            reject,
            message="ship it?",
            evidence={"dashboard": link},
            **UNUSED_SERVER,
        )
    page = (tmp_path / "artifacts" / "report").read_text()
    assert "<span class=rejected>rejected</span>" in page
    assert "Rejected by <b>lead</b>: p99 &lt;high&gt;" in page and "<p>ship it?</p>" in page
    assert f'<a href="{link.replace("&", "&amp;")}">' in page
    assert "approval: candidate r2 of svc was not approved" in capsys.readouterr().out
    outputs, _ = _run_approval_body(
        monkeypatch, tmp_path, reject, raise_on_failure=False, **UNUSED_SERVER
    )
    assert outputs == ("rejected", "lead", "p99 <high>")  # for a dsl.If
    first, branching = seen
    assert (first["timeout"], first["evidence"], first["required"]) == (
        86400.0,
        {"dashboard": link},
        True,
    )
    assert branching["raise_on_failure"] is False and branching["evidence"] == {}


def test_request_approval_is_shipped_uncached_with_its_decision_page() -> None:
    assert "request_approval" in set(COMPONENT_NAMES) & set(COMPONENTS) & UNCACHED
    (component,) = spec_of(bentoship_kfp.yaml_text("request_approval"))["components"].values()
    declared = set(inspect.signature(COMPONENTS["request_approval"].python_func).parameters)
    inputs = component["inputDefinitions"]["parameters"]
    assert set(inputs) == declared - {"report"}
    assert (inputs["evidence"]["parameterType"], inputs["evidence"]["isOptional"]) == (
        "STRUCT",
        True,
    )
    assert inputs["required"]["defaultValue"] is True
    assert (inputs["timeout"]["parameterType"], inputs["timeout"]["defaultValue"]) == (
        "NUMBER_INTEGER",
        86400.0,
    )
    outputs = component["outputDefinitions"]
    assert {k: v["parameterType"] for k, v in outputs["parameters"].items()} == {
        "decision": "STRING",
        "decided_by": "STRING",
        "comment": "STRING",
    }
    assert outputs["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert type(load_component("request_approval")).__name__ == "UncachedYamlComponent"


def test_request_approval_waits_for_a_person_and_the_approved_candidate_serves(
    shared_plane: LocalControlPlane,
    kfp_local: Callable[[str], Path],
    echo_v1: str,
) -> None:
    assert shared_plane.connection is not None
    server = {"endpoint": shared_plane.connection.endpoint, "token": shared_plane.connection.token}
    root = kfp_local("approval")
    with Client(**server) as client:
        push(echo_v1, client=client)
        # the module's deployment, serving after the shadow test (created when this test runs
        # on its own): only the candidate starts a process
        if client.find_deployment(SHADOW_DEPLOYMENT) is None:
            wait_until_ready(deploy(SHADOW_DEPLOYMENT, echo_v1, client=client), client=client)
        before = client.get_deployment(SHADOW_DEPLOYMENT).serving_revision
        envs = {"envs": {"RUN": "approve me"}}
        rollout = deploy(SHADOW_DEPLOYMENT, echo_v1, envs, candidate=True, client=client)
        wait_until_ready(rollout, client=client, timeout=120)
        asked: list[dict] = []

        def person() -> None:
            """Approves through the API once the task's approval is pending."""
            for _ in range(1200):
                pending = [
                    a for a in client.approvals(SHADOW_DEPLOYMENT) if a["state"] == "pending"
                ]
                if pending:
                    asked.append(pending[0])
                    client.approve(SHADOW_DEPLOYMENT, pending[0]["id"], "figures are fine")
                    return
                time.sleep(0.1)

        approver = threading.Thread(target=person)
        approver.start()
        try:
            task = load_component("request_approval")(
                rollout=rollout.to_json(),
                message="ship it?",
                timeout=120,  # a test that never approves fails: the plane discards then
                evidence={"holdout_accuracy": 0.89, "rows": 3},
                **server,
            )
        finally:
            approver.join(60)
        assert (task.outputs["decision"], task.outputs["comment"]) == (
            "approved",
            "figures are fine",
        )
        assert task.outputs["decided_by"] == "server token"  # the approving token's name
        (pending,) = asked
        assert pending["revision"] == rollout.revision and pending["message"] == "ship it?"
        assert pending["evidence"] == {"holdout_accuracy": 0.89, "rows": 3}
        dep = client.get_deployment(SHADOW_DEPLOYMENT)
        assert dep.serving_revision == rollout.revision != before
        assert dep.candidate_revision is None
        (report,) = root.rglob("report")
        page = report.read_text()
        assert "<span class=approved>approved</span>" in page
        assert "Approved by <b>server token</b>: figures are fine" in page
        assert "<th>holdout_accuracy</th><td>0.89</td>" in page
