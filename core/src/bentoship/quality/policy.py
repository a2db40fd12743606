"""What a serving revision's quality is held to, and the judgement."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .._settings import from_mapping
from ..errors import InvalidRequestError

__all__ = ["HIGHER_IS_BETTER", "METRICS", "QualityPolicy", "QualityVerdict", "judge_quality"]

HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "r2"})
METRICS = HIGHER_IS_BETTER | {"mae", "rmse", "mape"}
BASELINES = ("previous_revision", "training")


@dataclass(frozen=True)
class QualityPolicy:
    """The serving revision's ``metric`` on ``monitor``'s labelled predictions since ``since``
    (a time ago such as ``7d``, or ISO-8601) against ``baseline``: the revision it replaced
    (``previous_revision``), or a number such as the training score (``training`` with
    ``training_value``, or the number itself). It fails when it is worse by more than
    ``max_drop`` with its 95% interval clear of the baseline, or below ``min_value``; fewer
    than ``min_labels`` labels are not enough evidence either way."""

    monitor: str
    metric: str = "accuracy"
    min_value: float | None = None
    max_drop: float = 0.05
    baseline: str | float = "previous_revision"
    training_value: float | None = None
    min_labels: int = 200
    since: str = "7d"
    prediction_field: str | None = None
    score_field: str | None = None
    id_field: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidRequestError(
                f"quality metric {self.metric!r}: use one of {', '.join(sorted(METRICS))}"
            )
        if isinstance(self.baseline, str) and self.baseline not in BASELINES:
            raise InvalidRequestError(
                "quality baseline: previous_revision, training (with training_value), or a number"
            )
        if self.baseline == "training" and self.training_value is None:
            raise InvalidRequestError("quality baseline training needs training_value")
        if not self.max_drop >= 0:
            raise InvalidRequestError(f"quality max_drop: >= 0, not {self.max_drop}")
        if isinstance(self.min_labels, bool) or not isinstance(self.min_labels, int):
            raise InvalidRequestError("quality min_labels: a whole number")
        if self.min_labels < 1:
            raise InvalidRequestError("quality min_labels: at least 1")

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    def baseline_value(self) -> float | None:
        """The baseline as a number, when it is one (not the previous revision)."""
        if self.baseline == "training":
            return self.training_value
        if isinstance(self.baseline, int | float) and not isinstance(self.baseline, bool):
            return float(self.baseline)
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityPolicy:
        return from_mapping(cls, data, "quality")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QualityVerdict:
    """``passed``, ``failed`` or ``not_enough_evidence``, and why."""

    state: str
    reason: str

    @property
    def failed(self) -> bool:
        return self.state == "failed"


def judge_quality(
    policy: QualityPolicy,
    value: float | None,
    interval: tuple[float, float] | None,
    labels: int,
    baseline: float | None,
    baseline_name: str,
) -> QualityVerdict:
    """Hold the serving revision's ``value`` (over ``labels`` labels, with its interval)
    against ``baseline`` and ``policy``."""
    metric = policy.metric
    if value is None or labels < policy.min_labels:
        return QualityVerdict(
            "not_enough_evidence",
            f"not enough evidence: {labels} labels, {policy.min_labels} needed",
        )
    shown = f"{metric} {value:.4g} over {labels} labels"
    if interval is not None:
        shown += f" (95% interval {interval[0]:.4g}-{interval[1]:.4g})"
    sign = 1.0 if policy.higher_is_better else -1.0
    if policy.min_value is not None and sign * (value - policy.min_value) < 0:
        best = interval[1] if interval and sign > 0 else interval[0] if interval else value
        if sign * (best - policy.min_value) < 0:
            return QualityVerdict("failed", f"{shown} is worse than min_value {policy.min_value}")
    if baseline is None:
        return QualityVerdict("passed", f"{shown}; no {baseline_name} to compare with")
    drop = sign * (baseline - value)
    against = f"{baseline_name} {baseline:.4g}"
    if drop <= policy.max_drop:
        return QualityVerdict(
            "passed",
            f"{shown} against {against}: a drop of {drop:.4g}, within max_drop "
            f"{policy.max_drop:g} (not enough evidence of a larger one)",
        )
    best = (interval[1] if sign > 0 else interval[0]) if interval else value
    if sign * (baseline - best) <= 0:
        return QualityVerdict(
            "not_enough_evidence",
            f"{shown} against {against}: a drop of {drop:.4g}, but the interval reaches the "
            "baseline (not enough evidence)",
        )
    return QualityVerdict(
        "failed",
        f"{shown} against {against}: a drop of {drop:.4g}, more than max_drop {policy.max_drop:g}",
    )
