"""Labels joined to predictions in DuckDB, at volume and without a process: 20,000 predictions
of two revisions, labels for 60% of them in 5 batches out of order (some before their
prediction is stored), with duplicates, corrections and unknown ids. The join equals a pandas
merge of the same data, and the accuracy per revision equals scikit-learn's."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import duckdb
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error

from bentoship.server.errors import Invalid
from bentoship.server.observe.feedback import (
    FeedbackStore,
    Label,
    index_state,
    joined_sql,
    label_id,
    labels_from,
)
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


@pytest.mark.parametrize("indexed", [False, True], ids=["records", "prediction index"])
def test_the_join_at_volume_equals_pandas_and_accuracy_equals_scikit_learn(indexed: bool) -> None:
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
    if indexed:  # made before the predictions: it takes them, and the labels, as they come
        feedback.refresh("scores", table, ["prediction"])
    store_predictions(cursor, table, rows)
    results += [feedback.add("web", "scores", table, _labels(batch)) for batch in batches[2:]]
    sql, _ = joined_sql(cursor, "web", "scores", table, ["prediction"])
    assert ("prediction_rows_" in sql) is indexed
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
    counts = feedback.counts("web", "scores", table)
    assert counts["corrections"] == len(corrected) and counts["labels"] == len(final)
    assert counts["unmatched"] == len(unknown)


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
        ({"id": 1, "lable": "a"}, r"labels\[0\]\.label: missing"),
        ([1, 2], r"labels\[0\]: send an object"),
    ):
        with pytest.raises(Invalid, match=problem):
            labels_from([item])
    assert labels_from([{"id": 1, "label": "a", "extra": 1}]) == [Label("1", '"a"')]


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


def scored_predictions(
    cursor: duckdb.DuckDBPyConnection, table: str, first: int, count: int
) -> None:
    """Records with a prediction, a score and a timestamp, two deployments' worth."""
    rng = random.Random(first)
    rows: list[dict[str, Any]] = []
    for n in range(first, first + count):
        rows.append(
            {
                "deployment": "web" if n % 7 else "other",
                "revision": "r1" if n % 3 else "r2",
                "request_id": str(10**18 + n),
                "t": START + n,
                "record": json.dumps(
                    {
                        "prediction": rng.choice(CLASSES),
                        "score": round(rng.random(), 2),
                        "timestamp": pd.Timestamp(START + n, unit="s").isoformat(),
                    }
                ),
            }
        )
    cursor.execute(
        f"INSERT INTO {table} (deployment, revision, bento, ingested_at, timestamp, request_id, "
        "record) SELECT unnest($1), unnest($2), 'b:1', unnest($3), "
        "json_extract_string(unnest($4), '$.timestamp'), unnest($5), unnest($4)",
        [
            [r["deployment"] for r in rows],
            [r["revision"] for r in rows],
            [r["t"] + 5 for r in rows],
            [r["record"] for r in rows],
            [r["request_id"] for r in rows],
        ],
    )


def labels_for(first: int, count: int, seed: int) -> list[Label]:
    rng = random.Random(seed)
    return labels_from(
        [
            {"id": 10**18 + n, "label": rng.choice(CLASSES), "time": START + n + rng.random() * 99}
            for n in range(first, first + count)
        ]
    )


def test_the_prediction_index_gives_the_records_own_figures_as_both_come_and_go() -> None:
    cursor, feedback, table = stores()
    query = QualityQuery(
        "web", "scores", table, "prediction", START, START + 3000, 300.0,
        Task.CLASSIFICATION, score_field="score",
    )  # fmt: skip

    def both() -> tuple[dict[str, Any], dict[str, Any]]:
        """The figures from the index (made current), and from the records themselves."""
        feedback.refresh("scores", table, ["prediction", "score"])
        indexed = quality(cursor, query)
        state = index_state(cursor, "scores")
        assert state is not None
        cursor.execute("UPDATE prediction_index SET fields = ['prediction']")
        assert "prediction_rows_" not in joined_sql(cursor, "web", "scores", table, ["score"])[0]
        read = quality(cursor, query)
        cursor.execute("UPDATE prediction_index SET fields = ?", [list(state.fields)])
        return indexed, read

    scored_predictions(cursor, table, 0, 1000)
    feedback.add("web", "scores", table, labels_for(0, 1500, seed=1))
    indexed, read = both()
    assert indexed == read and indexed["revisions"][0]["labelled"] > 0
    first = {int(x.id) - 10**18: x.label for x in labels_for(0, 1500, seed=1)}
    second = labels_for(200, 300, seed=2)
    changed = {int(x.id) - 10**18 for x in second if first[int(x.id) - 10**18] != x.label}
    assert feedback.add("web", "scores", table, second).corrections == len(changed) > 0
    scored_predictions(cursor, table, 1000, 1000)  # some waited: ids 1000-1499
    feedback.add("web", "scores", table, labels_for(1800, 100, seed=3))
    indexed, read = both()
    assert indexed == read
    labelled = sum(e["labelled"] for e in indexed["revisions"])
    assert labelled == len([n for n in range(1500) if n % 7]) + len(
        [n for n in range(1800, 1900) if n % 7]
    )
    assert feedback.counts("web", "scores", table)["unmatched"] == len(
        [n for n in [*range(1500), *range(1800, 1900)] if not n % 7]
    )

    cursor.execute(f"DELETE FROM {table} WHERE seq <= 100 OR seq % 50 = 0")  # retention, say
    sql, _ = joined_sql(cursor, "web", "scores", table, ["prediction", "score"])
    assert "prediction_rows_" not in sql, "an index missing removed records is not read"
    indexed, read = both()
    assert indexed == read
    gone = {n for n in range(2000) if n + 1 <= 100 or (n + 1) % 50 == 0}
    sent = [*range(1500), *range(1800, 1900)]
    unmatched = [n for n in sent if not n % 7 or n in gone]
    assert feedback.counts("web", "scores", table)["unmatched"] == len(unmatched)

    feedback.prune({"scores": table}, now=time.time() + 30 * 86400)
    counts = feedback.counts("web", "scores", table)
    kept = len(changed - set(unmatched))
    assert counts == {"labels": len(sent) - len(unmatched), "corrections": kept, "unmatched": 0}
    feedback.forget("web")
    assert feedback.counts("web", "scores", table) == {
        "labels": 0,
        "corrections": 0,
        "unmatched": 0,
    }
    state = index_state(cursor, "scores")
    assert state is not None
    rows = cursor.execute(f"SELECT DISTINCT deployment FROM {state.rows}").fetchall()
    assert rows == [("other",)]


def test_labels_kept_by_the_earlier_single_table_are_moved_and_still_deduplicate() -> None:
    cursor = duckdb.connect()
    cursor.execute(
        "CREATE TABLE feedback (deployment VARCHAR, monitor VARCHAR, id_field VARCHAR, "
        "id VARCHAR, label VARCHAR, label_time DOUBLE, received DOUBLE, corrections INTEGER, "
        "PRIMARY KEY (deployment, monitor, id_field, id))"
    )
    cursor.execute(
        "INSERT INTO feedback VALUES ('web', 'scores', 'request_id', '7', '\"cat\"', NULL, 1, 1), "
        "('web', 'scores', 'inference_id', 'txn-1', '1', 5, 2, 0)"
    )
    feedback = FeedbackStore(cursor, lambda: cursor)
    assert feedback.counts("web", "scores") == {"labels": 2, "corrections": 1, "unmatched": 0}
    again = feedback.add("web", "scores", None, labels_from([{"id": "0x7", "label": "cat"}]))
    assert (again.stored, again.duplicates) == (0, 1)
    other = labels_from([{"id": "txn-1", "label": 2}], "inference_id")
    assert feedback.add("web", "scores", None, other, id_field="inference_id").corrections == 1
    tables = cursor.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    assert ("feedback",) not in tables


@pytest.mark.parametrize("indexed", [False, True], ids=["records", "prediction index"])
def test_a_request_id_of_16_decimal_digits_joins_its_prediction(indexed: bool) -> None:
    """16 digits are a header's hex id or a record's decimal one: the reading that names a
    stored prediction wins, whether the label comes before its prediction or after, again, or
    corrected (a label lost so, a CI run counted 99 labelled predictions of 100)."""
    cursor, feedback, table = stores()
    query = QualityQuery(
        "web", "scores", table, "prediction", START, START + 100, 10.0, Task.CLASSIFICATION
    )
    hexed = "1234567890123456"  # as hex in a header: 0x1234567890123456
    early, late = 5_777_918_401_653_022, 1_000_000_000_000_007  # 16 digits in decimal
    rows = [
        {"revision": "r1", "request_id": str(rid), "t": START + n, "prediction": "cat"}
        for n, rid in enumerate([int(hexed, 16), 10**18, late])
    ]
    store_predictions(cursor, table, rows[1:])
    if indexed:
        feedback.refresh("scores", table, ["prediction"])
    sent = feedback.add("web", "scores", table, _labels([(str(early), "cat")]))
    assert sent.pending == 1, "its prediction is not stored yet"
    store_predictions(cursor, table, [rows[0]])
    store_predictions(cursor, table, [{**rows[0], "request_id": str(early), "t": START + 3}])
    got = feedback.add(
        "web", "scores", table, _labels([(str(late), "dog"), (hexed, "cat"), (str(early), "cat")])
    )
    assert (got.stored, got.duplicates, got.pending) == (2, 1, 0)
    again = feedback.add("web", "scores", table, _labels([(str(late), "cat")]))
    assert (again.stored, again.corrections) == (0, 1)
    if indexed:
        feedback.refresh("scores", table, ["prediction"])
    joined = joined_rows(cursor, query)
    assert sorted((t - START, label) for _, t, _, label, _ in joined) == [
        (0, "cat"),
        (2, "cat"),
        (3, "cat"),
    ]
    assert feedback.counts("web", "scores", table) == {
        "labels": 3,
        "corrections": 1,
        "unmatched": 0,
    }
