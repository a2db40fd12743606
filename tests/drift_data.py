"""Data for the drift checks of the orchestrator tests: two numeric columns in Parquet."""

from __future__ import annotations

from pathlib import Path


def drift_parquet(path: Path, shift: float) -> str:
    """2,000 rows of ``x`` (mean ``shift``) and ``y`` (mean 0), written to ``path``."""
    import duckdb
    import numpy as np

    rng = np.random.default_rng(5)
    with duckdb.connect() as db:
        db.register("frame", {"x": rng.normal(shift, 1, 2000), "y": rng.normal(0, 1, 2000)})
        db.execute(f"COPY frame TO '{path}' (FORMAT parquet)")
    return str(path)
