"""Blue/green rollouts on the real control plane with real ``bentoml serve`` processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from bentoship import Client, DeploymentFailed
from bentoship.server import LocalControlPlane
from bentoship.steps import deploy, rollback, wait_until_ready

from ..traffic import TrafficLoop
from .api import Api
from .browser import chromium


@pytest.fixture(scope="module")
def shared_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    """One control plane for this module's tests (each uses deployments of its own): a 120 s
    readiness deadline, which a crash-looping revision must beat by far, and scale to zero after
    2 idle seconds, which only a deployment whose config allows zero replicas does."""
    plane = LocalControlPlane(
        tmp_path_factory.mktemp("rollouts-plane"),
        readiness_timeout=120,
        rollback_window=60,
        scale_to_zero_after=2,
    )
    plane.start()
    yield plane
    plane.stop()


def first_crash(lines: list[str]) -> float:
    """When the service first crashed, from bentoml's timestamped log lines."""
    for line in lines:
        if "[ERROR]" in line and ("Application startup failed" in line or "Initializing" in line):
            stamp = line.split(" ", 1)[0]
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    raise AssertionError("no crash in the revision's log")


def test_update_and_rollback_drop_no_request(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    api = Api(shared_plane)
    api.push(echo_v1)
    api.push(echo_v2)
    labels = [{"key": "note", "value": SCRIPT}]
    created = api.create("steady", echo_v1, envs=ENVS, labels=labels)
    assert created["status"] == "deploying"
    api.update("steady", echo_v1, envs=ENVS, labels=labels)
    # the long-poll answers as soon as the status changes, or after its timeout
    started = time.monotonic()
    response = api.http.get(
        "/api/v2/deployments/steady/wait", params={"status": "deploying", "timeout": 60}
    )
    assert response.json()["status"] == "running"
    assert time.monotonic() - started < 30
    started = time.monotonic()
    same = api.http.get(
        "/api/v2/deployments/steady/wait", params={"status": "running", "timeout": 1}
    )
    assert same.json()["status"] == "running"
    assert 0.9 <= time.monotonic() - started < 5
    # the same bento and config again make no new revision
    api.update("steady", echo_v1, envs=ENVS, labels=labels)
    assert len(api.revisions("steady")) == 1
    url = api.url("steady")
    # the endpoint's root serves bentoml's Swagger UI, through the proxy
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "swagger" in page.text.lower()

    payload = {"text": "live", "delay": 0.02}
    with TrafficLoop(f"{url}/echo", payload=payload, clients=2) as traffic:
        api.update("steady", echo_v2, envs=ENVS, labels=labels)
        api.wait_status("steady", {"running"})
        while traffic.versions()["v2"] < 20:
            time.sleep(0.05)
        rolled = api.rollback("steady")
        assert rolled["status"] == "running"
        seen_v2 = traffic.versions()["v2"]
        time.sleep(1.0)
        traffic.wait_for(1000)

    assert traffic.failures == []
    assert traffic.versions()["v1"] > 0 and seen_v2 >= 20
    check_observed(api, "steady", traffic, extra_r1=1)
    check_follow(api, "steady")
    assert httpx.post(f"{url}/echo", json={"text": "x"}).json()["version"] == "v1"
    revisions = api.revisions("steady")
    assert [r["name"] for r in revisions] == ["r2", "r1"]
    assert [r["status"] for r in revisions] == ["inactive", "active"]
    assert revisions[0]["bentoship"]["warm"] is True
    check_console(api, "steady", labels)


def test_crash_looping_revision_fails_long_before_its_deadline_while_previous_serves(
    shared_plane: LocalControlPlane, crash_bento: str
) -> None:
    """An update of the previous test's deployment (serving r2, echo v2) to a crashing bento,
    through the steps: wait raises DeploymentFailed with the exception from the logs, and the
    rollback step returns the deployment to r2, which served throughout."""
    api = Api(shared_plane)
    api.push(crash_bento)
    assert serving(api, "steady") == "r2"
    url = api.url("steady")
    assert shared_plane.connection is not None
    client = Client(shared_plane.connection.endpoint, shared_plane.connection.token)
    config = {"envs": {"A": "1"}, "labels": {"note": SCRIPT}}

    with client, TrafficLoop(f"{url}/echo", clients=1, pause=0.05) as traffic:
        rollout = deploy("steady", crash_bento, config, client=client)
        with pytest.raises(DeploymentFailed) as caught:
            wait_until_ready(rollout, client=client, timeout=100)
        failed_at = time.time()
        dep = api.get("steady")
        time.sleep(0.5)
        error = caught.value
        assert "deliberate init failure: crash fixture" in str(error)
        assert error.status == "failed" and "deliberate init failure" in error.logs
        assert "bentoship logs steady" in str(error)
        assert dep["status"] == "failed"
        assert dep["bentoship"]["serving_revision"] != dep["bentoship"]["target_revision"]
        reason = dep["bentoship"]["reason"]
        assert "crashed while starting" in reason
        assert "deliberate init failure: crash fixture" in reason
        failed = next(r for r in api.revisions("steady") if r["bentoship"]["phase"] == "failed")
        assert failed["name"] == rollout.revision == "r3"
        lines = api.logs("steady", failed["name"], tail=2000)
        assert any("deliberate init failure: crash fixture" in line for line in lines)
        # failed within 15 s of its first crash (log stamps have whole seconds), not at 120 s
        assert failed_at - first_crash(lines) <= 16
        assert failed["bentoship"]["warm"] is False

        back = rollback(rollout, client=client)
        assert back is not None and back.status == "running"
        assert back.serving_revision == back.target_revision == rollout.previous_revision

    assert traffic.failures == []
    assert set(traffic.versions()) == {"v2"}
    assert httpx.post(f"{url}/echo", json={"text": "y"}).json()["version"] == "v2"


def test_scale_to_zero_then_first_request_wakes(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    api = Api(shared_plane)
    api.push(echo_v1)
    scaling = {"min_replicas": 0, "max_replicas": 1}
    api.create("sleepy", echo_v1, services={"Echo": {"scaling": scaling}})
    api.wait_status("sleepy", {"running"})
    api.wait_status("sleepy", {"scaled-to-zero"}, timeout=30)
    before = api.http.get("/api/v2/deployments/sleepy/traffic").json()["revisions"]
    answer = httpx.post(f"{api.url('sleepy')}/echo", json={"text": "wake"}, timeout=60)
    assert answer.json()["version"] == "v1" and answer.headers["x-bentoship-revision"] == "r1"
    assert api.get("sleepy")["status"] == "running"
    # the request that woke it was queued, not refused, and is counted for the revision
    after = api.http.get("/api/v2/deployments/sleepy/traffic").json()["revisions"]
    counted = {r["revision"]: r["requests"] for r in after}
    assert counted["r1"] == sum(r["requests"] for r in before) + 1, (before, after)


@pytest.mark.slow
def test_a_port_taken_before_bentoml_binds_it_is_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control plane picks a free port, then bentoml binds it: another process may win the
    race. That failure is PortTaken, which the controller answers with another port. A process
    that fails as ``bentoml serve`` does on a taken port stands in for it (a real bentoml start
    costs seconds of CPU for the same log line; the stand-in is no ``bentoml serve`` start,
    so the run's ledger of them leaves it out)."""
    import asyncio
    import sys

    from bentoship.server.rollout import runner

    line = "OSError: [Errno 98] error while attempting to bind: Address already in use"
    fails_to_bind = [sys.executable, "-c", f"print({line!r}, flush=True); raise SystemExit(1)"]
    monkeypatch.setattr(runner, "bentoml_command", lambda: fails_to_bind)
    monkeypatch.delenv(runner.SERVE_LEDGER_ENV, raising=False)

    async def start_on_taken_port() -> None:
        proc = await runner.start_serve(
            revision="taken",
            bento_tag="echo:v1",
            bentoml_home=tmp_path,
            log_path=tmp_path / "serve.log",
            envs={},
            port=runner.free_port(),
        )
        try:
            with pytest.raises(runner.PortTaken, match=f"could not bind port {proc.port}"):
                await proc.wait_ready(30)
        finally:
            await proc.stop()

    asyncio.run(start_on_taken_port())


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check_observed(api: Api, name: str, traffic: TrafficLoop, *, extra_r1: int) -> None:
    """What the control plane observed of ``traffic`` matches what its clients counted."""
    from prometheus_client.parser import text_string_to_metric_families

    counted = traffic.by_revision()
    metrics = api.http.get(f"/api/v2/deployments/{name}/metrics", params={"since": "15m"})
    totals = metrics.json()["totals"]
    assert totals["r1"]["requests"] == counted["r1"] + extra_r1
    assert totals["r2"]["requests"] == counted["r2"]
    assert totals["r1"]["5xx"] == totals["r2"]["5xx"] == 0
    series = metrics.json()["revisions"]["r2"]
    assert sum(n or 0 for n in series["requests"]) == counted["r2"]
    assert len(series["requests"]) == len(metrics.json()["t"])
    for revision, count in counted.items():
        if count < 300:
            continue
        seconds = [a.seconds for a in traffic.answers if a.revision == revision]
        # the callers' p99 also holds their own threads' waits on a loaded machine
        for q, slack in ((0.5, 0.0), (0.99, 0.025)):
            measured = totals[revision][f"latency_p{round(q * 100)}_seconds"]
            client = _quantile(seconds, q)
            assert abs(measured - client) <= 0.2 * client + slack, (revision, q, measured, client)

    token = api.plane.connection.token if api.plane.connection else ""
    prometheus = str(api.http.base_url.join("/metrics"))
    page = httpx.get(prometheus, headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    scraped = {
        (s.labels["revision"], s.labels["status_class"]): s.value
        for family in text_string_to_metric_families(page.text)
        for s in family.samples
        if s.name == "bentoship_requests_total" and s.labels["deployment"] == name
    }
    assert scraped[("r2", "2xx")] == counted["r2"]
    assert httpx.get(prometheus).status_code == 401

    events = api.http.get(f"/api/v2/deployments/{name}/events").json()["events"]
    kinds = [(e["kind"], e["revision"]) for e in events]
    for expected in [("created", "r2"), ("ready", "r2"), ("switched", "r2"), ("rolled_back", "r1")]:
        assert expected in kinds, kinds
    assert kinds.index(("switched", "r2")) < kinds.index(("rolled_back", "r1"))

    lines = api.http.get(
        f"/api/v2/deployments/{name}/logs", params={"pattern": "starting", "revision": "r2"}
    ).json()["lines"]
    assert lines and all("starting" in line["line"] for line in lines)
    assert {line["revision"] for line in lines} == {"r2"}
    download = api.http.get(f"/api/v2/deployments/{name}/logs/download").text
    assert any(line["line"] in download for line in lines)


def check_follow(api: Api, name: str) -> None:
    """A followed log shows the line of a new request within 2 s."""
    import queue
    import threading

    from bentoship.client import Client

    assert api.plane.connection is not None
    endpoint, token = api.plane.connection.endpoint, api.plane.connection.token
    seen: queue.Queue[float] = queue.Queue()
    since = str(time.time())

    def follow() -> None:
        with Client(endpoint, token) as client:
            for _ in client.follow_logs(name, since=since, pattern="path=/echo"):
                seen.put(time.monotonic())
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.5)
    sent = time.monotonic()
    assert httpx.post(f"{api.url(name)}/echo", json={"text": "followed"}).status_code == 200
    arrived = seen.get(timeout=10)
    print(f"a followed line arrived {arrived - sent:.2f} s after the request")
    assert arrived - sent < 2.0


SCRIPT = "<script>alert(1)</script>"
ENVS = [{"name": "A", "value": "1"}]


def serving(api: Api, name: str) -> str:
    return str(api.get(name)["bentoship"]["serving_revision"])


def check_console(api: Api, name: str, labels: list[dict[str, str]]) -> None:
    """The console in a real browser, from the URL bentoml prints: sign in, the list, each tab
    (a rollback from Revisions), sign out; a script in a label or a log line stays text."""
    import json
    import re

    assert api.plane.connection is not None
    endpoint, token = api.plane.connection.endpoint, api.plane.connection.token
    said = httpx.post(f"{api.url(name)}/echo", json={"text": SCRIPT, "log": True})
    assert said.status_code == 200
    reader = api.http.post(
        "/api/v1/api_tokens", json={"name": "reader", "scopes": ["read_cluster"]}
    ).json()["token"]
    page_url = f"{endpoint}/deployments/{name}"
    with chromium() as browser:
        page = browser.page
        page.goto(page_url)
        assert page.url.startswith(f"{endpoint}/login?next=")
        browser.shot("01-sign-in")
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.inner_text("#labels") == f"note={SCRIPT}"
        config = json.loads(page.inner_text("#config"))
        assert config["labels"] == labels and config["envs"] == [{"name": "A", "value": "(hidden)"}]
        assert page.inner_text("#replica-count") == "1/1 ready (min 1, max 1)"
        pod = page.locator(f"#replicas tr[data-replica='{name}-r1-0']")
        assert pod.locator("td[data-status]").inner_text() == "Running"
        assert "serving" in pod.inner_text()
        browser.shot("03-overview")

        page.click("header nav a[href='/deployments']")
        row = page.locator("#deployments tbody tr", has_text=name)
        assert "running" in row.inner_text()
        browser.shot("02-deployments")
        row.locator("a").click()
        page.wait_for_url(page_url)

        assert serving(api, name) == "r1"
        page.click("a[role=tab]:text('Revisions')")
        page.click("button:text('Roll back to r2')")
        assert "Rolling back to r2" in page.inner_text(".notice")
        api.wait_status(name, {"running"})
        assert serving(api, name) == "r2"
        browser.shot("04-revisions")

        page.click("a[role=tab]:text('Monitoring')")
        page.wait_for_selector("#metrics-totals tr[data-revision=r1] td[data-metric=requests]")
        requests = page.inner_text("#metrics-totals tr[data-revision=r1] td[data-metric=requests]")
        totals = api.http.get(f"/api/v2/deployments/{name}/metrics", params={"since": "15m"})
        assert 0 < float(requests) == totals.json()["totals"]["r1"]["requests"]
        assert page.locator("#charts .chart canvas").count() >= 4
        browser.shot("05-monitoring")

        page.click("a[role=tab]:text('Logs')")
        page.fill("input[name=pattern]", "echo said")
        page.click("form.log-search button[type=submit]")
        # the tab shows the unfiltered tail until the search's answer replaces it
        page.wait_for_function(
            "() => { const lines = [...document.querySelectorAll('#log-lines td.line')];"
            " return lines.length > 0 && lines.every(td => td.innerText.includes('echo said')); }"
        )
        found = page.locator("#log-lines td.line").all_inner_texts()
        assert found and all(re.search("echo said", line) for line in found)
        assert f"echo said: {SCRIPT}" in found
        page.click("#follow")
        page.wait_for_timeout(500)
        live = {"text": "followed in the browser", "log": True}
        assert httpx.post(f"{api.url(name)}/echo", json=live).status_code == 200
        page.wait_for_selector("tr.followed td.line:text('echo said: followed in the browser')")
        browser.shot("06-logs")

        page.click("a[role=tab]:text('Events')")
        rolled = page.locator("#events tr.event-rolled_back").first.inner_text()
        assert "r2" in rolled
        browser.shot("07-events")

        for text in ("first <b>call</b>", "second call"):
            monitored = {"text": text, "monitor": True}
            assert httpx.post(f"{api.url(name)}/echo", json=monitored).status_code == 200
        page.click("a[role=tab]:text('Data')")
        assert page.inner_text(".monitors a.active") == "echo_calls (2)"
        sample = page.inner_text("#data-sample")
        assert "first <b>call</b>" in sample and "second call" in sample
        assert page.locator("#per-minute rect").count() >= 1
        browser.shot("08-data")

        page.click("header nav a[href='/bento_repositories']")
        assert page.locator("h2#repo-echo").count() == 1
        assert page.locator("table.list tbody tr").count() >= 2
        browser.shot("09-bento-repositories")
        page.click("header nav a[href='/api_tokens']")
        assert "read_cluster" in page.locator("#tokens tr[data-token=reader]").inner_text()
        assert reader not in page.content()
        browser.shot("10-api-tokens")

        page.click("form.signout button")
        page.wait_for_url(f"{endpoint}/login")
        page.goto(f"{endpoint}/deployments")
        assert page.url.startswith(f"{endpoint}/login?next=")
        assert browser.dialogs == []

    # A read-only token signs in, but cannot roll back from the console.
    with httpx.Client(base_url=endpoint) as session:
        form = session.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        session.post("/login", data={"csrf_token": csrf.group(1), "token": reader})
        revisions = session.get(f"/deployments/{name}", params={"tab": "revisions"})
        page_csrf = re.search(r'name="csrf_token" value="([^"]+)"', revisions.text)
        assert revisions.status_code == 200 and page_csrf is not None
        refused = session.post(
            f"/deployments/{name}/rollback", data={"csrf_token": page_csrf.group(1)}
        )
        assert refused.status_code == 403
    assert serving(api, name) == "r2"
