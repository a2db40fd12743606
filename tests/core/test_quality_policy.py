"""The quality policy's judgement, and the report's JSON and page, without a process."""

from __future__ import annotations

import pytest

from bentoship import InvalidRequestError, QualityPolicy, QualityReport
from bentoship.quality import judge_quality

POLICY = QualityPolicy(monitor="scores", min_labels=200)


def test_a_drop_beyond_max_drop_with_its_interval_clear_of_the_baseline_fails() -> None:
    verdict = judge_quality(POLICY, 0.80, (0.77, 0.83), 500, 0.90, "r1")
    assert verdict.failed and "a drop of 0.1, more than max_drop 0.05" in verdict.reason


def test_a_small_drop_or_few_labels_is_not_enough_evidence() -> None:
    small = judge_quality(POLICY, 0.89, (0.86, 0.92), 500, 0.90, "r1")
    assert not small.failed and "not enough evidence" in small.reason
    few = judge_quality(POLICY, 0.50, (0.36, 0.64), 50, 0.90, "r1")
    assert few.state == "not_enough_evidence" and "50 labels, 200 needed" in few.reason
    reaching = judge_quality(POLICY, 0.84, (0.70, 0.95), 500, 0.90, "r1")
    assert reaching.state == "not_enough_evidence"


def test_lower_is_better_metrics_and_absolute_floors() -> None:
    mae = QualityPolicy(monitor="m", metric="mae", max_drop=0.5, baseline=1.0, min_labels=10)
    assert judge_quality(mae, 2.0, (1.8, 2.2), 100, mae.baseline_value(), "baseline").failed
    assert not judge_quality(mae, 1.2, (1.1, 1.3), 100, 1.0, "baseline").failed
    floor = QualityPolicy(monitor="m", min_value=0.9, min_labels=10)
    assert judge_quality(floor, 0.8, (0.75, 0.85), 100, None, "none").failed
    assert not judge_quality(floor, 0.88, (0.80, 0.95), 100, None, "none").failed


def test_bad_policies_say_what_to_send() -> None:
    with pytest.raises(InvalidRequestError, match="quality metric 'auc': use one of"):
        QualityPolicy(monitor="m", metric="auc")
    with pytest.raises(InvalidRequestError, match="baseline training needs training_value"):
        QualityPolicy(monitor="m", baseline="training")
    with pytest.raises(InvalidRequestError, match="unknown quality setting 'steps'"):
        QualityPolicy.from_dict({"monitor": "m", "steps": 1})
    training = QualityPolicy(monitor="m", baseline="training", training_value=0.93)
    assert training.baseline_value() == 0.93
    assert QualityPolicy.from_dict(training.to_dict()) == training


def test_the_report_round_trips_and_its_page_escapes_labels() -> None:
    bucket = {"start": 1765000000.0, "accuracy": 0.8, "interval": [0.7, 0.9], "coverage": 0.5}
    report = QualityReport(
        deployment="web",
        monitor="scores",
        metric="accuracy",
        serving="r2",
        value=0.8,
        interval=(0.7, 0.9),
        labels=300,
        coverage=0.5,
        baseline="r1",
        baseline_value=0.9,
        verdict="failed",
        reason="a drop",
        rolled_back_to="r1",
        quality={
            "revisions": [
                {
                    "revision": "r2",
                    "predicted": 600,
                    "labelled": 300,
                    "coverage": 0.5,
                    "accuracy": 0.8,
                    "interval": [0.7, 0.9],
                    "buckets": [bucket, {**bucket, "start": 1765003600.0, "accuracy": 0.7}],
                    "confusion": {"labels": ["<b>cat</b>", "dog"], "matrix": [[1, 2], [3, 4]]},
                }
            ]
        },
    )
    assert QualityReport.from_dict(report.to_dict()) == report
    page = report.html()
    assert "&lt;b&gt;cat&lt;/b&gt;" in page and "<b>cat" not in page
    assert page.count("<polyline") == 2 and "<polygon" in page
    assert report.summary().endswith("rolled back to r1")
