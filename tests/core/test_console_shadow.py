"""The console's Shadow panel: a held candidate's live comparison with the serving revision.

The formatting is tested without a process; one end-to-end test drives the panel in a real
browser against a real control plane with a serving revision and a held candidate that flips
30% of its labels.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.server.console.pages import _environment
from bentoship.server.console.shadow_view import (
    OTHER,
    flip_matrix,
    milliseconds,
    mirror_request,
    percent,
    shadow_panel,
    signed_milliseconds,
    signed_points,
)
from bentoship.server.errors import Invalid
from bentoship.steps import deploy, push, wait_until_ready

from ..traffic import TrafficLoop
from .browser import chromium

NAME = "console-shadow"
SCRIPT = "<script>alert(1)</script>"


def figures(flips: dict[str, dict[str, int]] | None = None, **changed: Any) -> dict[str, Any]:
    """An answer of ``GET /api/v2/deployments/svc/shadow`` while r2 is mirrored."""
    report = {
        "pairs": 310,
        "dropped": 12,
        "tolerance": 1e-6,
        "agreement": {
            "agreed": 219,
            "compared": 309,
            "low": 0.65234,
            "high": 0.75871,
            "confidence": 0.95,
            "rate": 219 / 309,
        },
        "serving": {
            "revision": "r1",
            "requests": 310,
            "errors": 0,
            "latency_ms": {"p50": 3.214, "p95": 8.96, "p99": 15.55},
            "error_rate": 0.0,
        },
        "candidate": {
            "revision": "r2",
            "requests": 310,
            "errors": 1,
            "latency_ms": {"p50": 3.5, "p95": 212.49, "p99": 1534.0},
            "error_rate": 1 / 310,
        },
        "error_rate_change": 1 / 310,
        "latency_change_ms": {"p50": 0.286, "p95": 203.53, "p99": -1.04},
        "flips": flips if flips is not None else {"even": {"even": 110, "odd": 45}},
        "differences": {"pairs": 0, "count": 0, "max": None, "p95": None},
    }
    return {
        "deployment": "svc",
        "active": True,
        "percent": 100,
        "apis": ["classify"],
        "candidate": "r2",
        "serving": "r1",
        "started_at": 1_700_000_000.0,
        "by_analysis": False,
        "mirrored": 1234,
        "pairs": 310,
        "dropped": 12,
        "dropped_by_reason": {"timeout": 2, "queue_full": 10},
        "report": report,
        **changed,
    }


def test_numbers_are_rounded_for_reading() -> None:
    assert percent(219 / 309) == "70.9%" and percent(None) == "—" and percent(1 / 310, 2) == "0.32%"
    assert [milliseconds(v) for v in (0.456, 15.55, 212.49, 1534.0, None)] == [
        "0.5 ms",
        "15.6 ms",
        "212 ms",
        "1.53 s",
        "—",
    ]
    assert [signed_milliseconds(v) for v in (0.286, -1.04, 0.01, 203.53)] == [
        "+0.3 ms",
        "-1.0 ms",
        "0.0 ms",
        "+204 ms",
    ]
    assert [signed_points(v) for v in (1 / 310, -0.02, 0.0, None)] == [
        "+0.32 pp",
        "-2.00 pp",
        "0.00 pp",
        "—",
    ]


def test_the_panel_shows_the_report_rounded_and_the_drops_by_reason() -> None:
    panel = shadow_panel("svc", "r2", "candidate", figures())
    assert panel.active and panel.key == "r2.candidate.1"
    assert panel.status == (
        "Mirroring 100% of classify requests to candidate r2 since 22:13:20 UTC; "
        "callers get r1's answers."
    )
    assert (panel.pairs, panel.mirrored, panel.dropped) == ("310", "1,234", "12")
    assert panel.dropped_reasons == (("queue full", "10"), ("timeout", "2"))
    assert (panel.agreement, panel.agreement_interval, panel.confidence) == (
        "70.9%",
        "65.2-75.9%",
        "95%",
    )
    assert panel.band == (65.23, 70.87, 75.87)
    serving, candidate, change = panel.sides
    assert (serving.revision, serving.error_rate, serving.p50, serving.p99) == (
        "r1",
        "0.00%",
        "3.2 ms",
        "15.6 ms",
    )
    assert (candidate.errors, candidate.error_rate, candidate.p95, candidate.p99) == (
        "1",
        "0.32%",
        "212 ms",
        "1.53 s",
    )
    assert (change.error_rate, change.p50, change.p95, change.p99) == (
        "+0.32 pp",
        "+0.3 ms",
        "+204 ms",
        "-1.0 ms",
    )
    assert (panel.percent, panel.apis) == (100, "classify")


def test_without_mirroring_the_panel_says_how_to_start() -> None:
    for answer in (None, {"deployment": "svc", "active": False, "percent": 0, "report": None}):
        panel = shadow_panel("svc", "r2", "candidate", answer)
        assert not panel.active and panel.key == "r2.candidate.0"
        assert panel.status == (
            "Nothing is mirrored to candidate r2: start with "
            "`bentoship shadow svc --percent 100`, or the button below."
        )
        assert panel.flips is None and panel.sides == () and panel.percent == 100
    older = shadow_panel("svc", "r3", "candidate", figures())
    assert not older.active, "figures of another candidate are not this one's"
    starting = shadow_panel("svc", "r3", "starting", None)
    assert "candidate r3 is starting" in starting.status and starting.key == "r3.starting.0"


def test_the_flip_matrix_orders_labels_and_marks_flips() -> None:
    matrix = flip_matrix({"odd": {"odd": 109, "even": 46}, "even": {"even": 110, "odd": 45}})
    assert matrix is not None
    assert matrix.labels == ("even", "odd")
    assert matrix.summary == "91 of 310 labels flipped"
    even, odd = matrix.rows
    assert [(c.count, c.share, c.kind) for c in odd.cells] == [
        ("46", "30%", "flip"),
        ("109", "70%", "same"),
    ]
    assert [(c.count, c.kind) for c in even.cells] == [("110", "same"), ("45", "flip")]
    assert (even.total, odd.total) == ("155", "155")
    assert flip_matrix({}) is None and flip_matrix({"a": {}}) is None

    many = {f"c{i}": {f"c{i}": 10, "c0": 50} for i in range(1, 9)}
    merged = flip_matrix(many, max_labels=4)
    assert merged is not None
    assert merged.labels == ("c0", "c1", "c2", OTHER) and merged.merged == 6
    assert [row.label for row in merged.rows] == ["c1", "c2", OTHER], "c0 was never served"
    c1, _, other = merged.rows
    assert [(c.count, c.kind) for c in c1.cells] == [
        ("50", "flip"),
        ("10", "same"),
        ("0", "empty"),
        ("0", "empty"),
    ]
    assert [(c.count, c.kind) for c in other.cells] == [
        ("300", "flip"),
        ("0", "empty"),
        ("0", "empty"),
        ("60", "mixed"),
    ]
    assert other.total == "360" and merged.summary.endswith("6 rarer labels summed as (other)")


def test_the_mirroring_form_reads_percent_and_apis() -> None:
    assert mirror_request("100", " classify, predict ,") == (100, ["classify", "predict"])
    assert mirror_request("0", "") == (0, None)
    assert mirror_request("50%", "  ") == (50, None)
    for wrong in ("", "ten", "101", "-1", "2.5"):
        with pytest.raises(Invalid, match="percent"):
            mirror_request(wrong, "")


def test_labels_and_revisions_stay_text() -> None:
    panel = shadow_panel(
        "svc",
        "r2",
        "candidate",
        figures({SCRIPT: {SCRIPT: 3, "b": 1}}, apis=[SCRIPT], serving=SCRIPT),
    )

    class Dep:
        name = "svc"

    html = (
        _environment().get_template("shadow_panel.html").render(dep=Dep(), shadow=panel, csrf="c")
    )
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'hx-get="/deployments/svc/shadow_live?key=r2.candidate.1"' in html
    assert 'id="shadow-stop"' in html and ">Discard r2<" in html


def test_promote_is_disabled_while_an_approval_is_pending() -> None:
    panel = shadow_panel("svc", "r2", "candidate", figures({"a": {"a": 3}}, apis=["f"]))

    class Dep:
        name = "svc"

    class Approvals:
        pending = object()

    template = _environment().get_template("shadow_panel.html")
    free = template.render(dep=Dep(), shadow=panel, csrf="c", approvals=None)
    held = template.render(dep=Dep(), shadow=panel, csrf="c", approvals=Approvals())
    assert 'id="shadow-promote">' in free and "shadow-promote-why" not in free
    assert 'id="shadow-promote" disabled' in held and "an approval is pending" in held
    assert ">Discard r2<" in held


def settled(client: Client) -> dict[str, Any]:
    """The shadow figures once every mirrored request's pair is in the report and no more come."""
    last: dict[str, Any] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = client.shadow(NAME)
        report = now["report"]
        if report and report["pairs"] == now["pairs"]:
            if last is not None and last["pairs"] == now["pairs"]:
                return now
            last = now
        time.sleep(1.0)
    raise AssertionError(f"the shadow figures did not settle: {client.shadow(NAME)}")


def test_the_console_shows_a_candidates_live_shadow_comparison_and_discards_it(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    page_url = f"{endpoint}/deployments/{NAME}"
    with Client(endpoint, token) as client, chromium() as browser:
        push(echo_v1, client=client)
        wait_until_ready(deploy(NAME, echo_v1, client=client), client=client, timeout=120)
        flipping = {"envs": {"CLASSIFY_FLIP_PERCENT": "30"}}
        rollout = deploy(NAME, echo_v1, flipping, candidate=True, client=client)
        wait_until_ready(rollout, client=client, timeout=120)

        page = browser.page
        page.goto(page_url)
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.inner_text("#shadow-title").split() == ["Shadow", "candidate", "r2"]
        assert f"`bentoship shadow {NAME} --percent 100`" in page.inner_text("#shadow-status")
        assert page.locator("#shadow-pairs").count() == 0
        browser.shot("shadow-01-nothing-mirrored")

        client.set_shadow(NAME, 100, ["classify"])
        page.wait_for_selector("#shadow-pairs")  # the page saw mirroring start and reloaded
        assert "Mirroring 100% of classify requests" in page.inner_text("#shadow-status")
        with TrafficLoop(
            f"{rollout.endpoint_url}/classify", clients=3, pause=0.02, payloads=lambda n: {"x": n}
        ) as live:
            live.wait_for(300, timeout=120)
            page.wait_for_function(
                "() => Number(document.querySelector('#shadow-pairs').textContent"
                ".replace(/,/g, '')) > 0"
            )
            browser.shot("shadow-02-mirroring")
        assert live.failures == []

        shown = settled(client)
        report = shown["report"]
        rate = report["agreement"]["rate"]
        assert 0.6 < rate < 0.8, report
        page.wait_for_function(
            "([pairs, agreement]) => document.querySelector('#shadow-pairs').textContent === pairs"
            " && document.querySelector('#shadow-agreement').textContent === agreement",
            arg=[f"{shown['pairs']:,}", percent(rate)],
        )
        low, high = report["agreement"]["low"], report["agreement"]["high"]
        interval = page.inner_text("#shadow-interval")
        assert interval == f"95% interval {low * 100:.1f}-{high * 100:.1f}%"
        assert page.inner_text("#shadow-dropped") == f"{shown['dropped']:,}"

        flips = report["flips"]
        assert set(flips) == {"even", "odd"}
        for was in ("even", "odd"):
            for now in ("even", "odd"):
                cell = page.locator(
                    f"#shadow-flips tr[data-serving={was}] td[data-candidate={now}]"
                )
                assert cell.locator(".n").inner_text() == f"{flips[was].get(now, 0):,}"
                kind = "cell-same" if was == now else "cell-flip"
                assert cell.get_attribute("class") == kind
        assert flips["even"]["odd"] > 0 and flips["odd"]["even"] > 0
        sides = page.locator("#shadow-sides")
        for side, revision in (("serving", "r1"), ("candidate", rollout.revision)):
            row = sides.locator(f"tr[data-side={side}]")
            cells = row.locator("td").all_inner_texts()
            assert cells[0] == revision, cells
            assert cells[3] == percent(report[side]["error_rate"], 2), cells
            assert all(re.fullmatch(r"\d+(\.\d{1,2})? m?s", c) for c in cells[4:]), cells
        pods = httpx.get(
            f"{endpoint}/api/v2/deployments/{NAME}/pods",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        answered = {p["name"]: p["bentoship"]["requests"] for p in pods["items"]}
        assert answered[f"{NAME}-r1-0"] >= len(live.answers), answered
        assert answered[f"{NAME}-{rollout.revision}-0"] == shown["pairs"], answered  # the copies
        page.wait_for_function(  # the replicas table follows the traffic, as the panel does
            "(answered) => Object.entries(answered).every(([name, n]) => document.querySelector("
            "`#replicas tr[data-replica='${name}'] td:nth-child(6)`).textContent === String(n))",
            arg=answered,
        )
        browser.shot("shadow-03-settled")

        page.fill("form.shadow-mirror input[name=percent]", "50")
        with page.expect_navigation():
            page.click("#shadow-start")
        assert "Mirroring 50% of classify requests" in page.inner_text(".notice")
        assert client.shadow(NAME)["percent"] == 50

        with page.expect_navigation():
            page.click("#shadow-discard")
        assert page.inner_text(".notice") == f"Discarded {rollout.revision}."
        assert page.locator("#shadow").count() == 0
        assert page.inner_text("#serving-revision") == "r1"
        browser.shot("shadow-04-discarded")
        assert client.get_deployment(NAME).candidate_revision is None
        assert client.shadow(NAME)["active"] is False

        page.context.clear_cookies()  # the session ends: the page's next poll finds it so
        page.wait_for_url(f"**/login?next=%2Fdeployments%2F{NAME}*", timeout=15_000)
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(f"**/deployments/{NAME}*")  # back where the session ended
        assert page.inner_text("#serving-revision") == "r1"
        assert browser.dialogs == []
