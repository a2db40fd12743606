"""Regression tests of the hardening round: bad input gets a short 400, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bentoship.server import LocalControlPlane
from bentoship.server.api.bodies import (
    ArtifactBody,
    CanarySplitBody,
    DeploymentBody,
    FinishUploadBody,
    RepositoryBody,
    RevisionBody,
    parse,
)
from bentoship.server.api.common import json_depth
from bentoship.server.api.query import ListFilter
from bentoship.server.errors import Invalid

from .api import Api

MANIFEST = {"service": "service:Echo", "bentoml_version": "1.4", "size_bytes": 1}


def error_of(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    message = str(response.json()["error"])
    assert "\n" not in message and len(response.content) < 1000
    return message


def test_bad_input_of_every_finding_gets_a_short_400(shared_plane: LocalControlPlane) -> None:
    api = Api(shared_plane)
    http = api.http
    before = http.get("/api/v2/deployments").json()

    # 1. deeply nested JSON, in a create and an update
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in (("POST", "/api/v2/deployments"), ("PUT", "/api/v2/deployments/x")):
        assert "nests deeper" in error_of(http.request(method, path, content=deep))
    # 2. a timeout that is not a number of seconds
    for bad in ("nan", "inf", "soon", "1_0", "0x10", "1e3"):
        error_of(http.get("/api/v2/deployments/any/wait", params={"timeout": bad}))

    repos = "/api/v1/bento_repositories"
    assert http.post(repos, json={"name": "hardening"}).status_code == 200
    versions = f"{repos}/hardening/bentos"
    # 3. labels that are not a list of {key, value}; 4. a manifest that is not an object
    assert "labels" in error_of(http.post(versions, json={"version": "v1", "labels": 5}))
    junk = {"version": "v1", "manifest": "junk"}
    assert "manifest" in error_of(http.post(versions, json=junk))
    # 5. over-long repository names; 6. names and versions that end in a newline
    for name in ("a" * 10_000, "b" * 300, "repo\n"):
        assert "at most 63" in error_of(http.post(repos, json={"name": name}))
    assert http.get(f"{repos}/{'b' * 300}").status_code == 404
    error_of(http.post(versions, json={"version": "v1\n", "manifest": MANIFEST}))
    for body in (
        {"name": "svc\n", "bento": "hardening:v1"},
        {"name": "svc", "bento": "hardening:v1\n"},
        {"name": "svc", "bento": "x:v1", "envs": [{"name": "A\n", "value": "1"}]},
    ):
        error_of(http.post("/api/v2/deployments", json=body))
    # 7. a 50 MB value is not echoed back
    huge = "n" * 50_000_000
    assert len(http.post("/api/v2/deployments", json={"name": huge}).content) < 1000
    assert len(http.post(repos, json={"name": huge[:500_000]}).content) < 1000
    # 8. finishing an upload that never sent an archive, for a model as for a bento
    models = "/api/v1/model_repositories"
    assert http.post(models, json={"name": "hollow"}).status_code == 200
    model = f"{models}/hollow/models/v1"
    created = http.post(f"{models}/hollow/models", json={"version": "v1", "manifest": MANIFEST})
    assert created.status_code == 200
    finished = http.patch(f"{model}/finish_upload", json={"status": "success"})
    assert "no uploaded archive" in error_of(finished)
    assert http.get(model).json()["upload_status"] == "pending"
    # 9. an env value holding a NUL byte
    nul = {"name": "svc", "bento": "x:v1", "envs": [{"name": "A", "value": "a\x00b"}]}
    assert "NUL" in error_of(http.post("/api/v2/deployments", json=nul))

    assert http.get("/api/v2/deployments").json() == before


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": []}]}') == 0  # few brackets: not scanned
    assert json_depth(b"[" * 40 + b"]" * 40) == 33  # read until past the limit of 32
    assert json_depth(b"[" * 40 + b"]" * 40, limit=39) == 40
    assert json_depth(b'["' + b"[" * 40 + b'"]') == 1
    assert json_depth(b'["\\"' + b"[" * 40 + b'"]') == 1


@pytest.mark.parametrize(
    ("q", "search", "name", "labels", "expected"),
    [
        ("label:team=x", "", "a", {"team": "x"}, True),
        ("label:team=x", "", "a", {"team": "y"}, False),
        ("label:team=x label:env=prod", "", "a", {"team": "x"}, False),
        ("label:team", "", "a", {"team": "any"}, True),
        ("is:dev", "", "a", {}, True),
        ("iris", "", "iris-svc", {}, True),
        ("", "svc", "iris-svc", {}, True),
        ("label:team=x", "other", "iris-svc", {"team": "x"}, False),
    ],
)
def test_the_list_filter_reads_q_as_bentocloud_does(
    q: str, search: str, name: str, labels: dict[str, str], expected: bool
) -> None:
    pairs = [{"key": k, "value": v} for k, v in labels.items()]
    assert ListFilter.parse(q, search).matches(name, pairs) is expected


@pytest.mark.parametrize(
    ("model", "body", "where"),
    [
        (DeploymentBody, {"access_authorization": "yes"}, "access_authorization"),
        (DeploymentBody, {"envs": [{"value": "1"}]}, "envs[0].name"),
        (DeploymentBody, {"labels": 5}, "labels"),
        (
            DeploymentBody,
            {"services": {"Echo": {"scaling": {"min_replicas": "1"}}}},
            "services.Echo.scaling.min_replicas",
        ),
        (DeploymentBody, {"canary": {"route_type": "cookie"}}, "canary.route_type"),
        (CanarySplitBody, {"weight": 101}, "weight"),
        (CanarySplitBody, {"weight": "10"}, "weight"),
        (RevisionBody, {"revision": 2}, "revision"),
        (RepositoryBody, {"name": 5}, "name"),
        (ArtifactBody, {"version": "v1", "manifest": "junk"}, "manifest"),
        (FinishUploadBody, {"status": "done"}, "status"),
    ],
)
def test_a_body_of_the_wrong_shape_names_its_field_without_its_value(
    model: type[Any], body: dict[str, Any], where: str
) -> None:
    with pytest.raises(Invalid) as caught:
        parse(model, body)
    message = str(caught.value)
    assert message.startswith(f"invalid request body: {where}: ") and "\n" not in message
    assert "junk" not in message and "rrrr" not in message


def test_bodies_from_bentocloud_clients_pass_with_fields_we_do_not_read() -> None:
    body = {
        "name": "svc",
        "bento": "echo:v1",
        "access_authorization": False,
        "envs": [{"name": "A", "value": "1"}, None],
        "secrets": None,
        "services": {"Echo": {"scaling": {"min_replicas": 0, "policy": None}, "extras": None}},
        "canary": None,
        "unknown_field": {"kept": True},
    }
    assert parse(DeploymentBody, body).name == "svc"
    assert parse(CanarySplitBody, {"weight": 10}).route_type is None
