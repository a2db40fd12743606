"""Tracing figures: the endpoint tracing every request against tracing none, the OTLP
receiver's ingest, and the trace search over a day of spans.

Two control planes serve the echo bento, one with ``--trace-sample 1.0`` and one with ``0.0``
(its revisions keep bentoml's exporter configured, and are sent no sampled ``traceparent``);
each round loads both endpoints as the proxy figures do, the order swapped every round. The
goal is judged on the median of the rounds' ratios: a round's two loads run seconds apart, so
other work on the machine moves both alike. The revisions make no span of each ASGI message
(``rollout/service_site``), as the control plane starts them. The CPU figure is the traced
plane's CPU per request (proxy span, the revision's spans received and both stored) minus the
untraced plane's, read ``SETTLE`` seconds after each load so that the spans in flight are in.

The receiver's ingest: OTLP protobuf batches of 512 spans (made by the OpenTelemetry SDK's
encoder), posted with an API token by this process from ``SENDERS`` threads to the traced
plane, whose threads are pinned to one core (this process to another); a batch is stored
when its answer comes. Its baseline is decoding the same batches alone, in this process.

The search: a day of one deployment's spans (``DAY_SPANS``: proxy span, bentoml's server
span, two spans of user code; a tenth of the roots with a caller's parent that is not stored,
1% of traces with an error) in a ``SpanStore`` on a DuckDB file opened as the control plane
opens it, then ``SpanStore.roots`` over the whole day. The rows are made by one SQL insert
into the store's own table rather than through ``SpanStore.insert``, which would spend most of
this module's time budget on a million spans.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from bentoship import Client, Rollout
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, push, wait_until_ready

from .common import RUNS, Row, Sample, build_fixture, timed
from .proxy import SECONDS, cpu_seconds, load

NAME = "traced"
SETTLE = 2.5
"""Seconds after each load for the revision's exporter (every 0.5 s) and the endpoint's spans
(written with the next received batch, or after 2 s)."""
SPANS_PER_BATCH = 512
SPANS_PER_TRACE = 4
BATCHES = 60
"""OTLP requests per ingest run."""
SENDERS = 4
INGEST_SERVICE = "bench-ingest"
PROTOBUF = "application/x-protobuf"
DAY_SPANS = 1_000_000
SLOW_MS = 75.0
"""About the day's p99 root duration (the latency chart's link to its slowest traces)."""


def _metered(plane: psutil.Process, url: str) -> dict[str, float]:
    """One unpaced load, with the plane's and its services' CPU per answered request."""
    services = plane.children(recursive=True)
    before, service = cpu_seconds([plane]), cpu_seconds(services)
    result = load(url)
    time.sleep(SETTLE)
    answered = result["rps"] * SECONDS
    result["plane_us"] = (cpu_seconds([plane]) - before) / answered * 1e6
    result["service_us"] = (cpu_seconds(services) - service) / answered * 1e6
    return result


def _spans_of_load(data_dir: Path) -> tuple[int, int]:
    """The stopped traced plane's stored spans of the endpoint and of the service."""
    import duckdb

    with duckdb.connect(str(data_dir / "observe.duckdb"), read_only=True) as db:
        row = db.execute(
            "SELECT count(*) FILTER (service = 'bentoship-endpoint'), "
            f"count(*) FILTER (service NOT IN ('bentoship-endpoint', '{INGEST_SERVICE}')) "
            "FROM spans"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _ingested(data_dir: Path) -> int:
    import duckdb

    with duckdb.connect(str(data_dir / "observe.duckdb"), read_only=True) as db:
        found = "SELECT count(*) FROM spans WHERE service = ?"
        row = db.execute(found, [INGEST_SERVICE]).fetchone()
    return int(row[0]) if row else 0


def _batch(rng: random.Random) -> tuple[bytes, str]:
    """One OTLP request of SPANS_PER_BATCH spans, as a service's exporter sends it, and the
    id of its first trace."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    resource = Resource.create(
        {"service.name": INGEST_SERVICE, "service.namespace": "echo", "service.version": "v1"}
    )
    attributes: dict[str, str | int] = {
        "http.method": "POST",
        "http.route": "/echo",
        "http.target": "/echo",
        "http.status_code": 200,
        "http.flavor": "1.1",
        "net.peer.ip": "127.0.0.1",
    }
    names = ("POST /echo", "echo", "tokenize", "model")
    sampled = TraceFlags(TraceFlags.SAMPLED)
    spans = []
    first = ""
    now = time.time_ns()
    for _ in range(SPANS_PER_BATCH // SPANS_PER_TRACE):
        trace_id = rng.getrandbits(128)
        first = first or f"{trace_id:032x}"
        ids = [rng.getrandbits(64) for _ in range(SPANS_PER_TRACE)]
        failed = rng.random() < 0.01
        for depth, span_id in enumerate(ids):
            parent = SpanContext(trace_id, ids[depth - 1], False, sampled) if depth else None
            status = StatusCode.ERROR if failed and depth == SPANS_PER_TRACE - 1 else None
            spans.append(
                ReadableSpan(
                    name=names[depth],
                    context=SpanContext(trace_id, span_id, False, sampled),
                    parent=parent,
                    resource=resource,
                    attributes=attributes if depth == 0 else {"code.depth": depth},
                    kind=SpanKind.SERVER if depth == 0 else SpanKind.INTERNAL,
                    status=Status(status) if status else Status(StatusCode.UNSET),
                    start_time=now + depth * 1000,
                    end_time=now + 2_000_000 - depth * 1000,
                )
            )
    return encode_spans(spans).SerializeToString(), first


@contextmanager
def _pinned(plane: psutil.Process) -> Iterator[None]:
    """Every thread of ``plane`` (and those it starts) on the first core, this thread (and
    the threads it starts) on the others; this thread's cores restored afterwards."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield
        return
    for thread in plane.threads():
        os.sched_setaffinity(thread.id, {cores[0]})
    os.sched_setaffinity(0, set(cores[1:]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cores))


def _ingest(
    plane: LocalControlPlane, process: psutil.Process
) -> tuple[list[float], list[float], list[float]]:
    """Per run: spans stored per second, spans decoded per second in this process, and the
    plane's CPU seconds per 1,000 spans stored."""
    from bentoship.server.observe.otlp import decode_request

    assert plane.connection is not None
    rng = random.Random()
    runs = [[_batch(rng) for _ in range(BATCHES)] for _ in range(RUNS)]
    spans = BATCHES * SPANS_PER_BATCH
    headers = {
        "Authorization": f"Bearer {plane.connection.token}",
        "Content-Type": PROTOBUF,
        "X-Bentoship-Deployment": NAME,
    }
    stored, decoded, cpu = [], [], []
    with (
        httpx.Client(
            base_url=plane.endpoint, headers=headers, timeout=120, trust_env=False
        ) as http,
        _pinned(process),
        ThreadPoolExecutor(SENDERS) as pool,
    ):

        def post(body: bytes) -> int:
            return http.post("/v1/traces", content=body).status_code

        def decode_all(bodies: list[bytes]) -> None:
            for body in bodies:
                decode_request(body, PROTOBUF)

        def send_all(bodies: list[bytes]) -> None:
            statuses = set(pool.map(post, bodies))
            if statuses != {200}:
                raise RuntimeError(f"the receiver answered {sorted(statuses)}")

        for batches in runs:
            bodies = [body for body, _ in batches]
            decoded.append(spans / timed(functools.partial(decode_all, bodies)))
            before = cpu_seconds([process])
            seconds = timed(functools.partial(send_all, bodies))
            cpu.append((cpu_seconds([process]) - before) / spans * 1000)
            stored.append(spans / seconds)
            for _, trace_id in (batches[0], batches[-1]):
                whole = http.get(f"/api/v2/traces/{trace_id}").json()
                if len(whole.get("spans", ())) != SPANS_PER_TRACE:
                    raise RuntimeError(f"trace {trace_id} is not stored whole: {whole}")
    return stored, decoded, cpu


DAY_SQL = """
INSERT INTO spans (trace_id, span_id, parent_id, name, kind, service, deployment, revision,
                   start, duration_ms, status, status_message, attributes, received, is_root)
WITH traces AS (
    SELECT i, md5('bench' || i::VARCHAR) AS trace_id,
           $start + 86400.0 * (i + random()) / $traces AS start,
           exp(2.5 + 0.8 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS duration,
           random() < 0.01 AS failed
    FROM range($traces) r(i)
)
SELECT trace_id, substr(md5(trace_id || k::VARCHAR), 1, 16),
       CASE WHEN k > 0 THEN substr(md5(trace_id || (k - 1)::VARCHAR), 1, 16)
            WHEN i % 10 = 0 THEN substr(md5('caller' || i::VARCHAR), 1, 16) END,
       ['POST /echo', 'POST /echo', 'echo', 'model'][k + 1], CASE WHEN k < 2 THEN 2 ELSE 1 END,
       CASE WHEN k = 0 THEN 'bentoship-endpoint' ELSE 'Echo' END, $deployment,
       CASE WHEN i < $traces / 2 THEN 'r1' ELSE 'r2' END,
       start + k * 0.0002, duration * (1 - k * 0.2),
       CASE WHEN failed AND k IN (0, 3) THEN 2 ELSE 0 END, '',
       '{"http.request.method": "POST", "url.path": "/echo", "bentoship.role": "stable"}', start,
       k = 0
FROM traces, range(4) s(k)
"""


def _search(workdir: Path) -> dict[str, list[float]]:
    """Seconds per search over a day of spans, RUNS of each, and of the baseline count."""
    from bentoship.server.observe.analytics import Readers, open_analytics
    from bentoship.server.observe.spans import SpanStore

    database = open_analytics(workdir / "search" / "observe.duckdb")
    readers = Readers(database)
    try:
        written = database.cursor()
        store = SpanStore(written, readers, retention=7 * 86400.0)
        start = time.time() - 86400.0
        traces = DAY_SPANS // SPANS_PER_TRACE
        written.execute(DAY_SQL, {"start": start, "traces": traces, "deployment": NAME})
        written.execute("CHECKPOINT")
        day: dict[str, Any] = {"since": start, "until": start + 86400.0, "limit": 100}
        searches: dict[str, Callable[[], object]] = {
            "count": lambda: (
                readers()
                .execute("SELECT count(*) FROM spans WHERE deployment = ?", [NAME])
                .fetchone()
            ),
            "roots": lambda: _whole(store.roots(NAME, **day)),
            "errors": lambda: _whole(store.roots(NAME, errors_only=True, **day), errors=True),
            "slow": lambda: _whole(store.roots(NAME, min_duration_ms=SLOW_MS, **day)),
        }
        times: dict[str, list[float]] = {key: [] for key in searches}
        for _ in range(RUNS):
            for key, search in searches.items():
                times[key].append(timed(search))
        return times
    finally:
        readers.close()
        database.close()


def _whole(found: list[dict[str, Any]], errors: bool = False) -> None:
    if len(found) != 100 or any(t["spans"] != SPANS_PER_TRACE for t in found):
        raise RuntimeError(f"the search found {len(found)} traces, not 100 whole ones")
    if errors and not all(t["error"] for t in found):
        raise RuntimeError("the search for errors found a trace without one")


def _serving(stack: ExitStack, plane: LocalControlPlane, tag: str) -> tuple[Client, Rollout]:
    """The echo bento deployed (not yet waited for) on ``plane``, and a client of it."""
    assert plane.connection is not None
    client = stack.enter_context(Client(plane.endpoint, plane.connection.token))
    push(tag, client=client)
    return client, deploy(NAME, tag, client=client)


def run(workdir: Path) -> list[Row]:
    tag = build_fixture("echo", workdir, "v1")
    traced: list[dict[str, float]] = []
    untraced: list[dict[str, float]] = []
    with ExitStack() as stack:
        on = stack.enter_context(LocalControlPlane(workdir / "traced-plane", trace_sample=1.0))
        off = stack.enter_context(LocalControlPlane(workdir / "untraced-plane", trace_sample=0.0))
        rollouts = [_serving(stack, plane, tag) for plane in (on, off)]
        on_url, off_url = (wait_until_ready(r, client=c).url for c, r in rollouts)
        assert on.process is not None and off.process is not None
        on_process, off_process = psutil.Process(on.process.pid), psutil.Process(off.process.pid)
        for round_ in range(RUNS):
            pair = [(traced, on_process, on_url), (untraced, off_process, off_url)]
            for figures, process, url in pair if round_ % 2 else reversed(pair):
                figures.append(_metered(process, url))
        stored, decoded, ingest_cpu = _ingest(on, on_process)
    proxy_spans, service_spans = _spans_of_load(on.data_dir)
    if _ingested(on.data_dir) != RUNS * BATCHES * SPANS_PER_BATCH:
        raise RuntimeError("the receiver did not store every span it answered for")
    searched = _search(workdir)
    for t, u in zip(traced, untraced, strict=True):
        print(
            f"  tracing: {t['rps']:.0f} vs {u['rps']:.0f} req/s ({t['rps'] / u['rps']:.2f}x), "
            f"plane {t['plane_us']:.0f} vs {u['plane_us']:.0f} us/request, service "
            f"{t['service_us']:.0f} vs {u['service_us']:.0f} us/request",
            file=sys.stderr,
        )
    print(
        f"  ingest: plane CPU {statistics.median(ingest_cpu) * 1000:.0f} us per span; stored "
        f"spans of the loads: {proxy_spans} of the endpoint, {service_spans} of the service",
        file=sys.stderr,
    )
    rps_on = Sample.of([r["rps"] for r in traced])
    rps_off = Sample.of([r["rps"] for r in untraced])
    pairs = list(zip(traced, untraced, strict=True))
    paired = statistics.median(t["rps"] / u["rps"] for t, u in pairs)
    extra_us = Sample.of([t["plane_us"] - u["plane_us"] for t, u in pairs])
    plane_us = Sample.of([r["plane_us"] for r in untraced])
    service_extra = statistics.median(t["service_us"] - u["service_us"] for t, u in pairs)
    ingest = Sample.of(stored)
    stored_per_request = (proxy_spans + service_spans) / max(1, proxy_spans)
    count = Sample.of(searched["count"])
    day = f"a day of {DAY_SPANS / 1e6:g}M spans"

    def search_row(key: str, what: str) -> Row:
        figure = Sample.of(searched[key])
        return Row(
            f"trace search, {what}, {day}",
            "ms",
            figure,
            count,
            "count(*) of the deployment's spans",
            "<= 200 ms",
            figure.median <= 0.2,
        )

    return [
        Row(
            f"proxy throughput, tracing every request ({paired:.2f}x, the median round's)",
            "req/s",
            rps_on,
            rps_off,
            "the proxy tracing none",
            ">= 0.9x",
            paired >= 0.9,
        ),
        Row(
            f"plane CPU per traced request ({stored_per_request:.1f} spans stored per request; "
            f"service CPU {service_extra:+.0f} us)",
            "us",
            extra_us,
            plane_us,
            "the plane's CPU per request, not traced",
            "(reported)",
            True,
        ),
        Row(
            f"OTLP receiver ingest, {SPANS_PER_BATCH}-span protobuf batches, one core "
            f"(plane CPU {statistics.median(ingest_cpu) * 1000:.0f} us per span)",
            "spans/s",
            ingest,
            Sample.of(decoded),
            "decoding the batches alone",
            ">= 20,000/s",
            ingest.median >= 20_000,
        ),
        search_row("roots", "newest 100 traces"),
        search_row("errors", "status=error"),
        search_row("slow", f"min_duration {SLOW_MS:g} ms"),
    ]
