"""The console's Traces tab: a deployment's traces, one trace's waterfall, and the links to it
from a log line's ``trace=`` and a monitor record's ``trace_id``.

The waterfall's geometry, the links and the page are tested without a process; one end-to-end
test drives the tab in a real browser against a real control plane serving the echo bento,
after a traced call whose own code makes a span, and a logged, monitored one.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.server.console.pages import _environment
from bentoship.server.console.traces_view import (
    MIN_WIDTH,
    log_parts,
    monitor_trace,
    search_query,
    span_time,
    trace_rows,
    waterfall,
)
from bentoship.steps import deploy, push, wait_until_ready

from .browser import chromium

NAME = "console-traces"
SCRIPT = "<script>alert(1)</script>"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000.0


def span(
    span_id: str,
    parent: str | None,
    start_ms: float,
    duration_ms: float,
    *,
    name: str = "",
    service: str = "Echo",
    status: str = "unset",
    **attributes: Any,
) -> dict[str, Any]:
    """A span as ``GET /api/v2/traces/{id}`` lists it, ``start_ms`` after T0."""
    return {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_id": parent,
        "name": name or span_id,
        "kind": 2,
        "service": service,
        "deployment": "svc",
        "revision": "r1",
        "start": T0 + start_ms / 1000,
        "duration_ms": duration_ms,
        "status": status,
        "status_message": "",
        "attributes": attributes,
    }


def request_trace() -> list[dict[str, Any]]:
    """A request through the endpoint (under a caller's span, not stored) to the service, whose
    code made two spans, one failed; and a span of the caller's that started earlier."""
    return [
        span("caller", None, 0, 5, service="pipeline"),
        span("user", "server", 30, 40, name="user work", status="error", **{"echo.fail": True}),
        span("server", "proxy", 20, 70, name="POST /traced"),
        span(
            "proxy",
            "notstored",
            10,
            90,
            name="POST /traced",
            service="bentoship-endpoint",
            **{"http.response.status_code": 500},
        ),
        span("db", "server", 75, 0.001, name="lookup"),
    ]


def test_the_waterfall_nests_spans_under_their_parents_endpoint_first() -> None:
    drawn = waterfall(TRACE, request_trace())
    assert [(b.span_id, b.depth) for b in drawn.spans] == [
        ("proxy", 0),
        ("server", 1),
        ("user", 2),
        ("db", 2),
        ("caller", 0),
    ]
    proxy, server, user, db, caller = drawn.spans
    assert proxy.endpoint and proxy.orphan, "its parent is the caller's span, not stored"
    assert not caller.orphan and not server.orphan and db.parent_id == "server"
    assert (user.error, proxy.error, drawn.errors) == (True, False, 1)
    assert drawn.services == ("bentoship-endpoint", "Echo", "pipeline")
    assert drawn.total == "100 ms" and drawn.started == "2023-11-14 22:13:20.000Z"
    assert drawn.summary == (
        "5 spans over 100 ms, 1 with an error, from bentoship-endpoint, Echo, pipeline; "
        "started 2023-11-14 22:13:20.000Z."
    )


def test_each_bar_is_offset_by_its_start_and_sized_by_its_duration() -> None:
    proxy, server, user, db, caller = waterfall(TRACE, request_trace()).spans
    assert (proxy.offset, proxy.width) == (10.0, 90.0)
    assert (server.offset, server.width) == (20.0, 70.0)
    assert (user.offset, user.width, user.at, user.duration) == (30.0, 40.0, "+30.0 ms", "40.0 ms")
    assert (caller.offset, caller.width) == (0.0, 5.0)
    assert db.width == MIN_WIDTH and db.offset == 75.0, "a span too short to see still shows"
    assert (db.duration, db.at) == ("1 µs", "+75.0 ms")
    assert [span_time(v) for v in (0.0123, 0.5, 1.0, 212.49, 1534.0)] == [
        "12 µs",
        "500 µs",
        "1.0 ms",
        "212 ms",
        "1.53 s",
    ]
    assert [label for _, label in waterfall(TRACE, request_trace()).ticks] == [
        "0 µs",
        "25.0 ms",
        "50.0 ms",
        "75.0 ms",
        "100 ms",
    ]
    last = waterfall(TRACE, [span("a", None, 0, 100), span("b", "a", 100, 0)]).spans[1]
    assert last.offset + last.width == 100.0, "a bar at the very end stays inside the track"
    single = waterfall(TRACE, [span("only", None, 0, 0)]).spans[0]
    assert (single.offset, single.width, single.depth) == (0.0, MIN_WIDTH, 0)


def test_attributes_are_text_sorted_by_key_and_deep_trees_stop_indenting() -> None:
    drawn = waterfall(
        TRACE,
        [span("a", None, 0, 1, z=1, a="x", on=False, tags=["p", 2], big="y" * 3000, none=None)],
    )
    attributes = [(a.key, a.value) for a in drawn.spans[0].attributes]
    assert [k for k, _ in attributes] == ["a", "big", "none", "on", "tags", "z"]
    values = dict(attributes)
    assert (values["a"], values["on"], values["z"], values["none"]) == ("x", "false", "1", "null")
    assert (
        values["tags"] == '["p", 2]' and values["big"].endswith("…") and len(values["big"]) < 2100
    )

    chain = [span(f"s{i}", f"s{i - 1}" if i else None, i, 100 - i) for i in range(20)]
    bars = waterfall(TRACE, chain).spans
    assert [b.depth for b in bars] == list(range(20))
    assert bars[-1].indent == 12 and bars[5].indent == 5

    looped = [span("x", "y", 0, 5), span("y", "x", 1, 5)]
    assert sorted(b.span_id for b in waterfall(TRACE, looped).spans) == ["x", "y"], (
        "spans in a parent cycle are still drawn, once"
    )


def test_a_log_lines_trace_becomes_a_link() -> None:
    line = (
        f"127.0.0.1:5 (method=POST,path=/echo) (status=200) 1.2ms (trace={TRACE},"
        f"span=00f067aa0ba902b7,sampled=1,service.name=Echo)"
    )
    parts = log_parts(line)
    assert parts == (
        ("127.0.0.1:5 (method=POST,path=/echo) (status=200) 1.2ms (", ""),
        (f"trace={TRACE}", TRACE),
        (",span=00f067aa0ba902b7,sampled=1,service.name=Echo)", ""),
    )
    assert "".join(text for text, _ in parts) == line
    assert log_parts("no trace here") == (("no trace here", ""),)
    assert log_parts("") == (("", ""),)
    for kept in (
        f"trace={'0' * 32}",
        f"xtrace={TRACE}",
        f"trace={TRACE}0",
        f"trace={TRACE.upper()}",
    ):
        assert log_parts(kept) == ((kept, ""),), kept
    assert log_parts(f"trace={TRACE}") == ((f"trace={TRACE}", TRACE),)


def test_a_monitor_records_decimal_trace_id_is_the_hex_id() -> None:
    assert monitor_trace(str(int(TRACE, 16))) == TRACE
    assert monitor_trace(int(TRACE, 16)) == TRACE
    for none in ("0", 0, None, "", "abc", True, 2.5, str(2**128)):
        assert monitor_trace(none) == "", none


def test_the_list_and_the_search_query() -> None:
    [row] = trace_rows(
        [
            {
                "trace_id": TRACE,
                "span_id": "proxy",
                "name": "POST /traced",
                "service": "bentoship-endpoint",
                "revision": None,
                "start": T0,
                "duration_ms": 1534.0,
                "status": "unset",
                "spans": 1200,
                "error": True,
            }
        ]
    )
    assert (row.revision, row.start, row.duration, row.spans, row.error) == (
        "—",
        "2023-11-14 22:13:20.000Z",
        "1.53 s",
        "1,200",
        True,
    )
    form = {"since": "24h", "min_duration": "", "status": "error", "revision": "", "q": "a&b"}
    assert search_query(form) == "tab=traces&since=24h&status=error&q=a%26b"
    assert search_query(form, trace=TRACE).endswith(f"&trace={TRACE}")


class Dep:
    name = "svc"


def render(**traces: Any) -> str:
    context = {
        "form": {"since": "1h", "min_duration": "", "status": "", "revision": "", "q": ""},
        "windows": {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"},
        "query": "tab=traces&since=1h",
        "rows": (),
        "problem": "",
        "chosen": "",
        "waterfall": None,
        "trace_problem": "",
        **traces,
    }
    return _environment().get_template("traces_tab.html").render(dep=Dep(), traces=context)


def test_the_tab_keeps_span_names_attributes_and_the_search_as_text() -> None:
    spans = request_trace()
    spans[1]["name"] = SCRIPT
    spans[1]["attributes"][SCRIPT] = SCRIPT
    html = render(
        chosen=TRACE,
        waterfall=waterfall(TRACE, spans),
        rows=trace_rows([{**spans[0], "name": SCRIPT, "spans": 5, "error": False}]),
        form={"since": "1h", "min_duration": "", "status": "", "revision": "", "q": SCRIPT},
    )
    assert SCRIPT not in html and html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 5
    assert 'style="left: 30.0%; width: 40.0%"' in html
    assert 'data-span="user" data-parent="server" data-depth="2"' in html
    assert html.count('class="wf-span error"') == 1 and 'class="wf-error"' in html
    assert html.count('class="wf-span endpoint"') == 1
    assert f'href="?tab=traces&amp;since=1h&amp;trace={TRACE}"' in html
    missing = render(chosen=TRACE, trace_problem="trace has no stored span")
    assert 'id="trace-problem"' in missing and 'id="waterfall"' not in missing


def test_log_lines_and_monitor_records_link_their_trace() -> None:
    line = {"time": "t", "revision": "r1", "stream": "stderr", "line": f"{SCRIPT} trace={TRACE}"}
    html = (
        _environment()
        .get_template("log_lines.html")
        .render(lines=[{**line, "parts": log_parts(line["line"])}], problem="")
    )
    assert SCRIPT not in html
    assert f'<a class="trace-link" href="?tab=traces&amp;trace={TRACE}"' in html


def reaches_endpoint(spans: list[dict[str, Any]], name: str) -> bool:
    """Whether the span ``name`` and each of its parents up to the endpoint's span are stored."""
    by_id = {s["span_id"]: s for s in spans}
    node = next((s for s in spans if s["name"] == name and s["service"] == "Echo"), None)
    while node is not None:
        if node["service"] == "bentoship-endpoint":
            return True
        node = by_id.get(node["parent_id"])
    return False


def wait_for_trace(client: Client, trace_id: str, name: str) -> list[dict[str, Any]]:
    """The trace's spans once the service's span ``name`` is stored with its parents up to the
    endpoint's span."""
    headers = {"Authorization": f"Bearer {client.connection.token}"}
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{client.endpoint}/api/v2/traces/{trace_id}", headers=headers)
        found = answer.json().get("spans", []) if answer.status_code == 200 else []
        if reaches_endpoint(found, name):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{len(found)} spans of {trace_id} after 30 s: {found}")


def test_the_console_lists_traces_draws_a_waterfall_and_links_logs_and_records_to_it(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    traced, echoed = "7a5f3c1e9b2d4f60a1b2c3d4e5f60718", "8b6f3c1e9b2d4f60a1b2c3d4e5f60719"
    caller = "00f067aa0ba902b7"
    with Client(endpoint, token) as client, chromium() as browser:
        push(echo_v1, client=client)
        rollout = deploy(NAME, echo_v1, client=client)
        wait_until_ready(rollout, client=client, timeout=120)
        url = rollout.endpoint_url
        answer = httpx.post(
            f"{url}/traced", json={}, headers={"traceparent": f"00-{traced}-{caller}-01"}
        )
        assert answer.status_code == 200
        answer = httpx.post(
            f"{url}/echo",
            json={"text": "x", "log": True, "monitor": True},
            headers={"traceparent": f"00-{echoed}-{caller}-01"},
        )
        assert answer.status_code == 200
        spans = wait_for_trace(client, traced, "user work")
        wait_for_trace(client, echoed, "POST /echo")
        proxy = next(s for s in spans if s["service"] == "bentoship-endpoint")
        server = next(s for s in spans if s["parent_id"] == proxy["span_id"])
        user = next(s for s in spans if s["name"] == "user work")
        assert user["parent_id"] != proxy["span_id"]

        page = browser.page
        page_url = f"{endpoint}/deployments/{NAME}?tab=traces"
        page.goto(page_url)
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.inner_text("nav.tabs a.active") == "Traces"
        row = page.locator(f"#trace-list tr[data-trace='{traced}']")
        cells = row.locator("td").all_inner_texts()
        assert cells[0].startswith("POST /traced") and cells[1] == "r1", cells
        assert cells[4] == str(len(spans)) and cells[5] == "ok", cells
        assert page.locator(f"#trace-list tr[data-trace='{echoed}']").count() == 1
        browser.shot("traces-01-list")

        row.locator("a.trace-open").click()
        page.wait_for_selector("#waterfall")
        assert page.get_attribute("#trace", "data-trace") == traced
        drawn = page.locator("#waterfall details.wf-span")
        assert drawn.count() == len(spans)
        first = drawn.nth(0)
        assert first.get_attribute("data-span") == proxy["span_id"]
        assert first.get_attribute("data-service") == "bentoship-endpoint"
        assert first.get_attribute("data-depth") == "0"
        bentoml_span = page.locator(f"#waterfall details[data-span='{server['span_id']}']")
        assert bentoml_span.get_attribute("data-service") == "Echo"
        assert bentoml_span.get_attribute("data-depth") == "1"
        assert bentoml_span.get_attribute("data-parent") == proxy["span_id"]
        work = page.locator(f"#waterfall details[data-span='{user['span_id']}']")
        assert int(work.get_attribute("data-depth") or 0) >= 2, "user work nests below both"
        assert work.locator(".wf-label").inner_text() == "user work"
        assert not work.locator(".wf-attributes").is_visible()
        work.locator("summary").click()
        attributes = work.locator(".wf-attributes")
        assert attributes.is_visible()
        assert attributes.locator("tr", has_text="echo.fail").locator("td").inner_text() == "false"
        browser.shot("traces-02-waterfall")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = client.search_logs(NAME, since="10m", pattern=f"trace={traced}")
            records = client.monitoring_records(NAME, "echo_calls", since="10m")
            if lines and records:
                break
            time.sleep(0.3)
        assert lines, "the traced request's access log line is stored"
        assert [r["trace_id"] for r in records] == [str(int(echoed, 16))]

        page.click("a[role=tab]:text('Logs')")
        page.click("#follow")
        followed = "9c7f3c1e9b2d4f60a1b2c3d4e5f6071a"
        answer = httpx.post(
            f"{url}/hello", json={}, headers={"traceparent": f"00-{followed}-{caller}-01"}
        )
        assert answer.status_code == 200
        live = page.locator(f"#log-body tr.followed a.trace-link[data-trace='{followed}']")
        assert live.first.inner_text() == f"trace={followed}", "a followed line links too"
        assert live.first.get_attribute("href") == f"?tab=traces&trace={followed}"
        page.click("#follow")
        link = page.locator(f"#log-lines a.trace-link[data-trace='{traced}']").first
        assert link.inner_text() == f"trace={traced}"
        browser.shot("traces-03-log-link")
        with page.expect_navigation():
            link.click()
        page.wait_for_selector("#waterfall")
        assert page.get_attribute("#trace", "data-trace") == traced
        assert page.locator("#waterfall details.wf-span").count() == len(spans)
        assert page.inner_text("nav.tabs a.active") == "Traces"

        page.click("a[role=tab]:text('Data')")
        record = page.locator(f"#data-sample a.trace-link[data-trace='{echoed}']")
        assert record.inner_text() == str(int(echoed, 16))
        browser.shot("traces-04-data-link")
        with page.expect_navigation():
            record.click()
        page.wait_for_selector("#waterfall")
        assert page.get_attribute("#trace", "data-trace") == echoed
        first = page.locator("#waterfall details.wf-span").nth(0)
        assert first.get_attribute("data-service") == "bentoship-endpoint"
        assert first.locator(".wf-label").inner_text() == "POST /echo"
        browser.shot("traces-05-record-link")
        assert browser.dialogs == []
