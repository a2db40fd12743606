"""Every process of a replica carries its marker, so none outlives the replica: not even a
worker in a session of its own whose arbiter was killed (reparented, no longer its child)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bentoship.server.rollout import runner

ARBITER = ["sh", "-c", "setsid sleep 300 & wait", "sh"]
"""Stands in for ``bentoml serve``: a worker in a session of its own (the arguments are ignored)."""


def marked(marker: str) -> list[int]:
    return runner.marked_processes(marker).get(marker, [])


@pytest.mark.slow
def test_a_worker_orphaned_by_its_killed_arbiter_is_killed_by_its_marker_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "bentoml_command", lambda: ARBITER)
    neighbour = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, runner.REPLICA_MARKER: runner.new_marker()}
    )

    async def kill_the_arbiter_then_stop() -> tuple[int, str]:
        proc = await runner.start_serve(
            revision="orphans",
            bento_tag="echo:v1",
            bentoml_home=tmp_path,
            log_path=tmp_path / "serve.log",
            envs={},
        )
        try:
            deadline = time.monotonic() + 10
            arbiter_session = os.getsid(proc.process.pid)
            while True:
                others = set(marked(proc.marker)) - {proc.process.pid}
                # the forked shell is in the arbiter's session until setsid runs in it
                if len(others) == 1 and os.getsid(next(iter(others))) != arbiter_session:
                    break
                assert time.monotonic() < deadline, "the worker did not start a session"
                await asyncio.sleep(0.02)
            (worker,) = others
            os.kill(proc.process.pid, signal.SIGKILL)
            await proc.process.wait()
            assert marked(proc.marker) == [worker], "the orphan should outlive its arbiter"
        finally:
            await proc.stop()
        return worker, proc.marker

    try:
        worker, marker = asyncio.run(kill_the_arbiter_then_stop())
        assert marked(marker) == []
        assert runner.marker_of(worker) is None
        assert neighbour.poll() is None, "a process of another replica was killed"
    finally:
        neighbour.kill()
        neighbour.wait()
