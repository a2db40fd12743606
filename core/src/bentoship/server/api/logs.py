"""A deployment's logs: searched, followed live as Server-Sent Events, and downloaded.

The store is read (and RE2 run over the lines) in worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ..observe.logs import LogLine, LogStore, compile_pattern
from .common import Services
from .params import Moment, Params, moment, query

__all__ = ["LogDownloadParams", "LogSearchParams", "routes"]

MAX_LOG_LINES = 10_000
MAX_PATTERN_CHARACTERS = 1000
PING_SECONDS = 15.0
DOWNLOAD_LINES_PER_CHUNK = 1000


class LogSearchParams(Params):
    """A deployment's log lines: a time window, a revision, an RE2 pattern, those older than
    the line ``before`` (its ``seq``, to page back); or follow them."""

    since: Moment | None = None
    until: Moment | None = None
    revision: Annotated[str, Field(pattern=r"^r[0-9]{1,9}$")] | None = None
    pattern: Annotated[str, Field(max_length=MAX_PATTERN_CHARACTERS)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_LINES)] = 1000
    before: Annotated[int, Field(ge=1)] | None = None
    follow: bool = False

    def window(self, now: float) -> tuple[float | None, float | None]:
        """``since`` and ``until`` in epoch seconds (None when not given)."""
        return (
            None if self.since is None else moment(self.since, now),
            None if self.until is None else moment(self.until, now),
        )


class LogDownloadParams(Params):
    """Every stored line of a deployment, as text or as JSON lines."""

    format: Literal["text", "jsonl"] = "text"


def routes(services: Services, store: LogStore) -> list[Route]:
    controller = services.controller

    async def logs(request: Request) -> JSONResponse | EventSourceResponse:
        """A deployment's log lines; with ``follow=true``, then its new ones, as events."""
        services.require_extensions()
        params = query(LogSearchParams, request)
        name = controller.get(request.path_params["name"]).name
        since, until = params.window(time.time())
        regex = compile_pattern(params.pattern) if params.pattern else None

        def recent() -> list[LogLine]:
            return store.search(
                name,
                since=since,
                until=until,
                revision=params.revision,
                pattern=params.pattern,
                limit=params.limit,
                before=params.before,
            )

        if not params.follow:
            found = await asyncio.to_thread(recent)
            lines = [{**x.to_json(), "seq": x.seq} for x in found]
            return JSONResponse({"deployment": name, "lines": lines})

        def wanted(line: LogLine) -> bool:
            return (
                (params.revision is None or line.revision == params.revision)
                and (since is None or line.t >= since)
                and (until is None or line.t <= until)
                and (regex is None or regex.search(line.line) is not None)
            )

        return EventSourceResponse(_follow(store, name, recent, wanted), ping=PING_SECONDS)

    async def download(request: Request) -> StreamingResponse:
        """Every stored line of a deployment, oldest first, as a file."""
        services.require_extensions()
        jsonl = query(LogDownloadParams, request).format == "jsonl"
        name = controller.get(request.path_params["name"]).name
        filename = f"{name}-logs.{'jsonl' if jsonl else 'txt'}"
        return StreamingResponse(
            _download(store, name, jsonl),
            media_type="application/x-ndjson" if jsonl else "text/plain",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    one = "/api/v2/deployments/{name:str}"
    return [
        Route(f"{one}/logs", logs, methods=["GET"], name="deployment_logs"),
        Route(f"{one}/logs/download", download, methods=["GET"], name="deployment_logs_download"),
    ]


def _event(line: LogLine) -> ServerSentEvent:
    """A followed line, with its ``seq`` (the console pages back from the oldest it shows)."""
    return ServerSentEvent(json.dumps({**line.to_json(), "seq": line.seq}), event="log")


async def _follow(
    store: LogStore,
    name: str,
    recent: Callable[[], list[LogLine]],
    wanted: Callable[[LogLine], bool],
) -> AsyncIterator[ServerSentEvent]:
    """The recent lines, then each new wanted one. Subscribed before the recent ones are read
    (in a thread, while lines are stored): a new line whose ``seq`` is not above the newest
    recent one's was there when they were read, and is not sent again; none is missed."""
    with store.subscribe(name) as queue:
        found = await asyncio.to_thread(recent)
        sent = max((line.seq for line in found), default=0)
        for line in found:
            yield _event(line)
        while True:
            line = await queue.get()
            if line.seq > sent and wanted(line):
                yield _event(line)


async def _download(store: LogStore, name: str, jsonl: bool) -> AsyncIterator[str]:
    render: Callable[[LogLine], Any] = (
        (lambda line: json.dumps(line.to_json())) if jsonl else LogLine.to_text
    )
    chunks = store.chunks(name)
    while found := await asyncio.to_thread(next, chunks, None):
        for start in range(0, len(found), DOWNLOAD_LINES_PER_CHUNK):
            part = found[start : start + DOWNLOAD_LINES_PER_CHUNK]
            yield "\n".join(render(line) for line in part) + "\n"
