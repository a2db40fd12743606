"""Proxy figure: the stable endpoint against the revision's own port, same load, own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready

from .common import RUNS, Row, Sample, build_fixture

SECONDS = 4.0
EXTRA_ROUNDS = 2
"""Extra rounds of the metrics-on pair, per run."""
MONITORED = json.dumps({"text": "load", "monitor": True})
"""The echo service then logs the text and its length with ``bentoml.monitor``."""
CONCURRENCY = 16


def load(url: str, bearer: str | None = None, payload: str | None = None) -> dict[str, float]:
    extra = {"BENCH_BEARER": bearer or "", "BENCH_PAYLOAD": payload or ""}
    env = {**os.environ, **extra}
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", f"{url}/echo", str(SECONDS), str(CONCURRENCY)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    return dict(json.loads(result.stdout))


def run(workdir: Path) -> list[Row]:
    """The loads of each run one after the other, so that the machine's drift over the
    benchmark touches every figure alike; the plane without metrics (``--no-metrics``) runs
    beside the other all along."""
    tag = build_fixture("echo", workdir, "v1")
    with (
        LocalControlPlane(workdir / "unmetered-plane", metrics=False) as bare,
        LocalControlPlane(workdir / "proxy-plane") as plane,
    ):
        assert bare.connection is not None
        with Client(bare.endpoint, bare.connection.token) as client:
            push(tag, client=client)
            unmetered = wait_until_ready(deploy("unmetered", tag, client=client), client=client)
        assert plane.connection is not None
        with Client(plane.endpoint, plane.connection.token) as client:
            push(tag, client=client)
            dep = wait_until_ready(deploy("proxied", tag, client=client), client=client)
            port = next(r.port for r in client.list_revisions("proxied") if r.serving)
            secured = {"access_authorization": True}
            tls = wait_until_ready(deploy("mtls", tag, secured, client=client), client=client)
        token = plane.connection.token
        through, direct, mutual, monitored, plain = [], [], [], [], []
        for _ in range(RUNS):
            plain.append(load(unmetered.url))
            direct.append(load(f"http://127.0.0.1:{port}"))
            through.append(load(dep.url))
            mutual.append(load(tls.url, bearer=token))
            monitored.append(load(dep.url, payload=MONITORED))
        # metrics on against off is a small difference between two noisy figures: more
        # rounds of that pair alone, the order swapped every round
        for round_ in range(EXTRA_ROUNDS * RUNS):
            pair = [(plain, unmetered.url), (through, dep.url)]
            for figures, url in pair if round_ % 2 else reversed(pair):
                figures.append(load(url))
    rps_through = Sample.of([r["rps"] for r in through])
    rps_direct = Sample.of([r["rps"] for r in direct])
    p50_through = Sample.of([r["p50"] for r in through])
    p50_direct = Sample.of([r["p50"] for r in direct])
    p99_through = Sample.of([r["p99"] for r in through])
    p99_direct = Sample.of([r["p99"] for r in direct])
    rps_mutual = Sample.of([r["rps"] for r in mutual])
    rps_plain = Sample.of([r["rps"] for r in plain])
    p50_mutual = Sample.of([r["p50"] for r in mutual])
    p50_monitored = Sample.of([r["p50"] for r in monitored])
    return [
        Row(
            "monitored request p50 latency",
            "ms",
            p50_monitored,
            p50_through,
            "the same request, not monitored",
            "(reported)",
            True,
        ),
        Row(
            "proxy throughput, metrics on",
            "req/s",
            rps_through,
            rps_plain,
            "the proxy with --no-metrics",
            ">= 0.97x",
            rps_through.median >= 0.97 * rps_plain.median,
        ),
        Row(
            "proxy throughput",
            "req/s",
            rps_through,
            rps_direct,
            "revision's own port",
            ">= 0.9x",
            rps_through.median >= 0.9 * rps_direct.median,
        ),
        Row(
            "proxy p50 latency",
            "ms",
            p50_through,
            p50_direct,
            "revision's own port",
            "<= +1 ms",
            p50_through.median - p50_direct.median <= 0.001,
        ),
        Row(
            "proxy throughput, mutual TLS",
            "req/s",
            rps_mutual,
            rps_through,
            "the proxy in plain HTTP",
            "(reported)",
            True,
        ),
        Row(
            "proxy p50 latency, mutual TLS",
            "ms",
            p50_mutual,
            p50_through,
            "the proxy in plain HTTP",
            "(reported)",
            True,
        ),
        Row(
            "proxy p99 latency",
            "ms",
            p99_through,
            p99_direct,
            "revision's own port",
            "(reported)",
            True,
        ),
    ]
