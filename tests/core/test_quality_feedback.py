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


def test_labels_join_what_was_served_and_quality_is_measured(
    client: Client, shared_plane: LocalControlPlane, tmp_path: Any
) -> None:
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
    uploads = shared_plane.data_dir / "observe-uploads"
    deadline = time.monotonic() + 10
    while list(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # a stored body's file is removed once it is answered
    assert list(uploads.iterdir()) == [], "every body sent, stored or refused, is removed"

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
    assert report["unmatched"] == 5, "the unknown ids are reported"
    scored = client.quality(NAME, MONITOR, since="1h", score_field="score")
    assert scored["revisions"][0]["roc_auc"] is not None


def served_labels(client: Client, url: str, xs: range) -> dict[int, str]:
    """Call classify (monitored) for each x; the hex request id of each call."""
    ids = {}
    with httpx.Client(timeout=30) as http:
        for x in xs:
            answer = http.post(f"{url}/classify", json={"x": x, "monitor": True})
            assert answer.status_code == 200
            ids[x] = answer.headers["x-bentoml-request-id"]
    return ids


def test_a_revision_ten_points_worse_fails_the_gate_and_is_rolled_back(
    client: Client, echo_v1: str
) -> None:
    import pandas as pd

    from bentoship import QualityFailed, QualityPolicy
    from bentoship.steps import check_quality, send_feedback

    def truth10(x: int) -> str:
        parity = "even" if x % 2 == 0 else "odd"
        return parity if x % 10 else ("odd" if parity == "even" else "even")

    before = client.get_deployment(NAME).serving_revision
    old = served_labels(client, client.get_deployment(NAME).url or "", range(1000, 1500))
    frame = pd.DataFrame(
        {"id": list(old.values()), "label": [truth10(x) for x in old], "seq": range(500)}
    )
    sent = send_feedback(NAME, frame, monitor=MONITOR, watermark_column="seq", client=client)
    assert (sent.sent, sent.watermark) == (500, 499)
    again = send_feedback(NAME, frame, monitor=MONITOR, watermark_column="seq", client=client)
    assert again.sent == 0, "a re-run sends nothing twice"

    worse = deploy(NAME, echo_v1, {"envs": {"CLASSIFY_FLIP_PERCENT": "10"}}, client=client)
    wait_until_ready(worse, client=client, timeout=120)
    new = served_labels(client, worse.endpoint_url, range(2000, 2500))
    policy = QualityPolicy(monitor=MONITOR, since="1h", min_labels=200)
    first = [{"id": new[x], "label": truth10(x)} for x in list(new)[:50]]
    client.send_feedback(NAME, MONITOR, first)
    early = check_quality(NAME, policy, client=client, rollback_on_failure=True)
    assert early.verdict == "not_enough_evidence" and "not enough evidence" in early.reason
    assert early.serving == worse.revision and early.labels == 50

    rest = [{"id": new[x], "label": truth10(x)} for x in list(new)[50:]]
    client.send_feedback(NAME, MONITOR, rest)
    with pytest.raises(QualityFailed) as failed:
        check_quality(NAME, policy, client=client, rollback_on_failure=True)
    report = failed.value.report
    assert report.verdict == "failed" and report.labels == 500
    assert report.baseline == before and report.rolled_back_to == before
    assert report.value is not None and report.baseline_value is not None
    assert report.baseline_value - report.value > 0.05
    assert report.interval is not None and report.interval[1] < report.baseline_value
    assert client.get_deployment(NAME).serving_revision == before
    rollback = next(e for e in client.events(NAME, limit=20)[::-1] if e.kind == "rolled_back")
    assert "quality check failed" in rollback.message and "accuracy" in rollback.message
    page = report.html()
    assert "<svg" in page and "Confusion matrix" in page and worse.revision in page
