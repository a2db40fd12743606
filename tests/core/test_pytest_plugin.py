"""The pytest plugin and ``bentoship.testing``, run as a user would run them: a small project's
own test file, in pytest sessions of their own (pytester, in subprocesses), against a local
plane started by the plugin (under xdist too) and against a plane already running; and a
unittest file run by ``python -m unittest``.

The unit tests at the top check the helpers' logic without starting anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from bentoship import Client
from bentoship.connection import mask_token
from bentoship.errors import ConfigError, SmokeTestFailed
from bentoship.models import Rollout
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready
from bentoship.testing import (
    DeploymentHandle,
    ServerHandle,
    control_plane,
    default_build_cache,
    expect_latency,
    run_pytest,
)
from bentoship.testing import expect as expect_module
from bentoship.testing.builds import project_digest
from bentoship.testing.deployments import Deployer, _name_for
from bentoship.testing.expect import expect_answers, read_cases

pytest_plugins = ["pytester"]

SERVICE = """
import os
import sys

import bentoml


@bentoml.service
class Greeter:
    @bentoml.api
    def greet(self, name: str) -> dict:
        print(f"greeting {name}", file=sys.stderr, flush=True)
        return {"greeting": f"{os.environ.get('GREETING', 'hello')} {name}", "length": len(name)}
"""

USER_INI = "[pytest]\naddopts = -p no:faker -p no:hypothesispytest -p no:schemathesis\n"
"""The user project's pytest config: the pytest plugins that this workspace's own tests bring
(a user's environment has none of them) are not loaded, which saves each session seconds."""

BENTOFILE = 'service: "service:Greeter"\ninclude:\n  - "*.py"\npython:\n  lock_packages: false\n'

USER_TESTS = """
import os
import time
from pathlib import Path

import pytest

from bentoship.testing import expect_answers

HERE = Path(__file__).parent


def test_greets(greeter, bentoship_server):
    assert greeter.client.greet(name="ada") == {"greeting": "hello ada", "length": 3}
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (HERE / f"plane-{worker}.txt").write_text(bentoship_server.endpoint)


def test_golden(greeter):
    expect_answers(greeter, "greet", HERE / "golden.json")


def test_golden_as_written(greeter):
    expect_answers(greeter, "greet", HERE / "golden.json", update=False)


def test_fails_showing_the_service_log(greeter):
    greeter.client.greet(name="marker-7f3a")
    deadline = time.monotonic() + 20
    while not any("marker-7f3a" in line for line in greeter.logs(50)):
        assert time.monotonic() < deadline, "the service's line never reached the plane"
        time.sleep(0.1)
    assert os.environ.get("USER_TEST_FAIL") != "1", "failing on purpose"


def test_interrupted(greeter):
    if os.environ.get("USER_TEST_INTERRUPT") == "1":
        raise KeyboardInterrupt
"""

USER_CONFTEST = """
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def greeter(module_bento_deployment):
    return module_bento_deployment(Path(__file__).parent / "greeter")
"""

SECOND_USER_TESTS = """
import os
from pathlib import Path


def test_greets_too(greeter, bentoship_server):
    assert greeter.call("greet", {"name": "cy"})["greeting"] == "hello cy"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(__file__).with_name(f"plane-{worker}.txt").write_text(bentoship_server.endpoint)
"""

UNITTEST_FILE = """
import unittest
from pathlib import Path

from bentoship.testing import local_deployment


class GreeterTest(unittest.TestCase):
    def test_greets(self):
        with local_deployment(Path(__file__).parent / "greeter") as greeter:
            self.assertEqual(greeter.call("greet", {"name": "bo"})["greeting"], "hello bo")
            self.assertEqual(len(greeter.api.list_deployments()), 1)
            Path(__file__).with_name("plane.txt").write_text(greeter.plane.endpoint)


if __name__ == "__main__":
    unittest.main()
"""

GOLDEN = [
    {"name": "ada", "input": {"name": "ada"}, "output": {"greeting": "hello ada", "length": 3}},
    {"name": "changed", "input": {"name": "bo"}, "output": {"greeting": "hi bo", "length": 2}},
]


def user_project(root: Path) -> Path:
    project = root / "greeter"
    project.mkdir(parents=True)
    (project / "service.py").write_text(SERVICE)
    (project / "bentofile.yaml").write_text(BENTOFILE)
    (root / "conftest.py").write_text(USER_CONFTEST)
    (root / "test_greeter.py").write_text(USER_TESTS)
    (root / "test_second.py").write_text(SECOND_USER_TESTS)
    (root / "golden.json").write_text(json.dumps(GOLDEN))
    (root / "pytest.ini").write_text(USER_INI)
    return project


def processes_under(folder: Path) -> list[str]:
    """Processes (other than this one and its parents) whose command line or working directory
    lies under ``folder``."""
    me = psutil.Process()
    ours = {me.pid, *(parent.pid for parent in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if proc.info["pid"] in ours:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmdline or str(proc.info["cwd"] or "").startswith(str(folder)):
            found.append(f"{proc.info['pid']} {cmdline[:160]}")
    return found


class FakeHandle(DeploymentHandle):
    """A handle whose service is a function (unit tests of the assertions)."""

    def __init__(self, answer: Any) -> None:
        self.rollout = Rollout("svc", "svc:v1", "r1", "http://127.0.0.1:9")
        self.answer = answer

    def call(self, api: str, payload: Mapping[str, Any]) -> Any:
        return self.answer(payload)

    def log_excerpt(self, lines: int = 20) -> str:
        return "\nlast 1 log lines of svc:\nboom in svc"


def greet(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"greeting": f"hello {payload['name']}", "length": len(payload["name"])}


def test_expect_answers_names_each_wrong_case_with_the_log_and_the_update_hint(
    tmp_path: Path,
) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps(GOLDEN))
    with pytest.raises(AssertionError) as failed:
        expect_answers(FakeHandle(greet), "greet", golden)
    message = str(failed.value)
    assert "1 of 2 answers of svc/greet differ" in message
    assert "case 1 (changed): expected" in message and '"hello bo"' in message
    assert "case 0" not in message
    assert "--bentoship-update-golden" in message and "boom in svc" in message


def test_expect_answers_update_rewrites_outputs_and_keeps_inputs_and_names(
    tmp_path: Path,
) -> None:
    golden = tmp_path / "golden.yaml"
    golden.write_text("- name: bo\n  input: {name: bo}\n  output: stale\n- input: {name: cy}\n")
    expect_answers(FakeHandle(greet), "greet", golden, update=True)
    assert read_cases(golden) == [
        {"name": "bo", "input": {"name": "bo"}, "output": greet({"name": "bo"})},
        {"input": {"name": "cy"}, "output": greet({"name": "cy"})},
    ]
    expect_answers(FakeHandle(greet), "greet", golden)
    with pytest.raises(ConfigError, match="needs a file"):
        expect_answers(FakeHandle(greet), "greet", [{"input": {"name": "x"}}], update=True)


def test_expect_answers_compares_numbers_within_the_tolerance_and_obeys_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [{"input": {"name": "x"}, "output": {"score": 0.5}}]
    expect_answers(FakeHandle(lambda _: {"score": 0.5000001}), "s", cases, tolerance=1e-3)
    with pytest.raises(AssertionError, match="case 0"):
        expect_answers(FakeHandle(lambda _: {"score": 0.51}), "s", cases, tolerance=1e-3)
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps(cases))
    monkeypatch.setattr(expect_module, "_update_golden", True)
    expect_answers(FakeHandle(lambda _: {"score": 0.7}), "s", golden)
    assert read_cases(golden)[0]["output"] == {"score": 0.7}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"input": {}}', "expected a list"),
        ('[{"output": 1}]', "[0].input"),
        ('[{"input": [1]}]', "[0].input"),
    ],
)
def test_bad_golden_files_get_one_line_naming_where(
    tmp_path: Path, text: str, problem: str
) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text(text)
    with pytest.raises(ConfigError) as bad:
        read_cases(golden)
    assert problem in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(ConfigError, match=r"\.json, \.yaml or \.yml"):
        read_cases(golden.rename(tmp_path / "golden.txt"))


def test_expect_latency_reports_percentiles_and_fails_above_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    durations = iter([1.0] * 3 + [10.0] * 98 + [500.0, 900.0])
    now = [0.0]

    def perf_counter() -> float:
        return now[0]

    def answer(_: Any) -> str:
        now[0] += next(durations) / 1000
        return "ok"

    monkeypatch.setattr(expect_module.time, "perf_counter", perf_counter)
    expect_module.measured.clear()
    with pytest.raises(AssertionError) as slow:
        expect_latency(FakeHandle(answer), "greet", {}, p99_ms=100, n=100)
    assert "p99 latency above 100 ms" in str(slow.value) and "boom in svc" in str(slow.value)
    report = expect_module.measured.pop()
    assert report.n == 100 and report.max_ms == pytest.approx(900.0)
    assert report.p50_ms == pytest.approx(10.0)
    assert report.p99_ms == pytest.approx(500.0 + (900.0 - 500.0) * 0.01)


def test_test_planes_refuse_bad_options_and_a_plane_without_token_before_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BENTO_CLOUD_API_ENDPOINT", raising=False)
    for options, problem in [
        ({"port": 8000}, "chosen by the test plane"),
        ({"trace_sampel": 1.0}, "no server option trace_sampel; the options are:"),
    ]:
        with pytest.raises(ConfigError, match=problem), control_plane(options=options):
            pass
    with (
        pytest.raises(ConfigError, match="needs its API token"),
        control_plane(endpoint="http://127.0.0.1:9"),
    ):
        pass
    with control_plane(endpoint="http://127.0.0.1:9/", token="secret-token-1234") as given:
        assert given == ServerHandle("http://127.0.0.1:9", "secret-token-1234")
        assert "secret-token-1234" not in repr(given)


def test_deployment_names_and_candidates_without_a_name(tmp_path: Path) -> None:
    from bentoship.server.deploy_config import NAME_PATTERN

    names = {_name_for(tag) for tag in ("Greeter:v1", "my_svc.x:abc", "a" * 80 + ":1")}
    assert len(names) == 3 and all(NAME_PATTERN.match(name) for name in names)
    deployer = Deployer(ServerHandle("http://127.0.0.1:9", "t"))
    with pytest.raises(ConfigError, match="pass the name"):
        deployer(tmp_path, candidate=True)


class RecordingApi:
    """The calls a deployer's cleanup makes (a unit test: nothing runs)."""

    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.calls: list[str] = []

    def get_deployment(self, name: str) -> Any:
        return type("Found", (), {"candidate_revision": "r2" if name in self.held else None})

    def discard(self, name: str) -> None:
        self.calls.append(f"discard {name}")

    def delete_deployment(self, name: str) -> None:
        from bentoship.errors import NotFoundError

        self.calls.append(f"delete {name}")
        if name == "gone":
            raise NotFoundError("deployment 'gone' not found")

    def close(self) -> None:
        self.calls.append("close")


def test_cleanup_deletes_what_it_created_newest_first_and_discards_only_held_candidates() -> None:
    deployer = Deployer(ServerHandle("http://127.0.0.1:9", "t"))
    api = RecordingApi(held={"theirs"})
    deployer._api = api  # type: ignore[assignment]
    deployer._created += ["first", "gone", "last"]
    deployer._held += ["theirs", "promoted-since"]
    deployer.cleanup()
    assert api.calls == ["discard theirs", "delete last", "delete gone", "delete first", "close"]
    assert deployer._created == [] and deployer._held == [] and deployer._api is None


def test_project_digest_follows_the_files_and_ignores_caches_and_hidden_folders(
    tmp_path: Path,
) -> None:
    project = tmp_path / "p"
    (project / "__pycache__").mkdir(parents=True)
    (project / "service.py").write_text("A = 1\n")
    first = project_digest(project)
    (project / "__pycache__" / "service.cpython-311.pyc").write_bytes(b"x")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref")
    assert project_digest(project) == first
    (project / "service.py").write_text("A = 2\n")
    assert project_digest(project) != first


def test_the_docs_name_every_option_and_fixture_of_the_plugin(
    pytestconfig: pytest.Config,
) -> None:
    from bentoship.testing import plugin

    docs = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    group = pytestconfig._parser.getgroup("bentoship")
    flags = [name for option in group.options for name in option.names()]
    assert len(flags) == 5 and all(f"`{flag}" in docs for flag in flags), flags
    fixtures = [name for name in vars(plugin) if name.startswith(("bento_", "module_bento_"))]
    fixtures += ["bentoship_server", "bentoship_server_options"]
    assert all(f"`{name}`" in docs for name in fixtures), fixtures


@pytest.mark.slow
def test_a_user_file_under_xdist_gets_a_plane_per_worker_and_logs_in_failures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_project(pytester.path)
    monkeypatch.setenv("USER_TEST_FAIL", "1")
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", timeout=600
    )
    result.assert_outcomes(passed=3, failed=3)
    output = result.stdout.str()
    assert "1 of 2 answers of test-greeter-" in output and "case 1 (changed)" in output
    assert "--bentoship-update-golden" in output
    assert "bentoship: last log lines of test-greeter-" in output
    assert "greeting marker-7f3a" in output
    planes = {path.read_text() for path in pytester.path.glob("plane-gw*.txt")}
    assert len(planes) == 2, planes
    assert processes_under(pytester.path) == []


@pytest.mark.slow
def test_against_a_running_plane_update_golden_and_an_interrupt_leave_its_deployments(
    pytester: pytest.Pytester,
    shared_plane: LocalControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = shared_plane.connection
    assert connection is not None
    project = user_project(pytester.path)
    monkeypatch.setenv("USER_TEST_INTERRUPT", "1")
    with Client(connection.endpoint, connection.token) as client:
        greeter = push(default_build_cache().build(project), client=client)
        kept = deploy("keep-me", greeter, client=client)
        wait_until_ready(kept, client=client, timeout=120)
        result = pytester.runpytest_subprocess(
            "--bentoship-endpoint",
            connection.endpoint,
            "--bentoship-token",
            connection.token,
            "--bentoship-update-golden",
            "-p",
            "no:cacheprovider",
            timeout=600,
        )
        assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
        assert f"bentoship: deploying to {connection.endpoint}" in result.stdout.str()
        result.assert_outcomes(passed=4)
        written = json.loads((pytester.path / "golden.json").read_text())
        assert [case["output"] for case in written] == [
            {"greeting": "hello ada", "length": 3},
            {"greeting": "hello bo", "length": 2},
        ]
        assert [d.name for d in client.list_deployments()] == ["keep-me"]
        after = client.get_deployment("keep-me")
        assert after.serving_revision == kept.revision and after.candidate_revision is None

        monkeypatch.setenv("USER_TEST_FAIL", "1")
        monkeypatch.setenv("CI", "1")  # pytest then prints os.environ, token included, in full
        tests = ["test_greeter.py::test_fails_showing_the_service_log", "test_second.py"]
        with pytest.raises(SmokeTestFailed) as failed:
            run_pytest(kept, [*tests, "-p", "no:cacheprovider"], client=client)
        message = str(failed.value)
        assert "against keep-me failed (1 failed, 1 passed" in message, message
        assert "greeting marker-7f3a" in message and connection.token not in message
        assert f"'BENTO_CLOUD_API_KEY': '{mask_token(connection.token)}'" in message
        assert [d.name for d in client.list_deployments()] == ["keep-me"]
    assert processes_under(pytester.path) == []


@pytest.mark.slow
def test_a_unittest_file_deploys_on_a_local_plane_and_leaves_nothing(tmp_path: Path) -> None:
    user_project(tmp_path)
    (tmp_path / "test_unit.py").write_text(UNITTEST_FILE)
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTO_CLOUD_API_")}
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "test_unit"],
        cwd=tmp_path,
        env={**env, "TMPDIR": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Ran 1 test" in done.stderr and "OK" in done.stderr
    assert (tmp_path / "plane.txt").read_text().startswith("http://127.0.0.1:")
    assert list((tmp_path / "tmp").glob("bentoship-plane-*")) == []
    assert processes_under(tmp_path) == []
