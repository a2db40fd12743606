"""Shadow mirroring figures: the stable endpoint mirroring every request to a held candidate,
against the same endpoint mirroring none, both paced at half of what the endpoint sustains.

One deployment serves the echo bento and holds a candidate of the same bento (another
environment, so another revision), both real ``bentoml serve`` processes as in the proxy
figures; the pairs are their echo answers. Each round loads the endpoint once with
``PUT .../shadow`` at 100% and once at 0%, the order swapped every round. The rate is half of
the endpoint's maximum without mirroring (measured first), so the candidate keeps up and every
copy can get its pair. The CPU figure is the control plane process's (proxy, mirror sender,
pairs' writer) per request with mirroring, minus the same without; the candidate's own CPU is
not in it. Then the candidate is replaced by one that sleeps 5 s per request, and the same pair
of paced loads gives live p50 while every copy waits or is dropped.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready

from .common import RUNS, Row, Sample, build_fixture
from .proxy import SECONDS, cpu_seconds, load

NAME = "mirrored"
MAX_LOADS = 2
"""Unpaced loads through the endpoint, without mirroring, whose median rate is its maximum."""
SETTLE = 0.5
"""Seconds after each load for the copies in flight to end, before the CPU is read."""


def _round(
    client: Client, plane: psutil.Process, url: str, percent: int, rate: float
) -> dict[str, float]:
    """One paced load with ``percent`` mirrored: its figures, the plane's CPU per request and
    the mirroring's counts."""
    client.set_shadow(NAME, percent)
    before = cpu_seconds([plane])
    result = load(url, rate=rate)
    time.sleep(SETTLE)
    client.shadow_pairs(NAME, since=time.time(), limit=1)  # the pairs kept so far are written
    spent = cpu_seconds([plane]) - before
    result["plane_us"] = spent / (result["rps"] * SECONDS) * 1e6
    state = client.shadow(NAME)
    for key in ("mirrored", "pairs", "dropped"):
        result[key] = float(state.get(key, 0))
    client.set_shadow(NAME, 0)
    return result


def _rounds(
    client: Client, plane: psutil.Process, url: str, rate: float
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """RUNS rounds of a load mirrored (100%) and one not, the order swapped every round."""
    mirrored: list[dict[str, float]] = []
    plain: list[dict[str, float]] = []
    for round_ in range(RUNS):
        pair = [(mirrored, 100), (plain, 0)]
        for figures, percent in pair if round_ % 2 else reversed(pair):
            figures.append(_round(client, plane, url, percent, rate))
    return mirrored, plain


def run(workdir: Path) -> list[Row]:
    tag = build_fixture("echo", workdir, "v1")
    with LocalControlPlane(workdir / "mirror-plane") as plane:
        assert plane.connection is not None and plane.process is not None
        with Client(plane.endpoint, plane.connection.token) as client:
            push(tag, client=client)
            dep = wait_until_ready(deploy(NAME, tag, client=client), client=client)
            held = deploy(
                NAME, tag, {"envs": {"BENCH_SIDE": "candidate"}}, candidate=True, client=client
            )
            wait_until_ready(held, client=client)
            process = psutil.Process(plane.process.pid)
            half = statistics.median(load(dep.url)["rps"] for _ in range(MAX_LOADS)) / 2
            mirrored, plain = _rounds(client, process, dep.url, half)
            slow = deploy(NAME, tag, {"envs": {"ECHO_SLEEP": "5"}}, candidate=True, client=client)
            wait_until_ready(slow, client=client)
            to_slow, beside_slow = _rounds(client, process, dep.url, half)
    for on, off in zip(mirrored, plain, strict=True):
        print(
            f"  mirror: {on['rps']:.0f} vs {off['rps']:.0f} req/s, p50 "
            f"{on['p50'] * 1000:.2f} vs {off['p50'] * 1000:.2f} ms, plane "
            f"{on['plane_us']:.0f} vs {off['plane_us']:.0f} us/request; mirrored "
            f"{on['mirrored']:.0f}, pairs {on['pairs']:.0f}, dropped {on['dropped']:.0f}",
            file=sys.stderr,
        )
    pairs = list(zip(mirrored, plain, strict=True))
    extra_us = Sample.of([on["plane_us"] - off["plane_us"] for on, off in pairs])
    plain_us = Sample.of([r["plane_us"] for r in plain])
    p50_on = Sample.of([r["p50"] for r in mirrored])
    p50_off = Sample.of([r["p50"] for r in plain])
    paired = sum(r["pairs"] for r in mirrored) / max(1.0, sum(r["mirrored"] for r in mirrored))
    added_ms = (p50_on.median - p50_off.median) * 1000
    p50_slow = Sample.of([r["p50"] for r in to_slow])
    p50_beside = Sample.of([r["p50"] for r in beside_slow])
    slow_ms = (p50_slow.median - p50_beside.median) * 1000
    dropped = sum(r["dropped"] for r in to_slow)
    failures = sum(r.get("errors", 0.0) for r in to_slow)
    return [
        Row(
            f"shadow mirroring: plane CPU per mirrored request ({paired:.1%} paired)",
            "us",
            extra_us,
            plain_us,
            "the plane's CPU per request, not mirrored",
            "<= 300 us",
            extra_us.median <= 300,
        ),
        Row(
            f"shadow mirroring: p50 at half load ({half:.0f} req/s), {added_ms:+.2f} ms",
            "ms",
            p50_on,
            p50_off,
            "the endpoint mirroring none",
            "<= +2 ms",
            added_ms <= 2.0,
        ),
        Row(
            f"shadow mirroring to a candidate sleeping 5 s: p50 {slow_ms:+.2f} ms, "
            f"{dropped:.0f} copies dropped, {failures:.0f} live errors",
            "ms",
            p50_slow,
            p50_beside,
            "the endpoint mirroring none",
            "<= +2 ms, 0 errors",
            slow_ms <= 2.0 and failures == 0,
        ),
    ]
