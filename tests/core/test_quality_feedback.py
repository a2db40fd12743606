"""Labels sent to a real control plane for what a real ``bentoml serve`` predicted and logged
with ``bentoml.monitor``: JSON lines with the hex ids of the answers' headers, a JSON array
with decimal ids, a Parquet file; duplicates, a correction, unknown ids and bad input; then the
quality per revision, checked against the same figures computed here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import duckdb
import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready

NAME = "quality-svc"
MONITOR = "classify_calls"
CALLS = 120


@pytest.fixture(scope="module")
def client(shared_plane: LocalControlPlane, echo_v1: str) -> Iterator[Client]:
    assert shared_plane.connection is not None
    with Client(shared_plane.connection.endpoint, shared_plane.connection.token) as client:
        push(echo_v1, client=client)
        wait_until_ready(deploy(NAME, echo_v1, client=client), client=client, timeout=120)
        yield client


def truth(x: int) -> str:
    """The true label: the parity, except for every fifth x (so the served model is 80% right)."""
    parity = "even" if x % 2 == 0 else "odd"
    return parity if x % 5 else ("odd" if parity == "even" else "even")


def parquet_of(rows: list[dict[str, Any]]) -> bytes:
    connection = duckdb.connect()
    connection.execute("CREATE TABLE t (id VARCHAR, label VARCHAR)")
    connection.executemany("INSERT INTO t VALUES (?, ?)", [(r["id"], r["label"]) for r in rows])
    path = f"/tmp/bentoship-labels-{time.time_ns()}.parquet"
    connection.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    with open(path, "rb") as handle:
        data = handle.read()
    return data


def post(client: Client, body: bytes, kind: str, **params: str) -> httpx.Response:
    return httpx.post(
        f"{client.endpoint}/api/v2/deployments/{NAME}/feedback",
        params={"monitor": MONITOR, **params},
        content=body,
        headers={"Authorization": f"Bearer {client.connection.token}", "Content-Type": kind},
        timeout=60,
    )


def test_labels_join_what_was_served_and_quality_is_measured(client: Client, tmp_path: Any) -> None:
    dep = client.get_deployment(NAME)
    served: dict[int, tuple[str, str]] = {}
    with httpx.Client(timeout=30) as http:
        for x in range(CALLS):
            answer = http.post(f"{dep.url}/classify", json={"x": x, "monitor": True})
            assert answer.status_code == 200
            served[x] = (answer.headers["x-bentoml-request-id"], answer.json()["label"])
    hexes = {x: rid for x, (rid, _) in served.items()}
    assert all(len(rid) == 16 for rid in hexes.values())

    first = [{"id": hexes[x], "label": truth(x)} for x in range(0, 40)]
    got = client.send_feedback(NAME, MONITOR, first)
    assert (got["received"], got["stored"], got["pending"]) == (40, 40, 0)
    second = [{"id": str(int(hexes[x], 16)), "label": truth(x)} for x in range(40, 80)]
    answer = post(client, json.dumps(second).encode(), "application/json")
    assert answer.status_code == 200 and answer.json()["stored"] == 40
    third = [{"id": hexes[x], "label": truth(x)} for x in range(80, 100)]
    got = client.send_feedback(NAME, MONITOR, parquet_of(third))
    assert got["stored"] == 20

    again = client.send_feedback(NAME, MONITOR, first[:10])
    assert (again["stored"], again["duplicates"], again["corrections"]) == (0, 10, 0)
    assert truth(0) == "odd"
    corrected = [{"id": hexes[0], "label": "even"}]
    assert client.send_feedback(NAME, MONITOR, corrected)["corrections"] == 1
    unknown = [{"id": f"{n:016x}", "label": "even"} for n in range(1, 6)]
    assert client.send_feedback(NAME, MONITOR, unknown)["pending"] == 5

    before = client.quality(NAME, MONITOR, since="1h")["labels"]
    for body, kind, params, field in [
        (
            b'{"id": "%s", "label": [1]}' % hexes[1].encode(),
            "application/x-ndjson",
            {},
            "labels[0].label",
        ),
        (b'{"id": "zz", "label": "odd"}', "application/x-ndjson", {}, "labels[0].id"),
        (b'{"id": "1", "label": "odd"}', "application/x-ndjson", {"monitor": "nope"}, "monitor"),
        (b"PAR1 not parquet at all", "application/vnd.apache.parquet", {}, "body"),
        (b"not json", "application/x-ndjson", {}, "body"),
    ]:
        refused = post(client, body, kind, **params)
        assert refused.status_code == 400, (body, refused.text)
        message = refused.json()["error"]
        assert message.startswith(field) and "\n" not in message, message
    assert client.quality(NAME, MONITOR, since="1h")["labels"] == before

    report = client.quality(NAME, MONITOR, since="1h", step=600)
    assert report["task"] == "classification" and report["prediction_field"] == "label"
    [entry] = report["revisions"]
    labelled = {x: truth(x) for x in range(100)} | {0: "even"}
    right = sum(served[x][1] == label for x, label in labelled.items())
    assert entry["revision"] == dep.serving_revision
    assert (entry["predicted"], entry["labelled"]) == (CALLS, 100)
    assert entry["coverage"] == pytest.approx(100 / CALLS)
    assert entry["accuracy"] == pytest.approx(right / 100)
    assert sum(map(sum, entry["confusion"]["matrix"])) == 100
    assert report["corrections"] == 1 and report["labels"] == 105
    scored = client.quality(NAME, MONITOR, since="1h", score_field="score")
    assert scored["revisions"][0]["roc_auc"] is not None
