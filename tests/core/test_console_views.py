"""The console's readings: charts that draw a lone bucket, the latency chart's p99 linked to
that bucket's slowest traces, a bounded logs page newest first with "older" paging and live
lines on top, a Data table that fits its box, and the webhooks' delivery log.

The views are tested without a process first. The browser tests share one real control plane
whose data dir is filled before it starts, as its own stores hold what a deployment left (a
burst of requests in one 10 s bucket, its spans, thousands of log lines, monitor records,
events): no ``bentoml serve`` runs. Live parts run in the plane itself: the log tailer reads a
burst written to the revision's log file while the page follows it, the monitor records are
ingested from the revision's files, and the notifier delivers the events to a receiver here.
"""

from __future__ import annotations

import bisect
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bentoship.server import LocalControlPlane
from bentoship.server.console.data_view import cell, data_table
from bentoship.server.console.pages import _environment
from bentoship.server.console.traces_view import search_form, search_query, window_label
from bentoship.server.console.webhooks_view import delivery_row, shown_url
from bentoship.server.endpoint.traffic import LATENCY_BOUNDS
from bentoship.server.observe.analytics import open_analytics
from bentoship.server.observe.logs import LogStore
from bentoship.server.observe.otlp import SpanRow
from bentoship.server.observe.series import Sample, SeriesStore, bucket_of
from bentoship.server.observe.spans import Origin, SpanStore
from bentoship.server.store import Deployment, Event, Revision, Store
from bentoship.server.webhooks import MAX_ATTEMPTS, WebhookBook

from .browser import Browser, chromium

NAME = "views"
UID = "0f3c9a7d5e2b41c8a6d09e8f7b6a5c4d"
MONITOR = "scored_calls"
FEATURES = [f"sepal_feature_{i:02d}_normalised" for i in range(10)]
LOG_LINES = 3000
BURST = 700
PAGE = 500
SECRET_PATH = "/services/T0001/B0002/Zk3secretsecret"


# the views, without a process


def test_floats_show_four_significant_digits_and_the_full_value_on_hover() -> None:
    score = cell("score", 0.123456789012345)
    assert (score.text, score.title, score.number) == ("0.1235", "0.123456789012345", True)
    assert cell("x", 0.5).title == "", "nothing hidden, nothing on hover"
    assert (cell("n", 12).text, cell("n", 12).number) == ("12", True)
    assert cell("big", 123456.789).text == "1.235e+05"
    assert cell("on", True).text == "true" and cell("none", None).text == ""
    vector = cell("embedding", [0.123456789, 2.0, {"w": 1 / 3}])
    assert vector.text == '[0.1235, 2.0, {"w": 0.3333}]'
    assert json.loads(vector.title) == [0.123456789, 2.0, {"w": 1 / 3}]
    long = cell("comment", "x" * 500)
    assert len(long.text) == 80 and long.text.endswith("…") and long.title == "x" * 500
    traced = cell("trace_id", str(int("4bf92f3577b34da6a3ce929d0e0e4736", 16)))
    assert traced.trace == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_the_prediction_comes_first_after_the_ids() -> None:
    records = [
        {
            "seq": 7,
            "revision": "r1",
            "bento": "scorer:v1",
            "ingested_at": "2026-01-01 00:00:00Z",
            "timestamp": "2026-01-01T00:00:00",
            "request_id": "a",
            "trace_id": "0",
            "x": 1.5,
            "comment": "hi",
            "label": "odd",
        },
        {"seq": 8, "request_id": "b", "extra": 2},
    ]
    columns = [{"name": "x", "role": "feature"}, {"name": "label", "role": "prediction"}]
    table = data_table(records, columns)
    assert table.fields == (
        "request_id",
        "trace_id",
        "label",
        "x",
        "comment",
        "extra",
        "timestamp",
        "revision",
        "bento",
        "ingested_at",
        "seq",
    )
    assert table.predictions == {"label"}
    assert [c.text for c in table.rows[1]][:3] == ["b", "", ""], "a missing field is empty"
    assert data_table(records, []).fields[:3] == ("request_id", "trace_id", "x")


def test_a_bucket_window_and_the_sort_are_kept_in_the_traces_search() -> None:
    bucket = search_form({"since": "1700000000", "until": "1700000010", "sort": "slowest"})
    assert (bucket["since"], bucket["until"], bucket["sort"]) == (
        "1700000000",
        "1700000010",
        "slowest",
    )
    assert window_label(bucket) == "from 2023-11-14 22:13:20.000Z to 22:13:30.000Z"
    night = {"since": "1700006390", "until": "1700006410"}
    assert window_label(search_form(night)) == (
        "from 2023-11-14 23:59:50.000Z to 2023-11-15 00:00:10.000Z"
    )
    assert search_query(bucket) == "tab=traces&since=1700000000&until=1700000010&sort=slowest"
    for asked in (
        {"since": "1700000010", "until": "1700000000"},
        {"since": "24h", "until": "1700000000"},
        {"since": "<b>", "sort": "fastest"},
    ):
        form = search_form(asked)
        assert form["until"] == "" and form["sort"] == "", asked
        assert form["since"] in ("1h", "24h") and window_label(form).startswith("last "), asked


def test_the_trace_search_sorts_the_slowest_first(tmp_path: Path) -> None:
    database = open_analytics(tmp_path / "observe.duckdb")
    spans = SpanStore(database, lambda: database, retention=86400)
    durations = (930, 760, 870, 810)
    spans.add(
        [root_span(200 + i, 1000 + i, ms) for i, ms in enumerate(durations)], Origin("d", "r1")
    )
    window = {"since": 900, "until": 1100}
    slowest = spans.roots("d", **window, slowest=True)
    assert [r["duration_ms"] for r in slowest] == [930, 870, 810, 760]
    assert [r["duration_ms"] for r in spans.roots("d", **window)] == [810, 870, 760, 930]
    assert [r["duration_ms"] for r in spans.roots("d", **window, slowest=True, limit=2)] == [
        930,
        870,
    ]
    database.close()


def test_a_webhooks_url_path_is_cut_and_a_pending_delivery_shows_its_next_try() -> None:
    assert shown_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    assert shown_url("https://hooks.slack.com" + SECRET_PATH) == (
        "https://hooks.slack.com/services/T0…"
    )
    assert shown_url("https://x.example/h?token=abc") == "https://x.example/h…"
    pending = {
        "event": 3,
        "kind": "rolled_back",
        "deployment": "web",
        "message": "rolled back",
        "state": "pending",
        "attempts": 2,
        "status": 503,
        "error": "HTTP 503",
        "next_at": "2026-01-01T00:00:40.000000Z",
        "updated_at": "2026-01-01T00:00:30.000000Z",
    }
    at = 1767225630.0  # 2026-01-01T00:00:30Z
    row = delivery_row(pending, at)
    assert (row.state, row.status, row.attempts, row.error) == (
        "pending",
        "503",
        f"2 of {MAX_ATTEMPTS}",
        "HTTP 503",
    )
    assert row.next_try == "in 10 s (00:00:40Z)"
    assert delivery_row(pending, at + 15).next_try == "due now (00:00:40Z)"
    done = delivery_row({**pending, "state": "delivered", "status": 200, "next_at": None}, at)
    assert (done.next_try, done.status) == ("—", "200")
    queued = delivery_row({**pending, "attempts": 0, "status": None, "kind": None}, at)
    assert (queued.status, queued.updated, queued.kind) == ("—", "—", "(pruned)")


def test_the_logs_page_links_older_lines_and_keeps_lines_as_text() -> None:
    line = {"time": "t", "t": 1.5, "seq": 41, "revision": "r1", "stream": "stderr"}
    html = (
        _environment()
        .get_template("log_lines.html")
        .render(
            lines=[{**line, "line": "<script>", "parts": (("<script>", ""),)}],
            problem="",
            paged="tab=logs&pattern=a%26b",
            page_size=PAGE,
            older="tab=logs&pattern=a%26b&before=41",
            before=None,
        )
    )
    assert "<script>" not in html and 'data-seq="41" data-t="1.5"' in html
    assert 'id="log-older" href="?tab=logs&amp;pattern=a%26b&amp;before=41"' in html
    assert 'id="log-newest"' not in html and " hidden" not in html


# the console in a browser, against a real control plane


@dataclass
class Receiver:
    """An HTTP receiver for webhooks: the failed event's first try gets 500 (then 200), the
    rollback's every try 503, any other 200."""

    url: str
    server: ThreadingHTTPServer
    tries: dict[tuple[str, str], int]
    failing: set[str]
    flaky: set[str]


def receiver() -> Receiver:
    tries: dict[tuple[str, str], int] = {}
    failing: set[str] = set()
    flaky: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            event = self.headers.get("X-Bentoship-Event", "")
            key = (self.path, event)
            tries[key] = tries.get(key, 0) + 1
            status = 200
            if self.path == "/hook" and event in failing:
                status = 503
            elif self.path == "/hook" and event in flaky and tries[key] == 1:
                status = 500
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Receiver(f"http://127.0.0.1:{server.server_port}", server, tries, failing, flaky)


@dataclass
class Filled:
    """What the plane's data dir held when it started."""

    plane: LocalControlPlane
    bucket: int
    slow: list[tuple[str, float]]
    """The r1 traces of the bucket at least 0.75 s long: (trace id, duration ms)."""
    failed_event: int
    rollback_event: int
    receiver: Receiver

    @property
    def endpoint(self) -> str:
        assert self.plane.connection is not None
        return self.plane.connection.endpoint

    @property
    def token(self) -> str:
        assert self.plane.connection is not None
        return self.plane.connection.token

    @property
    def log_file(self) -> Path:
        return self.plane.data_dir / "logs" / NAME / f"r1-{UID[:8]}.log"

    def api(self, path: str, **params: Any) -> Any:
        answer = httpx.get(
            f"{self.endpoint}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


def root_span(trace: int, start: float, duration_ms: float) -> SpanRow:
    return SpanRow(
        trace_id=f"{trace:032x}",
        span_id=f"{trace:016x}",
        parent_id=None,
        name="POST /score",
        kind=2,
        service="bentoship-endpoint",
        start=start,
        duration_ms=duration_ms,
        status=0,
        status_message="",
        attributes="{}",
    )


def fill(data_dir: Path, hooks: Receiver) -> tuple[int, list[tuple[str, float]], int, int]:
    """The data dir of a plane whose deployment ``views`` served r1 and was terminated: a burst
    of 302 requests in one bucket two minutes ago, its traces, its log, its monitor records
    and two events for a webhook."""
    now = time.time()
    data_dir.mkdir(parents=True)
    store = Store(data_dir / "state.db")
    created = "2026-01-01T00:00:00.000000Z"
    store.insert_deployment(
        Deployment(NAME, f"{NAME}-uid", "local", created, None, "terminated", UID, None, None, "")
    )
    store.insert_revision(
        Revision(UID, NAME, 1, "scorer:v1", {}, created, "retired", "", created, created)
    )
    book = WebhookBook(store)
    book.add(hooks.url + "/hook", ["failed", "rolled_back"])
    book.add(hooks.url + SECRET_PATH, ["failed"], "slack")
    store.register_event_reader("webhooks")  # from the first event on
    failed = store.add_event(Event(NAME, now - 60, "failed", "revision r2 failed: no ready", "r2"))
    rolled = store.add_event(Event(NAME, now - 50, "rolled_back", "rolled back to r1", "r1"))
    store.close()

    bucket = bucket_of(now - 120)
    database = open_analytics(data_dir / "observe.duckdb")
    try:
        latency = {bisect.bisect_left(LATENCY_BOUNDS, 0.011): 296}
        latency[bisect.bisect_left(LATENCY_BOUNDS, 0.85)] = 6
        counters = {"requests_2xx": 300.0, "requests_5xx": 2.0}
        SeriesStore(database).write([Sample(NAME, "r1", counters, {}, latency)], at=bucket + 1)

        spans = SpanStore(database, lambda: database, retention=86400)
        fast = [root_span(100 + i, bucket + 0.3 * i, 8 + i % 7) for i in range(20)]
        slow = [
            root_span(200 + i, bucket + 1 + 2 * i, ms) for i, ms in enumerate((930, 760, 870, 810))
        ]
        spans.add(fast + slow, Origin(NAME, "r1"))
        spans.add([root_span(300, bucket + 4, 990)], Origin(NAME, "r2"))
        spans.add([root_span(301, bucket + 10.5, 995)], Origin(NAME, "r1"))

        logs = LogStore(database)
        for start in range(0, LOG_LINES, 100):
            lines = [f"line {i:04d}: served POST /score in 11ms" for i in range(start, start + 100)]
            logs.append(NAME, "r1", "stderr", lines, now - 300 + start / 100)
    finally:
        database.close()

    monitor = data_dir / "monitoring" / NAME / UID / MONITOR
    (monitor / "schema").mkdir(parents=True)
    (monitor / "data").mkdir(parents=True)
    columns = [{"name": f, "role": "feature", "type": "numerical"} for f in FEATURES]
    columns += [
        {"name": "comment", "role": "feature", "type": "text"},
        {"name": "label", "role": "prediction", "type": "categorical"},
        {"name": "score", "role": "score", "type": "numerical"},
    ]
    (monitor / "schema" / "schema.1.log").write_text(json.dumps({"columns": columns}) + "\n")
    records = []
    for i in range(12):
        record: dict[str, Any] = {
            "timestamp": f"2026-01-01T00:00:{i:02d}",
            "request_id": f"req-{i:03d}",
            "trace_id": str(200 + i),
        }
        record.update({f: (i + 1) / (k + 7) for k, f in enumerate(FEATURES)})
        record["comment"] = f"call {i}: " + "a long free-text note about the input " * 6
        record["label"] = "odd" if i % 2 else "even"
        record["score"] = 0.123456789012345 + i
        records.append(json.dumps(record))
    (monitor / "data" / "data.1.log").write_text("\n".join(records) + "\n")
    slow_ids = [(f"{200 + i:032x}", ms) for i, ms in enumerate((930, 760, 870, 810))]
    return bucket, slow_ids, failed.id, rolled.id


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    hooks = receiver()
    data_dir = tmp_path_factory.mktemp("views") / "plane"
    bucket, slow, failed, rolled = fill(data_dir, hooks)
    hooks.flaky.add(str(failed))
    hooks.failing.add(str(rolled))
    plane = LocalControlPlane(data_dir, trace_sample=0.0)
    plane.start()
    try:
        yield Filled(plane, bucket, slow, failed, rolled, hooks)
    finally:
        plane.stop()
        hooks.server.shutdown()


def signed_in(browser: Browser, filled: Filled, path: str) -> Any:
    page = browser.page
    page.goto(f"{filled.endpoint}{path}")
    page.fill("input[name=token]", filled.token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{filled.endpoint}{path}")
    return page


LONE_POINT = """(title) => {
  // the pixels around the first non-null value of the chart's first series, on its canvas
  const node = document.querySelector(`[data-chart="${title}"]`);
  const u = node.uplot;
  const values = u.data[1];
  const i = values.findIndex((v) => v !== null && v !== undefined);
  const x = Math.round(u.valToPos(u.data[0][i], "x", true));
  const y = Math.round(u.valToPos(values[i], "y", true));
  const pixels = u.ctx.getImageData(x - 3, y - 3, 7, 7).data;
  let colored = 0;
  for (let p = 0; p < pixels.length; p += 4) {
    const [r, g, b, a] = pixels.slice(p, p + 4);
    if (a > 200 && b > 150 && r < 120 && g < 150) colored += 1;
  }
  return { t: u.data[0][i], lone: values.filter((v) => v !== null).length, colored: colored };
}"""


@pytest.mark.slow
def test_charts_draw_a_lone_bucket_and_its_p99_opens_its_slowest_traces(filled: Filled) -> None:
    metrics = filled.api(f"/api/v2/deployments/{NAME}/metrics", since="15m", step="10")
    at = metrics["t"].index(filled.bucket)
    [series] = metrics["revisions"].values()
    assert series["requests"][at] == 302 and sum(v is not None for v in series["requests"]) == 1
    p99_ms = series["latency_p99_seconds"][at] * 1000
    assert 700 < p99_ms < 1000

    with chromium() as browser:
        page = signed_in(browser, filled, f"/deployments/{NAME}?tab=monitoring")
        for title in ("Request rate (requests/s)", "Success rate (%)", "Latency (ms)"):
            page.wait_for_function(
                f"() => document.querySelector('[data-chart=\"{title}\"]')?.uplot !== undefined"
            )
            drawn = page.evaluate(LONE_POINT, title)
            assert drawn["t"] == filled.bucket and drawn["lone"] == 1, drawn
            assert drawn["colored"] >= 9, f"{title}: the lone bucket is drawn as a point {drawn}"
        latency = page.locator('[data-chart="Latency (ms)"]')
        latency.scroll_into_view_if_needed()
        assert "slowest traces" in latency.inner_text()
        browser.shot("views-01-lone-bucket")

        point = page.evaluate(
            """() => {
              const u = document.querySelector('[data-chart="Latency (ms)"]').uplot;
              const p99 = u.series.findIndex((s) => s.label === "r1 p99");
              const i = u.data[p99].findIndex((v) => v !== null && v !== undefined);
              const box = u.over.getBoundingClientRect();
              return { x: box.left + u.valToPos(u.data[0][i], "x"),
                       y: box.top + u.valToPos(u.data[p99][i], "y") };
            }"""
        )
        with page.expect_navigation():
            page.mouse.click(point["x"], point["y"])
        asked = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert asked["tab"] == "traces" and asked["sort"] == "slowest" and asked["revision"] == "r1"
        assert (float(asked["since"]), float(asked["until"])) == (filled.bucket, filled.bucket + 10)
        assert 0.79 * p99_ms <= float(asked["min_duration"]) <= 0.81 * p99_ms
        assert page.inner_text("nav.tabs a.active") == "Traces"
        heading = page.inner_text("#trace-list-title")
        assert heading.startswith("Traces, from ") and heading.endswith(", r1, slowest first")
        rows = page.locator("#trace-list tbody tr[data-trace]")
        shown = [rows.nth(i).get_attribute("data-trace") for i in range(rows.count())]
        slowest = [trace for trace, _ in sorted(filled.slow, key=lambda s: -s[1])]
        assert shown == slowest, "the bucket's r1 traces near its p99, the slowest first"
        assert page.input_value("#trace-sort") == "slowest"
        assert page.input_value("input[name=min_duration]") == asked["min_duration"]
        browser.shot("views-02-p99-slowest-traces")
        api = filled.api(f"/api/v2/deployments/{NAME}/traces", **asked)
        assert [t["trace_id"] for t in api["traces"]] == slowest
        assert browser.dialogs == []


def log_rows(page: Any) -> list[str]:
    texts: list[str] = page.locator("#log-body td.line").all_inner_texts()
    return [text.split(":")[0] for text in texts]


@pytest.mark.slow
def test_the_logs_page_is_bounded_newest_first_pages_back_and_follows_on_top(
    filled: Filled,
) -> None:
    with chromium() as browser:
        page = signed_in(browser, filled, f"/deployments/{NAME}?tab=logs")
        newest = log_rows(page)
        assert newest == [f"line {i:04d}" for i in range(LOG_LINES - 1, LOG_LINES - 1 - PAGE, -1)]
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height < 1600, f"the page is {height} px tall"
        browser.shot("views-03-logs-newest")

        with page.expect_navigation():
            page.click("#log-older")
        assert "before=" in page.url
        assert log_rows(page)[0] == f"line {LOG_LINES - 1 - PAGE:04d}"
        assert len(log_rows(page)) == PAGE
        with page.expect_navigation():
            page.click("#log-newest")
        assert log_rows(page)[0] == f"line {LOG_LINES - 1:04d}"

        page.click("#follow")
        page.wait_for_selector("#follow.following")
        page.wait_for_timeout(300)
        filled.log_file.parent.mkdir(parents=True, exist_ok=True)
        with filled.log_file.open("a") as log:
            log.write("".join(f"burst {i:04d}: a new request\n" for i in range(BURST)))
        page.wait_for_selector(f"#log-body tr.followed td.line:text('burst {BURST - 1:04d}')")
        page.wait_for_function(f"() => document.getElementById('log-body').rows.length === {PAGE}")
        shown = log_rows(page)
        assert shown == [f"burst {i:04d}" for i in range(BURST - 1, BURST - 1 - PAGE, -1)]
        assert page.locator("#log-body tr:not(.followed)").count() == 0
        height = page.evaluate("() => document.documentElement.scrollHeight")
        assert height < 1600, f"the page is {height} px tall while following"
        browser.shot("views-04-logs-followed-burst")
        page.click("#follow")

        with page.expect_navigation():
            page.click("#log-older")
        older = log_rows(page)
        assert older[: BURST - PAGE] == [f"burst {i:04d}" for i in range(BURST - PAGE - 1, -1, -1)]
        assert older[BURST - PAGE] == f"line {LOG_LINES - 1:04d}", "then the lines before it"
        assert browser.dialogs == []


@pytest.mark.slow
def test_the_data_table_fits_its_box_prediction_first_floats_short(filled: Filled) -> None:
    with chromium() as browser:
        page = signed_in(browser, filled, f"/deployments/{NAME}?tab=data")
        assert page.inner_text(".monitors a.active") == f"{MONITOR} (12)"
        heads = page.locator("#data-sample thead th")
        fields = [heads.nth(i).get_attribute("data-field") for i in range(heads.count())]
        assert fields[:3] == ["request_id", "trace_id", "label"]
        assert fields[3 : 3 + len(FEATURES)] == FEATURES
        newest = page.locator("#data-sample tbody tr").first
        assert newest.locator("td[data-field=request_id]").inner_text() == "req-011"
        score = newest.locator("td[data-field=score]")
        assert score.inner_text() == "11.12" and score.get_attribute("title") == repr(
            0.123456789012345 + 11
        )
        feature = newest.locator(f"td[data-field={FEATURES[1]}]")
        assert feature.inner_text() == "1.5" and feature.get_attribute("title") is None
        sizes = page.evaluate(
            """() => {
              const box = document.getElementById("data-box").getBoundingClientRect();
              const main = document.querySelector("main").getBoundingClientRect();
              const label = document.querySelector("#data-sample th[data-field=label]")
                .getBoundingClientRect();
              const scroller = document.getElementById("data-box");
              return { page: document.documentElement.scrollWidth, viewport: window.innerWidth,
                       box: [box.left, box.right], main: [main.left, main.right],
                       label: [label.left, label.right],
                       scroll: [scroller.scrollWidth, scroller.clientWidth] };
            }"""
        )
        assert sizes["page"] <= sizes["viewport"], f"the page overflows: {sizes}"
        assert sizes["box"][1] <= sizes["main"][1], f"the box stays inside the page: {sizes}"
        assert sizes["scroll"][0] > sizes["scroll"][1], f"the table scrolls in its box: {sizes}"
        assert sizes["box"][0] <= sizes["label"][0] and sizes["label"][1] <= sizes["box"][1], (
            f"the prediction shows without scrolling: {sizes}"
        )
        browser.shot("views-05-data-table")
        page.locator("#data-box").evaluate("(box) => { box.scrollLeft = box.scrollWidth; }")
        browser.shot("views-06-data-table-scrolled")
        assert browser.dialogs == []


@pytest.mark.slow
def test_the_webhooks_delivery_log_in_the_api_and_the_console(filled: Filled) -> None:
    hooks = {h["format"]: h for h in filled.api("/api/v1/bentoship/webhooks")["webhooks"]}
    cloud, slack = hooks["cloudevents"]["id"], hooks["slack"]["id"]
    deadline = time.monotonic() + 30
    log: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        log = {
            d["event"]: d
            for d in filled.api(f"/api/v1/bentoship/webhooks/{cloud}/deliveries")["deliveries"]
        }
        failed, rolled = log.get(filled.failed_event), log.get(filled.rollback_event)
        if failed and failed["state"] == "delivered" and rolled and rolled["attempts"] >= 2:
            break
        time.sleep(0.2)
    failed, rolled = log[filled.failed_event], log[filled.rollback_event]
    assert (failed["kind"], failed["attempts"], failed["status"], failed["next_at"]) == (
        "failed",
        2,
        200,
        None,
    )
    assert (rolled["kind"], rolled["state"], rolled["status"], rolled["error"]) == (
        "rolled_back",
        "pending",
        503,
        "HTTP 503",
    )
    assert rolled["next_at"] > rolled["updated_at"], "the next try comes after the last"
    assert list(log) == [filled.rollback_event, filled.failed_event], "the newest first"

    with chromium() as browser:
        page = signed_in(browser, filled, "/webhooks")
        assert page.inner_text("header nav a[aria-current]") == "Webhooks"
        section = page.locator(f"section[data-webhook='{cloud}']")
        assert section.locator("h2 code").inner_text() == f"{filled.receiver.url}/hook"
        done = section.locator(f"tr[data-event='{filled.failed_event}']")
        cells = {
            f: done.locator(f"td[data-field={f}]").inner_text()
            for f in ("event", "state", "status", "attempts", "next", "error")
        }
        assert cells == {
            "event": f"#{filled.failed_event} failed",
            "state": "delivered",
            "status": "200",
            "attempts": f"2 of {MAX_ATTEMPTS}",
            "next": "—",
            "error": "—",
        }
        waiting = section.locator(f"tr[data-event='{filled.rollback_event}']")
        assert waiting.get_attribute("data-state") == "pending"
        assert waiting.locator("td[data-field=status]").inner_text() == "503"
        assert waiting.locator("td[data-field=error]").inner_text() == "HTTP 503"
        tries = waiting.locator("td[data-field=attempts]").inner_text()
        assert re.fullmatch(rf"[2-{MAX_ATTEMPTS}] of {MAX_ATTEMPTS}", tries), tries
        next_try = waiting.locator("td[data-field=next]").inner_text()
        assert re.fullmatch(r"(in \d+ (s|min)|due now) \(\d\d:\d\d:\d\dZ\)", next_try), next_try
        shown = page.locator(f"section[data-webhook='{slack}'] h2 code").inner_text()
        assert shown.endswith("…") and "Zk3secret" not in page.content()
        browser.shot("views-07-webhooks")
        assert browser.dialogs == []
