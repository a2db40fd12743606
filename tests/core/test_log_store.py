"""The log store, the log file tailer and the logs routes.

Unit tests: no process. DuckDB is a file in tmp_path; the routes run in uvicorn on a thread,
over the real services (a controller on a SQLite store in tmp_path).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bentoship.server.api import logs as log_routes
from bentoship.server.api.common import Services
from bentoship.server.errors import DomainError, Invalid
from bentoship.server.observe import logs as logs_module
from bentoship.server.observe.analytics import open_analytics
from bentoship.server.observe.log_tail import MAX_LINE_BYTES, LogTailer
from bentoship.server.observe.logs import LogLine, LogStore
from bentoship.server.registry.service import Registry
from bentoship.server.responses import error_response
from bentoship.server.rollout.controller import Controller
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Store

from .records import deployment_record


def new_store(tmp_path: Path, **options: Any) -> LogStore:
    return LogStore(open_analytics(tmp_path / "analytics.duckdb").cursor(), **options)


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return new_store(tmp_path)


def texts(lines: list[LogLine]) -> list[str]:
    return [line.line for line in lines]


# the store


def test_search_filters_by_time_revision_and_pattern(store: LogStore) -> None:
    store.append("web", "r1", "stderr", ["boot", "ERROR disk full", "ok"], t=100.0)
    store.append("web", "r2", "stdout", ["ERROR timeout", "served 200"], t=200.0)
    store.append("other", "r1", "stderr", ["ERROR elsewhere"], t=150.0)

    assert texts(store.search("web")) == [
        "boot",
        "ERROR disk full",
        "ok",
        "ERROR timeout",
        "served 200",
    ]
    assert texts(store.search("web", since=150.0)) == ["ERROR timeout", "served 200"]
    assert texts(store.search("web", until=150.0)) == ["boot", "ERROR disk full", "ok"]
    assert texts(store.search("web", revision="r1")) == ["boot", "ERROR disk full", "ok"]
    assert texts(store.search("web", pattern=r"^ERROR \w+")) == ["ERROR disk full", "ERROR timeout"]
    assert texts(store.search("web", pattern="error", revision="r2")) == []
    assert texts(store.search("web", pattern="(?i)error", revision="r2")) == ["ERROR timeout"]
    assert store.search("web", since=150.0)[0] == LogLine(
        200.0, "web", "r2", "stdout", "ERROR timeout"
    )


def test_search_returns_the_last_matches_in_time_order(store: LogStore) -> None:
    store.append("web", "r1", "stdout", [f"line {i}" for i in range(10)], t=1.0)
    store.append("web", "r1", "stdout", [f"line {i}" for i in range(10, 20)], t=2.0)

    assert texts(store.search("web", limit=3)) == ["line 17", "line 18", "line 19"]
    assert texts(store.search("web", limit=3, newest_first=True)) == [
        "line 19",
        "line 18",
        "line 17",
    ]
    assert texts(store.search("web", pattern=r"line 1\d", limit=2)) == ["line 18", "line 19"]
    assert texts(store.search("web", pattern=r"line [2-4]$", limit=5)) == [
        "line 2",
        "line 3",
        "line 4",
    ]


def test_search_pages_back_from_a_line_even_among_lines_of_one_time(store: LogStore) -> None:
    store.append("web", "r1", "stdout", [f"line {i}" for i in range(10)], t=1.0)
    store.append("web", "r1", "stdout", [f"line {i}" for i in range(10, 20)], t=2.0)
    store.append("web", "r1", "stdout", ["late, stored early"], t=0.5)
    newest = store.search("web", limit=4, newest_first=True)
    assert texts(newest) == ["line 19", "line 18", "line 17", "line 16"]
    older = store.search("web", limit=4, newest_first=True, before=newest[-1].seq)
    assert texts(older) == ["line 15", "line 14", "line 13", "line 12"]
    across = store.search("web", limit=4, newest_first=True, before=older[-1].seq)
    assert texts(across) == ["line 11", "line 10", "line 9", "line 8"], "across two times"
    last = store.search("web", limit=20, newest_first=True, before=store.search("web")[1].seq)
    assert texts(last) == ["late, stored early"], "by time, then by the order stored"
    assert texts(store.search("web", limit=2, pattern="1$", before=newest[0].seq)) == [
        "line 1",
        "line 11",
    ]


@pytest.mark.parametrize(
    "pattern",
    [
        r"status=5\d\d",
        r"^INFO",
        r"took=\d+ms$",
        r"(?i)error|WARN",
        r"user=[a-c]+7\b",
        r"[[:digit:]]{3}",
        r"caf\x{e9}|日本",
        r"\.",
    ],
)
def test_the_search_finds_what_google_re2_finds(store: LogStore, pattern: str) -> None:
    import re2

    lines = [
        f"{level} request id={i} status={200 + i % 7 * 50} user={'abc'[i % 3] * (i % 4)}7 "
        f"took={i % 13}ms{' café' if i % 11 == 0 else ''}{' 日本' if i % 17 == 0 else ''}"
        for i, level in zip(range(300), ["INFO", "error", "WARN", "Error"] * 75, strict=True)
    ] + ["a.b", "ab"]
    store.append("web", "r1", "stdout", lines, t=1.0)
    expected = [line for line in lines if re2.search(pattern, line)]
    found = [entry.line for entry in store.search("web", pattern=pattern, limit=10_000)]
    assert expected, pattern
    assert found == expected


def test_a_catastrophic_pattern_is_linear_time(store: LogStore) -> None:
    store.append("web", "r1", "stdout", ["a" * 100_000 + "!", "a" * 100_000, "b"], t=1.0)
    started = time.perf_counter()
    found = store.search("web", pattern="(a+)+$")
    print(f"(a+)+$ over two 100,000-character lines: {time.perf_counter() - started:.3f} s")
    assert [len(line.line) for line in found] == [100_000]


def test_an_invalid_pattern_is_one_short_invalid(store: LogStore) -> None:
    with pytest.raises(Invalid) as raised:
        store.search("web", pattern="(" + "x" * 5000)
    message = raised.value.message
    assert "missing )" in message and "RE2" in message
    assert "\n" not in message and len(message) < 300 and "x" * 100 not in message
    with pytest.raises(Invalid, match="invalid escape sequence"):
        store.search("web", pattern=r"(a)\1")


def test_an_invalid_pattern_is_shown_as_it_was_typed(store: LogStore) -> None:
    with pytest.raises(Invalid) as raised:
        store.search("web", pattern=r"(a+)\1")
    message = raised.value.message
    assert message.startswith(r"pattern '(a+)\1' is not a valid RE2 regular expression")
    assert r"\\1" not in message
    with pytest.raises(Invalid) as raised:
        store.search("web", pattern="(a\nb")
    assert "'(a\\nb'" in raised.value.message and "\n" not in raised.value.message


def test_retention_keeps_the_newest_lines_of_each_revision(tmp_path: Path) -> None:
    store = new_store(tmp_path, max_lines_per_revision=10)
    store.append("web", "r1", "stdout", [f"a{i}" for i in range(7)], t=1.0)
    store.append("web", "r2", "stdout", ["other"], t=1.5)
    store.append("web", "r1", "stderr", [f"a{i}" for i in range(7, 14)], t=2.0)
    assert texts(store.search("web", revision="r1")) == [f"a{i}" for i in range(4, 14)]
    assert texts(store.search("web", revision="r2")) == ["other"]

    reopened = new_store(tmp_path, max_lines_per_revision=10)
    reopened.append("web", "r1", "stdout", ["a14", "a15", "a16"], t=3.0)
    assert texts(reopened.search("web", revision="r1")) == [f"a{i}" for i in range(7, 17)]
    reopened.append("web", "r1", "stdout", [f"b{i}" for i in range(25)], t=4.0)
    assert texts(reopened.search("web", revision="r1")) == [f"b{i}" for i in range(15, 25)]


def test_lines_streams_every_line_in_time_order_and_forget_deletes(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "CHUNK_LINES", 4)
    store.append("web", "r1", "stdout", [f"x{i}" for i in range(6)], t=5.0)
    store.append("web", "r2", "stderr", ["early"], t=1.0)
    store.append("web", "r2", "stderr", [f"y{i}" for i in range(5)], t=5.0)
    store.append("gone", "r1", "stdout", ["bye"], t=1.0)

    streamed = list(store.lines("web"))
    assert texts(streamed) == ["early", *(f"x{i}" for i in range(6)), *(f"y{i}" for i in range(5))]

    store.forget("gone")
    assert list(store.lines("gone")) == []
    assert len(list(store.lines("web"))) == 12


def test_followers_get_new_lines_and_a_slow_one_loses_the_oldest(store: LogStore) -> None:
    with store.subscribe("web", max_lines=3) as queue, store.subscribe("web") as other:
        store.append("web", "r1", "stdout", ["one", "two"], t=1.0)
        store.append("else", "r1", "stdout", ["not mine"], t=1.0)
        store.append("web", "r1", "stderr", ["three", "four"], t=2.0)
        got = [queue.get_nowait().line for _ in range(queue.qsize())]
        assert got == ["two", "three", "four"]
        assert other.qsize() == 4
    store.append("web", "r1", "stdout", ["after"], t=3.0)
    assert queue.empty()


def test_jsonl_files_rotate_and_hold_one_json_object_per_line(tmp_path: Path) -> None:
    files = tmp_path / "files"
    store = new_store(tmp_path, files_dir=files, file_max_bytes=4000, file_backups=2)
    t = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
    for batch in range(30):
        store.append("web", "r3", "stdout", [f"batch {batch} line {i} ü" for i in range(5)], t)
    store.close()

    folder = files / "web"
    assert sorted(p.name for p in folder.iterdir()) == ["web.jsonl", "web.jsonl.1", "web.jsonl.2"]
    records = [json.loads(x) for p in folder.iterdir() for x in p.read_text().splitlines()]
    assert {r["time"] for r in records} == {"2026-01-02T03:04:05.678Z"}
    assert {(r["deployment"], r["revision"], r["stream"]) for r in records} == {
        ("web", "r3", "stdout")
    }
    newest = [json.loads(x)["line"] for x in (folder / "web.jsonl").read_text().splitlines()]
    assert newest[-1] == "batch 29 line 4 ü"
    assert len(records) < 150
    assert all(p.stat().st_size <= 4000 for p in folder.iterdir())


# the tailer


def poll(tailer: LogTailer) -> int:
    return asyncio.run(tailer.poll())


def write(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs" / "r1.log", tmp_path / "logs" / "r1.stdout.log"


def test_tailer_offsets_survive_a_restart(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    state = tmp_path / "tail.json"
    write(err, b"[bentoship] starting\nerr 1\n")
    write(out, b"out 1\n")
    tailer = LogTailer(store, state)
    tailer.watch("web", "r1", err, out)
    assert poll(tailer) == 3
    assert poll(tailer) == 0

    write(err, b"err 2\n")
    write(out, b"out 2\n")
    again = LogTailer(store, state)
    again.watch("web", "r1", err, out)
    assert poll(again) == 2
    assert sorted(texts(store.search("web"))) == [
        "[bentoship] starting",
        "err 1",
        "err 2",
        "out 1",
        "out 2",
    ]
    assert [(x.stream, x.line) for x in store.search("web", pattern="^out")] == [
        ("stdout", "out 1"),
        ("stdout", "out 2"),
    ]
    assert json.loads(state.read_text())["files"][str(err)]["offset"] == err.stat().st_size


def test_tailer_keeps_a_partial_line_until_its_newline(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    tailer = LogTailer(store, tmp_path / "tail.json")
    tailer.watch("web", "r1", err, out)
    write(err, b"whole\npart")
    assert poll(tailer) == 1
    restarted = LogTailer(store, tmp_path / "tail.json")
    restarted.watch("web", "r1", err, out)
    write(err, b"ial\r\n")
    assert poll(restarted) == 1
    assert texts(store.search("web")) == ["whole", "partial"]


def test_tailer_flushes_an_old_partial_line_and_unwatch_reads_the_rest(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    tailer = LogTailer(store, tmp_path / "tail.json", partial_after=0.05)
    tailer.watch("web", "r1", err, out)
    write(out, b"progress 50%")
    assert poll(tailer) == 0
    time.sleep(0.1)
    assert poll(tailer) == 1
    write(out, b" done")
    assert tailer.unwatch("web") == 1
    assert tailer.watched() == []
    assert texts(store.search("web")) == ["progress 50%", " done"]


def test_tailer_rereads_a_truncated_or_replaced_file(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    tailer = LogTailer(store, tmp_path / "tail.json")
    tailer.watch("web", "r1", err, out)
    assert poll(tailer) == 0
    write(err, b"first long line of the old file\n")
    assert poll(tailer) == 1

    err.write_bytes(b"after truncate\n")
    assert poll(tailer) == 1

    replacement = err.with_name("new.log")
    replacement.write_bytes(b"replaced one\nreplaced two and longer than before\n")
    os.replace(replacement, err)
    assert poll(tailer) == 2
    assert texts(store.search("web"))[1:] == [
        "after truncate",
        "replaced one",
        "replaced two and longer than before",
    ]


def test_tailer_cuts_long_lines_and_replaces_bad_bytes(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    tailer = LogTailer(store, tmp_path / "tail.json")
    tailer.watch("web", "r1", err, out)
    write(err, b"x" * (MAX_LINE_BYTES + 10) + b"\nbad \xff\xfe byte\n")
    write(out, b"y" * (3 * MAX_LINE_BYTES))
    assert poll(tailer) == 3
    write(out, b"y" * 100 + b"\nnext\n")
    assert poll(tailer) == 1
    stored = store.search("web")
    assert [len(x.line) for x in stored if x.stream == "stderr"] == [MAX_LINE_BYTES, 11]
    assert stored[1].line == "bad \ufffd\ufffd byte"
    assert [(len(x.line), x.line[:1]) for x in stored if x.stream == "stdout"] == [
        (MAX_LINE_BYTES, "y"),
        (4, "n"),
    ]


def test_tailer_reads_a_backlog_in_bounded_reads_without_splitting_lines(
    tmp_path: Path, store: LogStore, files: tuple[Path, Path]
) -> None:
    err, out = files
    write(err, b"".join(b"%06d " % i + b"z" * 192 + b"\n" for i in range(12_000)))
    tailer = LogTailer(store, tmp_path / "tail.json")
    tailer.watch("web", "r1", err, out)
    assert poll(tailer) == 12_000
    stored = texts(store.search("web", limit=20_000))
    assert stored == [f"{i:06d} " + "z" * 192 for i in range(12_000)]


# the routes


class Served:
    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, store: LogStore) -> None:
        self.url = url
        self.loop = loop
        self.store = store
        self.http = httpx.Client(base_url=f"{url}/api/v2/deployments", timeout=5)

    def append(self, revision: str, lines: list[str], t: float | None = None) -> None:
        """Append in the server's event loop, as the tailer does."""

        async def append() -> None:
            self.store.append("web", revision, "stdout", lines, time.time() if t is None else t)

        asyncio.run_coroutine_threadsafe(append(), self.loop).result(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = ServerSettings(data_dir=tmp_path / "plane", token="t" * 16)
    state = Store(settings.db_path)
    state.insert_deployment(deployment_record("web"))
    services = Services(settings, Controller(settings, state), Registry(settings, state))
    store = new_store(tmp_path)
    loops: list[asyncio.AbstractEventLoop] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loops.append(asyncio.get_running_loop())
        yield

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return error_response(exc.status, exc.message)

    app = Starlette(
        routes=log_routes.routes(services, store),
        exception_handlers={DomainError: domain_error},
        lifespan=lifespan,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    served = Served(f"http://127.0.0.1:{port}", loops[0], store)
    try:
        yield served
    finally:
        served.http.close()
        server.should_exit = True
        thread.join(10)


def get(served: Served, path: str, **params: Any) -> httpx.Response:
    return served.http.get(path, params=params)


def test_the_logs_route_filters(served: Served) -> None:
    now = time.time()
    served.append("r1", ["old boot", "old ERROR"], now - 3600)
    served.append("r2", ["new boot", "new ERROR x"], now - 5)
    served.append("r2", ["newest"], now)

    answer = get(served, "web/logs")
    assert answer.status_code == 200
    body = answer.json()
    assert body["deployment"] == "web"
    assert [x["line"] for x in body["lines"]] == [
        "old boot",
        "old ERROR",
        "new boot",
        "new ERROR x",
        "newest",
    ]
    assert set(body["lines"][0]) == {"time", "t", "deployment", "revision", "stream", "line", "seq"}

    def lines(**params: Any) -> list[str]:
        answer = get(served, "web/logs", **params)
        assert answer.status_code == 200, answer.text
        return [x["line"] for x in answer.json()["lines"]]

    assert lines(since="10m") == ["new boot", "new ERROR x", "newest"]
    assert lines(until="30m") == ["old boot", "old ERROR"]
    assert lines(since=str(now - 60), until="2s") == ["new boot", "new ERROR x"]
    iso = datetime.fromtimestamp(now - 60, UTC).isoformat().replace("+00:00", "Z")
    assert lines(since=iso) == ["new boot", "new ERROR x", "newest"]
    assert lines(revision="r1") == ["old boot", "old ERROR"]
    assert lines(pattern="ERROR( x)?$") == ["old ERROR", "new ERROR x"]
    assert lines(pattern="boot", limit=1) == ["new boot"]
    newest = body["lines"][-1]
    assert lines(before=str(newest["seq"]), limit=2) == ["new boot", "new ERROR x"]


def test_the_logs_route_refuses_bad_queries_in_one_line(served: Served) -> None:
    assert get(served, "nope/logs").status_code == 404
    assert get(served, "nope/logs/download").status_code == 404
    for params, expected in (
        ({"pattern": "(unclosed"}, "missing )"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "10 parsecs"}, "until"),
        ({"revision": "latest"}, "revision"),
        ({"pattern": "a" * 1001}, "pattern"),
    ):
        answer = get(served, "web/logs", **params)
        assert answer.status_code == 400, params
        assert expected in answer.json()["error"], answer.json()
        assert "\n" not in answer.json()["error"]


def test_the_download_holds_every_line(served: Served) -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
    served.append("r1", [f"line {i}" for i in range(2500)], t)
    served.append("r2", ["last"], t + 1)

    answer = get(served, "web/logs/download")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["content-disposition"] == 'attachment; filename="web-logs.txt"'
    text = answer.text.splitlines()
    assert len(text) == 2501
    assert text[0] == "2026-01-02T03:04:05.678Z r1 stdout line 0"
    assert text[-1] == "2026-01-02T03:04:06.678Z r2 stdout last"

    answer = get(served, "web/logs/download", format="jsonl")
    assert answer.headers["content-disposition"] == 'attachment; filename="web-logs.jsonl"'
    records = [json.loads(x) for x in answer.text.splitlines()]
    assert [r["line"] for r in records] == [*(f"line {i}" for i in range(2500)), "last"]


def test_follow_streams_the_recent_then_each_new_matching_line(served: Served) -> None:
    served.append("r1", ["before: wanted", "before: skipped"])
    params = {"follow": "true", "pattern": "wanted"}
    url = f"{served.url}/api/v2/deployments/web/logs"
    with httpx.stream("GET", url, params=params, timeout=httpx.Timeout(5, read=2)) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = sse_events(answer.iter_lines())
        assert next(events) == ("log", "before: wanted")
        started = time.monotonic()
        served.append("r1", ["after: skipped", "after: wanted"])
        assert next(events) == ("log", "after: wanted")
        print(f"a followed line arrived in {time.monotonic() - started:.3f} s")
        assert served.store.followers("web") == 1
    deadline = time.monotonic() + 5
    while served.store.followers("web") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.store.followers("web") == 0


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """``(event, line)`` of each event with data, from a Server-Sent Events stream's lines."""
    event, data = "", ""
    for line in lines:
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data = line.partition(":")[2].strip()
        elif not line and data:
            yield event, json.loads(data)["line"]
            event, data = "", ""
