"""The suite's meter (``python -m tests.meter``): its breakdown of CPU by kind of process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.meter import breakdown, kind_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (
            "/venv/bin/python -m _bentoml_impl.worker.service echo:abc --fd 3 --worker-id 1",
            "bentoml serve: workers",
        ),
        ("circusd", "bentoml serve: arbiters"),
        (
            "/venv/bin/bentoml serve echo:abc --host 127.0.0.1 --port 4000",
            "bentoml serve: arbiters",
        ),
        (
            "/venv/bin/python -m bentoship server --port 0 --data-dir /tmp/pytest-of-root/p0",
            "control planes",
        ),
        ("/venv/bin/python -m kfp.dsl.executor_main --executor_input {}", "kfp.local tasks"),
        ("/usr/lib/chromium/chromium --type=renderer --user-data-dir=/tmp/x", "browser"),
        ("[pytest-xdist running] tests/core/test_cli.py::test_x", "pytest"),
        ("/venv/bin/python /venv/bin/bentoship build . --version v1", "bentoml build"),
        ("/venv/bin/pyflyte run wf.py main", "flyte"),
        ("/usr/bin/sh -c true", "other: sh"),
        ("postgres: checkpointer ", "other: postgres"),
        ("", "other"),
    ],
)
def test_each_process_is_counted_under_its_kind(command: str, kind: str) -> None:
    assert kind_of(command) == kind


def test_the_breakdown_lists_the_costliest_kind_first_and_the_sampled_total() -> None:
    table = breakdown(
        {"pytest": 12.4, "bentoml serve: workers": 30.0, "browser": 0.2},
        {"pytest": 3, "bentoml serve: workers": 10, "browser": 7},
    ).splitlines()
    assert [row.split("  ")[0].strip() for row in table] == [
        "CPU by kind of process",
        "bentoml serve: workers",
        "pytest",
        "browser",
        "sampled in all",
    ]
    assert table[-1].split()[-2:] == ["42.6", "20"]


@pytest.mark.slow
def test_by_command_counts_the_cpu_of_a_process_under_the_command() -> None:
    """A child that spins for 0.6 CPU-s is sampled as such, under its own kind."""
    spin = "import time\nwhile time.process_time() < 0.6: pass"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BENTOSHIP_SERVE_LEDGER", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.meter", "--by-command", "--", sys.executable, "-c", spin],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    kind = f"other: {Path(sys.executable).name}"
    spun = [row for row in done.stdout.splitlines() if row.startswith(f"{kind} ")]
    assert len(spun) == 1, done.stdout
    assert 0.4 <= float(spun[0].split()[-2]) <= 1.5, done.stdout
    assert done.stdout.splitlines()[-1].endswith(", 0 bentoml serve starts"), done.stdout
