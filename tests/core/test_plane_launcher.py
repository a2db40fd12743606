"""A local control plane started by ``LocalControlPlane`` stops when the program that started
it dies, by SIGKILL or by a SIGTERM it does not handle (as pytest's default), so that no killed
test run or script leaves a server behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

LAUNCHER = """
import sys, time
from pathlib import Path
from bentoship.server import LocalControlPlane

plane = LocalControlPlane(Path(sys.argv[1]))
plane.start()
print(plane.process.pid, flush=True)
time.sleep(600)
"""


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_plane_stops_when_the_program_that_started_it_is_killed(
    tmp_path: Path, sig: signal.Signals
) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "plane")],
        stdout=subprocess.PIPE,
        text=True,
    )
    plane_pid = 0
    try:
        assert launcher.stdout is not None
        plane_pid = int(launcher.stdout.readline())
        assert not gone(plane_pid)
        launcher.send_signal(sig)
        launcher.wait(30)
        deadline = time.monotonic() + 30
        while not gone(plane_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(plane_pid), "the plane outlived the program that started it"
        log = (tmp_path / "plane" / "server.log").read_text()
        assert f"the process that started this server (pid {launcher.pid}) has exited" in log
    finally:
        launcher.kill()
        launcher.wait()
        if plane_pid and not gone(plane_pid):
            psutil.Process(plane_pid).kill()


ANNOUNCER = """
import sys
from bentoship.server.main import announce

sys.stdin.readline()
announce("bentoship server ready at http://127.0.0.1:1")
announce("export BENTOSHIP_HOME=/x")
print("still running", file=sys.stderr, flush=True)
"""


@pytest.mark.slow
def test_the_ready_lines_cost_nothing_once_the_launcher_stopped_reading() -> None:
    """A launcher killed right after the ready line closes the pipe the server prints to: the
    server goes on (and then stops because its parent died), it does not crash on the pipe."""
    child = subprocess.Popen(
        [sys.executable, "-c", ANNOUNCER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None and child.stderr is not None
    child.stdout.close()
    child.stdin.write("go\n")
    child.stdin.close()
    err = child.stderr.read()
    assert child.wait(60) == 0, err
    assert "still running" in err and "BrokenPipeError" not in err
