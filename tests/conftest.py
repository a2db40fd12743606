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
os.environ["BENTOSHIP_STEP_SPANS"] = "0"  # on in tests/core/test_step_spans.py only
os.environ["BENTOSHIP_HOME"] = str(_SESSION_HOME / "bentoship-home")
os.environ["BENTOSHIP_SECRETS_KEY_FILE"] = str(_SESSION_HOME / "secrets.key")
os.environ["BENTOSHIP_RUNTIME_DIR"] = str(_SESSION_HOME / "runtime")
for _name in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

from bentoship.server import LocalControlPlane  # noqa: E402
from bentoship.testing import ServerHandle  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "bentos"

# Fixtures that start a process, or that exist only for tests that do (``bento_workdir`` holds
# the projects ``bentoml build`` runs on). Checked one by one; ``unused_port`` only binds a
# socket, ``tmp_path``, ``server_env`` and ``monkeypatch`` start nothing.
PROCESS_FIXTURES = frozenset(
    {
        "shared_plane",  # bentoship server, then bentoml serve per revision
        "bentoship_server",  # the plugin's session plane (behind shared_plane too)
        "bento_deployment",  # the plugin's deployments: bentoml serve
        "module_bento_deployment",
        "start_control_plane",  # the same, per test
        "echo_v1",  # bentoml build
        "echo_v2",  # bentoml build
        "crash_bento",  # bentoml build
        "gpu_bento",  # bentoml build
        "busy_bento",  # bentoml build
        "bento_workdir",  # only used to build bentos
        "airflow_db",  # airflow db migrate, in process (tests/airflow/conftest.py)
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
    "core/test_pytest_plugin.py",
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


def build_fixture_bento(
    project: str, workdir: Path, version_text: str | None = None, cache: Path | None = None
) -> str:
    """Build ``tests/fixtures/bentos/<project>``, with an optional version.txt; return its tag.

    With ``cache`` (a folder every xdist worker of the run shares), the plugin's build cache
    builds each project content once: the first worker to need a bento builds and exports it,
    the others import it (same tag, same files).
    """
    from bentoship.steps import build
    from bentoship.testing import BuildCache

    source = workdir / f"{project}-{version_text or 'src'}"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(FIXTURES / project, source, ignore=shutil.ignore_patterns("__pycache__"))
    if version_text is not None:
        (source / "version.txt").write_text(version_text + "\n")
    return BuildCache(cache).build(source) if cache is not None else build(source)


@pytest.fixture(scope="session")
def bento_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built fixture bentos shared by the xdist workers of one run (their base temp's parent)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared / "fixture-bentos"


@pytest.fixture(scope="session")
def bento_workdir() -> Path:
    path = _SESSION_HOME / "projects"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def echo_v1(bento_workdir: Path, bento_cache: Path) -> str:
    return build_fixture_bento("echo", bento_workdir, "v1", bento_cache)


@pytest.fixture(scope="session")
def echo_v2(bento_workdir: Path, bento_cache: Path) -> str:
    return build_fixture_bento("echo", bento_workdir, "v2", bento_cache)


@pytest.fixture(scope="session")
def crash_bento(bento_workdir: Path, bento_cache: Path) -> str:
    return build_fixture_bento("crash", bento_workdir, cache=bento_cache)


@pytest.fixture(scope="session")
def busy_bento(bento_workdir: Path, bento_cache: Path) -> str:
    return build_fixture_bento("busy", bento_workdir, cache=bento_cache)


@pytest.fixture(scope="session")
def gpu_bento(bento_workdir: Path, bento_cache: Path) -> str:
    return build_fixture_bento("gpu", bento_workdir, cache=bento_cache)


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


SHARED_PLANE_OPTIONS = {"readiness_timeout": 60, "rollback_window": 60, "trace_sample": 0.0}


def shared_plane_like(data_dir: Path) -> LocalControlPlane:
    """A control plane (not started) with ``shared_plane``'s settings: no head sampling of
    traces (a test that traces sends a sampled ``traceparent``), so the modules that compare
    the plane's latency figures with their clients' measure the proxy alone."""
    return LocalControlPlane(data_dir, **SHARED_PLANE_OPTIONS)


@pytest.fixture(scope="session")
def bentoship_server_options() -> dict[str, object]:
    """The plugin's session plane (``bentoship_server``, one per xdist worker) has
    ``shared_plane_like``'s settings."""
    return dict(SHARED_PLANE_OPTIONS)


@pytest.fixture(scope="session")
def _worker_plane(bentoship_server: ServerHandle) -> LocalControlPlane:
    """The one control plane of this xdist worker (or session) behind ``shared_plane``."""
    assert bentoship_server.local is not None, "the project's tests need a local plane"
    return bentoship_server.local


@pytest.fixture(scope="module")
def shared_plane(_worker_plane: LocalControlPlane) -> Iterator[LocalControlPlane]:
    """One control plane for a whole test module: a crashing revision fails at its first crash.

    The plane serves every module of the worker, so a module finds the bentos others pushed,
    but no deployment of theirs: the module's own are deleted after it, with their processes.
    """
    from bentoship import Client
    from bentoship.errors import NotFoundError

    connection = _worker_plane.connection
    assert connection is not None
    with Client(connection.endpoint, connection.token) as client:
        assert client.list_deployments() == [], "a module left deployments on the shared plane"
    yield _worker_plane
    with Client(connection.endpoint, connection.token) as client:
        for deployment in client.list_deployments():
            with contextlib.suppress(NotFoundError):
                client.delete_deployment(deployment.name)


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (pgserver) on a unix socket, as a SQLAlchemy URL; stopped at
    the end of the worker's session."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _no_bentoml_process_outlives_the_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """When the session ends, no bentoml process nor process of a replica (one that carries a
    replica marker) runs from its temporary folders: one left over (a worker in a session of
    its own that outlived its arbiter) is killed by its PID and reported on stderr."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    import psutil

    from bentoship.server.rollout.runner import marker_of

    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        tagged = "bentoml" in cmdline or marker_of(proc.pid) is not None
        if tagged and str(proc.info["cwd"] or "").startswith(base):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                print(
                    f"\nkilled a process the tests left: {proc.pid} {cmdline[:120]}",
                    file=sys.stderr,
                )
