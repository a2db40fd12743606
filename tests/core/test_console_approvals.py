"""The console's Approval panel: a held candidate's pending approval with its evidence, decided
in the browser by a session whose token has the ``approve`` scope; and the Revisions tab's
rollback, refused for a revision that never served.

The evidence, the refusals and the page are tested without a process; one end-to-end test
drives the panel in a real browser against a real control plane.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.server.console.approvals_view import (
    MAX_ITEMS,
    approvals_panel,
    decision_refusal,
    evidence_items,
    link_of,
    rollback_refusal,
    time_left,
)
from bentoship.server.console.pages import _environment
from bentoship.server.tokens import SERVER_PRINCIPAL, Principal
from bentoship.steps import deploy, push, wait_until_ready

from .browser import chromium

NAME = "console-approvals"
SCRIPT = "<script>alert(1)</script>"
NOW = 1_700_000_000.0
WRITER = Principal("ci", "u1", frozenset({"read_cluster", "write_cluster"}))
APPROVER = Principal("lead", "u2", frozenset({"read_cluster", "approve"}))


def record(state: str = "pending", **changed: Any) -> dict[str, Any]:
    """An approval as ``GET /api/v2/deployments/svc/approvals`` lists it."""
    return {
        "id": "a1",
        "deployment": "svc",
        "revision": "r2",
        "uid": "uid2",
        "message": "ship it?",
        "evidence": {"smoke": "passed"},
        "state": state,
        "deadline": NOW + 600,
        "decided_by": None,
        "comment": "",
        "created_at": "2023-11-14T22:13:20Z",
        "decided_at": None,
        **changed,
    }


def test_only_http_links_are_followed() -> None:
    assert link_of("https://example.invalid/d?x=1") == "https://example.invalid/d?x=1"
    assert link_of(" HTTP://host/ ") == "HTTP://host/"
    for text in (
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<b>",
        "https:///nohost",
        "//example.invalid/d",
        "passed",
        "https://a b",
        "",
    ):
        assert link_of(text) == "", text


def test_evidence_shows_links_figures_texts_and_reports_summaries() -> None:
    report = {
        "summary": "shadow: 98.2% agreement over 1,204 pairs; passed",
        "report": {"verdict": "passed", "agreement": 0.982},
    }
    items = evidence_items(
        {
            "smoke": "passed",
            "dashboard": "https://example.invalid/d",
            "bad": "javascript:alert(1)",
            "requests": 12345,
            "accuracy": 0.912345,
            "canary ok": True,
            "none": None,
            "shadow": report,
            "quality": {"summary": "accuracy 91%", "report": {"failed": False, "passed": True}},
            "checks": {"drift": "https://example.invalid/drift", "p99_ms": 212.5},
            "runs": ["https://example.invalid/r/1", 2],
        }
    )
    shown = {item.key: item for item in items}
    assert [item.key for item in items][:3] == ["smoke", "dashboard", "bad"], "in the sent order"
    assert (shown["smoke"].kind, shown["smoke"].text) == ("text", "passed")
    assert (shown["dashboard"].kind, shown["dashboard"].href) == (
        "link",
        "https://example.invalid/d",
    )
    assert (shown["bad"].kind, shown["bad"].href) == ("text", "")
    assert [shown[k].text for k in ("requests", "accuracy", "canary ok", "none")] == [
        "12,345",
        "0.9123",
        "yes",
        "—",
    ]
    shadow = shown["shadow"]
    assert (shadow.kind, shadow.text, shadow.verdict) == ("report", report["summary"], "passed")
    assert '"agreement": 0.982' in shadow.details
    assert shown["quality"].verdict == "passed"
    checks = shown["checks"]
    assert checks.kind == "group"
    assert [(i.key, i.kind, i.href or i.text) for i in checks.items] == [
        ("drift", "link", "https://example.invalid/drift"),
        ("p99_ms", "figure", "212.5"),
    ]
    assert [(i.kind, i.href or i.text) for i in shown["runs"].items] == [
        ("link", "https://example.invalid/r/1"),
        ("figure", "2"),
    ]


def test_evidence_is_bounded() -> None:
    deep = evidence_items({"a": {"b": {"c": {"d": 1}}}})[0]
    assert deep.items[0].items[0].kind == "text" and deep.items[0].items[0].text == '{"d": 1}'
    many = evidence_items({"list": list(range(MAX_ITEMS + 5))})[0]
    assert len(many.items) == MAX_ITEMS and many.more == 5
    assert len(evidence_items({str(i): i for i in range(50)})) == MAX_ITEMS
    long = evidence_items({"note": "x" * 5000})[0]
    assert len(long.text) == 501 and long.text.endswith("…")
    assert evidence_items(None) == () and evidence_items({}) == ()


def test_time_left_reads_in_the_largest_unit() -> None:
    assert [time_left(s) for s in (-1, 0, 42.9, 600, 3 * 3600 + 125, 50 * 3600)] == [
        "past its deadline",
        "past its deadline",
        "42 s left",
        "10 min left",
        "3 h 2 min left",
        "2 days 2 h left",
    ]


def test_only_a_token_with_the_approve_scope_may_decide() -> None:
    assert decision_refusal(SERVER_PRINCIPAL, "svc", "a1") == ""
    assert decision_refusal(APPROVER, "svc", "a1") == ""
    assert decision_refusal(Principal("all", "u3", frozenset({"api"})), "svc", "a1") == ""
    refused = decision_refusal(WRITER, "svc", "a1")
    assert refused == (
        "Deciding needs the approve scope (or api): this session's token ci has read_cluster, "
        "write_cluster. Sign in with a token that has it."
    )
    assert decision_refusal(None, "svc", "a1").startswith("Sign in")
    for path in ("/deployments/svc/approve", "/deployments/svc/reject"):
        assert APPROVER.may("POST", path) and not WRITER.may("POST", path), path
    assert WRITER.may("POST", "/deployments/svc/promote"), "other commands need write_cluster"


def test_the_panel_has_the_pending_approval_and_the_decided_ones_newest_first() -> None:
    assert approvals_panel([], APPROVER, "svc", NOW) is None
    decided = [
        record(
            "approved",
            id=f"d{i}",
            revision=f"r{9 - i}",
            decided_by="lead",
            comment="ok",
            decided_at=f"2023-11-1{4 - i % 3}T00:00:00Z",
        )
        for i in range(7)
    ]
    panel = approvals_panel([record(), *decided], WRITER, "svc", NOW)
    assert panel is not None and panel.pending is not None
    pending = panel.pending
    assert (pending.id, pending.revision, pending.message) == ("a1", "r2", "ship it?")
    assert (pending.deadline, pending.left) == ("2023-11-14 22:23:20 UTC", "10 min left")
    assert pending.refusal.startswith("Deciding needs the approve scope")
    assert [d.id for d in panel.history] == ["d0", "d1", "d2", "d3", "d4"] and panel.more == 2
    assert (panel.history[0].state, panel.history[0].by) == ("approved", "lead")
    only_decided = approvals_panel([record("expired")], APPROVER, "svc", NOW)
    assert only_decided is not None and only_decided.pending is None
    assert only_decided.history[0].by == "—"


def test_a_revision_that_never_served_is_no_rollback_target() -> None:
    assert rollback_refusal({"name": "r1", "phase": "warm", "activated_at": "t"}) == ""
    assert rollback_refusal({"name": "r3", "phase": "cancelled", "ready_at": "t"}) == (
        "r3 never served: it was discarded as a candidate (or superseded) before it took live "
        "traffic."
    )
    assert rollback_refusal({"name": "r4", "phase": "failed"}) == (
        "r4 never served: it failed before it took live traffic."
    )
    assert "superseded before it became ready" in rollback_refusal(
        {"name": "r5", "phase": "cancelled"}
    )


class Dep:
    name = "svc"


def render(records: list[dict[str, Any]], principal: Principal) -> str:
    panel = approvals_panel(records, principal, "svc", NOW)
    template = _environment().get_template("approval_panel.html")
    return template.render(dep=Dep(), approvals=panel, csrf="c")


def test_the_panel_keeps_messages_evidence_and_comments_as_text() -> None:
    evidence = {
        SCRIPT: SCRIPT,
        "link": "https://example.invalid/d",
        "bad": "javascript:alert(1)",
        "report": {"summary": SCRIPT, "report": {"verdict": SCRIPT}},
    }
    html = render(
        [
            record(message=SCRIPT, evidence=evidence),
            record("rejected", id="d1", decided_by=SCRIPT, comment=SCRIPT),
        ],
        APPROVER,
    )
    assert SCRIPT not in html
    assert 'href="https://example.invalid/d"' in html and 'href="javascript' not in html
    assert "javascript:alert(1)" in html, "shown as text"
    assert 'action="/deployments/svc/approve"' in html
    assert 'formaction="/deployments/svc/reject"' in html
    assert 'name="approval" value="a1"' in html and 'name="csrf_token" value="c"' in html
    assert "disabled" not in html and 'id="approval-refusal"' not in html
    assert 'data-state="rejected"' in html


def test_a_session_without_the_approve_scope_sees_the_buttons_disabled_and_why() -> None:
    html = render([record()], WRITER)
    assert 'id="approval-approve" disabled aria-describedby="approval-refusal"' in html
    assert 'id="approval-reject" formaction="/deployments/svc/reject" disabled' in html
    assert "this session&#39;s token ci has read_cluster, write_cluster" in html


def approval_of(client: Client, approval_id: str) -> dict[str, Any]:
    return next(a for a in client.approvals(NAME) if a["id"] == approval_id)


def test_the_console_decides_a_pending_approval_and_refuses_a_rollback_to_a_discarded_revision(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    page_url = f"{endpoint}/deployments/{NAME}"
    headers = {"Authorization": f"Bearer {token}"}
    writer = httpx.post(
        f"{endpoint}/api/v1/api_tokens",
        json={"name": "ci-writer", "scopes": ["read_cluster", "write_cluster"]},
        headers=headers,
    ).json()["token"]
    with Client(endpoint, token) as client, chromium() as browser:
        push(echo_v1, client=client)
        wait_until_ready(deploy(NAME, echo_v1, client=client), client=client, timeout=120)
        held = deploy(NAME, echo_v1, {"envs": {"RUN": "x"}}, candidate=True, client=client)
        wait_until_ready(held, client=client, timeout=120)
        evidence = {"smoke": "passed", "dashboard": "https://example.invalid/d"}
        asked = client.request_approval(NAME, "ship it?", 600, evidence)

        page = browser.page
        page.goto(page_url)
        page.fill("input[name=token]", writer)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.get_attribute("#approval", "data-approval") == asked["id"]
        assert page.is_disabled("#approval-approve") and page.is_disabled("#approval-reject")
        assert "needs the approve scope" in page.inner_text("#approval-refusal")
        assert "token ci-writer has read_cluster, write_cluster" in page.inner_text(
            "#approval-refusal"
        )
        browser.shot("approvals-01-no-approve-scope")
        with page.expect_navigation():
            page.click("form.signout button[type=submit]")

        page.goto(page_url)
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.inner_text("#approval-title").split() == [
            "Approval",
            "pending",
            "candidate",
            held.revision,
        ]
        assert page.inner_text("#approval-message") == "ship it?"
        smoke = page.locator("#approval-evidence dd[data-key=smoke]")
        assert smoke.inner_text() == "passed"
        link = page.locator("#approval-evidence dd[data-key=dashboard] a")
        assert link.get_attribute("href") == "https://example.invalid/d"
        deadline = page.inner_text("#approval-deadline")
        assert deadline.startswith("Decide by ") and "min left" in deadline
        assert f"if nobody does, {held.revision} is discarded" in deadline
        assert page.is_enabled("#approval-approve")
        assert page.locator("#approval-refusal").count() == 0
        browser.shot("approvals-02-pending")

        page.fill("#approval-comment", "smoke passed, dashboard looks fine")
        with page.expect_navigation():
            page.click("#approval-approve")
        assert page.inner_text(".notice") == f"Approved {held.revision}: it is promoted and serves."
        decided = approval_of(client, asked["id"])
        assert decided["state"] == "approved" and decided["decided_by"] == "server token"
        assert decided["comment"] == "smoke passed, dashboard looks fine"
        deadline_at = time.monotonic() + 60
        while client.get_deployment(NAME).serving_revision != held.revision:
            assert time.monotonic() < deadline_at, client.get_deployment(NAME)
            time.sleep(0.2)
        page.reload()
        assert page.inner_text("#serving-revision") == held.revision
        assert page.locator("#approval-approve").count() == 0
        row = page.locator(f"#approval-history tr[data-approval='{asked['id']}']")
        assert row.locator("td").all_inner_texts()[:4] == [
            held.revision,
            "approved",
            "server token",
            "smoke passed, dashboard looks fine",
        ]
        browser.shot("approvals-03-approved")

        dropped = deploy(NAME, echo_v1, {"envs": {"RUN": "y"}}, candidate=True, client=client)
        wait_until_ready(dropped, client=client, timeout=120)
        client.discard(NAME)
        page.click("a[role=tab]:text('Revisions')")
        row = page.locator(f"#revisions tr[data-revision='{dropped.revision}']")
        button = row.locator("button.rollback-refused")
        assert button.inner_text() == f"Roll back to {dropped.revision}" and button.is_disabled()
        assert row.locator(".refusal").inner_text() == (
            f"{dropped.revision} never served: it was discarded as a candidate (or superseded) "
            "before it took live traffic."
        )
        earlier = page.locator("#revisions tr[data-revision='r1'] button")
        assert earlier.inner_text() == "Roll back to r1" and earlier.is_enabled()
        browser.shot("approvals-04-revisions")
        assert browser.dialogs == []
