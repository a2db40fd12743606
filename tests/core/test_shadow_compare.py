"""Shadow comparison: answers agree within a tolerance, and the report's figures are right."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
from scipy import stats

from bentoship import ShadowPair, ShadowReport, compare_answers
from bentoship.errors import ConfigError
from bentoship.shadow import compare_many, render_report, shadow_report

NAN = float("nan")


def pair(
    serving_body: Any,
    candidate_body: Any,
    *,
    serving_status: int = 200,
    candidate_status: int = 200,
    serving_ms: float = 10.0,
    candidate_ms: float = 12.0,
    time: float = 1_700_000_000.0,
    **digests: str,
) -> ShadowPair:
    return ShadowPair(
        request_digest="r",
        time=time,
        serving="rev-1",
        candidate="rev-2",
        serving_status=serving_status,
        candidate_status=candidate_status,
        serving_ms=serving_ms,
        candidate_ms=candidate_ms,
        serving_body=serving_body,
        candidate_body=candidate_body,
        **digests,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("cat", "cat", True),
        ("cat", "dog", False),
        (None, None, True),
        (1, 1.0, True),
        (0.5, 0.5 + 1e-7, True),
        (0.5, 0.5 + 1e-5, False),
        (NAN, NAN, True),
        (NAN, 0.0, False),
        (True, 1, False),
        (False, 0.0, False),
        (True, True, True),
        ("1", 1, False),
        (None, 0, False),
        ([0.1, 0.2], [0.1, 0.2 + 1e-7], True),
        ([0.1, 0.2], [0.1, 0.2, 0.3], False),
        ([1], 1, False),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4.0000001]], True),
        ([[1, 2], [3, 4]], [[1, 2], [3]], False),
        ({"label": "cat", "score": 0.9}, {"score": 0.9000001, "label": "cat"}, True),
        ({"label": "cat"}, {"label": "cat", "score": 0.9}, False),
        ({"a": [1, {"b": None}]}, {"a": [1, {"b": 0}]}, False),
        ({}, [], False),
        (2**60 + 1, 2**60, False),
        (10**400, 10**400, True),
        (10**400, 1.0, False),
    ],
)
def test_answers_agree_when_equal_or_within_the_tolerance(a: Any, b: Any, agree: bool) -> None:
    assert compare_answers(a, b) is agree
    assert compare_answers(b, a) is agree
    assert compare_many([a, b], [b, a]) == [agree, agree]


def test_the_tolerance_is_absolute_and_inclusive() -> None:
    assert compare_answers(0.5, 0.75, tolerance=0.25)
    assert not compare_answers(0.5, 0.75, tolerance=0.2499)
    assert compare_answers([100.0], [100.5], tolerance=1.0)
    assert not compare_answers(1.0, 1.0 + 1e-9, tolerance=0)
    with pytest.raises(ConfigError):
        compare_answers(1, 1, tolerance=-1)
    with pytest.raises(ValueError, match="2 serving answers but 1 candidate"):
        compare_many([1, 2], [1])


def perturbed(rng: random.Random, answer: Any) -> Any:
    """A candidate's answer to the same request: mostly the same, sometimes a little off
    (within 1e-6 or not), sometimes of another kind or shape."""
    draw = rng.random()
    if draw < 0.05:
        return rng.choice([None, True, 1, "x", [answer], {"v": answer}])
    if isinstance(answer, bool) or answer is None or isinstance(answer, str):
        return answer if draw < 0.8 else rng.choice(["a", "b", False])
    if isinstance(answer, int | float):
        if draw < 0.4:
            return answer
        if draw < 0.6:
            return float(answer) + 1e-7
        if draw < 0.7:
            return NAN if rng.random() < 0.3 else answer + 1e-4
        return answer + rng.choice([1e-8, -1e-8, 2e-6])
    if isinstance(answer, list):
        moved = [perturbed(rng, item) for item in answer]
        return [*moved, 0.0] if draw < 0.1 else moved
    return {k: perturbed(rng, v) for k, v in answer.items() if draw > 0.1 or k != "x"}


def random_answer(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(["a", "b", "c"])
    if kind == 2:
        return rng.choice([rng.randrange(-5, 5), 2**60, NAN, math.inf])
    if kind in (3, 4, 5):
        return rng.uniform(-1, 1)
    if kind in (6, 7):
        return [rng.uniform(-1, 1) for _ in range(rng.randrange(4))]
    if rng.random() < 0.5:
        return [random_answer(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {k: random_answer(rng, depth + 1) for k in rng.sample("xyz", rng.randrange(1, 4))}


def test_the_fast_path_gives_compare_answers_verdicts_on_random_answers() -> None:
    rng = random.Random(27)
    serving = [random_answer(rng) for _ in range(20_000)]
    candidate = [perturbed(rng, a) for a in serving]
    expected = [compare_answers(a, b) for a, b in zip(serving, candidate, strict=True)]
    assert compare_many(serving, candidate) == expected
    assert 0.3 < sum(expected) / len(expected) < 0.8
    vectors = [
        i
        for i, a in enumerate(serving)
        if isinstance(a, list) and a and all(type(x) is float for x in a)
    ]
    assert len(vectors) > 2000
    assert 0 < sum(expected[i] for i in vectors) < len(vectors)


def test_agreement_and_its_wilson_interval_are_scipys() -> None:
    pairs = [pair("cat", "cat") for _ in range(70)] + [pair(0.0, 1.0) for _ in range(30)]
    report = shadow_report(pairs)
    interval = stats.binomtest(70, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (report.agreement.agreed, report.agreement.compared) == (70, 100)
    assert report.agreement.rate == pytest.approx(0.70)
    assert report.agreement.low == pytest.approx(interval.low)
    assert report.agreement.high == pytest.approx(interval.high)
    assert (report.agreement.low, report.agreement.high) == pytest.approx(
        (0.6042, 0.7811), abs=1e-4
    )
    assert "70.0% of 100 compared pairs (95% CI 60.4%-78.1%)" in report.summary()


def test_thirty_percent_of_flipped_labels_fill_the_flip_matrix() -> None:
    labels = ["cat"] * 50 + ["dog"] * 50
    flipped = {i for i in range(100) if i % 50 < 15}
    other = {"cat": "dog", "dog": "cat"}
    pairs = [pair(label, other[label] if i in flipped else label) for i, label in enumerate(labels)]
    report = shadow_report(pairs)
    assert report.flips == {"cat": {"cat": 35, "dog": 15}, "dog": {"cat": 15, "dog": 35}}
    assert (report.flipped, report.labelled) == (30, 100)
    assert report.agreement.agreed == 70
    assert report.differences.count == 0
    assert "30 of 100 labels flipped" in report.summary()


def test_labels_are_read_from_one_element_lists_and_label_fields() -> None:
    pairs = [
        pair(["cat"], ["dog"]),
        pair({"label": "cat", "score": 0.9}, {"label": "cat", "score": 0.7}),
        pair({"class": 3}, {"class": 4}),
        pair(True, False),
        pair(3, 4),
        pair(3, 3.5),
        pair([0.5], [0.75]),
        pair({"score": 0.5}, {"score": 0.5}),
    ]
    report = shadow_report(pairs)
    assert report.flips == {
        "3": {"4": 2},
        "cat": {"cat": 1, "dog": 1},
        "true": {"false": 1},
    }
    assert (report.differences.pairs, report.differences.count) == (2, 2)
    assert report.differences.max == pytest.approx(0.5)


def test_numeric_differences_have_the_known_percentiles() -> None:
    gaps = [i / 100 for i in range(101)]
    pairs = [pair(1.0, 1.0 + g if i % 2 else 1.0 - g) for i, g in enumerate(gaps)]
    pairs.append(pair([0.0, 10.0, 20.0], [0.0, 10.0, 20.0]))
    report = shadow_report(pairs)
    every = [*gaps, 0.0, 0.0, 0.0]
    spread = report.differences
    assert (spread.pairs, spread.count) == (102, 104)
    assert spread.mean == pytest.approx(np.mean(every))
    assert (spread.p50, spread.p95, spread.p99) == pytest.approx(
        tuple(np.percentile(every, [50, 95, 99]))
    )
    assert spread.p50 == pytest.approx(0.485)
    assert spread.max == pytest.approx(1.0)


def test_errored_pairs_count_in_error_rates_not_in_agreement() -> None:
    pairs = [
        pair("cat", "cat", serving_ms=float(i), candidate_ms=float(2 * i)) for i in range(1, 7)
    ]
    pairs += [
        pair("cat", None, candidate_status=503),
        pair("cat", None, candidate_status=500),
        pair(None, "dog", serving_status=502),
        pair("cat", None, candidate_status=0),
    ]
    report = shadow_report(pairs, dropped=4)
    assert (report.pairs, report.dropped) == (10, 4)
    assert (report.agreement.agreed, report.agreement.compared) == (6, 6)
    assert (report.serving.errors, report.candidate.errors) == (1, 3)
    assert report.serving.error_rate == pytest.approx(0.1)
    assert report.candidate.error_rate == pytest.approx(0.3)
    assert report.error_rate_change == pytest.approx(0.2)
    serving_ms = [float(i) for i in range(1, 7)] + [10.0] * 4
    candidate_ms = [float(2 * i) for i in range(1, 7)] + [12.0] * 4
    expected = np.percentile(candidate_ms, [50, 95, 99]) - np.percentile(serving_ms, [50, 95, 99])
    latency = report.candidate.latency_ms
    assert (latency.p50, latency.p95, latency.p99) == pytest.approx(
        tuple(np.percentile(candidate_ms, [50, 95, 99]))
    )
    change = report.latency_change_ms
    assert (change.p50, change.p95, change.p99) == pytest.approx(tuple(expected))
    assert (report.serving.revision, report.candidate.revision) == ("rev-1", "rev-2")


def test_a_different_status_disagrees_and_unparsed_bodies_compare_digests() -> None:
    report = shadow_report(
        [
            pair({"detail": "bad"}, {"detail": "bad"}, candidate_status=422),
            pair(None, None, serving_digest="d1", candidate_digest="d1"),
            pair(None, None, serving_digest="d1", candidate_digest="d2"),
            pair("cat", None, serving_digest="d1", candidate_digest="d1"),
        ]
    )
    assert (report.agreement.agreed, report.agreement.compared) == (2, 4)
    assert report.by_digest == 3
    assert report.flips == {}


def test_no_compared_pair_leaves_the_rates_empty() -> None:
    report = shadow_report([pair(None, None, candidate_status=500)])
    assert report.agreement.compared == 0
    assert report.agreement.rate is report.agreement.low is None
    assert report.summary().startswith("no pair compared")
    with pytest.raises(ConfigError):
        shadow_report([], dropped=-1)


def hostile_report() -> ShadowReport:
    label = "<script>alert(1)</script>"
    pairs = [pair(label, label) for _ in range(7)] + [pair(label, "ok") for _ in range(3)]
    pairs.append(pair([0.0, 1.0], [0.25, 1.0]))
    return shadow_report(pairs, dropped=2)


def test_the_page_shows_the_figures_and_escapes_labels() -> None:
    report = hostile_report()
    page = render_report(report)
    assert page == render_report(report)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<td class="n">63.64%</td>' in page
    assert f"{report.agreement.low:.2%} &ndash; {report.agreement.high:.2%}" in page
    assert "3 of 10 labelled pairs flipped" in page
    assert "<td class=n>0.25</td>" in page
    assert "http" not in page and "src=" not in page and "<link" not in page


def test_the_report_round_trips_through_json() -> None:
    report = hostile_report()
    data = json.loads(report.to_json())
    assert data["agreement"]["rate"] == pytest.approx(7 / 11)
    assert data["flipped"] == 3
    assert ShadowReport.from_dict(data) == report
