"""Load generator run as its own process: ``python -m bench.load URL SECONDS CONCURRENCY``.

``BENCH_BEARER`` in the environment is sent as ``Authorization: Bearer`` (deployments with
access authorization); ``BENCH_PAYLOAD`` (JSON) replaces the request body; ``BENCH_RATE``
(requests per second) paces the workers to that rate in all, instead of as fast as they go.

Prints one JSON line: requests per second, p50 and p99 latency in seconds, and errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time

import httpx

PAYLOAD = json.loads(os.environ.get("BENCH_PAYLOAD") or '{"text": "load"}')
RATE = float(os.environ.get("BENCH_RATE") or 0)


async def worker(
    client: httpx.AsyncClient,
    url: str,
    until: float,
    latencies: list[float],
    due: float,
    period: float,
) -> int:
    """Post until ``until``; paced (``period`` > 0), at ``due`` and every period after."""
    errors = 0
    while time.perf_counter() < until:
        if period:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due += period
        started = time.perf_counter()
        try:
            response = await client.post(url, json=PAYLOAD)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
        except httpx.HTTPError:
            errors += 1
    return errors


async def main(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    bearer = os.environ.get("BENCH_BEARER")
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(
        limits=limits, timeout=30, trust_env=False, headers=headers
    ) as client:
        await client.post(url, json={"text": "warm"})
        until = time.perf_counter() + seconds
        now, period = time.perf_counter(), concurrency / RATE if RATE else 0.0
        errors = await asyncio.gather(
            *(
                worker(client, url, until, latencies, now + i * period / concurrency, period)
                for i in range(concurrency)
            )
        )
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / seconds,
        "p50": statistics.median(latencies),
        "p99": cuts[98],
        "errors": sum(errors),
    }


if __name__ == "__main__":
    target, duration, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(main(target, duration, workers))))
