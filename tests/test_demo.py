"""`make demo` end to end: the DAG ships a good model, then rolls a bad one back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "dags_examples" / "demo.py"


@pytest.mark.slow
def test_demo_ships_good_model_and_rolls_back_bad_one() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=900, env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "'quality_gate': 'failed', 'rollback': 'success'" in result.stdout
    assert "r2 failed its quality gate and was rolled back" in result.stdout
