"""``make bench``: every benchmark, one table (median of BENCH_RUNS runs, default 5).

``python -m bench mirror proxy`` runs only the modules named (not kept in ``_results``)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from . import (
    loop_stall,
    metrics,
    mirror,
    monitoring,
    parse,
    proxy,
    quality,
    rollouts,
    shadow,
    tracing,
    waiting,
)
from .common import RUNS, table, workspace


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


MODULES = (
    rollouts,
    proxy,
    parse,
    waiting,
    metrics,
    monitoring,
    loop_stall,
    shadow,
    mirror,
    tracing,
    quality,
)


def main(names: list[str]) -> int:
    chosen = [m for m in MODULES if not names or m.__name__.rsplit(".", 1)[-1] in names]
    rows = []
    with workspace() as path:
        for module in chosen:
            print(f"running {module.__name__} ...", file=sys.stderr, flush=True)
            rows += module.run(path)
    report = f"machine: {machine()}; runs per figure: {RUNS}\n\n{table(rows)}\n"
    print(report)
    if names:
        return 0
    results = Path(__file__).resolve().parent / "_results"
    results.mkdir(exist_ok=True)
    (results / "latest.txt").write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
