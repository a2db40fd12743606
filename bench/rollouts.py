"""Rollout figures: deploy-to-green, ready-detection lag, rollback, no-op push and re-deploy."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.server.rollout.runner import (
    REPLICA_MARKER,
    bentoml_command,
    free_port,
    kill_marked,
    new_marker,
)
from bentoship.steps import deploy, push, rollback, wait_until_ready

from .common import RUNS, Row, Sample, build_fixture, timed

READY_PROBE_INTERVAL = 0.005


def serve_by_hand(tag: str) -> float:
    """Baseline: ``bentoml serve`` started by hand, until ``/readyz`` answers 200."""
    port = free_port()
    marker = new_marker()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*bentoml_command(), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, REPLICA_MARKER: marker},
        start_new_session=True,
    )
    try:
        with httpx.Client(timeout=0.5) as http:
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
    finally:
        process.terminate()
        process.wait(30)
        kill_marked(marker)


def first_ready(client: Client, name: str, seen: dict[str, float]) -> None:
    """Probe the new revision's own port until ``/readyz`` first answers 200."""
    with httpx.Client(timeout=0.2) as http:
        port = None
        while port is None:
            revisions = client.list_revisions(name)
            port = revisions[0].port if revisions else None
            time.sleep(READY_PROBE_INTERVAL)
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    seen["ready"] = time.perf_counter()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(READY_PROBE_INTERVAL)


def detection_lag(client: Client, name: str, tag: str, wait: object) -> float:
    seen: dict[str, float] = {}
    rollout = deploy(name, tag, client=client)
    probe_client = Client(client.endpoint, client.connection.token)
    prober = threading.Thread(target=first_ready, args=(probe_client, name, seen))
    prober.start()
    wait(rollout)  # type: ignore[operator]
    returned = time.perf_counter()
    prober.join(60)
    probe_client.close()
    return max(0.0, returned - seen["ready"])


def serves(url: str, version: str) -> None:
    """Return once a request answers ``version``."""
    with httpx.Client(timeout=5) as http:
        while True:
            try:
                if http.post(f"{url}/echo", json={"text": "b"}).json().get("version") == version:
                    return
            except httpx.HTTPError:
                pass


def serves_only(url: str, version: str, count: int = 20) -> None:
    """Check, untimed, that the switch was complete: ``count`` requests all answer ``version``."""
    with httpx.Client(timeout=5) as http:
        answers = {
            http.post(f"{url}/echo", json={"text": "c"}).json()["version"] for _ in range(count)
        }
    if answers != {version}:
        raise AssertionError(f"after the switch {url} answered {answers}, not only {version}")


def run(workdir: Path) -> list[Row]:
    import bentoml

    v1 = build_fixture("echo", workdir, "v1")
    v2 = build_fixture("echo", workdir, "v2")
    rows: list[Row] = []
    with LocalControlPlane(workdir / "plane") as plane:
        assert plane.connection is not None
        client = Client(plane.endpoint, plane.connection.token)
        push(v1, client=client)
        push(v2, client=client)

        by_hand = [serve_by_hand(v1) for _ in range(RUNS)]
        green = []
        for index in range(RUNS):
            green.append(
                timed(
                    lambda i=index: wait_until_ready(
                        deploy(f"green-{i}", v1, client=client), client=client, timeout=120
                    )
                )
            )
        rows.append(
            Row(
                "deploy-to-green",
                "s",
                Sample.of(green),
                Sample.of(by_hand),
                "bentoml serve by hand to /readyz",
                "ratio <= 1.15",
                Sample.of(green).median / Sample.of(by_hand).median <= 1.15,
            )
        )

        ours = [
            detection_lag(
                client, f"lag-{i}", v1, lambda r: wait_until_ready(r, client=client, timeout=120)
            )
            for i in range(RUNS)
        ]
        cloud = bentoml.cloud.BentoCloudClient(  # type: ignore[call-arg]
            api_key=plane.connection.token, endpoint=plane.endpoint
        )
        theirs = [
            detection_lag(
                client,
                f"sdk-lag-{i}",
                v1,
                lambda r: bentoml.deployment.get(r.name, _cloud_client=cloud).wait_until_ready(
                    timeout=120
                ),
            )
            for i in range(RUNS)
        ]
        rows.append(
            Row(
                "ready-detection lag",
                "ms",
                Sample.of(ours),
                Sample.of(theirs),
                "bentoml wait_until_ready (10 s interval)",
                "<= 100 ms",
                Sample.of(ours).median <= 0.1,
            )
        )

        back, fresh = [], []
        for index in range(RUNS):
            name = f"back-{index}"
            first = deploy(name, v1, client=client)
            wait_until_ready(first, client=client, timeout=120)
            wait_until_ready(deploy(name, v2, client=client), client=client, timeout=120)
            url = first.endpoint_url
            back.append(
                timed(
                    lambda n=name, u=url: (rollback(n, client=client, wait=False), serves(u, "v1"))
                )
            )
            fresh.append(
                timed(
                    lambda i=index: serves(
                        wait_until_ready(
                            deploy(f"fresh-{i}", v1, client=client), client=client, timeout=120
                        ).url,
                        "v1",
                    )
                )
            )
        rows.append(
            Row(
                "rollback to warm revision",
                "s",
                Sample.of(back),
                Sample.of(fresh),
                "fresh rollout of the same bento",
                "<= 0.5 s",
                Sample.of(back).median <= 0.5,
            )
        )

        first_push, noop_push = [], []
        for index in range(RUNS):
            tag = build_fixture("echo", workdir, f"push-{index}")
            first_push.append(timed(lambda t=tag: push(t, client=client)))
            noop_push.append(timed(lambda t=tag: push(t, client=client)))
        rows.append(
            Row(
                "no-op push",
                "s",
                Sample.of(noop_push),
                Sample.of(first_push),
                "first push",
                "<= 0.3 s",
                Sample.of(noop_push).median <= 0.3,
            )
        )

        first_deploy, redeploy = [], []
        for index in range(RUNS):
            first_deploy.append(timed(lambda i=index: deploy(f"idem-{i}", v1, client=client)))
            redeploy.append(timed(lambda i=index: deploy(f"idem-{i}", v1, client=client)))
        rows.append(
            Row(
                "idempotent re-deploy",
                "s",
                Sample.of(redeploy),
                Sample.of(first_deploy),
                "first deploy call",
                "<= 0.3 s",
                Sample.of(redeploy).median <= 0.3,
            )
        )
        client.close()
    return rows


if __name__ == "__main__":
    from .common import table, workspace

    with workspace() as path:
        print(table(run(path)), file=sys.stdout)
