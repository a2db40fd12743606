"""Shadow pairs into a :class:`~bentoship.shadow.ShadowReport`.

A pair where either revision errored (5xx, or no answer) counts toward the error rates but
not toward agreement. The other pairs are compared: they agree when both statuses are the
same and the answers agree (:func:`~bentoship.shadow.compare_many`). Latency percentiles are
over every pair. Labels and numbers are as :mod:`bentoship.shadow.answers` defines them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..extras import require
from .answers import label_of, label_text, numbers_of
from .compare import DEFAULT_TOLERANCE, check_tolerance
from .many import compare_many
from .pairs import ShadowPair, is_error
from .report import Agreement, Differences, Latency, RevisionFigures, ShadowReport
from .statistics import absolute_differences, quantiles, wilson_interval

__all__ = ["shadow_report"]


def shadow_report(
    pairs: Sequence[ShadowPair], *, dropped: int = 0, tolerance: float = DEFAULT_TOLERANCE
) -> ShadowReport:
    """The report of ``pairs``; ``dropped`` is how many mirrored requests were not recorded."""
    for module in ("numpy", "scipy.stats"):
        require(module, feature="shadow_report", extra="drift")
    check_tolerance(tolerance)
    if dropped < 0:
        raise ConfigError(f"dropped must be >= 0, not {dropped}")
    compared = [p for p in pairs if not p.errored]
    answers = [p.answers() for p in compared]
    verdicts = compare_many([a for a, _ in answers], [b for _, b in answers], tolerance)
    agreed = sum(
        ok and p.serving_status == p.candidate_status
        for ok, p in zip(verdicts, compared, strict=True)
    )
    interval = wilson_interval(agreed, len(compared))
    low, high = interval if interval else (None, None)
    times = [p.time for p in pairs]
    flips, differences = _answers(compared, answers)
    return ShadowReport(
        pairs=len(pairs),
        dropped=dropped,
        tolerance=tolerance,
        agreement=Agreement(agreed, len(compared), low, high),
        serving=_side(pairs, serving=True),
        candidate=_side(pairs, serving=False),
        flips=flips,
        differences=differences,
        by_digest=sum(p.by_digest for p in compared),
        first_time=min(times, default=None),
        last_time=max(times, default=None),
    )


def _side(pairs: Sequence[ShadowPair], *, serving: bool) -> RevisionFigures:
    names = [p.serving if serving else p.candidate for p in pairs]
    statuses = [p.serving_status if serving else p.candidate_status for p in pairs]
    p50, p95, p99 = quantiles([p.serving_ms if serving else p.candidate_ms for p in pairs])
    return RevisionFigures(
        revision=", ".join(dict.fromkeys(names)),
        requests=len(pairs),
        errors=sum(map(is_error, statuses)),
        latency_ms=Latency(p50, p95, p99),
    )


def _answers(
    compared: Sequence[ShadowPair], answers: Sequence[tuple[Any, Any]]
) -> tuple[dict[str, dict[str, int]], Differences]:
    """The label-flip matrix, and the differences of the numeric pairs."""
    flips: Counter[tuple[str, str]] = Counter()
    serving: list[float] = []
    candidate: list[float] = []
    numeric = 0
    for pair, (a, b) in zip(compared, answers, strict=True):
        if pair.by_digest:
            continue
        was = label_of(a)
        now = None if was is None else label_of(b)
        if was is not None and now is not None:
            flips[label_text(was), label_text(now)] += 1
            continue
        left, right = numbers_of(a), numbers_of(b)
        if left is not None and right is not None and left[0] == right[0]:
            numeric += 1
            serving += left[1]
            candidate += right[1]
    matrix: dict[str, dict[str, int]] = {}
    for (was_text, now_text), n in sorted(flips.items()):
        matrix.setdefault(was_text, {})[now_text] = n
    return matrix, Differences(numeric, *absolute_differences(serving, candidate))
