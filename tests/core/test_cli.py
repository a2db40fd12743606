"""The ``bentoship`` CLI: output and exit codes 0 (worked), 1 (failed) and 2 (bad usage).

``bentoship.cli.main(argv)`` runs in-process; one test runs the console script itself. The
unit tests answer from httpx.MockTransport or point at a port nothing listens on; the whole
deploy/wait/status/revisions/logs/rollback scenario on a real control plane is in
``test_docs_walk``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import bentoml
import httpx
import pytest
from starlette.testclient import TestClient

import bentoship.client
from bentoship import RetryPolicy
from bentoship.cli import main
from bentoship.connection import Connection, write_connection
from bentoship.server import LocalControlPlane, ServerSettings
from bentoship.server.app import build_app
from bentoship.server.registry.service import Registry
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.phases import RevisionPhase
from bentoship.server.store import Store
from bentoship.steps import push

from .records import deployment_record, revision_record
from .test_body_rules import bento as bento_artifact
from .test_steps import client_for
from .transports import Answer, FakeServer, deployment_json, error

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bentos"
TOKEN = "cli-token-0123456789abcdef"
ENDPOINT = "http://control-plane.test"
SERVER = ["--endpoint", ENDPOINT, "--token", TOKEN]

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``cli(*argv)`` runs ``main`` in-process: (exit code, its stdout, its stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop what was printed before, e.g. by bentoml's push
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Answer], FakeServer]]:
    """``fake_server(answer)``: the CLI's clients talk to a MockTransport answering ``answer``."""
    real = bentoship.client.Client

    def use(answer: Answer) -> FakeServer:
        server = FakeServer(answer)

        class Faked(real):  # type: ignore[valid-type,misc]
            def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
                super().__init__(
                    endpoint,
                    token,
                    retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002),
                    transport=server.transport(),
                )

        monkeypatch.setattr(bentoship.client, "Client", Faked)
        return server

    yield use


def revision_json(uid: str, name: str, bento: str, phase: str, serving: bool) -> dict[str, object]:
    """A revision as the server renders it (schemas.revision with the bentoship extension)."""
    repository, version = bento.split(":")
    target = {
        "name": "main",
        "config": {},
        "bento": {"name": version, "repository": {"name": repository}},
    }
    return {
        "uid": uid,
        "name": name,
        "status": "active" if serving else "inactive",
        "created_at": "2025-01-01T00:00:00Z",
        "targets": [target],
        "bentoship": {
            "phase": phase,
            "serving": serving,
            "warm": serving,
            "reason": "",
            "bento": bento,
        },
    }


# usage errors: exit 2, and no request is made


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["status", "--bogus"],
        ["wait", "svc", "--timeout", "0"],
        ["deploy", "svc", "echo:v1", "--env", "NO_EQUALS_SIGN"],
        ["ship", "svc", "echo:v1", "--smoke-payload", "{not json"],
        ["server", "--gpus", "0,-1"],
        ["server", "--gpus", ","],
        ["frobnicate"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2, argv
        assert "usage: bentoship" in capsys.readouterr().err, argv


def test_bad_tag_exits_2_before_any_request(cli: Run, unused_port: int) -> None:
    # nothing listens there: a request would fail with exit code 1, not 2
    nowhere = ["--endpoint", f"http://127.0.0.1:{unused_port}", "--token", TOKEN]
    code, out, err = cli("deploy", "svc", "not a tag", *nowhere)
    assert (code, out) == (2, "")
    assert err.startswith("bentoship: error: ") and "not a bento tag" in err
    assert err.count("\n") == 1


def test_bad_config_exits_2_before_any_request(cli: Run, unused_port: int) -> None:
    nowhere = ["--endpoint", f"http://127.0.0.1:{unused_port}", "--token", TOKEN]
    code, _, err = cli(
        "deploy", "svc", "echo:v1", "--min-replicas", "3", "--max-replicas", "1", *nowhere
    )
    assert code == 2 and "min_replicas" in err and err.count("\n") == 1


def test_missing_connection_exits_2_and_says_what_to_set(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    code, _, err = cli("status")
    assert code == 2 and "bentoship server" in err and err.count("\n") == 1
    for way in ("BENTOSHIP_HOME", "--endpoint", "--token", "BENTO_CLOUD_API_ENDPOINT"):
        assert way in err
    code, _, err = cli("status", "--endpoint", ENDPOINT)
    assert code == 2 and "BENTO_CLOUD_API_KEY" in err


# failures: exit 1, one line, never the token


def test_unreachable_server_exits_1_with_one_line(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    def refuse(request: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server = fake_server(refuse)
    code, out, err = cli("status", *SERVER)
    assert (code, out) == (1, "")
    assert err.startswith("bentoship: failed: ") and err.count("\n") == 1
    assert "cannot reach" in err and "bentoship server" in err
    assert len(server.calls) == 3


def test_unknown_deployment_exits_1_naming_it(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    fake_server(lambda r, n: error(404, "deployment 'ghost' not found"))
    code, out, err = cli("status", "ghost", *SERVER)
    assert (code, out) == (1, "")
    assert "ghost" in err and err.count("\n") == 1


def test_rejected_token_exits_1_without_showing_it(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    fake_server(lambda r, n: error(401, "wrong API token"))
    code, out, err = cli("revisions", "svc", *SERVER)
    assert code == 1 and "the token came from the --token flag" in err
    assert TOKEN not in out + err


def test_server_rejecting_the_config_exits_2_naming_the_field(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    def answer(request: httpx.Request, n: int) -> httpx.Response:
        path = request.url.path
        if path.startswith("/api/v1/bento_repositories/echo/bentos/v1"):
            manifest = {"entry_service": "Echo", "services": [{"name": "Echo"}]}
            return httpx.Response(200, json={"upload_status": "success", "manifest": manifest})
        if request.method == "GET" and path == "/api/v2/deployments/svc":
            return error(404, "deployment 'svc' not found")
        if request.method == "POST" and path == "/api/v2/deployments":
            field = "services.Echo.instance_type"
            return error(400, f"invalid deployment config: {field}: unknown instance type")
        return error(404, "not found")

    server = fake_server(answer)
    code, out, err = cli("deploy", "svc", "echo:v1", "--instance-type", "gpu.huge", *SERVER)
    assert (code, out) == (2, "")
    assert "services.Echo.instance_type" in err and err.count("\n") == 1
    posted = [r for r in server.requests if r.method == "POST"]
    assert len(posted) == 1
    body = json.loads(posted[0].content)
    assert body["services"]["Echo"]["instance_type"] == "gpu.huge"


# output formats


def test_status_lists_deployments_one_per_line(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    items = [deployment_json("a", "echo:v1"), deployment_json("b", "echo:v2", "deploying")]
    server = fake_server(lambda r, n: httpx.Response(200, json={"items": items}))
    code, out, _ = cli("status", *SERVER)
    assert code == 0
    assert out.splitlines() == [
        "a\trunning\techo:v1\thttp://127.0.0.1:9/a",
        "b\tdeploying\techo:v2\thttp://127.0.0.1:9/b",
    ]
    assert server.requests[0].headers["X-YATAI-API-TOKEN"] == TOKEN


def test_status_of_one_deployment_is_json(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    dep = deployment_json(
        "svc", "echo:v2", "failed", revision="rev-2", serving="rev-1", reason="boom"
    )
    fake_server(lambda r, n: httpx.Response(200, json=dep))
    code, out, _ = cli("status", "svc", *SERVER)
    assert code == 0
    assert json.loads(out) == {
        "name": "svc",
        "status": "failed",
        "url": "http://127.0.0.1:9/svc",
        "bento": "echo:v2",
        "target_revision": "rev-2",
        "target_bento": "echo:v2",
        "serving_revision": "rev-1",
        "candidate_revision": None,
        "candidate_bento": None,
        "candidate_url": None,
        "canary": None,
        "reason": "boom",
        "replicas": None,
    }


@pytest.fixture
def held_candidate_app(tmp_path: Path) -> Iterator[TestClient]:
    """The real app over a data dir where deployment ``held`` serves r1 (echo:v1) and holds r2
    (echo:v2) as a candidate (records written directly: nothing runs)."""
    settings = ServerSettings(
        data_dir=tmp_path,
        token=TOKEN,
        secrets_key_file=tmp_path / "secrets.key",
        runtime_dir=tmp_path / "runtime",
    )
    store = Store(settings.db_path)
    store.create_repository("bento", "echo", "")
    for version in ("v1", "v2"):
        store.upsert_artifact(bento_artifact(version))
    store.insert_deployment(deployment_record("held", target="held-2", serving="held-1"))
    store.insert_revision(revision_record("held", 1, RevisionPhase.SERVING, "2026-01-01T00:01Z"))
    candidate = revision_record("held", 2, RevisionPhase.CANDIDATE, "2026-01-01T00:02Z")
    store.insert_revision(dataclasses.replace(candidate, verify=True))
    app = build_app(settings, Registry(settings, store), Controller(settings, store))
    with TestClient(app, headers={"X-YATAI-API-TOKEN": TOKEN}) as client:
        yield client
    store.close()


def test_status_shows_the_serving_bento_and_the_held_candidate(
    cli: Run, fake_server: Callable[[Answer], FakeServer], held_candidate_app: TestClient
) -> None:
    def forward(request: httpx.Request, n: int) -> httpx.Response:
        answer = held_candidate_app.request(
            request.method, request.url.path, params=request.url.params
        )
        return httpx.Response(answer.status_code, json=answer.json())

    fake_server(forward)
    code, out, err = cli("status", *SERVER)
    assert code == 0, err
    (line,) = out.splitlines()
    name, _, bento, _, held = line.split("\t")
    assert (name, bento, held) == ("held", "echo:v1", "candidate r2 echo:v2")

    code, out, err = cli("status", "held", *SERVER)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["bento"], shown["serving_revision"]) == ("echo:v1", "r1")
    assert (shown["candidate_bento"], shown["candidate_revision"]) == ("echo:v2", "r2")
    assert (shown["target_bento"], shown["target_revision"]) == ("echo:v2", "r2")


def test_revisions_mark_the_serving_one_and_logs_default_to_the_target(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    revisions = [
        revision_json("rev-2", "r2", "echo:v2", "failed", serving=False),
        revision_json("rev-1", "r1", "echo:v1", "serving", serving=True),
    ]

    def answer(request: httpx.Request, n: int) -> httpx.Response:
        path = request.url.path
        if path == "/api/v2/deployments/svc/revisions":
            return httpx.Response(200, json={"items": revisions})
        if path == "/api/v2/deployments/svc":
            return httpx.Response(200, json=deployment_json("svc", "echo:v2", revision="rev-2"))
        if path == "/api/v2/deployments/svc/logs":
            lines = [
                {
                    "time": "2026-11-30T01:02:03.004Z",
                    "revision": "r2",
                    "stream": "stderr",
                    "line": x,
                }
                for x in ("starting", "RuntimeError: boom")
            ]
            return httpx.Response(200, json={"deployment": "svc", "lines": lines})
        if path == "/api/v2/deployments/svc/events":
            event = {"id": 7, "time": "2026-11-30T01:02:03.004Z", "kind": "failed"}
            event |= {"revision": "r2", "message": "r2 failed: boom"}
            return httpx.Response(200, json={"deployment": "svc", "events": [event]})
        return error(404, "not found")

    server = fake_server(answer)
    code, out, _ = cli("revisions", "svc", *SERVER)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("  r2\tfailed\techo:v2")
    assert lines[1].startswith("* r1\tserving\techo:v1")

    code, out, _ = cli("logs", "svc", "--tail", "50", "--grep", "Err", "--since", "10m", *SERVER)
    assert code == 0 and out.splitlines() == [
        "2026-11-30T01:02:03.004Z r2 stderr starting",
        "2026-11-30T01:02:03.004Z r2 stderr RuntimeError: boom",
    ]
    params = server.requests[-1].url.params
    assert (params["limit"], params["pattern"], params["since"]) == ("50", "Err", "10m")
    code, out, _ = cli("logs", "svc", "--json", *SERVER)
    assert json.loads(out.splitlines()[1])["line"] == "RuntimeError: boom"
    code, out, _ = cli("events", "svc", *SERVER)
    assert code == 0 and out == "2026-11-30T01:02:03.004Z failed r2 r2 failed: boom\n"
    code, out, err = cli("logs", "svc", "--follow", "--until", "1h", *SERVER)
    assert code == 2 and "drop --until" in err


# build and push: stdout holds only the tag


@pytest.fixture
def noisy_project(tmp_path: Path) -> Path:
    """The echo project, whose service module prints when imported (Python and file level)."""
    project = tmp_path / "noisy"
    shutil.copytree(FIXTURES / "echo", project, ignore=shutil.ignore_patterns("__pycache__"))
    with (project / "service.py").open("a") as service:
        service.write(
            '\nimport os\nprint("python noise")\nos.write(1, b"file descriptor noise\\n")\n'
        )
    return project


def test_push_of_a_missing_archive_exits_2_before_any_request(cli: Run, unused_port: int) -> None:
    nowhere = ["--endpoint", f"http://127.0.0.1:{unused_port}", "--token", TOKEN]
    code, out, err = cli("push", "no-such-file.bento", *nowhere)
    assert (code, out) == (2, "")
    assert err.startswith("bentoship: error: ") and "does not exist" in err
    assert err.count("\n") == 1


def test_push_of_a_tag_missing_locally_exits_1(
    cli: Run, fake_server: Callable[[Answer], FakeServer]
) -> None:
    server = fake_server(lambda r, n: error(404, "bento 'ghost:v1' not found"))
    code, out, err = cli("push", "ghost:v1", *SERVER)
    assert (code, out) == (1, "")
    assert "ghost:v1 is not in the local bento store" in err and err.count("\n") == 1
    assert server.calls == ["GET /api/v1/bento_repositories/ghost/bentos/v1"]


def test_build_and_push_print_only_the_tag(
    cli: Run, shared_plane: LocalControlPlane, noisy_project: Path, tmp_path: Path
) -> None:
    assert shared_plane.connection is not None
    connection = shared_plane.connection
    server = ["--endpoint", connection.endpoint, "--token", connection.token]
    archive = tmp_path / "exported" / "noisy.bento"

    code, out, err = cli(
        "build",
        str(noisy_project),
        "--version",
        "cli-1",
        "--label",
        "team=ml",
        "--export",
        str(archive),
    )
    assert code == 0, err
    assert out == "echo:cli-1\n"
    assert "python noise" in err
    assert bentoml.bentos.get("echo:cli-1").info.labels["team"] == "ml"
    assert archive.is_file()
    # a retried build of the same version answers the same tag
    code, out, err = cli("build", str(noisy_project), "--version", "cli-1", "--label", "team=ml")
    assert (code, out) == (0, "echo:cli-1\n"), err

    code, out, err = cli("push", str(archive), *server)
    assert code == 0, err
    assert out == "echo:cli-1\n"
    # bentoml's progress went to stderr, and its last line is ended
    assert 'Pushing Bento "echo:cli-1"' in err and err.endswith("\n")
    assert client_for(shared_plane).bento_uploaded("echo:cli-1")

    code, out, err = cli("push", "echo:cli-1", "--force", *server)
    assert (code, out) == (0, "echo:cli-1\n"), err
    assert 'Pushing Bento "echo:cli-1"' in err and err.endswith("\n")


def test_the_push_step_draws_bentomls_progress_on_stderr(
    shared_plane: LocalControlPlane, echo_v1: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not only under the CLI: in a task's log the next line must not be glued to the bar."""
    capsys.readouterr()
    assert push(echo_v1, client=client_for(shared_plane), force=True) == echo_v1
    out, err = capsys.readouterr()
    assert out == ""
    assert f'Pushing Bento "{echo_v1}"' in err and err.endswith("\n")


# the console script itself


@pytest.mark.slow
def test_console_script_exits_with_mains_code(unused_port: int) -> None:
    script = Path(sys.executable).with_name("bentoship")
    nowhere = ["--endpoint", f"http://127.0.0.1:{unused_port}", "--token", TOKEN]
    result = subprocess.run(
        [str(script), "deploy", "svc", "not a tag", *nowhere],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "not a bento tag" in result.stderr and result.stdout == ""


@pytest.mark.slow
def test_console_script_build_composes_in_shell(noisy_project: Path) -> None:
    """``tag=$(bentoship build .)``: what the build prints, even from a file descriptor, is
    on stderr."""
    script = Path(sys.executable).with_name("bentoship")
    result = subprocess.run(
        [str(script), "build", ".", "--version", "cli-script-1"],
        cwd=noisy_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo:cli-script-1\n"
    assert "python noise" in result.stderr and "file descriptor noise" in result.stderr


# on a real control plane


def test_a_rejected_token_names_where_it_came_from(
    cli: Run, shared_plane: LocalControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = shared_plane.endpoint
    for variable in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    wrong = "wrong-token-0123456789"
    code, out, err = cli("status", "--endpoint", endpoint, "--token", wrong)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert "wrong API token" in err and err.rstrip().endswith("came from the --token flag")

    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", endpoint)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", wrong)
    code, _, err = cli("status")
    assert code == 1 and err.rstrip().endswith("came from BENTO_CLOUD_API_KEY")

    for variable in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
        monkeypatch.delenv(variable)
    write_connection(tmp_path, Connection(endpoint, wrong))
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    code, _, err = cli("status")
    assert code == 1 and err.rstrip().endswith(f"the connection file {tmp_path}/connection.json")
    assert wrong not in err


def test_a_server_with_its_own_data_dir_prints_the_line_that_finds_it(
    start_control_plane: Callable[..., LocalControlPlane], tmp_path: Path
) -> None:
    plane = start_control_plane(tmp_path / "own data")
    assert plane.process is not None and plane.process.stdout is not None
    plane.process.send_signal(signal.SIGTERM)
    plane.process.wait(30)
    printed = plane.process.stdout.read().splitlines()
    data_dir = plane.data_dir.resolve()
    assert printed == [
        f"export BENTOSHIP_HOME='{data_dir}'  # so that the bentoship CLI finds this server "
        f"({data_dir / 'connection.json'} holds its endpoint and token)"
    ]
