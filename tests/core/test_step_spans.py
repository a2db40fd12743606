"""The steps' spans without a process: a client's API calls carry the current span's
``traceparent`` (and nothing when no span is current, or OpenTelemetry is not imported), and
the steps that ``ship`` runs are children of its span, in one trace."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from bentoship import Client, _http, step_spans
from bentoship.errors import InvalidRequestError
from bentoship.step_spans import traced_step
from bentoship.steps import ship

from .transports import FakeServer


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Step spans on, recorded in memory instead of exported."""
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    monkeypatch.setattr(step_spans, "_tracer", lambda *_: provider.get_tracer("test"))
    monkeypatch.delenv("TRACEPARENT", raising=False)
    return kept


def test_api_calls_carry_the_current_spans_traceparent(finished: InMemorySpanExporter) -> None:
    server = FakeServer(lambda request, n: httpx.Response(200, json={"items": []}))
    with Client("http://plane.test", "token", transport=server.transport()) as client:

        @traced_step("deploy")
        def deploy(name: str, *, client: Client) -> dict[str, str]:
            client.list_deployments()
            return _http.trace_headers()

        inside = deploy("web", client=client)
        client.list_deployments()
    [span] = finished.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    flags = int(context.trace_flags)
    assert flags & 1, "sampled"
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    assert inside == {"traceparent": expected}
    sent, after = (request.headers.get("traceparent") for request in server.requests)
    assert sent == expected and after is None, "no span is current after the step"


def test_no_traceparent_where_opentelemetry_is_not_imported(
    finished: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer = step_spans._tracer("web", None, None)
    with tracer.start_as_current_span("step"):
        assert _http.trace_headers()
        monkeypatch.delitem(sys.modules, "opentelemetry.trace")
        assert _http.trace_headers() == {}


def test_steps_called_by_a_traced_step_are_its_children(finished: InMemorySpanExporter) -> None:
    @traced_step("deploy")
    def deploy(name: str) -> None:
        pass

    @traced_step("ship")
    def shipping(name: str) -> None:
        deploy(name)

    shipping(name="web")
    inner, outer = finished.get_finished_spans()
    assert (inner.name, outer.name) == ("bentoship.deploy", "bentoship.ship")
    assert inner.parent is not None and outer.parent is None
    assert inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id
    assert dict(outer.attributes or {})["bentoship.deployment"] == "web"


def test_ship_is_a_span_that_fails_with_its_error(finished: InMemorySpanExporter) -> None:
    both: Any = {"error_rate": 0.1}
    with pytest.raises(InvalidRequestError):
        ship("web", "echo:v1", shadow=both, canary=both)
    [span] = finished.get_finished_spans()
    assert span.name == "bentoship.ship" and span.status.status_code is StatusCode.ERROR
