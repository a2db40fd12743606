"""The figures of a shadow report: a proportion's interval, quantiles, absolute differences.

Every function returns plain floats (or None when there is nothing to measure); scipy gives
the interval. Quantiles are NumPy's default (linear interpolation between order statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["QUANTILES", "Spread", "absolute_differences", "quantiles", "wilson_interval"]

QUANTILES = (50, 95, 99)


def wilson_interval(
    successes: int, trials: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes`` in ``trials`` (None without trials)."""
    if trials == 0:
        return None
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(interval.low), float(interval.high)


def quantiles(values: ArrayLike) -> tuple[float | None, float | None, float | None]:
    """The 50th, 95th and 99th percentiles of ``values`` (Nones when there are none)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    if not array.size:
        return None, None, None
    p50, p95, p99 = (float(q) for q in np.percentile(array, QUANTILES))
    return p50, p95, p99


Spread = tuple[int, float | None, float | None, float | None, float | None, float | None]
"""The count, mean, 50th, 95th and 99th percentiles, and max of some differences."""


def absolute_differences(serving: Sequence[float], candidate: Sequence[float]) -> Spread:
    """The count, mean, percentiles and max of ``|candidate - serving|``, element by element.

    Equal values (infinities too) and two NaNs differ by 0; a NaN or an infinity against
    another value has no finite difference and is left out.
    """
    import numpy as np

    a = np.asarray(serving, dtype=float)
    b = np.asarray(candidate, dtype=float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        gaps = np.abs(b - a)
    gaps[same] = 0.0
    gaps = gaps[same | (np.isfinite(a) & np.isfinite(b))]
    p50, p95, p99 = quantiles(gaps)
    if not gaps.size:
        return 0, None, p50, p95, p99, None
    return int(gaps.size), float(gaps.mean()), p50, p95, p99, float(gaps.max())
