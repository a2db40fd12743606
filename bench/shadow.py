"""Shadow comparison figure: judging 1M pairs of answers, against Python's ``==`` on the same.

The pairs mix what models answer: 40% probability vectors of three floats, 30% string labels,
20% single floats and 10% objects (``{"label", "score"}``, which take the per-pair path).
About a tenth of each kind differs beyond the tolerance, and a tenth within it. The figure is
:func:`bentoship.shadow.compare_many` (``compare_answers`` for many pairs at once); the
baseline is ``[a == b for a, b in pairs]``, which has no tolerance and no type rules.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bentoship.shadow import compare_many

from .common import RUNS, Row, Sample

PAIRS = 1_000_000
TOLERANCE = 1e-6
LABELS = ["cat", "dog", "bird", "fish"]


def _moved(value: float, draw: float) -> float:
    """``value`` moved beyond the tolerance, within it, or not at all."""
    if draw < 0.1:
        return value + 0.01
    if draw < 0.2:
        return value + TOLERANCE / 10
    return value


def answers(seed: int = 27) -> tuple[list[Any], list[Any]]:
    rng = random.Random(seed)
    serving: list[Any] = []
    candidate: list[Any] = []
    for _ in range(PAIRS):
        kind, draw = rng.random(), rng.random()
        if kind < 0.4:
            vector = [rng.random() for _ in range(3)]
            serving.append(vector)
            candidate.append([vector[0], vector[1], _moved(vector[2], draw)])
        elif kind < 0.7:
            label = rng.choice(LABELS)
            serving.append(label)
            candidate.append(rng.choice(LABELS) if draw < 0.1 else label)
        elif kind < 0.9:
            number = rng.random()
            serving.append(number)
            candidate.append(_moved(number, draw))
        else:
            score = rng.random()
            serving.append({"label": "cat", "score": score})
            candidate.append({"label": "cat", "score": _moved(score, draw)})
    return serving, candidate


def run(workdir: Path) -> list[Row]:
    serving, candidate = answers()
    figure, baseline = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        compare_many(serving, candidate, TOLERANCE)
        figure.append(time.perf_counter() - started)
        started = time.perf_counter()
        [a == b for a, b in zip(serving, candidate, strict=True)]
        baseline.append(time.perf_counter() - started)
    ours, plain = Sample.of(figure), Sample.of(baseline)
    return [
        Row(
            "compare_answers, 1M pairs (compare_many)",
            "s",
            ours,
            plain,
            "Python == on the same pairs",
            "<= 2 s",
            ours.median <= 2.0,
        )
    ]
