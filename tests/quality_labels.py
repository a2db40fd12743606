"""Labels for the closed loops' quality runs: the example classifier's answers, labelled as a
world where its quality dropped while its inputs did not drift."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

FLIPPED = 2
"""Of every 5 answers, this many get the other class as their label."""


def labels_of_a_changed_world(
    client: Any, deployment: str, folder: Path, train: Any
) -> tuple[Path, float]:
    """Call the example service with each held-out row of ``train`` (like the training data:
    no drift), one row a request, so that each monitor record has its own request id; then
    label the answers as a world where 2 in 5 rows changed class would. Returns the labels'
    Parquet file (the answers' ``X-BentoML-Request-ID`` in ``id``, the classes in ``label``) and
    the accuracy they give, once the monitor's newest records are these answers'."""
    import pandas as pd

    features, truth = train.holdout()
    url = client.get_deployment(deployment).url
    rows = []
    with httpx.Client(timeout=30) as http:
        for i, (row, y) in enumerate(zip(features.tolist(), truth.tolist(), strict=True)):
            answer = http.post(f"{url}/predict", json={"features": [row]})
            answer.raise_for_status()
            label = 1 - int(y) if i % 5 < FLIPPED else int(y)
            rows.append((answer.headers["x-bentoml-request-id"], label, answer.json()[0]))
    wait_for_newest(client, deployment, {int(rid, 16) for rid, _, _ in rows})
    path = folder / "labels.parquet"
    pd.DataFrame([(rid, label) for rid, label, _ in rows], columns=["id", "label"]).to_parquet(path)
    return path, sum(label == predicted for _, label, predicted in rows) / len(rows)


def wait_for_newest(client: Any, deployment: str, request_ids: set[int]) -> None:
    """Wait until the newest records of the ``classifier`` monitor are those of
    ``request_ids`` (ingest runs every second)."""
    deadline = time.monotonic() + 30
    while True:
        newest = client.monitoring_records(deployment, "classifier", limit=len(request_ids))
        held = {int(r["request_id"]) for r in newest if r.get("request_id") is not None}
        if held == request_ids:
            return
        assert time.monotonic() < deadline, f"{len(held & request_ids)} of the answers' records"
        time.sleep(0.5)
