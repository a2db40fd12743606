"""Run a command and say what it cost: wall time, CPU seconds of all its processes, and how many
``bentoml serve`` processes were started (``make test`` runs the suite through this).

    python -m tests.meter -- COMMAND [ARG ...]

The CPU figure is user + sys of every process the command started and waited for (the
control planes and the ``bentoml serve`` processes they started included). The count of
``bentoml serve`` starts is read from a ledger that every start appends a line to
(``BENTOSHIP_SERVE_LEDGER``, see ``bentoship.server.rollout.runner``): a fresh one, or the
file that variable already names, to keep (each line: pid, bento tag, the test that started it).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEDGER_ENV = "BENTOSHIP_SERVE_LEDGER"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m tests.meter -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bentoship-meter-") as folder:
        ledger = Path(os.environ.get(LEDGER_ENV) or Path(folder) / "serve-starts")
        ledger.touch()
        before = len(ledger.read_text().splitlines())
        env = {**os.environ, LEDGER_ENV: str(ledger)}
        started = time.monotonic()
        code = subprocess.call(argv, env=env)
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        starts = len(ledger.read_text().splitlines()) - before
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"cost: {int(wall) // 60} min {int(wall) % 60} s wall, {cpu:.0f} CPU-seconds "
        f"({usage.ru_utime:.0f} user + {usage.ru_stime:.0f} sys), {starts} bentoml serve starts"
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
