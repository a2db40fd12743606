"""Waiting at scale: CPU seconds per minute of waiting, 50 deferrable waits against 50 threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push

from .common import RUNS, Row, Sample, build_fixture

WAITERS = 50
WINDOW = 15.0

WAITER = """
import asyncio, json, resource, sys, threading, time
mode, endpoint, token, name, window, count = sys.argv[1:7]
window, count = float(window), int(count)
from bentoship import Client, Rollout
from bentoship.errors import DeploymentFailed
from bentoship.steps import wait_until_ready
from bentoship_airflow.triggers.bento import BentoDeploymentTrigger
import os
os.environ["AIRFLOW_CONN_BENTOCLOUD_DEFAULT"] = json.dumps(
    {"conn_type": "bentocloud", "host": endpoint, "password": token})
start = resource.getrusage(resource.RUSAGE_SELF)
if mode == "trigger":
    async def one():
        trigger = BentoDeploymentTrigger(name, timeout=window, poll_interval=5.0)
        return [event async for event in trigger.run()]
    async def every():
        await asyncio.gather(*(one() for _ in range(count)))
    asyncio.run(every())
else:
    def one():
        with Client(endpoint, token) as client:
            try:
                wait_until_ready(name, client=client, timeout=window, poll_interval=5.0)
            except DeploymentFailed:
                pass
    threads = [threading.Thread(target=one) for _ in range(count)]
    [t.start() for t in threads]
    [t.join() for t in threads]
end = resource.getrusage(resource.RUSAGE_SELF)
cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
print(json.dumps({"cpu_per_minute": cpu * 60.0 / window}))
"""


def cpu_per_minute(mode: str, endpoint: str, token: str, name: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", WAITER, mode, endpoint, token, name, str(WINDOW), str(WAITERS)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(result.stdout.strip().splitlines()[-1])["cpu_per_minute"])


def run(workdir: Path) -> list[Row]:
    tag = build_fixture("slow", workdir)
    with LocalControlPlane(workdir / "wait-plane", readiness_timeout=3600) as plane:
        assert plane.connection is not None
        with Client(plane.endpoint, plane.connection.token) as client:
            push(tag, client=client)
            deploy("slow", tag, {"envs": {"SLOW_SECONDS": "3600"}}, client=client)
        triggers, threads = [], []
        for _ in range(RUNS):
            triggers.append(
                cpu_per_minute("trigger", plane.endpoint, plane.connection.token, "slow")
            )
            threads.append(
                cpu_per_minute("threads", plane.endpoint, plane.connection.token, "slow")
            )
    figure, baseline = Sample.of(triggers), Sample.of(threads)
    return [
        Row(
            f"waiting: {WAITERS} waits, CPU s/min",
            "s",
            figure,
            baseline,
            f"{WAITERS} sync waits in threads",
            "(reported)",
            figure.median <= baseline.median,
        ),
    ]
