"""The shadow gate: how much traffic to mirror, how many pairs to wait for, and what the pairs
must show for the candidate to be promoted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .._settings import from_mapping
from ..errors import InvalidRequestError
from .report import ShadowReport

__all__ = ["ShadowPolicy", "ShadowVerdict", "judge_shadow"]


@dataclass(frozen=True)
class ShadowPolicy:
    """Mirror ``percent`` of the endpoint's requests (to ``apis``, or every API) to the held
    candidate until ``min_pairs`` pairs are in or ``timeout`` seconds passed; then promote it
    when it agrees on at least ``min_agreement`` of the compared pairs (numbers within
    ``tolerance``), its error rate is at most ``max_error_rate_increase`` above the serving
    revision's, and its p99 latency at most ``max_p99_ratio`` times the serving revision's
    plus ``p99_slack_ms``; else discard it."""

    percent: int = 100
    min_pairs: int = 200
    min_agreement: float = 0.95
    tolerance: float = 1e-6
    max_error_rate_increase: float = 0.01
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 50.0
    timeout: float = 600.0
    apis: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.apis is not None:
            if isinstance(self.apis, str) or not all(isinstance(a, str) for a in self.apis):
                raise InvalidRequestError('shadow apis: a list of API names, such as ["predict"]')
            object.__setattr__(self, "apis", tuple(self.apis))
        if isinstance(self.percent, bool) or not isinstance(self.percent, int):
            raise InvalidRequestError(f"shadow percent: a whole number 1-100, not {self.percent!r}")
        if not 0 < self.percent <= 100:
            raise InvalidRequestError(f"shadow percent: from 1 to 100, not {self.percent}")
        if isinstance(self.min_pairs, bool) or not isinstance(self.min_pairs, int):
            raise InvalidRequestError(f"shadow min_pairs: a whole number, not {self.min_pairs!r}")
        if self.min_pairs < 1:
            raise InvalidRequestError(f"shadow min_pairs: at least 1, not {self.min_pairs}")
        if not 0 <= self.min_agreement <= 1:
            raise InvalidRequestError(
                f"shadow min_agreement: a fraction such as 0.95, not {self.min_agreement}"
            )
        if not self.tolerance >= 0:
            raise InvalidRequestError(f"shadow tolerance: >= 0, not {self.tolerance}")
        if not 0 <= self.max_error_rate_increase <= 1:
            raise InvalidRequestError(
                "shadow max_error_rate_increase: a fraction such as 0.01, "
                f"not {self.max_error_rate_increase}"
            )
        if not self.max_p99_ratio > 0 or not self.p99_slack_ms >= 0:
            raise InvalidRequestError("shadow max_p99_ratio must be > 0 and p99_slack_ms >= 0")
        if not self.timeout > 0:
            raise InvalidRequestError(f"shadow timeout: seconds > 0, not {self.timeout}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ShadowPolicy:
        """From the plain mapping orchestrators pass around (unknown keys are errors)."""
        return from_mapping(cls, data, "shadow")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["apis"] = list(self.apis) if self.apis is not None else None
        return data


@dataclass(frozen=True)
class ShadowVerdict:
    """What the pairs showed, held against the policy: the problems, if any."""

    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self, report: ShadowReport) -> str:
        """The report's line, then ``held`` or what failed."""
        held = "held" if self.passed else "failed: " + "; ".join(self.problems)
        return f"{report.summary()}; {held}"


def judge_shadow(policy: ShadowPolicy, report: ShadowReport) -> ShadowVerdict:
    """Hold ``report`` against ``policy``."""
    problems: list[str] = []
    if report.pairs < policy.min_pairs:
        problems.append(
            f"only {report.pairs} of {policy.min_pairs} pairs within {policy.timeout:g} s "
            f"({report.dropped} mirrored requests dropped)"
        )
    rate = report.agreement.rate
    if rate is None:
        if report.pairs:
            problems.append("no pair could be compared: one side errored on every request")
    elif rate < policy.min_agreement:
        problems.append(
            f"agreement {rate:.1%} of {report.agreement.compared} pairs is below "
            f"{policy.min_agreement:.1%}"
        )
    change = report.error_rate_change
    if change is not None and change > policy.max_error_rate_increase:
        problems.append(
            f"error rate {report.candidate.error_rate:.2%} is {change:.2%} above the serving "
            f"revision's, more than {policy.max_error_rate_increase:.2%}"
        )
    before, after = report.serving.latency_ms.p99, report.candidate.latency_ms.p99
    if before is not None and after is not None:
        limit = before * policy.max_p99_ratio + policy.p99_slack_ms
        if after > limit:
            problems.append(f"p99 {after:.0f} ms is above {limit:.0f} ms")
    return ShadowVerdict(tuple(problems))
