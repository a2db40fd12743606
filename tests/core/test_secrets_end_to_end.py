"""Secrets end to end: unmodified ``bentoml secret`` commands, one deployment that gets an env
secret and a file secret, masked logs, rotation, and a data dir that never holds a value."""

from __future__ import annotations

import json
import logging
import secrets
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bentoship import Client
from bentoship.errors import BentoshipError
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, wait_until_ready

from .api import Api
from .cli_session import BentomlCli


def bentoml_secret(cli: BentomlCli, *commands: list[str]) -> list[str]:
    """Each ``bentoml secret <command>`` of the unmodified CLI; the output of each."""
    outputs = []
    for command in commands:
        done = cli("secret", *command)
        assert done.returncode == 0, f"exit {done.returncode}: {command[:1]}\n" + (
            done.stdout[-2000:] + done.stderr[-2000:]
        )
        outputs.append(done.stdout)
    return outputs


def logged(api: Api, name: str, pattern: str, timeout: float = 30) -> list[str]:
    """The deployment's log lines (logs API) that ``pattern`` finds, once there are two."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.http.get(f"/api/v2/deployments/{name}/logs", params={"pattern": pattern})
        response.raise_for_status()
        lines = [str(item["line"]) for item in response.json()["lines"]]
        if len(lines) >= 2 or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_secrets_from_the_bentoml_cli_reach_one_deployment_masked_pinned_and_never_stored(
    start_control_plane: Callable[..., LocalControlPlane],
    echo_v1: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    key_file = tmp_path / "keys" / "secrets.key"
    runtime = tmp_path / "run"
    plane = start_control_plane(
        tmp_path / "data", secrets_key_file=key_file, runtime_dir=runtime, rollback_window=1
    )
    api = Api(plane)
    api.push(echo_v1)
    password = f"pw-{secrets.token_hex(12)}"
    rotated = f"pw2-{secrets.token_hex(12)}"
    certificate = f"cert-{secrets.token_hex(8)}\nline-{secrets.token_hex(8)}\n"
    scratch = f"scratch-{secrets.token_hex(8)}"
    values = (password, rotated, scratch, *certificate.split())
    (tmp_path / "cert.pem").write_text(certificate)

    # One interpreter runs every command of the unmodified CLI (imports cost seconds).
    cli = BentomlCli(plane, tmp_path / "cli-stderr.log").start()
    request.addfinalizer(cli.close)
    created = bentoml_secret(
        cli,
        ["create", "db-creds", f"DB_PASSWORD={password}", "-d", "the database"],
        ["create", "tls", f"cert.pem=@{tmp_path / 'cert.pem'}", "-t", "file", "-p", "/etc/app"],
        ["create", "scratch", f"TOKEN={scratch}"],
        ["delete", "scratch"],
        ["list"],
        ["list", "-o", "json"],
    )
    assert "created successfully" in created[0] and "deleted successfully" in created[3]
    assert "db-creds" in created[4] and "DB_PASSWORD" in created[4] and "/etc/app" in created[4]
    listed = {item["name"]: item for item in json.loads(created[5])}
    assert sorted(listed) == ["db-creds", "tls"]
    assert listed["tls"]["content"]["type"] == "mountfile"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    assert plane.connection is not None
    with Client(plane.connection.endpoint, plane.connection.token) as client:
        with pytest.raises(BentoshipError) as unknown:
            deploy("sec", echo_v1, {"secrets": ["db-creds", "nope"]}, client=client)
        assert "secrets[1]" in str(unknown.value) and "\n" not in str(unknown.value)
        assert client.find_deployment("sec") is None

        rollout = deploy("sec", echo_v1, {"secrets": ["db-creds", "tls"]}, client=client)
        wait_until_ready(rollout, client=client, timeout=120)
        url = api.url("sec")
        seen = httpx.post(
            f"{url}/environ",
            json={"name": "DB_PASSWORD", "path": "/etc/app/cert.pem", "log": True},
            timeout=30,
        ).json()
        assert seen == {"env": password, "file": certificate, "mode": "0o400"}
        lines = logged(api, "sec", "environ sees")
        assert {"***" in line for line in lines} == {True} and len(lines) == 2, lines
        assert not any(v in line for line in lines for v in values)

        applied = bentoml_secret(cli, ["apply", "db-creds", f"DB_PASSWORD={rotated}"])
        assert "applied successfully" in applied[0]
        assert api.get("sec")["latest_revision"]["name"] == "r1"
        pinned = httpx.post(f"{url}/environ", json={"name": "DB_PASSWORD"}, timeout=30).json()
        assert pinned["env"] == password
        with caplog.at_level(logging.WARNING, logger="bentoship.steps"):
            again = deploy("sec", echo_v1, {"secrets": ["db-creds", "tls"]}, client=client)
        assert again.changed and again.revision != rollout.revision
        assert "secret 'db-creds' changed" in caplog.text and rotated not in caplog.text
        wait_until_ready(again, client=client, timeout=120)
        after = httpx.post(f"{url}/environ", json={"name": "DB_PASSWORD"}, timeout=30).json()
        assert after["env"] == rotated
        revisions = api.revisions("sec")
        pins = [r["targets"][0]["config"]["secret_versions"] for r in revisions]
        assert pins[0]["db-creds"] != pins[1]["db-creds"] and pins[0]["tls"] == pins[1]["tls"]

    shown = [
        api.http.get("/api/v1/org_secrets").text,
        api.http.get("/api/v1/org_secrets/db-creds").text,
        api.http.get("/api/v2/deployments/sec").text,
        api.http.get("/api/v2/deployments/sec/revisions").text,
        api.http.get("/api/v2/deployments/sec/logs").text,
        *created,
        *applied,
    ]
    assert not any(v in text for v in values for text in shown)
    folders = list(runtime.iterdir())
    plane.stop()
    assert not any(folder.exists() for folder in folders)
    for value in values:
        found = subprocess.run(
            ["grep", "-r", "-F", "-l", value, str(tmp_path / "data")],
            capture_output=True,
            text=True,
        )
        assert found.returncode == 1, f"a secret value is stored in {found.stdout}"
