"""Masking of secret values in a service's own output, as CI systems do: each becomes ``***``.

A value is masked whole, and so is each line of a multi-line value, and its JSON-escaped form.
Pieces shorter than ``MIN_MASKED`` characters are not masked on their own (every ``1`` in a log
would go), so a secret value should be longer than that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

__all__ = ["MASK", "MIN_MASKED", "Masker"]

MASK = b"***"
MIN_MASKED = 3


def _needles(value: str) -> set[bytes]:
    pieces = {value, json.dumps(value)[1:-1]}
    if "\n" in value or "\r" in value:
        pieces.update(line.strip() for line in value.splitlines())
    return {p.encode() for p in pieces if len(p) >= MIN_MASKED}


class Masker:
    """Replaces every occurrence of the given values with ``***``."""

    def __init__(self, values: Iterable[str]) -> None:
        needles: set[bytes] = set()
        for value in values:
            needles |= _needles(value)
        ordered = sorted(needles, key=len, reverse=True)
        self.longest = len(ordered[0]) if ordered else 0
        self._pattern = re.compile(b"|".join(re.escape(n) for n in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, data: bytes) -> bytes:
        return data if self._pattern is None else self._pattern.sub(MASK, data)

    def mask_text(self, text: str) -> str:
        return self.mask(text.encode()).decode(errors="replace")
