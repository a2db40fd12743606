"""Shared pieces of the benchmarks: statistics, the table, bentos and a local control plane."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "bentos"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


@dataclass(frozen=True)
class Sample:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Sample:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    figure: Sample
    baseline: Sample
    baseline_name: str
    goal: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.figure.median / self.baseline.median if self.baseline.median else float("nan")


def fmt(sample: Sample, unit: str) -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    return f"{sample.median * scale:.3g} ({sample.low * scale:.3g}-{sample.high * scale:.3g})"


def table(rows: list[Row]) -> str:
    header = (
        "figure",
        "unit",
        "bentoship median (min-max)",
        "baseline median (min-max)",
        "baseline",
        "ratio",
        "goal",
        "met",
    )
    lines = [header] + [
        (
            r.name,
            r.unit,
            fmt(r.figure, r.unit),
            fmt(r.baseline, r.unit),
            r.baseline_name,
            f"{r.ratio:.3f}",
            r.goal,
            "yes" if r.met else "NO",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(out)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A temporary directory with its own BENTOML_HOME; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="bentoship-bench-"))
    os.environ["BENTOML_HOME"] = str(path / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build_fixture(name: str, workdir: Path, version_text: str | None = None) -> str:
    """Build one of the test bentos; with ``version_text`` each build is a new bento."""
    from bentoship.steps import build

    source = workdir / f"{name}-{version_text or 'src'}"
    shutil.copytree(FIXTURES / name, source, dirs_exist_ok=True)
    if version_text is not None:
        (source / "version.txt").write_text(version_text + "\n")
    return build(source)
