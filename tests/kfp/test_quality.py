"""The send_feedback and check_quality components' bodies, with the steps replaced (no process),
and their shipped YAML; the closed loop runs them for real in test_example_pipeline.py."""

# No `from __future__ import annotations`: kfp reads pipeline annotations as real types.

import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kfp.dsl import Metrics

import bentoship_kfp
from bentoship import QualityFailed, QualityPolicy, QualityReport
from bentoship.steps import FeedbackResult
from bentoship_kfp import COMPONENT_NAMES, load_component
from bentoship_kfp.components import COMPONENTS, UNCACHED

SERVER = {"endpoint": "http://127.0.0.1:9", "token": "unused"}  # the fakes never call it


def report_of(verdict: str, reason: str = "accuracy 0.6 over 300 labels") -> QualityReport:
    return QualityReport(
        deployment="svc",
        monitor="scores",
        metric="accuracy",
        serving="r2",
        value=0.6,
        interval=(0.55, 0.65),
        labels=300,
        coverage=0.5,
        baseline="r1",
        baseline_value=0.9,
        verdict=verdict,
        reason=reason,
    )


def test_send_feedback_without_a_source_sends_nothing_and_needs_no_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY", "BENTOSHIP_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no connection.json either
    body = COMPONENTS["send_feedback"].python_func
    assert body(deployment_name="svc", monitor="scores", source="  ") == (0, 0, 0, 0, 0)


def test_send_feedback_hands_the_columns_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoship.steps

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake(*args: Any, **kwargs: Any) -> FeedbackResult:
        calls.append((args, kwargs))
        return FeedbackResult(7, 5, 1, 1, 2, None)

    monkeypatch.setattr(bentoship.steps, "send_feedback", fake)
    body = COMPONENTS["send_feedback"].python_func
    assert body(deployment_name="svc", monitor="scores", source="/l.parquet", **SERVER) == (
        7,
        5,
        1,
        1,
        2,
    )
    body(
        deployment_name="svc",
        monitor="scores",
        source='{"url": "sqlite://", "query": "SELECT 1"}',
        id_field="inference_id",
        label_field="truth",
        id_column="key",
        time_column="known_at",
        watermark_column="seq",
        **SERVER,
    )
    (args, defaults), (_, given) = calls
    assert args == ("svc", "/l.parquet")
    # empty texts are bentoship's defaults (None), as KFP cannot pass None for a str
    assert {k: v for k, v in defaults.items() if k != "client"} == {
        "monitor": "scores",
        "id_field": None,
        "label_field": "label",
        "id_column": "id",
        "time_column": None,
        "watermark_column": None,
    }
    assert {k: v for k, v in given.items() if k != "client"} == {
        "monitor": "scores",
        "id_field": "inference_id",
        "label_field": "truth",
        "id_column": "key",
        "time_column": "known_at",
        "watermark_column": "seq",
    }


def _run_check_quality(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verdict: str, **inputs: object
) -> tuple[Any, list[tuple[QualityPolicy, dict[str, Any]]], str, dict[str, Any]]:
    """The check_quality body with a fake step giving ``verdict``: its outputs, what the step
    got, the report page written and the metrics logged."""
    import bentoship.steps

    seen: list[tuple[QualityPolicy, dict[str, Any]]] = []

    def fake(deployment: str, policy: QualityPolicy, **kwargs: Any) -> QualityReport:
        assert deployment == "svc"
        seen.append((policy, {k: v for k, v in kwargs.items() if k != "client"}))
        return report_of(verdict)

    monkeypatch.setattr(bentoship.steps, "check_quality", fake)
    report = SimpleNamespace(path=str(tmp_path / "artifacts" / "report"))
    figures = Metrics()
    try:
        outputs = COMPONENTS["check_quality"].python_func(
            deployment_name="svc",
            monitor="scores",
            report=report,
            figures=figures,
            **SERVER,
            **inputs,
        )
    finally:
        page = Path(report.path).read_text() if Path(report.path).exists() else ""
    return outputs, seen, page, dict(figures.metadata)


def test_check_quality_hands_the_policy_over_and_outputs_the_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs, seen, page, figures = _run_check_quality(monkeypatch, tmp_path, "passed")
    failed, verdict, summary, report_json = outputs
    assert (failed, verdict) == (False, "passed")
    assert summary == report_of("passed").summary()
    assert QualityReport.from_dict(json.loads(report_json)) == report_of("passed")
    assert "<html" in page.lower() and "accuracy 0.6 over 300 labels" in page
    assert figures == {"value": 0.6, "labels": 300.0, "coverage": 0.5, "baseline_value": 0.9}
    # the defaults are the policy's; the component judges the verdict itself (the step never
    # raises), so that the report is written first
    ((policy, options),) = seen
    assert policy == QualityPolicy(monitor="scores")
    assert options == {"raise_on_failure": False, "rollback_on_failure": False}

    # as KFP hands them over: numbers as given, empty texts for no field, the baseline as text
    _, ((numbers, options),), _, _ = _run_check_quality(
        monkeypatch,
        tmp_path,
        "passed",
        metric="f1",
        min_value=0.7,
        max_drop=0.1,
        baseline="0.93",
        min_labels=50.0,
        since="2d",
        score_field="score",
        rollback_on_failure=True,
    )
    _, ((training, _),), _, _ = _run_check_quality(
        monkeypatch, tmp_path, "passed", baseline="training", training_value=0.9
    )
    assert numbers == QualityPolicy(
        monitor="scores",
        metric="f1",
        min_value=0.7,
        max_drop=0.1,
        baseline=0.93,
        min_labels=50,
        since="2d",
        score_field="score",
    )
    assert options == {"raise_on_failure": False, "rollback_on_failure": True}
    assert training.baseline_value() == 0.9


def test_check_quality_branches_or_fails_after_writing_the_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, _, _, _ = _run_check_quality(monkeypatch, tmp_path, "failed", raise_on_failure=False)
    assert outputs[:2] == (True, "failed")  # for a dsl.If
    with pytest.raises(QualityFailed, match=r"quality of svc r2: failed: accuracy 0\.6"):
        _run_check_quality(monkeypatch, tmp_path, "failed")
    page = (tmp_path / "artifacts" / "report").read_text()
    assert "accuracy 0.6 over 300 labels" in page
    assert "quality of svc r2: failed" in capsys.readouterr().out
    # not enough evidence is no failure, even as a gate
    outputs, _, _, _ = _run_check_quality(monkeypatch, tmp_path, "not_enough_evidence")
    assert outputs[:2] == (False, "not_enough_evidence")


def test_check_quality_says_what_a_bad_baseline_should_be(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bentoship import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="baseline: previous_revision, training"):
        _run_check_quality(monkeypatch, tmp_path, "passed", baseline="yesterday")


def test_quality_components_are_shipped_uncached_with_their_artifacts() -> None:
    for name in ("send_feedback", "check_quality"):
        assert name in set(COMPONENT_NAMES) & set(COMPONENTS) & UNCACHED
        (component,) = yaml.safe_load(bentoship_kfp.yaml_text(name))["components"].values()
        declared = set(inspect.signature(COMPONENTS[name].python_func).parameters)
        artifacts = {"report", "figures"} if name == "check_quality" else set()
        assert set(component["inputDefinitions"]["parameters"]) == declared - artifacts
        assert type(load_component(name)).__name__ == "UncachedYamlComponent"
    (quality,) = yaml.safe_load(bentoship_kfp.yaml_text("check_quality"))["components"].values()
    outputs = quality["outputDefinitions"]
    assert outputs["parameters"]["failed"] == {"parameterType": "BOOLEAN"}
    assert set(outputs["parameters"]) == {"failed", "verdict", "summary", "report_json"}
    assert outputs["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["artifacts"]["figures"]["artifactType"]["schemaTitle"] == "system.Metrics"
    inputs = quality["inputDefinitions"]["parameters"]
    assert (inputs["min_value"]["parameterType"], inputs["min_value"]["isOptional"]) == (
        "NUMBER_DOUBLE",
        True,
    )
    assert "defaultValue" not in inputs["min_value"]  # None: no floor
    assert inputs["raise_on_failure"]["defaultValue"] is True
