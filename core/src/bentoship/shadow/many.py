""":func:`~bentoship.shadow.compare.compare_answers` for many pairs at once, with NumPy.

Each pair is sorted by the kinds of its two answers. Pairs of different kinds disagree;
nulls agree; strings and bools are compared with ``==``; numbers are compared as float64
arrays. Lists of the same length and objects with the same keys are flattened into their
elements, which are judged the same way, and a pair agrees when all of its elements do.
Anything else (other types, ints too large for a float64 to hold exactly) goes to
:func:`~bentoship.shadow.compare.compare_answers` one pair at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import eq, itemgetter
from typing import TYPE_CHECKING, Any

from ..extras import require
from .compare import DEFAULT_TOLERANCE, agree, check_tolerance

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["compare_many"]

OTHER, NULL, BOOL, TEXT, NUMBER, ARRAY, OBJECT = range(7)


class _Kinds(dict[type, int]):
    def __missing__(self, key: type) -> int:
        return OTHER


KINDS = _Kinds(
    {type(None): NULL, bool: BOOL, str: TEXT, int: NUMBER, float: NUMBER, list: ARRAY, dict: OBJECT}
)
EXACT = 2.0**52
"""Beyond this magnitude a float64 no longer holds every integer and every difference of two:
such numbers are left to ``compare_answers``."""


def compare_many(
    serving: Sequence[Any], candidate: Sequence[Any], tolerance: float = DEFAULT_TOLERANCE
) -> list[bool]:
    """Whether ``serving[i]`` and ``candidate[i]`` agree, for each ``i``. Needs NumPy (the
    ``drift`` extra)."""
    require("numpy", feature="compare_many", extra="drift")
    check_tolerance(tolerance)
    if len(serving) != len(candidate):
        raise ValueError(f"{len(serving)} serving answers but {len(candidate)} candidate answers")
    verdicts: list[bool] = _judge(serving, candidate, tolerance).tolist()
    return verdicts


def _judge(serving: Sequence[Any], candidate: Sequence[Any], tolerance: float) -> NDArray[np.bool_]:
    import numpy as np

    left = _kinds(serving)
    right = _kinds(candidate)
    verdicts = np.zeros(len(left), dtype=bool)
    same = left == right
    verdicts[same & (left == NULL)] = True
    plain = np.flatnonzero(same & ((left == BOOL) | (left == TEXT))).tolist()
    verdicts[plain] = list(map(eq, _take(serving, plain), _take(candidate, plain)))
    for kind, judge in ((ARRAY, _arrays), (OBJECT, _objects)):
        index = np.flatnonzero(same & (left == kind))
        if len(index):
            judge(serving, candidate, index, tolerance, verdicts)
    numbers = np.flatnonzero(same & (left == NUMBER))
    slow = np.concatenate(
        (
            np.flatnonzero((left == OTHER) | (right == OTHER)),
            _numbers(serving, candidate, numbers, tolerance, verdicts),
        )
    ).tolist()
    verdicts[slow] = [agree(serving[i], candidate[i], tolerance) for i in slow]
    return verdicts


def _kinds(answers: Sequence[Any]) -> NDArray[np.int8]:
    import numpy as np

    return np.fromiter(map(KINDS.__getitem__, map(type, answers)), np.int8, len(answers))


def _take(answers: Sequence[Any], index: list[int]) -> list[Any]:
    """``answers`` at ``index`` (increasing positions)."""
    if len(index) == len(answers):
        return list(answers)
    if len(index) < 2:
        return [answers[i] for i in index]
    return list(itemgetter(*index)(answers))


def _floats(values: list[Any]) -> NDArray[np.float64] | None:
    """``values`` as float64, or None when one is too large for a float."""
    import numpy as np

    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        return None


def _numbers(
    serving: Sequence[Any],
    candidate: Sequence[Any],
    index: NDArray[np.intp],
    tolerance: float,
    verdicts: NDArray[np.bool_],
) -> NDArray[np.intp]:
    """Judges the pairs of two numbers at ``index``; returns those left to ``compare_answers``."""
    import numpy as np

    positions = index.tolist()
    a = _floats(_take(serving, positions))
    b = _floats(_take(candidate, positions))
    if a is None or b is None:
        return index
    exact = ((np.abs(a) <= EXACT) | np.isnan(a)) & ((np.abs(b) <= EXACT) | np.isnan(b))
    a, b = a[exact], b[exact]
    with np.errstate(invalid="ignore"):
        close = (a == b) | (np.abs(a - b) <= tolerance) | (np.isnan(a) & np.isnan(b))
    verdicts[index[exact]] = close
    return index[~exact]


def _arrays(
    serving: Sequence[Any],
    candidate: Sequence[Any],
    index: NDArray[np.intp],
    tolerance: float,
    verdicts: NDArray[np.bool_],
) -> None:
    """Judges the pairs of two lists at ``index``: lists of different lengths disagree."""
    import numpy as np

    positions = index.tolist()
    left, right = _take(serving, positions), _take(candidate, positions)
    lengths = np.fromiter(map(len, left), np.intp, len(left))
    same = lengths == np.fromiter(map(len, right), np.intp, len(right))
    if not same.all():
        kept = np.flatnonzero(same).tolist()
        index, lengths = index[same], lengths[same]
        left, right = _take(left, kept), _take(right, kept)
    elements = _judge(list(chain.from_iterable(left)), list(chain.from_iterable(right)), tolerance)
    verdicts[index] = _all_per_pair(elements, lengths)


def _objects(
    serving: Sequence[Any],
    candidate: Sequence[Any],
    index: NDArray[np.intp],
    tolerance: float,
    verdicts: NDArray[np.bool_],
) -> None:
    """Judges the pairs of two objects at ``index``: objects with different keys disagree."""
    import numpy as np

    positions = index.tolist()
    left, right = _take(serving, positions), _take(candidate, positions)
    same = np.fromiter(map(_same_keys, left, right), bool, len(left))
    if not same.all():
        kept = np.flatnonzero(same).tolist()
        index, left, right = index[same], _take(left, kept), _take(right, kept)
    lengths = np.fromiter(map(len, left), np.intp, len(left))
    elements = _judge(
        list(chain.from_iterable(a.values() for a in left)),
        [b[key] for a, b in zip(left, right, strict=True) for key in a],
        tolerance,
    )
    verdicts[index] = _all_per_pair(elements, lengths)


def _same_keys(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    return a.keys() == b.keys()


def _all_per_pair(flags: NDArray[np.bool_], lengths: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Whether all of each run of ``lengths[i]`` consecutive flags hold (an empty run: True)."""
    import numpy as np

    misses = np.concatenate(([0], np.cumsum(~flags)))
    ends = np.cumsum(lengths)
    held: NDArray[np.bool_] = misses[ends] == misses[ends - lengths]
    return held
