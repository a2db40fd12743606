"""Onward export: a control plane sends every span it stores on to an OTLP/HTTP backend. A
second real control plane stands in as the backend; the sender is killed with SIGKILL while
it exports, started again on the same data dir, and the backend holds every span once."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bentoship.server import LocalControlPlane

pytestmark = pytest.mark.slow  # two control planes of its own

TRACES = 300


def make_traces(endpoint: str, token: str, first: int) -> list[str]:
    """TRACES traces of two spans each, exported to ``endpoint`` by the real SDK exporter."""
    exporter = OTLPSpanExporter(
        endpoint=f"{endpoint}/v1/traces", headers={"Authorization": f"Bearer {token}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "pipeline"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=100))
    tracer = provider.get_tracer("test")
    ids = []
    for n in range(first, first + TRACES):
        with tracer.start_as_current_span(f"step {n}") as root:
            with tracer.start_as_current_span("inner"):
                pass
            ids.append(f"{root.get_span_context().trace_id:032x}")
    provider.shutdown()
    return ids


def backend_spans(backend: LocalControlPlane, trace_ids: list[str]) -> dict[str, int]:
    assert backend.connection is not None
    headers = {"Authorization": f"Bearer {backend.connection.token}"}
    counts = {}
    with httpx.Client(base_url=backend.endpoint, headers=headers, timeout=30) as http:
        for trace_id in trace_ids:
            answer = http.get(f"/api/v2/traces/{trace_id}")
            counts[trace_id] = len(answer.json()["spans"]) if answer.status_code == 200 else 0
    return counts


def test_every_span_reaches_the_backend_once_across_a_kill_of_the_sender(tmp_path: Path) -> None:
    with LocalControlPlane(tmp_path / "backend") as backend:
        assert backend.connection is not None
        headers = f"authorization=Bearer {backend.connection.token}"
        url = f"{backend.endpoint}/v1/traces"
        data_dir = tmp_path / "sender"
        sender = LocalControlPlane(data_dir, otlp_endpoint=url, otlp_headers=headers)
        with sender:
            assert sender.connection is not None
            token = sender.connection.token
            first = make_traces(sender.endpoint, token, 0)
            sender.kill()
        with LocalControlPlane(data_dir, otlp_endpoint=url, otlp_headers=headers) as again:
            second = make_traces(again.endpoint, token, TRACES)
            ids = first + second
            deadline = time.monotonic() + 60
            counts = backend_spans(backend, ids)
            while time.monotonic() < deadline and set(counts.values()) != {2}:
                time.sleep(0.5)
                counts = backend_spans(backend, [i for i, n in counts.items() if n != 2])
                counts = {**dict.fromkeys(ids, 2), **counts}
            assert set(counts.values()) == {2}, "every span of every trace, once"
            whole = httpx.get(
                f"{backend.endpoint}/api/v2/traces/{first[0]}",
                headers={"Authorization": f"Bearer {backend.connection.token}"},
            ).json()["spans"]
            assert [s["name"] for s in whole] == ["step 0", "inner"]
            assert whole[0]["attributes"]["resource.service.name"] == "pipeline"
