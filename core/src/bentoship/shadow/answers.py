"""What kind of answer a model gave: a class label, numbers, or something else.

A **label** is a string, an int or a bool; also a one-element list of one (``["cat"]``), or
an object whose ``label`` or ``class`` field holds one (``{"label": "cat", "score": 0.9}``).
**Numbers** are a number (not a bool) or a list, possibly nested, of numbers. A pair whose two
answers are labels counts in the label-flip matrix; otherwise a pair whose two answers are
numbers of the same shape counts in the differences. So ``3`` against ``4`` is a label flip,
and ``3`` against ``3.5`` a difference of 0.5.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LABEL_FIELDS", "label_of", "label_text", "numbers_of"]

LABEL_FIELDS = ("label", "class")

Label = str | int | bool


def label_of(answer: Any) -> Label | None:
    """The class label that ``answer`` holds, or None when it is not a label."""
    if isinstance(answer, str | int):
        return answer
    if isinstance(answer, dict):
        field = next((f for f in LABEL_FIELDS if f in answer), None)
        answer = None if field is None else answer[field]
    elif isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    else:
        return None
    return answer if isinstance(answer, str | int) else None


def label_text(label: Label) -> str:
    """How a label is shown and keyed: a string as itself, an int or a bool as JSON."""
    return label if isinstance(label, str) else json.dumps(label)


def numbers_of(answer: Any) -> tuple[tuple[int, ...], list[float]] | None:
    """The shape and the numbers (flattened, as floats) of ``answer``, or None when it holds
    anything but numbers (or an int too large for a float) or its lists are ragged."""
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        try:
            return (), [float(answer)]
        except OverflowError:
            return None
    if not isinstance(answer, list):
        return None
    if set(map(type, answer)) <= {int, float}:
        try:
            return (len(answer),), list(map(float, answer))
        except OverflowError:
            return None
    parts: list[tuple[tuple[int, ...], list[float]]] = []
    for item in answer:
        part = numbers_of(item)
        if part is None or (parts and part[0] != parts[0][0]):
            return None
        parts.append(part)
    inner = parts[0][0] if parts else ()
    return (len(answer), *inner), [x for _, numbers in parts for x in numbers]
