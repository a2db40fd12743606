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
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DECODED_BYTES",
    "BadTraceRequest",
    "Decoded",
    "SpanColumns",
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
NO_TRACE = bytes(16)


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


@dataclass(slots=True)
class SpanColumns:
    """Spans as columns, one list per field of :class:`SpanRow` (all of the same length): how
    the receiver decodes them and the store appends them, with no object per span."""

    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent_id: list[str | None] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    service: list[str] = field(default_factory=list)
    start: list[float] = field(default_factory=list)
    duration_ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    status_message: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.trace_id)

    def lists(self) -> list[list[Any]]:
        """The columns in :data:`SPAN_FIELDS` order."""
        return [getattr(self, name) for name in SPAN_FIELDS]

    def append(self, row: SpanRow) -> None:
        for name in SPAN_FIELDS:
            getattr(self, name).append(getattr(row, name))

    def extend(self, other: SpanColumns) -> None:
        for name in SPAN_FIELDS:
            getattr(self, name).extend(getattr(other, name))

    @classmethod
    def of(cls, rows: Iterable[SpanRow]) -> SpanColumns:
        columns = cls()
        for row in rows:
            columns.append(row)
        return columns

    def rows(self) -> list[SpanRow]:
        return [SpanRow(*values) for values in zip(*self.lists(), strict=True)]


SPAN_FIELDS = tuple(f.name for f in fields(SpanRow))


@dataclass(frozen=True)
class Decoded:
    columns: SpanColumns
    rejected: int
    reason: str

    @property
    def spans(self) -> list[SpanRow]:
        return self.columns.rows()


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


def _json_head(resource: dict[str, Any]) -> str:
    """The resource's attributes as the start of a JSON object (``{"resource.k": v``, no
    closing brace), which each span's own attributes complete."""
    return json.dumps({f"resource.{k}": v for k, v in resource.items()}, default=str)[:-1]


def _json_attributes(head: str, own: Any) -> str:
    """The JSON object of a resource's ``head`` and a span's ``own`` attributes, as
    ``json.dumps`` writes it (the span's win, as JSON's last key does). Strings and integers,
    most values, are written here without a dict between."""
    if not own:
        return head + "}"
    parts = []
    for kv in own:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            text = value.string_value
            if len(text) > MAX_ATTRIBUTE_CHARACTERS:
                text = text[:MAX_ATTRIBUTE_CHARACTERS]
            parts.append(f"{_quote(kv.key)}: {_quote(text)}")
        elif kind == "int_value":
            parts.append(f"{_quote(kv.key)}: {value.int_value}")
        else:
            parts.append(f"{_quote(kv.key)}: {json.dumps(_value(value), default=str)}")
    written = ", ".join(parts)
    return f"{{{written}}}" if head == "{" else f"{head}, {written}}}"


def decode_request(body: bytes, content_type: str, encoding: str = "") -> Decoded:
    """The spans of an OTLP/HTTP trace request's body, as columns."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"body: larger than {MAX_BODY_BYTES // 2**20} MiB")
    request = _message(_inflate(body, encoding.lower().strip()), content_type.lower().strip())
    columns = SpanColumns()
    trace_ids, span_ids, parent_ids = columns.trace_id, columns.span_id, columns.parent_id
    names, kinds, services = columns.name, columns.kind, columns.service
    starts, durations = columns.start, columns.duration_ms
    statuses, messages, attributes = columns.status, columns.status_message, columns.attributes
    rejected = 0
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "")
        head = _json_head(resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                name, kind = span.name, span.kind
                if kind == INTERNAL_KIND and name.endswith(ASGI_EVENT_SUFFIXES):
                    continue
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or len(span_id) != 8 or trace_id == NO_TRACE:
                    rejected += 1
                    continue
                parent = span.parent_span_id
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                status = span.status
                trace_ids.append(trace_id.hex())
                span_ids.append(span_id.hex())
                parent_ids.append(parent.hex() if parent else None)
                names.append(name[:512])
                kinds.append(kind)
                services.append(service)
                starts.append(start / 1e9)
                durations.append((end - start) / 1e6 if end > start else 0.0)
                statuses.append(status.code)
                messages.append(status.message[:1024])
                attributes.append(_json_attributes(head, span.attributes))
    reason = "a span without a valid trace or span id" if rejected else ""
    return Decoded(columns, rejected, reason)
