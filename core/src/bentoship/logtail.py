"""Find the line in a service's logs that says why it failed."""

from __future__ import annotations

import re
from collections.abc import Iterable

ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception|Exit)\b:?.*")


def last_error_line(lines: Iterable[str]) -> str:
    """The last line that looks like a raised exception (``RuntimeError: ...``), or ``""``."""
    found = ""
    for line in lines:
        if ERROR_LINE.match(line):
            found = line.strip()
    return found
