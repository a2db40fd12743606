"""Labels joined to predictions in DuckDB, at volume and without a process: 20,000 predictions
of two revisions, labels for 60% of them in 5 batches out of order (some before their
prediction is stored), with duplicates, corrections and unknown ids. The join equals a pandas
merge of the same data, and the accuracy per revision equals scikit-learn's."""

from __future__ import annotations

import json
import random
from typing import Any

import duckdb
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from bentoship.server.errors import Invalid
from bentoship.server.observe.feedback import FeedbackStore, Label, label_id, labels_from
from bentoship.server.observe.monitoring import MonitoringStore
from bentoship.server.observe.quality import QualityQuery, Task, joined_rows, quality

START = 1_765_000_000.0
PREDICTIONS = 20_000
CLASSES = ("cat", "dog", "fox")


def stores() -> tuple[duckdb.DuckDBPyConnection, FeedbackStore, str]:
    cursor = duckdb.connect()
    monitoring = MonitoringStore(cursor)
    table = monitoring._ensure_table("scores")
    return cursor, FeedbackStore(cursor, lambda: cursor), table


def predictions(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(PREDICTIONS):
        rows.append(
            {
                "revision": "r1" if n < PREDICTIONS // 2 else "r2",
                "request_id": str(10**18 + n),
                "t": START + n * 0.5,
                "prediction": rng.choice(CLASSES),
            }
        )
    return rows


def store_predictions(
    cursor: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]
) -> None:
    records = [
        json.dumps(
            {
                "prediction": r["prediction"],
                "timestamp": pd.Timestamp(r["t"], unit="s").isoformat(),
                "request_id": r["request_id"],
            }
        )
        for r in rows
    ]
    cursor.execute(
        f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, request_id, "
        "trace_id, record) SELECT 'web', unnest($1), 'b:1', unnest($2), NULL, unnest($3), "
        "NULL, unnest($4)",
        [
            [r["revision"] for r in rows],
            [r["t"] for r in rows],
            [r["request_id"] for r in rows],
            records,
        ],
    )


def test_the_join_at_volume_equals_pandas_and_accuracy_equals_scikit_learn() -> None:
    rng = random.Random(28)
    cursor, feedback, table = stores()
    rows = predictions(rng)
    labelled = rng.sample(rows, int(PREDICTIONS * 0.6))
    sent: list[tuple[str, str]] = [(r["request_id"], rng.choice(CLASSES)) for r in labelled]
    duplicates = rng.sample(sent, len(sent) // 100)
    unknown = [(str(10**17 + n), "cat") for n in range(PREDICTIONS // 100)]
    batches: list[list[tuple[str, str]]] = [[] for _ in range(5)]
    for item in [*sent, *duplicates, *unknown]:
        batches[rng.randrange(5)].append(item)
    corrections = rng.sample(sent, len(sent) // 200)
    corrected = {rid: next(c for c in CLASSES if c != label) for rid, label in corrections}
    batches.append(list(corrected.items()))

    # the first two batches arrive before the predictions are stored
    results = [feedback.add("web", "scores", table, _labels(batch)) for batch in batches[:2]]
    store_predictions(cursor, table, rows)
    results += [feedback.add("web", "scores", table, _labels(batch)) for batch in batches[2:]]
    assert sum(r.received for r in results) == sum(map(len, batches))
    assert results[0].pending == len({rid for rid, _ in batches[0]})
    assert sum(r.corrections for r in results) == len(corrected)
    assert sum(r.pending for r in results[2:]) == len(
        {rid for rid, _ in unknown} & {rid for b in batches[2:] for rid, _ in b}
    )

    final: dict[str, str] = {}
    for batch in batches:
        for rid, label in batch:
            final[rid] = label
    labels = pd.DataFrame({"request_id": list(final), "label": list(final.values())})
    expected = pd.DataFrame(rows).merge(labels, on="request_id", how="inner")
    query = QualityQuery(
        "web",
        "scores",
        table,
        "prediction",
        START,
        START + PREDICTIONS,
        3600.0,
        Task.CLASSIFICATION,
    )
    joined = pd.DataFrame(
        joined_rows(cursor, query), columns=["revision", "t", "prediction", "label", "score"]
    )
    assert len(joined) == len(expected) == int(PREDICTIONS * 0.6)
    merged = expected.sort_values("t").reset_index(drop=True)
    assert joined["revision"].tolist() == merged["revision"].tolist()
    assert joined["prediction"].tolist() == merged["prediction"].tolist()
    assert joined["label"].tolist() == merged["label"].tolist()
    assert joined["t"].tolist() == pytest.approx(merged["t"].tolist())

    report = quality(cursor, query)
    assert report["task"] == "classification" and report["metric"] == "accuracy"
    for entry in report["revisions"]:
        mine = merged[merged["revision"] == entry["revision"]]
        assert entry["labelled"] == len(mine)
        assert entry["predicted"] == PREDICTIONS // 2
        assert entry["coverage"] == pytest.approx(len(mine) / (PREDICTIONS // 2))
        assert entry["accuracy"] == pytest.approx(accuracy_score(mine["label"], mine["prediction"]))
        assert entry["f1"] == pytest.approx(
            f1_score(mine["label"], mine["prediction"], average="macro")
        )
        low, high = entry["interval"]
        assert low < entry["accuracy"] < high and high - low < 0.05
        assert sum(map(sum, entry["confusion"]["matrix"])) == len(mine)
        assert sum(b["labelled"] for b in entry["buckets"]) == len(mine)
        assert feedback.counts("web", "scores")["corrections"] == len(corrected)


def _labels(batch: list[tuple[str, str]]) -> list[Label]:
    return labels_from([{"id": rid, "label": label} for rid, label in batch])


def test_regression_figures_equal_scikit_learns() -> None:
    cursor, feedback, table = stores()
    rng = random.Random(5)
    rows = [
        {
            "revision": "r1",
            "request_id": str(n + 1),
            "t": START + n,
            "prediction": rng.random() * 10,
        }
        for n in range(500)
    ]
    store_predictions(cursor, table, rows)
    truth = {r["request_id"]: r["prediction"] + rng.gauss(0, 1) for r in rows}
    feedback.add(
        "web", "scores", table, labels_from([{"id": k, "label": v} for k, v in truth.items()])
    )
    query = QualityQuery(
        "web", "scores", table, "prediction", START, START + 1000, 100.0, Task.REGRESSION
    )
    [entry] = quality(cursor, query)["revisions"]
    predicted = [r["prediction"] for r in rows]
    actual = [truth[r["request_id"]] for r in rows]
    assert entry["mae"] == pytest.approx(mean_absolute_error(actual, predicted))
    low, high = entry["interval"]
    assert low < entry["mae"] < high
    assert len(entry["buckets"]) == 5


def test_ids_are_read_as_bentoml_writes_and_sends_them() -> None:
    assert label_id(14470082283252440636, "request_id", 0) == "14470082283252440636"
    assert label_id("14470082283252440636", "request_id", 0) == "14470082283252440636"
    assert label_id("c8d0a4b5e1f2a3b4", "request_id", 0) == str(0xC8D0A4B5E1F2A3B4)
    assert label_id("0x1f", "request_id", 0) == "31"
    assert label_id("txn-9", "inference_id", 0) == "txn-9"
    for bad, field in (("nope", "id"), (1.5, "id"), (-1, "id")):
        with pytest.raises(Invalid, match=rf"^labels\[3\]\.{field}: "):
            label_id(bad, "request_id", 3)
    for item, problem in (
        ({"id": 1}, r"labels\[0\]\.label: missing"),
        ({"id": 1, "label": None}, r"labels\[0\]\.label: send a string"),
        ({"id": 1, "label": "a", "time": "now"}, r"labels\[0\]\.time: send epoch seconds"),
        ({"id": 1, "label": "a", "extra": 1}, r"labels\[0\]\.extra: unknown field"),
        ([1, 2], r"labels\[0\]: send an object"),
    ):
        with pytest.raises(Invalid, match=problem):
            labels_from([item])


def test_roc_auc_from_a_logged_score_equals_scikit_learns() -> None:
    from sklearn.metrics import roc_auc_score

    cursor, feedback, table = stores()
    rng = random.Random(9)
    rows = []
    for n in range(400):
        score = round(rng.random(), 2)  # ties on purpose
        rows.append(
            {
                "revision": "r1",
                "request_id": str(n + 1),
                "t": START + n,
                "prediction": int(score > 0.5),
            }
        )
        rows[-1]["score"] = score
    records = [
        json.dumps(
            {"prediction": r["prediction"], "score": r["score"], "request_id": r["request_id"]}
        )
        for r in rows
    ]
    cursor.execute(
        f"INSERT INTO {table} (deployment, revision, bento, ingested_at, request_id, record) "
        "SELECT 'web', 'r1', 'b:1', unnest($1), unnest($2), unnest($3)",
        [[r["t"] for r in rows], [r["request_id"] for r in rows], records],
    )
    truth = {r["request_id"]: int(rng.random() < r["score"]) for r in rows}
    feedback.add(
        "web", "scores", table, labels_from([{"id": k, "label": v} for k, v in truth.items()])
    )
    query = QualityQuery(
        "web",
        "scores",
        table,
        "prediction",
        START,
        START + 1000,
        100.0,
        Task.CLASSIFICATION,
        score_field="score",
    )
    [entry] = quality(cursor, query)["revisions"]
    expected = roc_auc_score([truth[r["request_id"]] for r in rows], [r["score"] for r in rows])
    assert entry["roc_auc"] == pytest.approx(expected)
