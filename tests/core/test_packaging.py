"""What ``pip install bentoship`` and its extras give, each in a fresh venv.

The venvs are made with the uv that ``make install`` bootstraps into ``.uv/``, from its cache,
with every version pinned to ``uv.lock``: each install takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bentoship import Client
from bentoship.connection import read_connection
from bentoship.server import LocalControlPlane
from bentoship.steps import push

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".uv" / "bin" / "uv"
CORE = ROOT / "core"
ECHO = ROOT / "tests" / "fixtures" / "bentos" / "echo"
NOT_IN_PLAIN_INSTALL = ("bentoml", "starlette", "uvicorn", "aiohttp", "uvloop")
READY_PREFIX = "bentoship server ready at "

# Runs in the venv of plain `pip install bentoship`: argv is endpoint, token, v1 tag, v2 tag and
# the modules that must not be installed.
SHIP_WITH_CLIENT_ONLY = """
import importlib.util
import sys

endpoint, token, v1, v2, absent = sys.argv[1:6]
installed = [name for name in absent.split(",") if importlib.util.find_spec(name) is not None]
assert not installed, f"pip install bentoship installed {installed}"

import bentoship
import bentoship.client
import bentoship.steps
from bentoship import Client, MissingExtraError
from bentoship.steps import SmokeTest, build, deploy, rollback, smoke_test, wait_until_ready


def answers(version):
    return SmokeTest(api="echo", payload={"text": "x"}, expected={"text": "x", "version": version})


with Client(endpoint, token) as client:
    first = deploy("light", v1, client=client)
    wait_until_ready(first, client=client, timeout=120, poll_interval=0.5)
    smoke_test(first, answers("v1"), client=client)
    second = deploy("light", v2, client=client)
    wait_until_ready(second, client=client, timeout=120, poll_interval=0.5)
    smoke_test(second, answers("v2"), client=client)
    rollback(second, client=client, timeout=120)
    smoke_test("light", answers("v1"), client=client)
    assert client.get_deployment("light").bento == v1

try:
    build(".")
except MissingExtraError as exc:
    assert "pip install 'bentoship[build]'" in str(exc), exc
else:
    raise AssertionError("the build step ran without bentoml")
assert not [name for name in absent.split(",") if name in sys.modules]
"""

# Runs in the venv of `pip install bentoship[build]`: argv is project, endpoint, token and the
# file to write the tag to (bentoml's push prints its progress on stdout).
BUILD_AND_PUSH = """
import sys
from pathlib import Path

from bentoship import Client
from bentoship.steps import build, push

project, endpoint, token, output = sys.argv[1:5]
tag = build(project)
with Client(endpoint, token) as client:
    assert push(tag, client=client) == tag
Path(output).write_text(tag)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point a child at the workspace venv."""
    hidden = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX")
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def run(
    *command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok:
        assert result.returncode == 0, (
            f"{' '.join(map(str, command))} exited {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The versions in uv.lock, so each venv installs what the tests use, from uv's cache."""
    assert UV.is_file(), f"{UV} is missing: `make install` bootstraps uv into .uv/"
    path = tmp_path_factory.mktemp("packaging") / "constraints.txt"
    options = ["--frozen", "--quiet", "--all-packages", "--all-extras", "--no-hashes"]
    options += ["--no-emit-workspace", "--no-header", "--no-annotate"]
    run(UV, "export", *options, "--output-file", path)
    return path


def fresh_venv(where: Path, extras: str, constraints: Path) -> Path:
    """``pip install ./core[extras]`` into a new venv; return its python."""
    run(UV, "venv", "--quiet", "--python", sys.executable, where)
    python = where / "bin" / "python"
    install = [UV, "pip", "install", "--quiet", "--python", python, "--constraints", constraints]
    run(*install, f"bentoship{extras} @ {CORE.as_uri()}")
    return python


def test_plain_install_deploys_waits_smoke_tests_and_rolls_back(
    shared_plane: LocalControlPlane,
    echo_v1: str,
    echo_v2: str,
    constraints: Path,
    tmp_path: Path,
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    with Client(endpoint, token) as client:
        for tag in (echo_v1, echo_v2):
            push(tag, client=client)

    python = fresh_venv(tmp_path / "venv", "", constraints)
    script = tmp_path / "ship.py"
    script.write_text(SHIP_WITH_CLIENT_ONLY)
    absent = ",".join(NOT_IN_PLAIN_INSTALL)
    run(python, "-I", script, endpoint, token, echo_v1, echo_v2, absent, cwd=tmp_path)

    server = run(python.with_name("bentoship"), "server", "--data-dir", tmp_path / "data", ok=False)
    assert server.returncode == 2
    assert server.stderr.splitlines() == [
        "bentoship: error: bentoship server needs bentoship's 'server' extra: "
        "pip install 'bentoship[server]'"
    ]


def test_build_extra_builds_and_pushes(
    shared_plane: LocalControlPlane, constraints: Path, tmp_path: Path
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    python = fresh_venv(tmp_path / "venv", "[build]", constraints)
    script = tmp_path / "build_and_push.py"
    script.write_text(BUILD_AND_PUSH)
    env = clean_env(BENTOML_HOME=str(tmp_path / "bentoml"), BENTOML_DO_NOT_TRACK="true")
    output = tmp_path / "tag.txt"
    run(python, "-I", script, ECHO, endpoint, token, output, cwd=tmp_path, env=env)
    tag = output.read_text()
    assert tag.startswith("echo:")
    with Client(endpoint, token) as client:
        assert client.bento_uploaded(tag)


def test_server_extra_runs_the_control_plane(constraints: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv", "[server]", constraints)
    data_dir = tmp_path / "data"
    command = [str(python.with_name("bentoship")), "server", "--host", "127.0.0.1", "--port", "0"]
    command += ["--data-dir", str(data_dir)]
    env = clean_env(BENTOML_DO_NOT_TRACK="true")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            if select.select([server.stdout], [], [], 0.5)[0]:
                lines.append(server.stdout.readline())
                if lines[-1].startswith(READY_PREFIX):
                    break
        assert lines and lines[-1].startswith(READY_PREFIX), (
            f"no ready line; stdout {lines}, log {(tmp_path / 'server.log').read_text()[-3000:]}"
        )
        connection = read_connection(data_dir)
        with Client(connection.endpoint, connection.token) as client:
            assert client.list_deployments() == []
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGKILL)
                server.wait()
        if server.stdout is not None:
            server.stdout.close()
        log.close()
    assert server.returncode == 0
