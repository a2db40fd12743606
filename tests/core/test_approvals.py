"""Approvals against real ``bentoml serve`` processes: a pipeline step waits for a person; an
approval through the CLI promotes the candidate, a rejection (by a token with the approve
scope; one without it is refused) discards it and the step fails, and the events say who."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bentoship import ApprovalRejected, Client
from bentoship.cli import main
from bentoship.models import Rollout
from bentoship.server import LocalControlPlane
from bentoship.server.webhooks import signature
from bentoship.steps import deploy, request_approval, wait_until_ready
from bentoship.testing import Deployer

NAME = "approved-svc"


class Hooked(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps every body and its headers."""

    got: list[tuple[bytes, dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooked.got.append((body, dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def webhook(client: Client) -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]]]]:
    """A receiver on loopback, registered for approval, promotion and discard events: its
    secret and what it got; the webhook is deleted after the test."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hooked.got = []
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    hooks = f"{client.endpoint}/api/v1/bentoship/webhooks"
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    made = httpx.post(
        hooks, json={"url": url, "events": ["approval", "promoted", "discarded"]}, headers=headers
    ).json()
    try:
        yield made["secret"], Hooked.got
    finally:
        httpx.delete(f"{hooks}/{made['id']}", headers=headers)
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def client(
    shared_plane: LocalControlPlane, echo_v1: str, module_bento_deployment: Deployer
) -> Client:
    return module_bento_deployment(echo_v1, name=NAME).api


def candidate(client: Client, bento: str, run: str) -> Rollout:
    rollout = deploy(NAME, bento, {"envs": {"RUN": run}}, candidate=True, client=client)
    wait_until_ready(rollout, client=client, timeout=120)
    return rollout


def waiting(client: Client, rollout: Rollout, outcome: dict[str, Any]) -> threading.Thread:
    """The approval step, in a thread (as a pipeline task waits), its result in ``outcome``."""

    def step() -> None:
        try:
            outcome["approval"] = request_approval(
                rollout, "ship it?", timeout=120, evidence={"smoke": "passed"}, client=client
            )
        except ApprovalRejected as exc:
            outcome["rejected"] = exc

    thread = threading.Thread(target=step)
    thread.start()
    return thread


def pending(client: Client) -> dict[str, Any]:
    for _ in range(100):
        found = [a for a in client.approvals(NAME) if a["state"] == "pending"]
        if found:
            return found[0]
        threading.Event().wait(0.1)
    raise AssertionError("no pending approval")


def test_an_approval_through_the_cli_promotes_and_a_rejection_discards(
    client: Client,
    echo_v1: str,
    capsys: pytest.CaptureFixture[str],
    webhook: tuple[str, list[tuple[bytes, dict[str, str]]]],
) -> None:
    before = client.get_deployment(NAME).serving_revision
    first = candidate(client, echo_v1, "approve me")
    outcome: dict[str, Any] = {}
    thread = waiting(client, first, outcome)
    asked = pending(client)
    assert asked["revision"] == first.revision and asked["evidence"] == {"smoke": "passed"}
    connection = ["--endpoint", client.endpoint, "--token", client.connection.token]
    assert main(["approvals", NAME, *connection]) == 0
    assert f"{asked['id']}\t{first.revision}\tpending" in capsys.readouterr().out
    assert main(["approve", NAME, "--comment", "figures are fine", *connection]) == 0
    thread.join(60)
    approval = outcome["approval"]
    assert approval.approved and approval.decided_by == "server token"
    assert client.get_deployment(NAME).serving_revision == first.revision

    second = candidate(client, echo_v1, "reject me")
    outcome = {}
    thread = waiting(client, second, outcome)
    asked = pending(client)
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    tokens = f"{client.endpoint}/api/v1/api_tokens"
    writer = httpx.post(
        tokens, json={"name": "ci", "scopes": ["write_cluster"]}, headers=headers
    ).json()
    approver = httpx.post(tokens, json={"name": "lead", "scopes": ["approve"]}, headers=headers)
    decision = f"{client.endpoint}/api/v2/deployments/{NAME}/approvals/{asked['id']}/reject"
    refused = httpx.post(decision, json={}, headers={"Authorization": f"Bearer {writer['token']}"})
    assert refused.status_code == 403 and "needs approve" in refused.json()["error"]
    rejected = httpx.post(
        decision,
        json={"comment": "p99 too high"},
        headers={"Authorization": f"Bearer {approver.json()['token']}"},
    )
    assert rejected.status_code == 200 and rejected.json()["decided_by"] == "lead"
    thread.join(60)
    failure = outcome["rejected"]
    assert failure.approval.state == "rejected" and "p99 too high" in str(failure)
    dep = client.get_deployment(NAME)
    assert dep.serving_revision == first.revision and dep.candidate_revision is None
    said = [e.message for e in client.events(NAME, limit=50) if e.kind == "approval"]
    assert any("approved by server token: figures are fine" in m for m in said)
    assert any("rejected by lead: p99 too high" in m for m in said)
    assert before != first.revision

    secret, got = webhook
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(got) < 6:
        time.sleep(0.1)
    kinds = []
    for body, headers in got:
        assert headers["X-Bentoship-Signature"] == signature(secret, body)
        kinds.append(json.loads(body)["data"]["kind"])
    assert sorted(kinds) == ["approval"] * 4 + ["discarded", "promoted"], kinds
