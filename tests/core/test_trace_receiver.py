"""The OTLP trace receiver's decoding and the span store, without a process: what the real
``opentelemetry-exporter-otlp-proto-http`` encoder sends (protobuf, JSON, gzip), refusals of
malformed and oversized bodies, each span stored once, a trace read back whole, and the first
request of a revision recorded in the trace of the deploy that made it."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from dataclasses import replace

import duckdb
import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bentoship.server.endpoint.tracing import DeployParent, Tracing
from bentoship.server.errors import Invalid
from bentoship.server.observe.otlp import (
    MAX_BODY_BYTES,
    BadTraceRequest,
    SpanColumns,
    TooLarge,
    decode_request,
)
from bentoship.server.observe.span_buffer import FIRST_REQUEST, SpanBuffer
from bentoship.server.observe.span_export import encode_spans as encode_stored
from bentoship.server.observe.spans import SCHEMA, Origin, SpanStore, trace_id_of
from bentoship.server.observe.writer import AnalyticsWriter


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def finished_spans() -> list[ReadableSpan]:
    """A root span, a child and a grandchild that errors, as a service would make them."""
    kept = Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "Echo"}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("POST /classify", kind=trace.SpanKind.SERVER),
        tracer.start_as_current_span("classify", attributes={"x": 7}),
        tracer.start_as_current_span("model") as inner,
    ):
        inner.set_status(trace.Status(trace.StatusCode.ERROR, "boom"))
    return kept.spans


def protobuf_body() -> tuple[bytes, list[ReadableSpan]]:
    spans = finished_spans()
    return encode_spans(spans).SerializeToString(), spans


def otlp_json(body: bytes) -> bytes:
    """The same request as OTLP JSON: hex ids, as the spec writes them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    data = json_format.MessageToDict(request)
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(data).encode()


def test_protobuf_json_and_gzip_decode_to_the_same_spans() -> None:
    body, spans = protobuf_body()
    from_protobuf = decode_request(body, "application/x-protobuf")
    from_json = decode_request(otlp_json(body), "application/json")
    from_gzip = decode_request(gzip.compress(body), "application/x-protobuf", "gzip")
    assert from_protobuf.spans == from_json.spans == from_gzip.spans
    assert from_protobuf.rejected == 0 and len(from_protobuf.spans) == 3
    by_name = {s.name: s for s in from_protobuf.spans}
    root, child, model = by_name["POST /classify"], by_name["classify"], by_name["model"]
    assert root.parent_id is None and child.parent_id == root.span_id
    assert model.parent_id == child.span_id and model.status == 2
    assert root.trace_id == f"{spans[0].context.trace_id:032x}"
    assert root.service == "Echo" and json.loads(child.attributes)["x"] == 7
    assert root.duration_ms >= child.duration_ms >= 0


def test_malformed_and_oversized_bodies_are_refused() -> None:
    body, _ = protobuf_body()
    for bad, kind, encoding in [
        (b"\xff\xff not protobuf", "application/x-protobuf", ""),
        (b"{not json", "application/json", ""),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            "",
        ),
        (body, "text/plain", ""),
        (b"not gzip", "application/x-protobuf", "gzip"),
        (body, "application/x-protobuf", "br"),
    ]:
        with pytest.raises(BadTraceRequest):
            decode_request(bad, kind, encoding)
    with pytest.raises(TooLarge):
        decode_request(b"x" * (MAX_BODY_BYTES + 1), "application/x-protobuf")
    bomb = gzip.compress(b"\0" * (65 * 1024 * 1024))
    with pytest.raises(TooLarge):
        decode_request(bomb, "application/x-protobuf", "gzip")


def test_a_span_without_ids_is_rejected_as_a_partial_success() -> None:
    body = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "no ids"}]}]}]}
    ).encode()
    decoded = decode_request(body, "application/json")
    assert decoded.spans == [] and decoded.rejected == 1 and "trace or span id" in decoded.reason


def test_spans_are_stored_once_and_a_trace_reads_back_whole() -> None:
    cursor = duckdb.connect()
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    body, _ = protobuf_body()
    decoded = decode_request(body, "application/x-protobuf")
    origin = Origin("web", "r2")
    start = decoded.spans[0].start
    assert store.add(decoded.spans, origin, now=start) == 3
    assert store.add(decoded.spans, origin, now=start) == 0, "a retried export adds nothing"
    trace_id = decoded.spans[0].trace_id
    whole = store.trace(trace_id)
    assert [s["name"] for s in whole] == ["POST /classify", "classify", "model"]
    assert {s["revision"] for s in whole} == {"r2"} and whole[2]["status"] == "error"
    [root] = store.roots("web", since=start - 1, until=start + 60)
    assert root["name"] == "POST /classify" and root["spans"] == 3 and root["error"]
    assert store.roots("web", since=start - 1, until=start + 60, text="nothing like it") == []
    assert store.roots("web", since=start - 1, until=start + 60, min_duration_ms=1e9) == []
    assert store.roots("other", since=start - 1, until=start + 60) == []
    decimal = str(int(trace_id, 16))
    assert trace_id_of(decimal) == trace_id == trace_id_of(trace_id.upper())
    with pytest.raises(Invalid, match=r"^trace_id: "):
        trace_id_of("nope")
    store.prune(now=start + 7200)
    assert store.trace(trace_id) == []


def test_stored_spans_encode_back_to_what_was_received() -> None:
    rows = [
        {
            "seq": 1,
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "parent_id": None,
            "name": "POST /classify",
            "kind": 2,
            "service": "Echo",
            "deployment": "web",
            "revision": "r2",
            "start": 1765000000.25,
            "duration_ms": 12.5,
            "status": 2,
            "status_message": "boom",
            "attributes": '{"resource.service.name": "Echo", "http.status_code": 500}',
        }
    ]
    [span] = decode_request(encode_stored(rows), "application/x-protobuf").spans
    assert (span.trace_id, span.span_id, span.parent_id) == (
        rows[0]["trace_id"],
        rows[0]["span_id"],
        None,
    )
    assert (span.name, span.kind, span.status, span.service) == ("POST /classify", 2, 2, "Echo")
    assert span.start == pytest.approx(1765000000.25) and span.duration_ms == pytest.approx(12.5)
    assert '"http.status_code": 500' in span.attributes
    assert '"resource.bentoship.revision": "r2"' in span.attributes


def test_a_child_stored_before_its_parent_stops_being_a_root_when_the_parent_arrives() -> None:
    cursor = duckdb.connect()
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    spans = decode_request(protobuf_body()[0], "application/x-protobuf").spans
    root = next(s for s in spans if s.parent_id is None)
    children = [s for s in spans if s.parent_id is not None]
    origin = Origin("web", "r1")
    store.add(children, origin, now=root.start)
    window = {"since": root.start - 1, "until": root.start + 60}
    assert {r["name"] for r in store.roots("web", **window)} == {"classify"}, "orphan child"
    store.add([root], origin, now=root.start)
    [found] = store.roots("web", **window)
    assert found["name"] == "POST /classify" and found["spans"] == 3


def test_bentomls_asgi_message_spans_are_dropped() -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                    "spanId": f"00f067aa0ba902b{n}",
                                    "name": name,
                                    "kind": kind,
                                }
                                for n, (name, kind) in enumerate(
                                    [
                                        ("POST /x", 2),
                                        ("POST /x http send", 1),
                                        ("POST /x http receive", 1),
                                        ("user http send", 3),
                                    ]
                                )
                            ]
                        }
                    ]
                }
            ]
        }
    ).encode()
    kept = decode_request(body, "application/json")
    assert [s.name for s in kept.spans] == ["POST /x", "user http send"] and kept.rejected == 0


def test_a_batch_stores_each_span_once_and_marks_root_candidates() -> None:
    cursor = duckdb.connect()
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    spans = decode_request(protobuf_body()[0], "application/x-protobuf").spans
    root = next(s for s in spans if s.parent_id is None)
    repeated = SpanColumns.of([*spans, root])
    assert store.insert(repeated, ["web"] * 4, ["r1"] * 4, now=root.start) == 3
    assert store.insert(SpanColumns.of(spans), ["web"] * 3, ["r1"] * 3) == 0
    flags = cursor.execute("SELECT name, is_root FROM spans ORDER BY seq").fetchall()
    assert sorted(flags) == [("POST /classify", True), ("classify", False), ("model", False)]
    assert [row["seq"] for row in store.after(0, 10)] == [1, 2, 3]


def test_a_span_table_with_a_primary_key_is_made_again_without_it() -> None:
    cursor = duckdb.connect()
    cursor.execute(
        SCHEMA.replace(
            "is_root BOOLEAN DEFAULT true",
            "is_root BOOLEAN DEFAULT true, PRIMARY KEY (trace_id, span_id)",
        )
    )
    cursor.execute(
        "INSERT INTO spans (trace_id, span_id, name, start) VALUES ('t', 's', 'kept', 1.0)"
    )
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    keys = cursor.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'spans' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    assert keys == [(0,)]
    spans = decode_request(protobuf_body()[0], "application/x-protobuf").spans
    assert store.add(spans, Origin("web", None), now=spans[0].start) == 3
    stored = store.after(0, 10)
    assert stored[0]["name"] == "kept" and len({row["seq"] for row in stored}) == 4


def test_the_first_request_of_a_traced_deploys_revision_is_a_span_of_that_deploy() -> None:
    deploy_trace, deploy_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    parent = DeployParent(deploy_trace, deploy_span, "web", "r2", "uid-2")
    cursor = duckdb.connect()
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    writer = AnalyticsWriter()
    try:
        tracing = Tracing(0.0)
        spans = SpanBuffer(store, writer, tracing)
        spans.await_first(parent)
        assert not tracing.await_first(replace(parent, trace_id="0" * 31 + "1"))
        writer.call(lambda: None)
        restarted = Tracing(0.0)
        SpanBuffer(store, writer, restarted)
        assert restarted.awaited == {"uid-2": parent}, "kept across a restart"

        assert tracing.begin([], revision="uid-1") is None, "another revision: sampled at 0"
        first = tracing.begin([], revision="uid-2")
        assert first is not None and first.first == parent
        assert tracing.begin([], revision="uid-2") is None, "only the first request"
        attributes: dict[str, object] = {"url.path": "/hello", "http.response.status_code": 503}
        spans.request_span(first, "POST /hello", "web", "r2", attributes, 12.5, True)
        asyncio.run(spans.flushed())

        [span] = [s for s in store.trace(deploy_trace) if s["name"] == FIRST_REQUEST]
        assert span["parent_id"] == deploy_span and span["revision"] == "r2"
        assert span["deployment"] == "web" and span["status"] == "error"
        assert span["duration_ms"] == 12.5 and span["start"] == first.start
        assert span["attributes"]["bentoship.request.trace_id"] == first.trace_id
        assert span["attributes"]["http.response.status_code"] == 503
        [request] = store.trace(first.trace_id)
        assert request["span_id"] == span["attributes"]["bentoship.request.span_id"]
        again = Tracing(0.0)
        SpanBuffer(store, writer, again)
        assert again.awaited == {}, "served: not awaited after a restart"
    finally:
        writer.close()


def test_received_spans_are_stored_with_the_endpoints_waiting_spans_before_the_answer() -> None:
    cursor = duckdb.connect()
    store = SpanStore(cursor, lambda: cursor, retention=3600)
    writer = AnalyticsWriter()
    try:
        tracing = Tracing(1.0)
        buffer = SpanBuffer(store, writer, tracing)
        span = tracing.begin([])
        assert span is not None
        buffer.request_span(span, "POST /x", "web", "r1", {}, 1.0, False)
        decoded = decode_request(protobuf_body()[0], "application/x-protobuf")
        buffer.flush_due()
        assert store.trace(span.trace_id) == [], "the endpoint's span waits for company"

        asyncio.run(buffer.received(decoded.columns, Origin("web", "r1")))
        assert len(store.trace(span.trace_id)) == 1
        assert len(store.trace(decoded.columns.trace_id[0])) == 3
        asyncio.run(buffer.received(decoded.columns, Origin("web", "r1")))
        assert len(store.after(0, 100)) == 4, "a repeated export adds nothing"
    finally:
        writer.close()
