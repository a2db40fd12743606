"""The OTLP receiver on a real control plane, fed by the real OpenTelemetry SDK and its
``opentelemetry-exporter-otlp-proto-http`` exporter: spans in protobuf and gzip, attributed to
a revision by its span token or to a deployment by an API caller; refused without a valid
token; then a deployment's traces and one whole trace read back through the API."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from bentoship import Client
from bentoship.models import LogEntry
from bentoship.server import LocalControlPlane
from bentoship.server.span_tokens import span_token
from bentoship.steps import deploy, wait_until_ready
from bentoship.testing import Deployer

NAME = "traced"


@pytest.fixture(scope="module")
def client(
    shared_plane: LocalControlPlane, echo_v1: str, module_bento_deployment: Deployer
) -> Client:
    return module_bento_deployment(echo_v1, name=NAME).api


def send(endpoint: str, headers: dict[str, str], name: str) -> tuple[SpanExportResult, str]:
    """A root span with a child and an erring grandchild, exported in gzipped protobuf."""
    results: list[SpanExportResult] = []
    exporter = OTLPSpanExporter(
        endpoint=f"{endpoint}/v1/traces", headers=headers, compression=Compression.Gzip
    )

    class Recorded(SimpleSpanProcessor):
        def on_end(self, span: object) -> None:
            results.append(exporter.export([span]))  # type: ignore[list-item]

    provider = TracerProvider(resource=Resource.create({"service.name": "caller"}))
    provider.add_span_processor(Recorded(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(name) as root:
        with (
            tracer.start_as_current_span("child"),
            tracer.start_as_current_span("grandchild") as inner,
        ):
            inner.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
        trace_id = f"{root.get_span_context().trace_id:032x}"
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert len(set(results)) == 1, results
    return results[0], trace_id


def test_spans_from_the_real_exporter_are_stored_and_read_back(client: Client) -> None:
    token = client.connection.token
    revision = client.list_revisions(NAME)[0]
    as_revision = {"Authorization": f"Bearer {span_token(token, revision.uid)}"}
    result, trace_id = send(client.endpoint, as_revision, "from the revision")
    assert result is SpanExportResult.SUCCESS
    as_caller = {"Authorization": f"Bearer {token}", "X-Bentoship-Deployment": NAME}
    result, caller_trace = send(client.endpoint, as_caller, "from a caller")
    assert result is SpanExportResult.SUCCESS

    forged = {"Authorization": f"Bearer {span_token('not-the-token', revision.uid)}"}
    assert send(client.endpoint, forged, "forged")[0] is SpanExportResult.FAILURE
    assert send(client.endpoint, {}, "anonymous")[0] is SpanExportResult.FAILURE
    refused = httpx.post(f"{client.endpoint}/v1/traces", content=b"x", headers=as_caller)
    assert refused.status_code == 400 and "Content-Type" in refused.json()["error"]

    headers = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(
        f"{client.endpoint}/api/v2/deployments/{NAME}/traces", headers=headers
    ).json()["traces"]
    roots = {t["trace_id"]: t for t in listed}
    assert set(roots) == {trace_id, caller_trace}, "forged and anonymous spans were not stored"
    assert roots[trace_id]["revision"] == revision.name and roots[trace_id]["spans"] == 3
    assert roots[trace_id]["error"] and roots[caller_trace]["revision"] is None
    errors = httpx.get(
        f"{client.endpoint}/api/v2/deployments/{NAME}/traces",
        params={"status": "error", "q": "from the revision"},
        headers=headers,
    ).json()["traces"]
    assert [t["trace_id"] for t in errors] == [trace_id]

    decimal = str(int(trace_id, 16))
    whole = httpx.get(f"{client.endpoint}/api/v2/traces/{decimal}", headers=headers).json()
    assert [s["name"] for s in whole["spans"]] == ["from the revision", "child", "grandchild"]
    assert whole["spans"][2]["status"] == "error"
    missing = httpx.get(f"{client.endpoint}/api/v2/traces/{'0' * 31}1", headers=headers)
    assert missing.status_code == 404 and "no stored span" in missing.json()["error"]
    assert time.time() - whole["spans"][0]["start"] < 600


def wait_for_trace(client: Client, trace_id: str, name: str) -> list[dict[str, Any]]:
    """The trace's spans once one named ``name`` (the last to end) is stored (and the
    endpoint's, written up to two seconds after the request ends, for a request's trace)."""
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{client.endpoint}/api/v2/traces/{trace_id}", headers=headers)
        found = answer.json().get("spans", []) if answer.status_code == 200 else []
        names = {span["name"] for span in found}
        services = {span["service"] for span in found}
        endpoint = "bentoship-endpoint" in services or name.startswith("bentoship.")
        if name in names and endpoint:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{len(found)} spans of {trace_id} after 30 s: {found}")


def test_one_trace_from_the_caller_through_the_endpoint_to_user_code(client: Client) -> None:
    url = client.get_deployment(NAME).url
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = f"00-{caller_trace}-{caller_span}-01"
    answer = httpx.post(f"{url}/traced", json={}, headers={"traceparent": traceparent})
    assert answer.status_code == 200
    spans = wait_for_trace(client, caller_trace, "user work")
    proxy = next(s for s in spans if s["service"] == "bentoship-endpoint")
    assert proxy["name"] == "POST /traced" and proxy["parent_id"] == caller_span
    assert proxy["revision"] == "r1" and proxy["attributes"]["http.response.status_code"] == 200
    server = next(s for s in spans if s["parent_id"] == proxy["span_id"])
    assert server["service"] == "Echo" and server["revision"] == "r1"
    assert server["name"] == "POST /traced" and server["kind"] == 2
    user = next(s for s in spans if s["name"] == "user work")
    assert user["attributes"]["echo.fail"] is False
    ancestors = {s["span_id"]: s["parent_id"] for s in spans}
    node, chain = user["span_id"], []
    while node in ancestors:
        chain.append(node)
        node = ancestors[node]
    assert proxy["span_id"] in chain and server["span_id"] in chain, "user work nests under both"
    assert proxy["duration_ms"] > 0 and server["duration_ms"] > 0
    assert server["start"] >= proxy["start"], "the revision's span starts once the proxy sent it"
    assert proxy["status"] == server["status"] == "unset"

    failing_trace = "5bf92f3577b34da6a3ce929d0e0e4736"
    failed = httpx.post(
        f"{url}/traced",
        json={"fail": True},
        headers={"traceparent": f"00-{failing_trace}-{caller_span}-01"},
    )
    assert failed.status_code == 500
    wait_for_trace(client, failing_trace, "user work")
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    errors = httpx.get(
        f"{client.endpoint}/api/v2/deployments/{NAME}/traces",
        params={"status": "error"},
        headers=headers,
    ).json()["traces"]
    assert failing_trace in {t["trace_id"] for t in errors}
    assert caller_trace not in {t["trace_id"] for t in errors}


def test_the_requests_log_line_and_monitor_record_resolve_to_its_trace(client: Client) -> None:
    url = client.get_deployment(NAME).url
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4736"
    answer = httpx.post(
        f"{url}/echo",
        json={"text": "traced", "monitor": True},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert answer.status_code == 200
    wait_for_trace(client, trace_id, "POST /echo")
    deadline = time.monotonic() + 30
    lines: list[LogEntry] = []
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not (lines and records):
        lines = client.search_logs(NAME, since="10m", pattern=f"trace={trace_id}")
        records = [
            r
            for r in client.monitoring_records(NAME, "echo_calls", since="10m")
            if r.get("trace_id") == str(int(trace_id, 16))
        ]
        time.sleep(0.2)
    assert lines and records, "the request's log line and monitor record were stored"
    found = re.search(r"trace=([0-9a-f]{32})", lines[0].line)
    assert found is not None
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    by_log = httpx.get(f"{client.endpoint}/api/v2/traces/{found.group(1)}", headers=headers)
    by_record = httpx.get(
        f"{client.endpoint}/api/v2/traces/{records[0]['trace_id']}", headers=headers
    )
    assert by_log.status_code == by_record.status_code == 200
    assert by_log.json() == by_record.json() and by_log.json()["trace_id"] == trace_id


def test_the_pipelines_steps_and_the_new_revisions_first_request_are_one_trace(
    client: Client, echo_v1: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's trace holds the steps, and the first request that the deployed revision
    served (the smoke test's), as a child of the deploy step's span."""
    from bentoship import step_spans
    from bentoship.steps import SmokeTest, smoke_test

    run_trace = "7bf92f3577b34da6a3ce929d0e0e4736"
    monkeypatch.setenv("BENTOSHIP_STEP_SPANS", "1")
    monkeypatch.setenv("TRACEPARENT", f"00-{run_trace}-00f067aa0ba902b7-01")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026-12-06")
    rollout = deploy(NAME, echo_v1, {"envs": {"RUN": "spans"}}, client=client)
    wait_until_ready(rollout, client=client, timeout=120)
    smoke_test(rollout, SmokeTest(api="hello", expected="hello from v1"), client=client)
    for provider in step_spans._providers.values():
        provider.force_flush()
    spans = {s["name"]: s for s in wait_for_trace(client, run_trace, "first request")}
    steps = ("bentoship.deploy", "bentoship.wait", "bentoship.smoke_test")
    assert set(steps) <= set(spans)
    for step in steps:
        span = spans[step]
        assert span["parent_id"] == "00f067aa0ba902b7" and span["deployment"] == NAME
        assert span["attributes"]["bentoship.run_id"] == "manual__2026-12-06"
    deployed = spans["bentoship.deploy"]
    assert deployed["start"] <= spans["bentoship.wait"]["start"]

    first = spans["first request"]
    revision = next(r for r in client.list_revisions(NAME) if rollout.revision in (r.uid, r.name))
    assert first["parent_id"] == deployed["span_id"] and first["revision"] == revision.name
    assert first["deployment"] == NAME and first["status"] == "unset"
    assert first["attributes"]["url.path"] == "/hello"
    assert first["attributes"]["http.response.status_code"] == 200
    assert first["duration_ms"] > 0 and first["start"] >= spans["bentoship.smoke_test"]["start"]
    request_trace = first["attributes"]["bentoship.request.trace_id"]
    assert request_trace != run_trace
    request = wait_for_trace(client, request_trace, "POST /hello")
    proxy = next(s for s in request if s["service"] == "bentoship-endpoint")
    assert proxy["span_id"] == first["attributes"]["bentoship.request.span_id"]
    assert proxy["revision"] == revision.name
