"""DAG parse cost: the provider's operator, sensor and hook modules on top of ``airflow.sdk``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .common import RUNS, Row, Sample

BASE = "import airflow.sdk"
PROVIDER = (
    "import bentoship_airflow.operators.bento, bentoship_airflow.sensors.bento, "
    "bentoship_airflow.hooks.bentocloud"
)


def import_seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def run(workdir: Path) -> list[Row]:
    alone, with_provider = [], []
    for _ in range(RUNS):
        alone.append(import_seconds(BASE))
        with_provider.append(import_seconds(f"{BASE}; {PROVIDER}"))
    added = [w - a for w, a in zip(with_provider, alone, strict=True)]
    figure, baseline = Sample.of(with_provider), Sample.of(alone)
    return [
        Row(
            "DAG parse: airflow.sdk + provider",
            "s",
            figure,
            baseline,
            "import airflow.sdk alone",
            "<= +50 ms",
            Sample.of(added).median <= 0.05,
        ),
    ]
