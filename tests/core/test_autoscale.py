"""The autoscaler's arithmetic and stabilization windows, without processes."""

from __future__ import annotations

from bentoship.server.rollout.autoscale import (
    Autoscaler,
    ScalingPolicy,
    declared_concurrency,
    scaling_policy,
)


def test_replicas_follow_outstanding_requests_over_the_declared_concurrency() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=4, concurrency=8)
    assert [policy.recommend(n) for n in (0, 8, 9, 24, 100)] == [1, 1, 2, 3, 4]
    assert ScalingPolicy(0, 3, None).recommend(50) == 1
    assert ScalingPolicy(2, 5, None).recommend(50) == 2


def test_scale_up_is_at_once_and_scale_down_waits_for_its_window() -> None:
    scaler = Autoscaler(ScalingPolicy(1, 4, 4, scale_up_window=0, scale_down_window=10))
    assert scaler.desired(0.0, 16, 1) == 4
    assert scaler.desired(1.0, 0, 4) == 4
    assert scaler.desired(9.0, 0, 4) == 4
    assert scaler.desired(10.5, 0, 4) == 1


def test_a_scale_up_window_takes_the_lowest_recommendation_in_it() -> None:
    scaler = Autoscaler(ScalingPolicy(1, 4, 4, scale_up_window=5, scale_down_window=0))
    assert scaler.desired(0.0, 0, 1) == 1
    assert scaler.desired(1.0, 16, 1) == 1
    assert scaler.desired(6.5, 16, 1) == 4


def test_the_policy_and_concurrency_are_read_from_config_and_manifest() -> None:
    config = {
        "services": {
            "Echo": {
                "scaling": {
                    "min_replicas": 1,
                    "max_replicas": 3,
                    "policy": {"scale_down_stabilization_window": 30},
                }
            }
        }
    }
    manifest = {"services": [{"name": "Echo", "config": {"traffic": {"concurrency": 5}}}]}
    policy = scaling_policy(config, declared_concurrency(manifest))
    assert policy == ScalingPolicy(1, 3, 5, scale_up_window=0.0, scale_down_window=30.0)
    assert declared_concurrency({"services": [{"config": {}}]}) is None
    assert declared_concurrency(None) is None
