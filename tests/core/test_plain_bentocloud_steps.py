"""Deploy and roll back against a server without bentoship's extensions, as on BentoCloud.

Unit tests: a MockTransport answers as plain BentoCloud does (no discovery route, so no
revisions or rollback API). The end-to-end run of the same path is the KFP exit-handler test in
tests/kfp/test_shipped_components.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from bentoship import Client, Rollout
from bentoship.steps import deploy, rollback

from .transports import FakeServer, deployment_json, error

OLD_CONFIG = {"envs": [{"name": "MODE", "value": "a"}], "services": {"Echo": {}}}
BENTO = {"manifest": {"entry_service": "Echo"}, "upload_status": "success"}


def plain_bentocloud(log: list[tuple[str, dict[str, object]]]) -> FakeServer:
    """``svc`` runs echo:v1 as revision rev-1; an update makes rev-2 of whatever was sent."""

    def answer(request: httpx.Request, n: int) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/bentoship/info":
            return error(404, "not found")
        if path.startswith("/api/v1/bento_repositories/"):
            return httpx.Response(200, json=BENTO)
        if request.method == "GET" and path == "/api/v2/deployments/svc":
            return httpx.Response(200, json=current)
        if request.method == "PUT" and path == "/api/v2/deployments/svc":
            body = json.loads(request.content)
            log.append(("PUT", body))
            config = {k: v for k, v in body.items() if k != "bento"}
            current.update(
                deployment_json(
                    "svc",
                    body["bento"],
                    "deploying",
                    revision=f"rev-{len(log) + 1}",
                    config=config,
                    extensions=False,
                )
            )
            return httpx.Response(200, json=current)
        return error(404, f"no route {request.method} {path}")

    current = deployment_json(
        "svc", "echo:v1", revision="rev-1", config=OLD_CONFIG, extensions=False
    )
    return FakeServer(answer)


def test_deploy_records_what_it_replaces_and_rollback_reapplies_it() -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    server = plain_bentocloud(sent)
    with Client(
        "http://bentocloud.test", "token-0123456789", transport=server.transport()
    ) as client:
        rollout = deploy("svc", "echo:v2", {"envs": {"MODE": "b"}}, client=client)
        assert (rollout.previous_revision, rollout.previous_bento) == ("rev-1", "echo:v1")
        assert rollout.previous_config == OLD_CONFIG
        assert rollout.changed and rollout.revision == "rev-2"
        assert sent[0][1]["bento"] == "echo:v2"

        restored = rollback(Rollout.parse(rollout.to_json()), client=client, wait=False)

    assert restored is not None and restored.bento == "echo:v1"
    assert [method for method, _ in sent] == ["PUT", "PUT"]
    assert sent[1][1] == {"bento": "echo:v1", **OLD_CONFIG}
    assert not any("/rollback" in call for call in server.calls)


def test_rollback_of_a_rollout_that_created_the_deployment_changes_nothing() -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    server = plain_bentocloud(sent)
    created = Rollout(name="svc", bento="echo:v1", revision="rev-1", endpoint_url="", created=True)
    with Client(
        "http://bentocloud.test", "token-0123456789", transport=server.transport()
    ) as client:
        assert rollback(created, client=client) is None
    assert sent == [] and server.calls == []


def test_shadow_analysis_on_plain_bentocloud_says_so_in_one_line_and_changes_nothing() -> None:
    from bentoship import InvalidRequestError, ShadowPolicy
    from bentoship.steps import analyze_shadow

    server = plain_bentocloud([])
    candidate = Rollout(name="svc", bento="echo:v2", revision="rev-2", endpoint_url="")
    with (
        Client(
            "http://bentocloud.test", "token-0123456789", transport=server.transport()
        ) as client,
        pytest.raises(InvalidRequestError) as refused,
    ):
        analyze_shadow(candidate, ShadowPolicy(), client=client)
    message = str(refused.value)
    assert "plain BentoCloud" in message and "\n" not in message
    assert server.calls == ["GET /api/v1/bentoship/info"]
