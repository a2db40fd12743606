"""The statistics of one column's drift: Kolmogorov-Smirnov, chi-squared and PSI.

Every function takes NumPy arrays without nulls and returns plain floats; scipy computes the
tests. A column drifts when its test is significant (p-value below the threshold) *and* the
shift is large enough to matter (PSI at or above its threshold), so a large sample does not
flag a shift too small to act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PSI_EPSILON",
    "Histogram",
    "categorical_histogram",
    "chi_squared",
    "kolmogorov_smirnov",
    "numeric_histogram",
    "psi",
]

PSI_EPSILON = 1e-4
"""The share given to an empty bin, so that PSI stays finite."""
NUMERIC_BINS = 10


@dataclass(frozen=True)
class Histogram:
    """Both sides' shares over the same bins: numeric bins (``edges``) or categories."""

    labels: list[str]
    reference: list[float]
    current: list[float]
    edges: list[float] | None = None


EXACT_KS_LIMIT = 10_000
"""Up to this many values a side, scipy computes the KS p-value exactly (its ``auto``)."""


def kolmogorov_smirnov(reference: Any, current: Any) -> tuple[float, float]:
    """The two-sample KS statistic and its two-sided p-value, as scipy's ``ks_2samp`` gives
    them, from two *sorted* arrays.

    Small samples go to scipy itself (its exact p-value). Large ones are merged here in linear
    time (the sorted runs), and the p-value is scipy's asymptotic one (``kstwo``), as
    ``ks_2samp`` computes it for them: the same figures, without its search of every value.
    """
    import numpy as np
    from scipy import stats

    n1, n2 = len(reference), len(current)
    if max(n1, n2) <= EXACT_KS_LIMIT:
        result = stats.ks_2samp(reference, current)
        return float(result.statistic), float(result.pvalue)
    both = np.concatenate([reference, current])
    order = np.argsort(both, kind="stable")
    values = both[order]
    seen_reference = np.cumsum(order < n1)
    seen_current = np.arange(1, n1 + n2 + 1) - seen_reference
    ends = np.append(values[1:] != values[:-1], True)
    gaps = seen_reference[ends] / n1 - seen_current[ends] / n2
    statistic = float(max(np.clip(-gaps.min(), 0, 1), gaps.max()))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p_value = float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0, 1))
    return statistic, p_value


def chi_squared(reference_counts: Any, current_counts: Any) -> tuple[float, float]:
    """The chi-squared test of independence of side and category (scipy), on the counts of
    each category on each side; categories seen on neither side are left out."""
    import numpy as np
    from scipy import stats

    table = np.vstack([reference_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return float(statistic), float(p_value)


def psi(reference_shares: Any, current_shares: Any) -> float:
    """The population stability index: sum of (current - reference) * ln(current / reference)
    over the bins, an empty bin counted as :data:`PSI_EPSILON`."""
    import numpy as np

    expected = np.clip(np.asarray(reference_shares, dtype=float), PSI_EPSILON, None)
    actual = np.clip(np.asarray(current_shares, dtype=float), PSI_EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _shares(counts: Any) -> Any:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _deciles(ordered: Any) -> Any:
    """The inner deciles of a sorted array (linear interpolation between ranks)."""
    import numpy as np

    ranks = np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1] * (len(ordered) - 1)
    low = np.floor(ranks).astype(int)
    high = np.minimum(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (ranks - low)


def numeric_histogram(reference: Any, current: Any) -> Histogram:
    """Bins between the reference's deciles, open at both ends, and a bin of its own for each
    decile value (so a value that repeats, such as a constant, is a category of its own); bins
    empty on both sides are left out. Both arrays are sorted."""
    import numpy as np

    inner = np.unique(_deciles(reference))

    def counts(ordered: Any) -> Any:
        below = np.searchsorted(ordered, inner, side="left")
        upto = np.searchsorted(ordered, inner, side="right")
        bins = np.empty(2 * len(inner) + 1, dtype=np.int64)
        bins[0::2] = np.concatenate([below, [len(ordered)]]) - np.concatenate([[0], upto])
        bins[1::2] = upto - below
        return bins

    reference_counts, current_counts = counts(reference), counts(current)
    bounds = [float(min(reference[0], current[0])), *map(float, inner)]
    bounds.append(float(max(reference[-1], current[-1])))
    labels = [
        f"{bounds[j // 2]:.4g} to {bounds[j // 2 + 1]:.4g}"
        if j % 2 == 0
        else f"{inner[j // 2]:.4g}"
        for j in range(2 * len(inner) + 1)
    ]
    kept = (reference_counts + current_counts) > 0
    return Histogram(
        labels=[label for label, keep in zip(labels, kept, strict=True) if keep],
        reference=_shares(reference_counts[kept]).tolist(),
        current=_shares(current_counts[kept]).tolist(),
        edges=[float(e) for e in inner],
    )


def categorical_histogram(reference: Any, current: Any) -> tuple[Histogram, Any, Any]:
    """Each category's share on both sides (the categories of either side, compared by their
    text), and the counts behind them."""
    import numpy as np

    both = np.concatenate([reference, current]).astype(str)
    categories, inverse = np.unique(both, return_inverse=True)
    reference_counts = np.bincount(inverse[: len(reference)], minlength=len(categories))
    current_counts = np.bincount(inverse[len(reference) :], minlength=len(categories))
    histogram = Histogram(
        labels=categories.tolist(),
        reference=_shares(reference_counts).tolist(),
        current=_shares(current_counts).tolist(),
    )
    return histogram, reference_counts, current_counts
