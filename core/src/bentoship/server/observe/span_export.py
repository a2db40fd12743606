"""Onward export: every stored span sent on to an OTLP/HTTP backend (an OpenTelemetry
Collector, Jaeger, Tempo), in batches, in the order stored, retried with a backoff while the
backend is away. Ingestion never waits for it: it reads what the store holds, and keeps how
far it got (its watermark) in the store, so after a restart it goes on from there. A batch
sent again after a crash between the backend's answer and the watermark's save is a repeat
that an idempotent backend (the control plane's own receiver, for one) keeps once.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .spans import SpanStore
from .writer import AnalyticsWriter

if TYPE_CHECKING:
    import httpx

__all__ = ["SpanExport", "encode_spans"]

log = logging.getLogger(__name__)
BATCH = 512
IDLE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, int):
        return {"int_value": value}
    if isinstance(value, float):
        return {"double_value": value}
    if isinstance(value, list):
        return {"array_value": {"values": [_any_value(v) for v in value]}}
    return {"string_value": str(value)}


def encode_spans(rows: list[dict[str, Any]]) -> bytes:
    """The stored spans (rows of ``SpanStore.after``) as one OTLP
    ``ExportTraceServiceRequest`` (protobuf), grouped by
    their resource (the ``resource.*`` attributes, the deployment and revision)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    resources: dict[str, dict[str, Any]] = {}
    for row in rows:
        attributes = json.loads(row["attributes"] or "{}")
        own = {k: v for k, v in attributes.items() if not k.startswith("resource.")}
        resource = {k[9:]: v for k, v in attributes.items() if k.startswith("resource.")}
        resource.setdefault("service.name", row["service"] or "unknown")
        if row["deployment"]:
            resource["bentoship.deployment"] = row["deployment"]
        if row["revision"]:
            resource["bentoship.revision"] = row["revision"]
        key = json.dumps(resource, sort_keys=True, default=str)
        resources[key] = resource
        start = int(row["start"] * 1e9)
        span = {
            "trace_id": bytes.fromhex(row["trace_id"]),
            "span_id": bytes.fromhex(row["span_id"]),
            "name": row["name"],
            "kind": row["kind"],
            "start_time_unix_nano": start,
            "end_time_unix_nano": start + int(row["duration_ms"] * 1e6),
            "attributes": [{"key": k, "value": _any_value(v)} for k, v in own.items()],
            "status": {
                "code": int(row["status"] or 0),
                "message": row["status_message"] or "",
            },
        }
        if row["parent_id"]:
            span["parent_span_id"] = bytes.fromhex(row["parent_id"])
        groups[key].append(span)
    request = ExportTraceServiceRequest()
    for key, spans in groups.items():
        resource_spans = request.resource_spans.add()
        for name, value in resources[key].items():
            json_format.ParseDict(
                {"key": name, "value": _any_value(value)}, resource_spans.resource.attributes.add()
            )
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "bentoship"
        for span in spans:
            message = scope.spans.add()
            for field in ("trace_id", "span_id", "parent_span_id"):
                if field in span:
                    setattr(message, field, span.pop(field))
            json_format.ParseDict(span, message, ignore_unknown_fields=True)
    return bytes(request.SerializeToString())


class SpanExport:
    """Sends the store's spans on to ``endpoint`` (``…/v1/traces``) with ``headers``."""

    def __init__(
        self,
        store: SpanStore,
        writer: AnalyticsWriter,
        endpoint: str,
        headers: dict[str, str],
    ) -> None:
        self.store = store
        self.writer = writer
        self.endpoint = endpoint
        self.headers = headers
        self.sent = 0

    async def run(self) -> None:
        import httpx

        watermark = await asyncio.to_thread(self.store.export_watermark, self.endpoint)
        delay = 1.0
        from ..._http import tls_context

        async with httpx.AsyncClient(timeout=30.0, trust_env=False, verify=tls_context()) as http:
            while True:
                rows = await asyncio.to_thread(self.store.after, watermark, BATCH)
                if not rows:
                    await asyncio.sleep(IDLE_SECONDS)
                    continue
                try:
                    await self._send(http, rows)
                except _Retry as exc:
                    log.warning("span export to %s: %s; again in %g s", self.endpoint, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                    continue
                delay = 1.0
                watermark = int(rows[-1]["seq"])
                await self.writer.run(
                    functools.partial(self.store.save_export_watermark, self.endpoint, watermark)
                )
                self.sent += len(rows)

    async def _send(self, http: httpx.AsyncClient, rows: list[dict[str, Any]]) -> None:
        import httpx

        body = await asyncio.to_thread(lambda: gzip.compress(encode_spans(rows)))
        headers = {
            **self.headers,
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
        }
        try:
            answer = await http.post(self.endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Retry(type(exc).__name__) from None
        if answer.status_code in (429, 502, 503, 504) or answer.status_code >= 500:
            raise _Retry(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            log.error(
                "span export to %s refused %d spans with HTTP %d; they are skipped",
                self.endpoint,
                len(rows),
                answer.status_code,
            )


class _Retry(Exception):
    """The backend is away or busy: the same batch goes again after a backoff."""
