"""Traces: the OTLP/HTTP receiver (``POST /v1/traces``) for the revisions' spans and API
callers', and the reads: a deployment's traces (their root spans) and one whole trace."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..endpoint.tracing import DeployParent, incoming_parent
from ..errors import NotFound
from ..observe.hub import Observability
from ..observe.otlp import MAX_BODY_BYTES, BadTraceRequest, TooLarge, decode_request
from ..observe.spans import Origin, SpanStore, trace_id_of
from ..paths import SPANS_PATH
from ..span_tokens import revision_of
from ..store import Deployment
from ..tokens import TokenBook
from .common import Services
from .params import Moment, Params, moment, query

__all__ = ["TracesParams", "await_first_request", "find_traces", "routes"]


class TracesParams(Params):
    """A deployment's traces whose root started from ``since`` to ``until`` (the last hour by
    default), at least ``min_duration`` ms long, only errored ones, of one revision, with
    ``q`` in a span's name or attributes; the newest first, or with ``sort=slowest`` the
    longest first."""

    since: Moment | None = None
    until: Moment | None = None
    min_duration: Annotated[float, Field(ge=0, le=86_400_000, allow_inf_nan=False)] | None = None
    status: Literal["error"] | None = None
    revision: Annotated[str, Field(pattern=r"^r[0-9]{1,9}$")] | None = None
    q: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    sort: Literal["newest", "slowest"] = "newest"


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def routes(services: Services, observability: Observability, tokens: TokenBook) -> list[Route]:
    controller = services.controller
    spans = observability.spans
    server_token = services.settings.token

    def origin_of(request: Request) -> Origin | str:
        """Who sent the spans, or why they are refused."""
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        given = given or request.headers.get("x-yatai-api-token", "")
        if not given:
            return (
                "missing token: a revision's exporter sends its span token, a caller an API token"
            )
        uid = revision_of(server_token, given)
        if uid is not None:
            rev = controller.store.get_revision(uid)
            if rev is None:
                return "the span token names a revision that no longer exists"
            return Origin(rev.deployment, f"r{rev.seq}")
        if isinstance(tokens.authenticate(given.encode()), str):
            return "wrong token: send a revision's span token or a valid API token"
        return Origin(request.headers.get("x-bentoship-deployment") or None, None)

    async def receive(request: Request) -> Response:
        origin = origin_of(request)
        if isinstance(origin, str):
            return _refused(401, origin)
        if (
            origin.deployment is not None
            and controller.store.get_deployment(origin.deployment) is None
        ):
            return _refused(400, f"deployment {origin.deployment} does not exist")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _refused(413, f"body: larger than {MAX_BODY_BYTES // 2**20} MiB")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _refused(413, f"body: larger than {MAX_BODY_BYTES // 2**20} MiB")
        body = b"".join(chunks)
        kind = request.headers.get("content-type", "").split(";")[0]
        try:
            decoded = await asyncio.to_thread(
                decode_request, body, kind, request.headers.get("content-encoding", "")
            )
        except TooLarge as exc:
            return _refused(413, str(exc))
        except BadTraceRequest as exc:
            return _refused(400, str(exc))
        await observability.request_spans.received(decoded.columns, origin)
        return _answer(kind.strip().lower(), decoded.rejected, decoded.reason)

    async def listing(request: Request) -> JSONResponse:
        services.require_extensions()
        name = controller.get(request.path_params["name"]).name
        return JSONResponse(await find_traces(spans, name, query(TracesParams, request)))

    async def one(request: Request) -> JSONResponse:
        services.require_extensions()
        trace_id = trace_id_of(request.path_params["trace_id"])
        found = await asyncio.to_thread(spans.trace, trace_id)
        if not found:
            raise NotFound(
                f"trace {trace_id} has no stored span (it was not sampled, or is older than "
                "the retention)"
            )
        return JSONResponse({"trace_id": trace_id, "spans": found})

    return [
        Route(SPANS_PATH, receive, methods=["POST"]),
        Route("/api/v2/deployments/{name:str}/traces", listing, methods=["GET"]),
        Route("/api/v2/traces/{trace_id:str}", one, methods=["GET"]),
    ]


async def find_traces(spans: SpanStore, name: str, params: TracesParams) -> dict[str, Any]:
    """Deployment ``name``'s traces that ``params`` ask for: the listing route's answer."""
    now = time.time()
    until = moment(params.until, now) if params.until else now
    since = moment(params.since, now) if params.since else until - 3600.0
    found = await asyncio.to_thread(
        functools.partial(
            spans.roots,
            name,
            since=since,
            until=until,
            min_duration_ms=params.min_duration,
            errors_only=params.status == "error",
            revision=params.revision,
            text=params.q,
            limit=params.limit,
            slowest=params.sort == "slowest",
        )
    )
    return {"deployment": name, "since": since, "until": until, "traces": found}


def await_first_request(
    services: Services, request: Request, dep: Deployment, before: str | None
) -> None:
    """After a deploy that sent a sampled ``traceparent`` (its step's span) and made a new
    revision (``dep``'s target is no longer ``before``): the first request that revision
    serves is recorded as a span of the deploy's trace, a child of its span."""
    uid, observed = dep.target_revision, services.observed
    if uid is None or uid == before or observed is None:
        return
    parent = incoming_parent(request.headers.raw)
    name = services.controller.name_of(uid)
    if parent is None or not parent[2] or name is None:
        return
    observed.request_spans.await_first(DeployParent(parent[0], parent[1], dep.name, name, uid))


def _answer(kind: str, rejected: int, reason: str) -> Response:
    """The OTLP success answer, in the request's encoding, with its partial success."""
    if kind == "application/json":
        partial = {"rejectedSpans": str(rejected), "errorMessage": reason} if rejected else {}
        return JSONResponse({"partialSuccess": partial} if partial else {})
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse()
    if rejected:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = reason
    return Response(answer.SerializeToString(), media_type="application/x-protobuf")
