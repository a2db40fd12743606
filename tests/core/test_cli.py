"""The ``bentoship`` CLI against a real control plane: output and exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bentoship.server import LocalControlPlane
from bentoship.steps import push

from .test_steps import client_for


def cli(plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    assert plane.connection is not None
    env = {
        **os.environ,
        "BENTO_CLOUD_API_ENDPOINT": plane.connection.endpoint,
        "BENTO_CLOUD_API_KEY": plane.connection.token,
    }
    return subprocess.run(
        [sys.executable, "-m", "bentoship", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_deploy_wait_status_revisions_logs_rollback(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    client = client_for(shared_plane)
    push(echo_v1, client=client)
    push(echo_v2, client=client)

    first = cli(shared_plane, "deploy", "cli-echo", echo_v1, "--env", "A=1", "--wait")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] is True
    assert "cli-echo: deploying" in first.stderr and "cli-echo: running" in first.stderr

    second = cli(shared_plane, "deploy", "cli-echo", echo_v2, "--env", "A=1")
    assert second.returncode == 0, second.stderr
    waited = cli(shared_plane, "wait", "cli-echo", "--timeout", "60")
    assert waited.returncode == 0 and json.loads(waited.stdout)["bento"] == echo_v2

    status = cli(shared_plane, "status")
    assert status.returncode == 0 and "cli-echo\trunning" in status.stdout
    revisions = cli(shared_plane, "revisions", "cli-echo")
    assert revisions.stdout.splitlines()[0].startswith("* r2")
    logs = cli(shared_plane, "logs", "cli-echo", "--tail", "50")
    assert logs.returncode == 0 and "[bentoship]" in logs.stdout

    rolled = cli(shared_plane, "rollback", "cli-echo")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["bento"] == echo_v1
    assert shared_plane.connection is not None
    for result in (first, second, waited, status, revisions, logs, rolled):
        assert shared_plane.connection.token not in result.stdout + result.stderr


def test_exit_codes_for_failure_and_usage(shared_plane: LocalControlPlane) -> None:
    missing = cli(shared_plane, "status", "no-such-deployment")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "no-such-deployment" in missing.stderr
    bad_tag = cli(shared_plane, "deploy", "x", "not a tag")
    assert bad_tag.returncode == 2
    unknown_option = cli(shared_plane, "status", "--bogus")
    assert unknown_option.returncode == 2
    no_command = cli(shared_plane)
    assert no_command.returncode == 2
