"""Compare two tables column by column: the figures and verdict of each column."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ..errors import ConfigError
from .report import ColumnDrift, DriftReport, DriftThresholds, Verdict
from .statistics import (
    categorical_histogram,
    chi_squared,
    kolmogorov_smirnov,
    numeric_histogram,
    psi,
)
from .tables import Columns

__all__ = ["compare_columns"]


def compare_columns(
    reference: Columns,
    current: Columns,
    *,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    thresholds: DriftThresholds | None = None,
    missing_as_drift: bool = False,
) -> DriftReport:
    """The drift report of ``columns`` (default: every column of either side); a column on
    one side only is ``missing``, counted as drifted only with ``missing_as_drift``."""
    limits = thresholds or DriftThresholds()
    as_categories = set(categorical)
    names = list(columns) if columns is not None else _union(reference, current)
    unknown = [n for n in names if n not in reference and n not in current]
    if unknown:
        raise ConfigError(
            f"column {unknown[0]!r} is on neither side; the columns are: "
            + ", ".join(_union(reference, current))
        )
    judged = [
        _column(name, reference.get(name), current.get(name), name in as_categories, limits)
        if name in reference and name in current
        else _missing(name, reference, current, name in as_categories, missing_as_drift)
        for name in names
    ]
    return DriftReport(
        columns=judged,
        thresholds=limits,
        reference_rows=_rows(reference),
        current_rows=_rows(current),
    )


def _union(reference: Columns, current: Columns) -> list[str]:
    return [*reference, *(n for n in current if n not in reference)]


def _rows(table: Columns) -> int:
    return max((len(v) for v in table.values()), default=0)


def _missing(
    name: str, reference: Columns, current: Columns, categorical: bool, as_drift: bool
) -> ColumnDrift:
    """A column on one side only, with the figures of the side that has it."""
    side = "reference" if name in reference else "current"
    present = reference[name] if side == "reference" else current[name]
    numeric = not categorical and _numeric(present)
    values, nulls = _values(present, numeric)
    counts = Counts(len(values), 0, nulls, 0)
    if side == "current":
        counts = Counts(0, len(values), 0, nulls)
    return ColumnDrift(
        name,
        "numeric" if numeric else "categorical",
        Verdict.MISSING,
        only_in=side,
        missing_as_drift=as_drift,
        **counts._asdict(),
    )


def _column(
    name: str, reference: Any, current: Any, categorical: bool, limits: DriftThresholds
) -> ColumnDrift:
    import numpy as np

    numeric = not categorical and _numeric(reference) and _numeric(current)
    kind = "numeric" if numeric else "categorical"
    ref, ref_nulls = _values(reference, numeric)
    cur, cur_nulls = _values(current, numeric)
    counts = Counts(len(ref), len(cur), ref_nulls, cur_nulls)
    if not len(ref) or not len(cur):
        return ColumnDrift(name, kind, Verdict.EMPTY, **counts._asdict())
    if numeric:
        ref, cur = np.sort(ref), np.sort(cur)
        statistic, p_value = kolmogorov_smirnov(ref, cur)
        histogram = numeric_histogram(ref, cur)
        test = "ks"
    else:
        histogram, ref_counts, cur_counts = categorical_histogram(ref, cur)
        statistic, p_value = chi_squared(ref_counts, cur_counts)
        test = "chi2"
    index = psi(histogram.reference, histogram.current)
    drifted = p_value < limits.p_value and index >= limits.psi
    return ColumnDrift(
        name,
        kind,
        Verdict.DRIFT if drifted else Verdict.NO_DRIFT,
        test=test,
        statistic=statistic,
        p_value=p_value,
        psi=index,
        histogram=histogram,
        **counts._asdict(),
    )


class Counts(NamedTuple):
    reference_count: int
    current_count: int
    reference_nulls: int
    current_nulls: int


def _numeric(values: Any) -> bool:
    """Numbers (not booleans), or objects that are all numbers or nulls."""
    import numpy as np

    kind = values.dtype.kind
    if kind in "iuf":
        return True
    if kind != "O":
        return False
    present = [v for v in values.tolist() if v is not None and v == v]
    return bool(present) and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
        for v in present
    )


def _values(values: Any, numeric: bool) -> tuple[Any, int]:
    """The values without nulls (None and NaN), and how many nulls there were."""
    import numpy as np

    if numeric:
        numbers = values.astype(float)
        kept = numbers[~np.isnan(numbers)]
        return kept, len(numbers) - len(kept)
    if values.dtype.kind == "O":
        listed = values.tolist()
        kept_list = [v for v in listed if v is not None and v == v]
        return np.asarray(kept_list, dtype=object), len(listed) - len(kept_list)
    return values, 0
