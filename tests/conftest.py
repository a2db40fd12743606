"""Fixtures shared by every test folder: a private BENTOML_HOME, built bentos, control planes."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

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
    """One control plane for a whole test module (short readiness deadline and rollback window)."""
    plane = LocalControlPlane(
        tmp_path_factory.mktemp("shared-plane"), readiness_timeout=30, rollback_window=60
    )
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def unused_port() -> int:
    from bentoship.server.runner import free_port

    return free_port()
