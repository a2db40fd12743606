"""The API fuzzed against its own OpenAPI document, on a real control plane over HTTP.

Schemathesis generates requests for every route from the published document, with a fixed
seed: any 5xx, or any answer that breaks the document, fails the test. Then its stateful mode
follows the document's links: create a repository, create versions in it, read and update
them; create deployments (of bentos that do not exist here, so no process starts) and act on
them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from bentoship.server import LocalControlPlane

pytestmark = pytest.mark.slow  # every test here talks to a control plane of its own

EXAMPLES = int(os.environ.get("BENTOSHIP_FUZZ_EXAMPLES", "10"))
"""Requests per route: 10 (about 450 in all) in `make test`; BENTOSHIP_FUZZ_EXAMPLES=50 sends
about 2,200 (about 45 s on the 2-core machine, beyond the suite's budget today)."""
SEED = 20261130
CHECKS = [not_a_server_error, response_schema_conformance]
OPENAPI_PATH = "/api/v1/bentoship/openapi.json"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("fuzzed")) as plane:
        yield plane


@pytest.fixture(scope="module")
def api(plane: LocalControlPlane) -> Any:
    assert plane.connection is not None
    document = httpx.get(plane.connection.endpoint + OPENAPI_PATH, timeout=30).json()
    return schemathesis.openapi.from_dict(document)


def test_the_document_lists_every_route_with_its_body(api: Any) -> None:
    operations = [result.ok() for result in api.get_all_operations()]
    labels = {op.label for op in operations}
    assert len(operations) >= 44
    assert {"POST /api/v2/deployments", "PUT /api/v2/deployments/{name}/canary"} <= labels
    assert OPENAPI_PATH in api.raw_schema["paths"]
    create = api.raw_schema["paths"]["/api/v2/deployments"]["post"]
    assert "requestBody" in create and "links" in create["responses"]["200"]


def test_no_generated_request_gets_a_5xx_or_breaks_the_document(
    api: Any, plane: LocalControlPlane
) -> None:
    assert plane.connection is not None
    base, token = plane.connection.endpoint, plane.connection.token
    session = requests.Session()
    session.headers["X-YATAI-API-TOKEN"] = token
    sent: list[str] = []
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            response = case.call(base_url=base, session=session)
            sent.append(case.operation.label)
            try:
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:  # schemathesis raises a group of failures
                failures.append(f"{case.operation.label} -> {response.status_code}: {exc}"[:600])

        exercise()
    assert len(sent) >= 40 * EXAMPLES
    assert not failures, "\n".join(failures[:10])
    assert httpx.get(f"{base}/api/v1/bentoship/info").status_code == 200


def test_stateful_sequences_follow_the_links(api: Any, plane: LocalControlPlane) -> None:
    assert plane.connection is not None
    base, token = plane.connection.endpoint, plane.connection.token
    api.config.update(base_url=base, headers={"X-YATAI-API-TOKEN": token})

    class Sequences(api.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Sequences.run(
        settings=settings(
            max_examples=6,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    repositories = httpx.get(
        f"{base}/api/v1/bento_repositories", headers={"X-YATAI-API-TOKEN": token}
    ).json()
    assert repositories["total"] >= 1
