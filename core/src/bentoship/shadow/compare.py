"""Whether two JSON answers agree: equal, or numbers within an absolute tolerance.

Numbers (ints and floats, never bools) agree when equal or at most ``tolerance`` apart; NaN
agrees with NaN. Lists (and tuples) agree when they have the same length and agree element by
element; objects when they have the same keys and agree key by key. Anything else agrees only
when equal and of the same kind: a bool is not a number, a string is not a number, ``[1]`` is
not ``1``. :func:`compare_answers` judges one pair in plain Python;
:func:`~bentoship.shadow.many.compare_many` judges many pairs at once with NumPy and gives the
same verdicts.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError

__all__ = ["DEFAULT_TOLERANCE", "agree", "check_tolerance", "compare_answers"]

DEFAULT_TOLERANCE = 1e-6


def check_tolerance(tolerance: float) -> None:
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be a number >= 0, not {tolerance!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers_agree(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return True
    try:
        return abs(a - b) <= tolerance or (math.isnan(a) and math.isnan(b))
    except OverflowError:
        return False


def agree(a: Any, b: Any, tolerance: float) -> bool:
    """:func:`compare_answers` without checking ``tolerance``."""
    if _is_number(a) and _is_number(b):
        return _numbers_agree(a, b, tolerance)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(agree(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(agree(a[k], b[k], tolerance) for k in a)
    if _is_number(a) or _is_number(b) or isinstance(a, bool) != isinstance(b, bool):
        return False
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


def compare_answers(a: Any, b: Any, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether answers ``a`` and ``b`` (parsed JSON) agree, numbers within ``tolerance``."""
    check_tolerance(tolerance)
    return agree(a, b, tolerance)
