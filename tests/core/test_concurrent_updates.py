"""Bursts of concurrent updates of one deployment: every revision settles, none stays starting."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bentoship.server import LocalControlPlane

from .api import Api

SETTLED = {"failed", "cancelled", "retired"}


def update_with(api: Api, name: str, bento: str, value: str) -> int:
    with httpx.Client(base_url=api.http.base_url, headers=api.http.headers, timeout=90) as http:
        body = {"bento": bento, "envs": [{"name": "BURST", "value": value}]}
        return http.put(f"/api/v2/deployments/{name}", json=body).status_code


def test_three_bursts_of_ten_updates_leave_no_revision_starting(
    start_control_plane: Any, echo_v1: str
) -> None:
    plane: LocalControlPlane = start_control_plane(rollback_window=1)
    api = Api(plane)
    api.push(echo_v1)
    api.create("burst", echo_v1)
    api.wait_status("burst", {"running"})

    with ThreadPoolExecutor(max_workers=10) as pool:
        for burst in range(3):
            values = [f"{burst}-{i}" for i in range(10)]
            codes = list(pool.map(lambda v: update_with(api, "burst", echo_v1, v), values))
            assert codes == [200] * 10
            # the next burst cuts this one's winner while its process starts
            time.sleep(1.0)
    api.wait_status("burst", {"running"}, timeout=120)

    deadline = time.monotonic() + 60
    revisions = api.revisions("burst")
    while any(r["bentoship"]["phase"] in ("starting", "warm") for r in revisions):
        assert time.monotonic() < deadline, [r["bentoship"]["phase"] for r in revisions]
        time.sleep(0.5)
        revisions = api.revisions("burst")

    assert len(revisions) == 31
    phases = [r["bentoship"]["phase"] for r in revisions]
    serving = [r for r in revisions if r["bentoship"]["phase"] == "serving"]
    assert len(serving) == 1 and serving[0]["bentoship"]["serving"] is True
    assert all(p in SETTLED for p in phases if p != "serving"), phases
    assert "cancelled" in phases
    assert not any(r["bentoship"]["warm"] for r in revisions if r is not serving[0])
    dep = api.get("burst")
    assert dep["bentoship"]["serving_revision"] == serving[0]["name"]
    envs = {e["value"] for e in serving[0]["targets"][0]["config"]["envs"]}
    assert envs and envs <= {f"2-{i}" for i in range(10)}
    answer = httpx.post(f"{api.url('burst')}/echo", json={"text": "x"}, timeout=30).json()
    assert answer == {"text": "x", "version": "v1"}
