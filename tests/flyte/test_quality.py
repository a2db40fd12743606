"""The send_feedback and check_quality tasks, run locally with the steps replaced (no process);
the closed loop runs them for real in test_example_workflow.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from bentoship import QualityPolicy, QualityReport
from bentoship.steps import FeedbackResult
from flytekitplugins.bentoship import check_quality, send_feedback

SERVER = {"endpoint": "http://127.0.0.1:9", "token": "token-not-in-any-deck"}
"""The fakes never call it."""


def report_of(verdict: str) -> QualityReport:
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
        reason="accuracy 0.6 over 300 labels",
    )


def decks_since(started: float) -> list[str]:
    """The deck pages local Flyte runs wrote since ``started``."""
    from flytekit import FlyteContextManager

    sandbox = Path(FlyteContextManager.current_context().file_access.local_sandbox_dir)
    found = [p for p in sandbox.rglob("deck.html") if p.stat().st_mtime >= started]
    return [p.read_text() for p in found]


def test_send_feedback_without_a_source_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoship.steps

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no source: nothing to send")

    monkeypatch.setattr(bentoship.steps, "send_feedback", never)
    for source in (None, "", " "):
        sent = send_feedback(name="svc", monitor="scores", source=source, **SERVER)
        assert tuple(sent) == (0, 0, 0, 0, 0)


def test_send_feedback_hands_the_columns_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoship.steps

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake(*args: Any, **kwargs: Any) -> FeedbackResult:
        calls.append((args, {k: v for k, v in kwargs.items() if k != "client"}))
        return FeedbackResult(7, 5, 1, 1, 2, None)

    monkeypatch.setattr(bentoship.steps, "send_feedback", fake)
    sent = send_feedback(name="svc", monitor="scores", source="/labels.parquet", **SERVER)
    assert (sent.sent, sent.stored, sent.duplicates, sent.corrections, sent.pending) == (
        7,
        5,
        1,
        1,
        2,
    )
    send_feedback(
        name="svc",
        monitor="scores",
        source="/labels",
        id_field="inference_id",
        label_field="truth",
        id_column="key",
        time_column="known_at",
        watermark_column="seq",
        **SERVER,
    )
    (args, defaults), (_, given) = calls
    assert args == ("svc", "/labels.parquet")
    assert defaults == {
        "monitor": "scores",
        "id_field": None,
        "label_field": "label",
        "id_column": "id",
        "time_column": None,
        "watermark_column": None,
    }
    assert given == {
        "monitor": "scores",
        "id_field": "inference_id",
        "label_field": "truth",
        "id_column": "key",
        "time_column": "known_at",
        "watermark_column": "seq",
    }


def _check_with(
    monkeypatch: pytest.MonkeyPatch, verdict: str, **inputs: Any
) -> tuple[Any, list[tuple[QualityPolicy, dict[str, Any]]]]:
    """The check_quality task, run locally, with a fake step giving ``verdict``."""
    import bentoship.steps

    seen: list[tuple[QualityPolicy, dict[str, Any]]] = []

    def fake(deployment: str, policy: QualityPolicy, **kwargs: Any) -> QualityReport:
        assert deployment == "svc"
        seen.append((policy, {k: v for k, v in kwargs.items() if k != "client"}))
        return report_of(verdict)

    monkeypatch.setattr(bentoship.steps, "check_quality", fake)
    return check_quality(name="svc", monitor="scores", **SERVER, **inputs), seen


def test_check_quality_hands_the_policy_over_and_shows_only_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = time.time()
    out, seen = _check_with(monkeypatch, "passed")
    assert (out.failed, out.verdict) == (False, "passed")
    assert out.summary == report_of("passed").summary()
    assert QualityReport.from_dict(json.loads(out.report_json)) == report_of("passed")
    assert "accuracy 0.6 over 300 labels" in Path(out.report.path).read_text()
    ((policy, options),) = seen
    assert policy == QualityPolicy(monitor="scores")
    assert options == {"raise_on_failure": False, "rollback_on_failure": False}

    _, ((numbers, options),) = _check_with(
        monkeypatch,
        "passed",
        metric="mae",
        min_value=2.0,
        max_drop=0.5,
        baseline="1.5",
        min_labels=50,
        since="2d",
        prediction_field="price",
        rollback_on_failure=True,
    )
    assert numbers == QualityPolicy(
        monitor="scores",
        metric="mae",
        min_value=2.0,
        max_drop=0.5,
        baseline=1.5,
        min_labels=50,
        since="2d",
        prediction_field="price",
    )
    assert options == {"raise_on_failure": False, "rollback_on_failure": True}
    _, ((training, _),) = _check_with(
        monkeypatch, "passed", baseline="training", training_value=0.9
    )
    assert training.baseline_value() == 0.9

    decks = decks_since(started)
    assert len(decks) == 3
    assert all("Quality report" in d and "accuracy 0.6 over 300 labels" in d for d in decks)
    assert not any(SERVER["token"] in deck for deck in decks)


def test_check_quality_branches_or_fails_as_a_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _check_with(monkeypatch, "failed", raise_on_failure=False)
    assert (out.failed, out.verdict) == (True, "failed")
    with pytest.raises(Exception, match=r"quality of svc r2: failed: accuracy 0\.6"):
        _check_with(monkeypatch, "failed")
    out, _ = _check_with(monkeypatch, "not_enough_evidence")  # no failure, even as a gate
    assert (out.failed, out.verdict) == (False, "not_enough_evidence")
