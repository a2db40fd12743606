"""The API fuzzed against its own OpenAPI document, on a real control plane over HTTP.

Schemathesis generates requests for every route from the published document, with a fixed
seed: valid ones (positive mode) and ones that break the document (negative mode: wrong types,
missing fields), and a share of them made hostile in ways a schema cannot describe: JSON nested
100,000 levels deep, and ``nan``, ``inf`` or ``1e999`` for a number in the query. Any 5xx, or
any answer that breaks the document, fails the test. Then its stateful mode follows the
document's links: create a repository, create versions in it, read and update them; create
deployments (of bentos that do not exist here, so no process starts) and act on them.

One deployment really runs (the echo bento), and the routes that read a deployment are aimed
at it, so their checks of the query (``…/wait?timeout=nan``) meet a real deployment; writes
get random names, so fuzzing never restarts it.
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
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from bentoship.server import LocalControlPlane

from .api import Api

pytestmark = pytest.mark.slow  # every test here talks to a control plane of its own

EXAMPLES = int(os.environ.get("BENTOSHIP_FUZZ_EXAMPLES", "37"))
"""Requests per route: 37, over 2,000 in all (55 routes) in `make test` (the test checks it)."""
SEED = 20261130
ANSWER_WITHIN = 10.0
"""Seconds: a request unanswered by then is a failure (a hang)."""
HOSTILE_NUMBERS = ("nan", "NaN", "inf", "-inf", "1e999", "-1e999", "0x10", "1_0", "\x00")
DEPTHS = (33, 1_000, 100_000)
WRONG_TYPES = (5, -1, 1.5, "5", True, None, [], [5], {}, {"key": 5}, [{"key": []}])
TWISTS = st.one_of(
    st.none(),
    st.sampled_from(HOSTILE_NUMBERS).map(lambda value: ("number", value)),
    st.sampled_from(DEPTHS).map(lambda depth: ("deep", depth)),
    st.tuples(st.integers(0, 15), st.sampled_from(WRONG_TYPES)).map(lambda v: ("swap", v)),
)
"""No twist, or: a hostile number in the query, a deep body, or one field of the body given a
value of another type (``labels: 5``)."""
CHECKS = [not_a_server_error, response_schema_conformance]
OPENAPI_PATH = "/api/v1/bentoship/openapi.json"


DEPLOYMENT = "fuzzed"
AIMED: dict[str, dict[str, dict[str, Any]]] = {
    "GET /api/v2/deployments/{name}": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/revisions": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/traffic": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/metrics": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/events": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/logs/download": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/logs": {
        "path": {"name": DEPLOYMENT},
        "query": {"follow": "false"},
    },
    "GET /api/v2/deployments/{name}/revisions/{revision}/logs": {
        "path": {"name": DEPLOYMENT, "revision": "r1"}
    },
    "GET /api/v2/deployments/{name}/shadow": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/shadow/pairs": {"path": {"name": DEPLOYMENT}},
    "PUT /api/v2/deployments/{name}/shadow": {"path": {"name": DEPLOYMENT}},
    "POST /api/v2/deployments/{name}/feedback": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/feedback": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/quality": {"path": {"name": DEPLOYMENT}},
    "GET /api/v2/deployments/{name}/wait": {
        "path": {"name": DEPLOYMENT},
        "query": {"status": "running", "phase": "serving", "timeout": 0},
    },
}
"""Read routes aimed at the running deployment. A wait knows its status and phase, so it waits
(for 0 s, unless a twist puts a hostile number there); logs are searched, not followed (a
followed log is a stream that does not end)."""
BENTOS = "/api/v1/bento_repositories/{repo}/bentos"
REPOSITORY = "echo"
for _method in ("GET", "POST"):
    AIMED[f"{_method} {BENTOS}"] = {"path": {"repo": REPOSITORY}}
"""New versions of the pushed bento's repository, so their bodies meet a real repository (and
reads of its pushed version: see the test)."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, echo_v1: str) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(tmp_path_factory.mktemp("fuzzed")) as plane:
        api = Api(plane)
        api.push(echo_v1)
        api.create(DEPLOYMENT, echo_v1)
        api.wait_status(DEPLOYMENT, {"running"})
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
    assert {
        "POST /api/v2/deployments",
        "PUT /api/v2/deployments/{name}/canary",
        "PUT /api/v2/deployments/{name}/shadow",
        "GET /api/v2/deployments/{name}/shadow/pairs",
        "POST /api/v2/deployments/{name}/feedback",
        "GET /api/v2/deployments/{name}/quality",
    } <= labels
    assert OPENAPI_PATH in api.raw_schema["paths"]
    create = api.raw_schema["paths"]["/api/v2/deployments"]["post"]
    assert "requestBody" in create and "links" in create["responses"]["200"]


def test_no_generated_request_gets_a_5xx_or_breaks_the_document(
    api: Any, plane: LocalControlPlane, echo_v1: str
) -> None:
    assert plane.connection is not None
    base, token = plane.connection.endpoint, plane.connection.token
    session = requests.Session()
    session.headers["X-YATAI-API-TOKEN"] = token
    sent: list[str] = []
    failures: list[str] = []
    for result in api.get_all_operations():
        operation = result.ok()
        version = {"repo": REPOSITORY, "version": echo_v1.partition(":")[2]}
        aimed = {**AIMED, f"GET {BENTOS}/{{version}}": {"path": version}}.get(operation.label, {})
        fixed = {
            "path_parameters": aimed.get("path"),
            "query": aimed.get("query"),
            "headers": {"X-YATAI-API-TOKEN": token},
        }

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE, **fixed),
                operation.as_strategy(GenerationMode.NEGATIVE, **fixed),
            ),
            twist=TWISTS,
        )
        def exercise(case: Any, twist: tuple[str, Any] | None) -> None:
            sent.append(case.operation.label)
            try:
                response = send(case, twist, base, session, api.raw_schema)
            except requests.RequestException as exc:
                failures.append(f"{case.operation.label} {twist} -> no answer: {exc}"[:600])
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:  # schemathesis raises a group of failures
                failure = f"{case.operation.label} {twist} -> {response.status_code}: {exc}"
                failures.append(failure[:600])

        exercise()
    summary = sorted({failure.split(": ", 1)[0] for failure in failures})
    assert not failures, "\n".join([*summary, "", "the first in full:", failures[0]])
    print(f"{len(sent)} requests to {len(set(sent))} routes")
    assert len(sent) >= 2_000 if EXAMPLES >= 37 else len(sent) >= 40 * EXAMPLES, len(sent)
    assert httpx.get(f"{base}/api/v1/bentoship/info").status_code == 200
    assert set(AIMED) <= set(sent) and echo_v1.startswith(f"{REPOSITORY}:")
    deployment = Api(plane).get(DEPLOYMENT)
    assert (deployment["status"], deployment["bentoship"]["target_phase"]) == ("running", "serving")
    shadow = Api(plane).http.get(f"/api/v2/deployments/{DEPLOYMENT}/shadow").json()
    assert shadow["active"] is False, "no fuzzed request started mirroring (no candidate)"


def body_fields(document: dict[str, Any], operation: Any) -> list[str]:
    """The top-level fields of ``operation``'s body model, in the published document."""
    body = operation.definition.raw.get("requestBody")
    if body is None:
        return []
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return sorted(document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


def send(
    case: Any, twist: tuple[str, Any] | None, base: str, session: Any, document: dict[str, Any]
) -> Any:
    """``case`` sent, after its twist (see TWISTS)."""
    if twist is None:
        return case.call(base_url=base, session=session, timeout=ANSWER_WITHIN)
    kind, value = twist
    numbers = [
        p["name"]
        for p in case.operation.definition.raw.get("parameters", [])
        if p["in"] == "query" and p["schema"].get("type") in ("number", "integer")
    ]
    if kind == "number" and numbers:
        case.query = {**(case.query or {}), numbers[0]: value}
        return case.call(base_url=base, session=session, timeout=ANSWER_WITHIN)
    fields = body_fields(document, case.operation)
    if kind == "swap" and fields:
        index, wrong = value
        body = case.body if isinstance(case.body, dict) else {}
        case.body = {**body, fields[index % len(fields)]: wrong}
        case.media_type = "application/json"
        return case.call(base_url=base, session=session, timeout=ANSWER_WITHIN)
    kwargs = case.as_transport_kwargs(base_url=base)
    if kind == "deep" and "requestBody" in case.operation.definition.raw:
        kwargs.pop("json", None)
        kwargs["data"] = b'{"name": ' + b"[" * value + b"]" * value + b"}"
        kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
    return session.request(**kwargs, timeout=ANSWER_WITHIN)


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
