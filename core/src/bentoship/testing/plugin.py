"""The pytest plugin (entry point ``bentoship``): a control plane per session, deployments per
test, and the service's logs in the report of a failed test.

Fixtures: ``bentoship_server`` (session), ``bentoship_server_options`` (session; override it to
pass ``bentoship server`` options), ``bento_deployment`` (per test) and
``module_bento_deployment`` (per module). Disable with ``-p no:bentoship``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .deployments import Deployer
    from .planes import ServerHandle

PLANE_FIXTURES = frozenset({"bentoship_server", "bento_deployment", "module_bento_deployment"})
DEPLOYER_FIXTURES = ("bento_deployment", "module_bento_deployment")
LOG_LINES = 40
DEPLOYMENT_ENV = "BENTOSHIP_TEST_DEPLOYMENT"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bentoship", "bentoship: deploy bentos in tests")
    group.addoption(
        "--bentoship-endpoint",
        default=None,
        metavar="URL",
        help="deploy to this control plane (BentoCloud or a bentoship server) instead of a "
        "local one started for the session (default $BENTO_CLOUD_API_ENDPOINT)",
    )
    group.addoption(
        "--bentoship-token",
        default=None,
        metavar="TOKEN",
        help="the API token of --bentoship-endpoint (default $BENTO_CLOUD_API_KEY)",
    )
    group.addoption(
        "--bentoship-deployment",
        default=None,
        metavar="NAME",
        help="test this deployment of --bentoship-endpoint (its held candidate, if any) "
        "instead of deploying: a pipeline's tests before promotion (default "
        "$BENTOSHIP_TEST_DEPLOYMENT)",
    )
    group.addoption(
        "--bentoship-update-golden",
        action="store_true",
        default=False,
        help="expect_answers rewrites golden files with the answers it gets",
    )
    group.addoption(
        "--bentoship-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a deployment may take to turn ready (default 300)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "bentoship: the test deploys to a bentoship control plane (deselect with "
        "-m 'not bentoship')",
    )
    if config.getoption("bentoship_update_golden"):
        from .expect import set_update_golden

        set_update_golden(True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PLANE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.bentoship)


@pytest.fixture(scope="session")
def bentoship_server_options() -> dict[str, Any]:
    """``bentoship server`` options of the session's local plane, by setting name (such as
    ``{"trace_sample": 1.0}``); override this fixture in a ``conftest.py``."""
    return {}


@pytest.fixture(scope="session")
def bentoship_server(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    bentoship_server_options: dict[str, Any],
) -> Iterator[ServerHandle]:
    """The control plane of the session (of each xdist worker): a local one in a temporary
    data dir, stopped with its services at the end, or the one ``--bentoship-endpoint`` gives."""
    from .planes import control_plane

    with control_plane(
        endpoint=pytestconfig.getoption("bentoship_endpoint"),
        token=pytestconfig.getoption("bentoship_token"),
        options=bentoship_server_options,
        base_dir=tmp_path_factory.mktemp("bentoship-server"),
    ) as plane:
        yield plane


def _deployer(config: pytest.Config, plane: ServerHandle) -> Deployer:
    from .deployments import Deployer

    existing = config.getoption("bentoship_deployment") or os.environ.get(DEPLOYMENT_ENV)
    return Deployer(plane, timeout=config.getoption("bentoship_timeout"), existing=existing)


@pytest.fixture
def bento_deployment(
    pytestconfig: pytest.Config, bentoship_server: ServerHandle
) -> Iterator[Deployer]:
    """``bento_deployment(project_dir_or_tag, name=None, config=None, candidate=False)``
    deploys and waits; what it deployed is deleted after the test, also when it fails."""
    deployer = _deployer(pytestconfig, bentoship_server)
    yield deployer
    deployer.cleanup()


@pytest.fixture(scope="module")
def module_bento_deployment(
    pytestconfig: pytest.Config, bentoship_server: ServerHandle
) -> Iterator[Deployer]:
    """:func:`bento_deployment` for a whole module: deleted after the module's last test."""
    deployer = _deployer(pytestconfig, bentoship_server)
    yield deployer
    deployer.cleanup()


def _deployers_of(item: pytest.Item) -> list[Deployer]:
    values = getattr(item, "funcargs", {})
    return [values[name] for name in DEPLOYER_FIXTURES if name in values]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call":
        from .expect import measured

        for latency in measured:
            report.user_properties.append((f"latency {latency.api}", latency.summary()))
            report.sections.append(("bentoship latency", latency.summary()))
        measured.clear()
    if not report.failed or call.when == "teardown":
        return report
    planes: dict[int, ServerHandle] = {}
    for deployer in _deployers_of(item):
        planes[id(deployer.plane)] = deployer.plane
        for handle in deployer.handles:
            report.sections.append(
                (f"bentoship: last log lines of {handle.name}", handle.log_excerpt(LOG_LINES))
            )
    server = getattr(item, "funcargs", {}).get("bentoship_server")
    if server is not None:
        planes[id(server)] = server
    for plane in planes.values():
        tail = plane.log_tail(LOG_LINES)
        if tail:
            report.sections.append(("bentoship server log", tail))
    return report


def pytest_report_header(config: pytest.Config) -> str | None:
    endpoint = config.getoption("bentoship_endpoint") or os.environ.get("BENTO_CLOUD_API_ENDPOINT")
    return f"bentoship: deploying to {endpoint}" if endpoint else None
