"""Canary analysis and the endpoint's traffic split, as logic: no process, no server."""

from __future__ import annotations

import os
import random
import signal

import pytest

from bentoship import CanaryPolicy, InvalidRequestError, TrafficReport
from bentoship.canary import StepVerdict, WindowStats, judge_step, quantile, window_stats
from bentoship.server.endpoint.split import RouteType, TrafficSplit
from bentoship.server.endpoint.traffic import LATENCY_BOUNDS, TrafficBook
from bentoship.signals import Terminated, terminated_raises

BOUNDS = (0.01, 0.02, 0.05, 0.1)


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    assert quantile(BOUNDS, (0, 0, 0, 0, 0), 0.99) is None
    assert quantile(BOUNDS, (100, 0, 0, 0, 0), 0.5) == pytest.approx(0.005)
    assert quantile(BOUNDS, (50, 50, 0, 0, 0), 0.99) == pytest.approx(0.01 + 0.01 * 49 / 50)
    assert quantile(BOUNDS, (90, 0, 0, 10, 0), 0.99) == pytest.approx(0.05 + 0.05 * 9 / 10)
    assert quantile(BOUNDS, (90, 0, 0, 0, 10), 0.99) == 0.1


def report(requests: dict[str, int], errors: dict[str, int], buckets: dict[str, tuple[int, ...]]):  # type: ignore[no-untyped-def]
    return TrafficReport(BOUNDS, requests, errors, buckets)


def test_window_stats_are_the_difference_of_two_reports() -> None:
    before = report({"r2": 10}, {"r2": 1}, {"r2": (10, 0, 0, 0, 0)})
    after = report(
        {"r2": 110, "r1": 5}, {"r2": 6}, {"r2": (10, 0, 100, 0, 0), "r1": (5, 0, 0, 0, 0)}
    )
    stats = window_stats(before, after, "r2")
    assert (stats.requests, stats.errors) == (100, 5)
    assert stats.success_rate == pytest.approx(0.95)
    assert stats.p99_ms == pytest.approx(0.02 * 1000 + 30 * 99 / 100, rel=1e-3)
    assert window_stats(before, after, "r1").requests == 5
    assert window_stats(before, after, None) == WindowStats(0, 0, None)


def test_a_step_passes_only_within_every_threshold() -> None:
    policy = CanaryPolicy(min_requests=100)
    baseline = WindowStats(1000, 0, 100.0)
    assert judge_step(policy, 10, WindowStats(200, 1, 120.0), baseline).passed
    five_percent = judge_step(policy, 10, WindowStats(200, 10, 100.0), baseline)
    assert not five_percent.passed and "success rate 95.00%" in five_percent.problems[0]
    slow = judge_step(policy, 50, WindowStats(200, 0, 201.0), baseline)
    assert slow.problems == ("p99 201 ms is above 200 ms (1.5 x the baseline's 100 ms + 50 ms)",)
    quiet = judge_step(policy, 10, WindowStats(20, 0, 10.0), baseline)
    assert "only 20 requests" in quiet.problems[0]
    no_baseline = judge_step(policy, 100, WindowStats(200, 0, 900.0), WindowStats(0, 0, None))
    assert no_baseline.passed


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"steps": []}, "weights from 1 to 100"),
        ({"steps": [10, 150]}, "weights from 1 to 100"),
        ({"steps": [50, 10]}, "must rise"),
        ({"interval": 0}, "interval"),
        ({"min_success_rate": 99}, "fraction"),
        ({"route_type": "header"}, "needs route_by"),
        ({"speed": "fast"}, "unknown canary setting 'speed'"),
    ],
)
def test_a_bad_policy_is_refused_in_one_line(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem) as caught:
        CanaryPolicy.from_dict(settings)
    assert "\n" not in str(caught.value)


def test_a_policy_travels_as_a_plain_mapping() -> None:
    policy = CanaryPolicy(steps=(5, 100), interval=2.5, route_type="header", route_by="x-user")
    assert CanaryPolicy.from_dict(policy.to_dict()) == policy


def scope(headers: dict[str, str] | None = None, query: str = "") -> dict[str, object]:
    return {
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "query_string": query.encode(),
    }


def test_random_split_follows_the_weight() -> None:
    random.seed(7)
    split = TrafficSplit(10)
    share = sum(split.to_canary(scope()) for _ in range(20000)) / 20000
    assert 0.09 < share < 0.11
    assert not any(TrafficSplit(0).to_canary(scope()) for _ in range(100))
    assert all(TrafficSplit(100).to_canary(scope()) for _ in range(100))


def test_header_and_query_splits_are_sticky_and_follow_the_weight() -> None:
    split = TrafficSplit(30, RouteType.HEADER, "X-User")
    users = [f"user-{i}" for i in range(3000)]
    first = [split.to_canary(scope({"X-User": u})) for u in users]
    assert first == [split.to_canary(scope({"X-User": u})) for u in users]
    assert 0.27 < sum(first) / len(users) < 0.33
    assert not split.to_canary(scope())
    by_query = TrafficSplit(30, RouteType.QUERY, "user")
    assert [by_query.to_canary(scope(query=f"a=1&user={u}")) for u in users] == first


@pytest.mark.parametrize(
    "settings",
    [{"weight": 101}, {"weight": -1}, {"weight": "10"}, {"weight": 10, "route_type": "header"}],
)
def test_a_bad_split_is_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrafficSplit.from_dict(settings)


def test_the_traffic_book_counts_errors_and_latency_per_revision() -> None:
    book = TrafficBook()
    book.record("a", 200, 0.0005)
    book.record("a", 503, 0.2)
    book.record("b", 404, 100.0)
    a, b = book.of("a"), book.of("b")
    assert (a.requests, a.errors, b.requests, b.errors) == (2, 1, 1, 0)
    assert a.buckets[0] == 1 and sum(a.buckets) == 2
    assert b.buckets[len(LATENCY_BOUNDS)] == 1
    assert book.of("c").requests == 0
    book.forget(["a"])
    assert book.of("a").requests == 0


def test_a_step_reads_as_one_line_with_both_sides_figures_and_its_verdict() -> None:
    held = StepVerdict(10, WindowStats(57, 0, 12.4), WindowStats(300, 1, 10.0))
    assert held.describe() == (
        "at 10%: candidate 57 requests, 100.00% success, p99 12 ms; "
        "baseline 300 requests, 99.67% success, p99 10 ms; held"
    )
    failed = StepVerdict(50, WindowStats(0, 0, None), WindowStats(0, 0, None), ("too few",))
    assert failed.describe() == (
        "at 50%: candidate 0 requests, no answers, no p99; "
        "baseline 0 requests, no answers, no p99; failed: too few"
    )


def test_sigterm_raises_inside_the_block_once_and_the_handler_is_put_back() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        cleaned = []
        with pytest.raises(Terminated) as stopped, terminated_raises():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the handler runs here
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second one is ignored
                cleaned.append(True)
        assert stopped.value.code == 143 and cleaned == [True]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def own(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, own)
        with terminated_raises():
            assert signal.getsignal(signal.SIGTERM) is own  # an orchestrator's is kept
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_step_is_over_when_it_failed_held_its_interval_or_waited_too_long() -> None:
    policy = CanaryPolicy(interval=10, min_requests=100, step_timeout=60)
    assert not policy.step_over(99, False, 59.9), "too few requests to judge: it waits"
    assert policy.step_over(100, False, 1.0), "enough requests and failing: at once"
    assert not policy.step_over(100, True, 9.9), "passing, but the interval is not over"
    assert policy.step_over(100, True, 10.0)
    assert policy.step_over(0, True, 60.0), "waited step_timeout for traffic"
