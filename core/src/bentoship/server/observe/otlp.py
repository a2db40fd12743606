"""OTLP/HTTP trace requests (``ExportTraceServiceRequest``) into span rows.

bentoml's internal spans of each ASGI message (``POST /x http send``, ``… http receive``) are
dropped: they triple what a traced request stores and tell nothing its server span does not.

Bodies come as protobuf or as JSON, either of them gzipped. OTLP JSON writes trace and span
ids as hex strings (not protobuf JSON's base64) and enums as integers; both are decoded with
``opentelemetry-proto``'s messages. A span without a valid trace or span id is rejected and
counted in ``partial_success``; the others are kept.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DECODED_BYTES",
    "BadTraceRequest",
    "Decoded",
    "SpanRow",
    "TooLarge",
    "decode_request",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest body accepted as sent (413 beyond)."""
MAX_DECODED_BYTES = 64 * 1024 * 1024
"""The largest body accepted once decompressed (413 beyond)."""
MAX_ATTRIBUTE_CHARACTERS = 4096
ASGI_EVENT_SUFFIXES = (" http send", " http receive")
"""bentoml's ASGI middleware makes an internal span of each message a request sends or
receives (three or more per request, some microseconds each): the receiver drops them."""
INTERNAL_KIND = 1


class BadTraceRequest(ValueError):
    """The body is not an OTLP trace request (400)."""


class TooLarge(ValueError):
    """The body is larger than the receiver takes (413)."""


@dataclass(frozen=True, slots=True)
class SpanRow:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: int
    service: str
    start: float
    """Seconds since the epoch."""
    duration_ms: float
    status: int
    """0 unset, 1 ok, 2 error (OTLP's status codes)."""
    status_message: str
    attributes: str
    """The span's and its resource's attributes, as a JSON object."""


@dataclass(frozen=True)
class Decoded:
    spans: list[SpanRow]
    rejected: int
    reason: str


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise BadTraceRequest(f"Content-Encoding {encoding!r}: send gzip or none")
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = inflater.decompress(body, MAX_DECODED_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise BadTraceRequest(f"body: not gzip ({exc})") from None
    if len(data) > MAX_DECODED_BYTES:
        raise TooLarge(f"body: larger than {MAX_DECODED_BYTES // 2**20} MiB once decompressed")
    return data


def _hex_ids_to_base64(value: Any) -> Any:
    """OTLP JSON's hex ``traceId``/``spanId``/``parentSpanId`` as protobuf JSON's base64."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str):
                try:
                    out[key] = base64.b64encode(bytes.fromhex(item)).decode() if item else ""
                except ValueError:
                    raise BadTraceRequest(f"{key}: {item[:40]!r} is not hex") from None
            else:
                out[key] = _hex_ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def _message(body: bytes, content_type: str) -> Any:
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise BadTraceRequest(f"body: not JSON ({exc})") from None
        try:
            json_format.ParseDict(_hex_ids_to_base64(data), request, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise BadTraceRequest(f"body: not an OTLP trace request ({exc})") from None
        return request
    if content_type not in ("application/x-protobuf", "application/protobuf"):
        raise BadTraceRequest(
            f"Content-Type {content_type!r}: send application/x-protobuf or application/json"
        )
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadTraceRequest(f"body: not an OTLP trace request ({exc})") from None
    return request


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    value = getattr(any_value, kind)
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARACTERS:
        return value[:MAX_ATTRIBUTE_CHARACTERS]
    return value


def _attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in attributes}


def decode_request(body: bytes, content_type: str, encoding: str = "") -> Decoded:
    """The spans of an OTLP/HTTP trace request's body."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"body: larger than {MAX_BODY_BYTES // 2**20} MiB")
    request = _message(_inflate(body, encoding.lower().strip()), content_type.lower().strip())
    spans: list[SpanRow] = []
    rejected = 0
    reasons: set[str] = set()
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.kind == INTERNAL_KIND and span.name.endswith(ASGI_EVENT_SUFFIXES):
                    continue
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    rejected += 1
                    reasons.add("a span without a valid trace or span id")
                    continue
                attributes = {**{f"resource.{k}": v for k, v in resource.items()}}
                attributes.update(_attributes(span.attributes))
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                spans.append(
                    SpanRow(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() if span.parent_span_id else None,
                        name=span.name[:512],
                        kind=int(span.kind),
                        service=service,
                        start=start / 1e9,
                        duration_ms=max(0, end - start) / 1e6,
                        status=int(span.status.code),
                        status_message=span.status.message[:1024],
                        attributes=json.dumps(attributes, default=str),
                    )
                )
    return Decoded(spans, rejected, "; ".join(sorted(reasons)))
