"""`make demo` end to end: the good model ships, the bad one fails its gate and is rolled back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "dags_examples" / "demo.py"


def test_demo_ships_good_model_and_rolls_back_bad_one() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "holdout accuracy 0.89" in result.stdout
    assert "-> rolled back: smoke test" in result.stdout
    assert "the good model serves; the bad model failed its quality gate" in result.stdout
