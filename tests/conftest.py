"""Fixtures shared by every test folder: a private BENTOML_HOME, built bentos, control planes.

Tiers: a test that starts a process (a control plane, ``bentoml build``/``serve``, kfp.local
tasks, ``airflow db migrate``, any subprocess) is marked ``slow``, here from the fixtures it
uses or explicitly with ``@pytest.mark.slow``. ``pytest -m "not slow"`` runs the rest, and a
test in that tier that starts a process anyway fails, naming the command.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_RUN_STARTED = time.time()
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="bentoship-tests-"))
atexit.register(shutil.rmtree, _SESSION_HOME, True)
os.environ["BENTOML_HOME"] = str(_SESSION_HOME / "bentoml")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["BENTOSHIP_HOME"] = str(_SESSION_HOME / "bentoship-home")
for _name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

from bentoship.server import LocalControlPlane  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "bentos"

# Fixtures that start a process, or that exist only for tests that do (``bento_workdir`` holds
# the projects ``bentoml build`` runs on). Checked one by one; ``unused_port`` only binds a
# socket, ``tmp_path``, ``server_env`` and ``monkeypatch`` start nothing.
PROCESS_FIXTURES = frozenset(
    {
        "shared_plane",  # bentoship server, then bentoml serve per revision
        "start_control_plane",  # the same, per test
        "echo_v1",  # bentoml build
        "echo_v2",  # bentoml build
        "crash_bento",  # bentoml build
        "bento_workdir",  # only used to build bentos
        "airflow_db",  # airflow db migrate (tests/airflow/conftest.py)
        "bentocloud_connection",  # shared_plane (tests/airflow/conftest.py)
        "kfp_local",  # kfp.local's SubprocessRunner (tests/kfp/conftest.py)
    }
)
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.fork", "os.exec"}
)


# The longest modules, started first so that the workers of `make test` (xdist, one module per
# worker at a time) finish together instead of waiting on one long module at the end. `make test`
# passes --no-loadscope-reorder: xdist would otherwise start the modules with the most tests
# first, which are the quick unit modules, and leave these for the end.
LONGEST_FIRST = (
    "airflow/test_dags.py",
    "kfp/test_example_pipeline.py",
    "drills/test_drills.py",
    "kfp/test_shipped_components.py",
    "core/test_server_rollouts.py",
    "core/test_verified_rollouts.py",
    "core/test_steps.py",
    "flyte/test_example_workflow.py",
    "flyte/test_connector.py",
    "core/test_server_bentoml_sdk.py",
    "airflow/test_operators.py",
    "flyte/test_tasks.py",
)


def _start_rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, tail in enumerate(LONGEST_FIRST) if path.endswith(tail)), 99)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test whose fixtures (their whole closure) start a process."""
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_rank)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where this run's console screenshots are; under ``make test``, how long the whole target
    (lint included) has taken."""
    from tests.core.browser import SCREENSHOTS

    shots = [p for p in SCREENSHOTS.glob("*.png") if p.stat().st_mtime >= _RUN_STARTED]
    if shots:
        terminalreporter.write_line(f"console screenshots ({len(shots)}): {SCREENSHOTS}")
    started = os.environ.get("BENTOSHIP_TEST_STARTED", "")
    if started.isdigit():
        elapsed = int(time.time()) - int(started)
        terminalreporter.write_line(f"make test: {elapsed // 60} min {elapsed % 60} s in all")


class _ProcessWatch:
    """Records the processes started while a test of the fast tier runs (an audit hook)."""

    started: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        if cls.started is not None and event in PROCESS_EVENTS:
            cls.started.append(f"{event}: {' '.join(map(repr, args[:2]))[:300]}")


sys.addaudithook(_ProcessWatch.hook)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []
    _ProcessWatch.started = started
    try:
        yield
    finally:
        _ProcessWatch.started = None
    assert not started, f"a test not marked slow started a process: {started}"


def build_fixture_bento(project: str, workdir: Path, version_text: str | None = None) -> str:
    """Build ``tests/fixtures/bentos/<project>``, with an optional version.txt; return its tag."""
    import bentoml

    source = workdir / f"{project}-{version_text or 'src'}"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(FIXTURES / project, source)
    if version_text is not None:
        (source / "version.txt").write_text(version_text + "\n")
    with contextlib.chdir(source):
        bento = bentoml.bentos.build_bentofile(build_ctx=str(source))
    return str(bento.tag)


@pytest.fixture(scope="session")
def bento_workdir() -> Path:
    path = _SESSION_HOME / "projects"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def echo_v1(bento_workdir: Path) -> str:
    return build_fixture_bento("echo", bento_workdir, "v1")


@pytest.fixture(scope="session")
def echo_v2(bento_workdir: Path) -> str:
    return build_fixture_bento("echo", bento_workdir, "v2")


@pytest.fixture(scope="session")
def crash_bento(bento_workdir: Path) -> str:
    return build_fixture_bento("crash", bento_workdir)


@pytest.fixture
def start_control_plane(tmp_path: Path) -> Iterator[Callable[..., LocalControlPlane]]:
    """Start control planes on free loopback ports; every one is stopped after the test."""
    started: list[LocalControlPlane] = []

    def start(data_dir: Path | None = None, **options: object) -> LocalControlPlane:
        plane = LocalControlPlane(data_dir or tmp_path / f"plane{len(started)}", **options)  # type: ignore[arg-type]
        started.append(plane)
        plane.start()
        return plane

    yield start
    for plane in reversed(started):
        plane.stop()


@pytest.fixture(scope="module")
def shared_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """One control plane for a whole test module: a crashing revision fails at its first crash."""
    plane = LocalControlPlane(
        tmp_path_factory.mktemp("shared-plane"),
        readiness_timeout=60,
        rollback_window=60,
    )
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
