"""Proxy figure: the stable endpoint against the revision's own port, same load, own process.

Besides throughput at full load, the p50 latency at half of the direct maximum (a load that does
not saturate the CPU), and CPU time per request from ``psutil``: the control plane process's
beyond what it spends while the load goes to the revision's own port (the proxy's cost), and
the service processes' own.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

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


def load(
    url: str, bearer: str | None = None, payload: str | None = None, rate: float = 0.0
) -> dict[str, float]:
    extra = {"BENCH_BEARER": bearer or "", "BENCH_PAYLOAD": payload or ""}
    extra["BENCH_RATE"] = str(rate) if rate else ""
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


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Metered:
    """Loads against one plane, with the CPU its process and its services spent per request."""

    plane: psutil.Process

    def load(self, url: str, rate: float = 0.0) -> dict[str, float]:
        services = self.plane.children(recursive=True)
        plane, service = cpu_seconds([self.plane]), cpu_seconds(services)
        result = load(url, rate=rate)
        answered = result["rps"] * SECONDS
        result["plane_us"] = (cpu_seconds([self.plane]) - plane) / answered * 1e6
        result["service_us"] = (cpu_seconds(services) - service) / answered * 1e6
        return result


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
        assert plane.process is not None
        metered = Metered(psutil.Process(plane.process.pid))
        own_port = f"http://127.0.0.1:{port}"
        through, direct, mutual, monitored, plain = [], [], [], [], []
        for round_ in range(RUNS):
            plain.append(load(unmetered.url))
            pair = [(direct, own_port), (through, dep.url)]
            for figures, url in pair if round_ % 2 else reversed(pair):
                figures.append(metered.load(url))
            mutual.append(load(tls.url, bearer=token))
            monitored.append(load(dep.url, payload=MONITORED))
        half = statistics.median(r["rps"] for r in direct) / 2
        half_direct, half_through = [], []
        for round_ in range(RUNS):
            pair = [(half_direct, own_port), (half_through, dep.url)]
            for figures, url in pair if round_ % 2 else reversed(pair):
                figures.append(metered.load(url, rate=half))
        # metrics on against off is a small difference between two noisy figures: more
        # rounds of that pair alone, the order swapped every round
        for round_ in range(EXTRA_ROUNDS * RUNS):
            pair = [(plain, unmetered.url), (through, dep.url)]
            for figures, url in pair if round_ % 2 else reversed(pair):
                figures.append(load(url))
    proxy_us = [t["plane_us"] - d["plane_us"] for t, d in zip(through, direct, strict=False)]
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
    p50_half_through = Sample.of([r["p50"] for r in half_through])
    p50_half_direct = Sample.of([r["p50"] for r in half_direct])
    service_us = Sample.of([r["service_us"] for r in direct[:RUNS]])
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
            "proxy p50 latency, saturating load",
            "ms",
            p50_through,
            p50_direct,
            "revision's own port",
            "(reported)",
            True,
        ),
        Row(
            f"proxy p50 latency at half load ({half:.0f} req/s)",
            "ms",
            p50_half_through,
            p50_half_direct,
            "revision's own port",
            "<= +1 ms",
            p50_half_through.median - p50_half_direct.median <= 0.001,
        ),
        Row(
            "proxy CPU per request",
            "us",
            Sample.of(proxy_us),
            service_us,
            "the service's own CPU per request",
            "(reported)",
            True,
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
