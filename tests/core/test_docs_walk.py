"""The documented commands of README.md and docs/steps.md that need no orchestrator, as a user
copies them, against a real control plane: build, push and deploy by ``:latest``, status,
revisions, logs, events, ship with a smoke test and a canary, rollback, and a canary stopped
by SIGTERM that leaves no weight behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bentoship import Client
from bentoship.cli import main
from bentoship.server import LocalControlPlane

from ..traffic import TrafficLoop

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bentos"
NAME = "walk"
SMOKE = ["--smoke-api", "echo", "--smoke-payload", '{"text": "ok"}']

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``cli(*argv)`` runs ``bentoship`` in-process: (exit code, its stdout, its stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def answers(url: str, count: int) -> set[str]:
    return {
        httpx.post(f"{url}/echo", json={"text": "x"}, timeout=30).json()["version"]
        for _ in range(count)
    }


def test_the_documented_commands_as_a_user_runs_them(
    cli: Run,
    shared_plane: LocalControlPlane,
    echo_v2: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the server was started with --data-dir; its one line says to point the CLI there
    monkeypatch.setenv("BENTOSHIP_HOME", str(shared_plane.data_dir))
    for variable in ("BENTO_CLOUD_API_ENDPOINT", "BENTO_CLOUD_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    assert shared_plane.connection is not None
    token = shared_plane.connection.token
    outputs: list[str] = []

    def run(*argv: str) -> tuple[int, str, str]:
        code, out, err = cli(*argv)
        outputs.append(out + err)
        return code, out, err

    project = shutil.copytree(FIXTURES / "echo", tmp_path / "echo")
    (project / "version.txt").write_text("walk\n")
    code, out, err = run("build", str(project))
    assert code == 0, err
    tag = out.strip()
    assert tag.startswith("echo:") and out == f"{tag}\n"

    code, out, err = run("push", "echo:latest")
    assert (code, out) == (0, f"{tag}\n"), err

    code, out, err = run("deploy", NAME, "echo:latest", "--env", "A=1", "--wait")
    assert code == 0, err
    deployed = json.loads(out)
    assert deployed["created"] is True and deployed["bento"] == tag
    assert f"{NAME}: deploying" in err and f"{NAME}: running" in err
    code, out, _ = run("status")
    assert code == 0 and f"{NAME}\trunning\t{tag}\t" in out
    url = json.loads(run("status", NAME)[1])["url"]
    assert answers(url, 3) == {"walk"}

    with Client() as client:
        plain = client.list_revisions(NAME)
    assert [r.bento for r in plain] == [tag]

    # ship with a smoke test on the candidate URL, then a canary on live traffic (p99 gets
    # 250 ms of slack, as in the other canary tests: the 2-core CI machine is busy)
    plan = {"steps": [50, 100], "interval": 1, "min_requests": 10, "p99_slack_ms": 250}
    canary = json.dumps(plan)
    expect = ["--smoke-expect", '{"text": "ok", "version": "v2"}']
    with TrafficLoop(f"{url}/echo", clients=2, pause=0.01) as traffic:
        code, out, err = run(
            "ship", NAME, echo_v2, "--env", "A=1", *SMOKE, *expect, "--canary", canary
        )
    assert code == 0, err
    assert traffic.failures == []
    assert json.loads(out)["bento"] == echo_v2
    steps = [line for line in err.splitlines() if line.endswith("; held")]
    assert [line.split(" at ")[1].split(":")[0] for line in steps] == ["50%", "100%"]
    assert all("requests" in line and "success" in line and "baseline" in line for line in steps)
    assert f"canary r2 of {NAME} promoted" in err

    code, out, _ = run("revisions", NAME)
    assert code == 0 and out.splitlines()[0].startswith("* r2")
    code, out, _ = run("logs", NAME, "--tail", "50", "--grep", "starting", "--since", "1h")
    assert code == 0 and out and all("starting" in line for line in out.splitlines())
    code, out, _ = run("events", NAME, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [event["kind"] for event in events]
    assert code == 0 and kinds[0] == "created" and "switched" in kinds
    assert "latest" not in out and tag in out

    code, out, err = run("rollback", NAME)
    assert code == 0, err
    assert json.loads(out)["bento"] == tag
    code, out, err = run("wait", NAME, "--timeout", "60")
    assert code == 0 and json.loads(out)["bento"] == tag, err
    code, out, _ = run("status", NAME)
    assert json.loads(out)["bento"] == tag
    assert json.loads(out)["replicas"] == {"ready": 1, "desired": 1, "min": 1, "max": 1}

    code, out, err = run("status", "no-such-deployment")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and "no-such-deployment" in err
    assert all(token not in text for text in outputs)

    check_sigterm_leaves_no_weight(shared_plane, echo_v2, url, tag)


def check_sigterm_leaves_no_weight(
    plane: LocalControlPlane, bento: str, url: str, serving_tag: str
) -> None:
    """A ``ship --canary`` stopped by SIGTERM mid-step (as ``timeout`` and orchestrators stop
    a task) leaves the analysis to the control plane, which reaches its verdict: no weight is
    left on the candidate, and the serving revision takes 100% again."""
    waiting = json.dumps(
        {"steps": [50, 100], "interval": 1, "min_requests": 1_000_000, "step_timeout": 4}
    )
    env = {**os.environ, "BENTOSHIP_HOME": str(plane.data_dir)}
    command = [sys.executable, "-m", "bentoship", "ship", NAME, bento, "--env", "A=1"]
    shipping = subprocess.Popen(
        [*command, "--canary", waiting],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    told = threading.Event()

    def read() -> None:
        assert shipping.stderr is not None
        for line in shipping.stderr:
            lines.append(line)
            if "waiting for traffic" in line:
                told.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert told.wait(120), "".join(lines)
        with Client() as client:
            held = client.get_deployment(NAME)
        assert held.candidate_revision is not None
        assert (held.canary or {}).get("weight") == 50, held.canary
        shipping.send_signal(signal.SIGTERM)
        assert shipping.wait(60) == 128 + signal.SIGTERM
    finally:
        if shipping.poll() is None:
            shipping.kill()
            shipping.wait()
    reader.join(10)
    log = "".join(lines)
    assert "the control plane runs the analysis (steps 50%, 100%, 1 s each)" in log
    assert "at 50%: waiting for traffic, 0 of 1000000 requests" in log
    assert "stopped watching (terminated); the control plane goes on" in log

    with Client() as client:
        verdict = client.analysis(NAME)
        deadline = time.monotonic() + 60
        while verdict["state"] == "running":
            assert time.monotonic() < deadline, verdict
            verdict = client.analysis(NAME, seen=len(verdict["steps"]), timeout=10)
        after = client.get_deployment(NAME)
        events = client.events(NAME)
        revisions = client.list_revisions(NAME)
    assert verdict["state"] == "discarded" and verdict["revision"] == held.candidate_revision
    assert "only 0 requests reached the candidate at 50%" in verdict["reason"]
    assert any(e.kind == "verdict" and "discarded" in e.message for e in events), events
    candidate = next(r for r in revisions if held.candidate_revision in (r.name, r.uid))
    assert after.candidate_revision is None and not after.canary, after
    assert after.bento == serving_tag and candidate.phase != "candidate"
    deadline = time.monotonic() + 10
    while answers(url, 10) != {"walk"}:
        assert time.monotonic() < deadline, "the discarded candidate still takes traffic"
