"""The console's Quality tab: a monitor's predictions joined to their labels, per revision.

The figures, the window and step controls and the page are tested without a process; one
end-to-end test drives the tab in a real browser against a real control plane serving the
echo bento, after a burst of monitored calls and labels for most of them (some wrong).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.server import LocalControlPlane
from bentoship.server.console.pages import _environment
from bentoship.server.console.quality_view import (
    DEFAULT_WINDOW,
    STEPS,
    QualityPanel,
    QualityWindow,
    number,
    quality_panel,
    quality_window,
)
from bentoship.server.console.shadow_view import interval, percent
from bentoship.server.observe.quality import MAX_BUCKETS
from bentoship.steps import deploy, push, wait_until_ready

from .browser import chromium

NAME = "console-quality"
MONITOR = "classify_calls"
SCRIPT = "<script>alert(1)</script>"
SINCE = 1_700_000_000.0
HOUR = 3600.0


def bucket(hour: int, predicted: int, labelled: int, accuracy: float = 0.0) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if labelled:
        figures = {"accuracy": accuracy, "interval": [accuracy - 0.06, accuracy + 0.05]}
    return {
        "start": SINCE + hour * HOUR,
        "predicted": predicted,
        "labelled": labelled,
        "coverage": labelled / predicted,
        "delay_p50": 3.0,
        "delay_p90": 9.0,
        **figures,
    }


def answer(**changed: Any) -> dict[str, Any]:
    """An answer of ``GET /api/v2/deployments/svc/quality?monitor=classify_calls&since=24h``:
    r1 served in hours 0-1, r2 (serving) in hours 1-2, its last hour not labelled yet."""
    r1 = {
        "revision": "r1",
        "predicted": 200,
        "labelled": 150,
        "coverage": 0.75,
        "accuracy": 0.8,
        "interval": [0.73333, 0.86],
        "precision": 0.80012,
        "recall": 0.8,
        "f1": 0.79994,
        "confusion": {"labels": ["even", "odd"], "matrix": [[60, 15], [15, 60]]},
        "roc_auc": None,
        "buckets": [bucket(0, 100, 100, 0.8), bucket(1, 100, 50, 0.8)],
    }
    r2 = {
        "revision": "r2",
        "predicted": 1234,
        "labelled": 1000,
        "coverage": 1000 / 1234,
        "accuracy": 0.7123,
        "interval": [0.68456, 0.74049],
        "precision": 0.7,
        "recall": 0.71,
        "f1": 0.705,
        "confusion": {"labels": ["even", "odd"], "matrix": [[400, 100], [187.0, 313]]},
        "roc_auc": None,
        "buckets": [bucket(1, 1000, 1000, 0.7123), bucket(2, 234, 0)],
    }
    found = {
        "deployment": "svc",
        "monitor": MONITOR,
        "prediction_field": "label",
        "since": SINCE,
        "until": SINCE + 24 * HOUR,
        "step": HOUR,
        "task": "classification",
        "metric": "accuracy",
        "revisions": [r1, r2],
        "labels": 1155,
        "corrections": 1,
        "unmatched": 5,
    }
    return {**found, **changed}


DAY = QualityWindow("24h", "1h", "")


def test_the_window_and_step_are_read_from_the_form() -> None:
    assert quality_window("", "") == QualityWindow(DEFAULT_WINDOW, "1h", "")
    assert quality_window("1h", "") == QualityWindow("1h", "5m", "")
    assert quality_window("7d", "1d") == QualityWindow("7d", "1d", "1d")
    assert quality_window("1y", "1m").window == DEFAULT_WINDOW
    fine = quality_window("7d", "1m")
    assert (fine.step, fine.chosen_step) == ("6h", "")
    assert fine.note == "Step 1m does not fit a 7 days window: showing 6h."
    assert quality_window("1h", "6h").note == "Step 6h does not fit a 1 hour window: showing 5m."
    wrong = quality_window("1h", SCRIPT)
    assert wrong.note == "Step <script>… is not a step: showing 5m."
    for window in ("1h", "24h", "7d"):
        offered = quality_window(window, "")
        assert offered.steps, window
        for step in offered.steps:
            assert offered.seconds / STEPS[step] <= MAX_BUCKETS and STEPS[step] <= offered.seconds
    assert quality_window("7d", "").steps == ("15m", "1h", "6h", "1d")
    assert (DAY.seconds, DAY.step_seconds, DAY.name) == (86400, 3600, "24 hours")


def test_regression_figures_keep_four_significant_digits() -> None:
    assert [number(v) for v in (0.123456, 12.3456, 1234.56, 123456.7, 0.0000123, 0.0, None)] == [
        "0.1235",
        "12.35",
        "1235",
        "123,457",
        "1.23e-05",
        "0",
        "—",
    ]


def test_the_panel_rounds_each_revisions_figures_and_heads_with_the_serving_one() -> None:
    panel = quality_panel(answer(), "r2", DAY)
    assert panel.labelled and panel.serving == "r2" and panel.metric_name == "Accuracy"
    assert panel.status == (
        "r2 (serving): accuracy 71.2%, 95% interval 68.5-74.0%, over 1,000 labels of 1,234 "
        "predictions (coverage 81.0%) in the last 24 hours."
    )
    r1, r2 = panel.rows
    assert (r1.revision, r1.serving, r2.serving) == ("r1", False, True)
    assert (r1.predicted, r1.labelled, r1.coverage, r1.metric, r1.interval) == (
        "200",
        "150",
        "75.0%",
        "80.0%",
        "73.3-86.0%",
    )
    assert r1.extras == ("80.0%", "80.0%", "80.0%")
    assert (r2.predicted, r2.labelled, r2.coverage) == ("1,234", "1,000", "81.0%")
    assert panel.extra_columns == ("Precision", "Recall", "F1")
    assert panel.counts == (
        "1,155 labels stored for classify_calls, 1 corrected, 5 matching no stored prediction."
    )


def test_the_confusion_matrix_is_the_serving_revisions_actual_by_predicted() -> None:
    panel = quality_panel(answer(), "r2", DAY)
    matrix = panel.confusion
    assert matrix is not None and panel.confusion_revision == "r2"
    assert matrix.labels == ("even", "odd")
    even, odd = matrix.rows
    assert (even.label, odd.label) == ("even", "odd")
    assert [(c.count, c.share, c.kind) for c in even.cells] == [
        ("400", "80%", "same"),
        ("100", "20%", "flip"),
    ]
    assert [(c.count, c.kind) for c in odd.cells] == [("187", "flip"), ("313", "same")]
    assert panel.confusion_summary == "287 of 1,000 labelled predictions wrong"

    unlabelled = answer()
    unlabelled["revisions"][1]["labelled"] = 0
    unlabelled["revisions"][1]["confusion"] = {"labels": [], "matrix": []}
    shown = quality_panel(unlabelled, "r2", DAY)
    assert shown.confusion is None
    assert shown.confusion_note == "r2 (serving) has no labelled prediction in the last 24 hours."
    assert shown.status == "r2 (serving): none of its 1,234 predictions has a label yet."


def test_the_chart_aligns_revisions_on_the_buckets_and_leaves_gaps() -> None:
    chart = quality_panel(answer(), "r2", DAY).chart
    assert chart is not None
    assert chart["x"] == [SINCE, SINCE + HOUR, SINCE + 2 * HOUR]
    assert (chart["since"], chart["until"], chart["percent"]) == (SINCE, SINCE + 86400, True)
    r1, r2 = chart["revisions"]
    assert r1["revision"] == "r1" and r1["value"] == [80.0, 80.0, None]
    assert r1["low"] == [74.0, 74.0, None] and r1["high"] == [85.0, 85.0, None]
    assert r1["coverage"] == [100.0, 50.0, None]
    assert r2["value"] == [None, 71.23, None], "an unlabelled bucket has no accuracy"
    assert r2["coverage"] == [None, 100.0, 0.0]


def test_without_labels_the_panel_says_how_to_send_them() -> None:
    empty = answer(labels=0, corrections=0, unmatched=0)
    for entry in empty["revisions"]:
        entry.update(labelled=0, coverage=0.0, accuracy=None, interval=None)
        for b in entry["buckets"]:
            b.update(labelled=0, coverage=0.0)
            b.pop("accuracy", None)
    panel = quality_panel(empty, "r2", DAY)
    assert not panel.labelled and panel.chart is None and panel.confusion is None
    assert panel.status == (
        "No labels yet for classify_calls: send them with "
        "POST /api/v2/deployments/svc/feedback?monitor=classify_calls "
        "or bentoship.steps.send_feedback."
    )
    assert [(r.metric, r.interval, r.coverage) for r in panel.rows] == [
        ("—", "—", "0.0%"),
        ("—", "—", "0.0%"),
    ]
    older = quality_panel({**empty, "labels": 40}, "r2", DAY)
    assert older.status.startswith(
        "No prediction of classify_calls in the last 24 hours has a label yet (40 labels are "
        "stored): send them with POST"
    )


def test_regression_shows_the_mae_with_its_interval() -> None:
    r1 = {
        "revision": "r1",
        "predicted": 10,
        "labelled": 8,
        "coverage": 0.8,
        "mae": 0.123456,
        "rmse": 0.2,
        "r2": -0.5,
        "mape": 0.1,
        "interval": [0.1, 0.15],
        "buckets": [
            {"start": SINCE, "predicted": 10, "labelled": 8, "coverage": 0.8, "mae": 0.123456}
        ],
    }
    panel = quality_panel(answer(task="regression", metric="mae", revisions=[r1]), None, DAY)
    assert panel.serving == "r1", "without a serving revision, the newest"
    assert panel.metric_name == "MAE" and panel.extra_columns == ("RMSE", "R²")
    assert panel.status.startswith("r1 (serving): MAE 0.1235, 95% interval 0.1-0.15, over 8")
    assert panel.rows[0].extras == ("0.2", "-0.5")
    assert panel.confusion is None and panel.confusion_note == ""
    assert panel.chart is not None and panel.chart["revisions"][0]["value"] == [0.1235]
    assert panel.chart["percent"] is False


class Dep:
    name = "svc"


def render(panel: QualityPanel | None, **quality: Any) -> str:
    context = {
        "window": DAY,
        "windows": {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"},
        "monitors": [(MONITOR, 1434)],
        "monitor": MONITOR,
        "asked": "",
        "panel": panel,
        "problem": "",
        **quality,
    }
    template = _environment().get_template("quality_panel.html")
    return template.render(dep=Dep(), quality=context)


def test_the_tab_escapes_labels_and_monitor_names() -> None:
    hostile = answer(monitor=SCRIPT)
    hostile["revisions"][1]["confusion"] = {
        "labels": [SCRIPT, "b'\""],
        "matrix": [[3, 1], [1, 3]],
    }
    panel = quality_panel(hostile, "r2", DAY)
    html = render(panel, monitors=[(SCRIPT, 3)], monitor=SCRIPT)
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "data-chart='{" in html and "'" not in html.split("data-chart='")[1].split("'>")[0]
    assert 'id="quality-confusion"' in html and 'data-predicted="b&#39;&#34;"' in html
    assert "?tab=quality&amp;monitor=%3Cscript%3Ealert%281%29%3C/script%3E&amp;window=24h" in html

    unknown = render(None, monitor=None, asked=SCRIPT)
    assert SCRIPT not in unknown and "has no records of svc" in unknown


def test_the_tab_without_labels_draws_no_chart() -> None:
    empty = answer(labels=0)
    for entry in empty["revisions"]:
        entry.update(labelled=0)
    html = render(quality_panel(empty, "r2", DAY))
    assert 'id="quality-charts"' not in html and 'id="quality-confusion"' not in html
    assert "No labels yet for classify_calls" in html and 'id="quality-revisions"' in html


def truth(x: int) -> str:
    """The true label: the parity, except for every fifth x (so the served model is 80% right)."""
    parity = "even" if x % 2 == 0 else "odd"
    return parity if x % 5 else ("odd" if parity == "even" else "even")


def classify(url: str, xs: range) -> dict[int, tuple[str, str]]:
    """Monitored classify calls: each x's request id (the answer's header) and label."""

    def one(http: httpx.Client, x: int) -> tuple[int, tuple[str, str]]:
        answer = http.post(f"{url}/classify", json={"x": x, "monitor": True})
        assert answer.status_code == 200, answer.text
        return x, (answer.headers["x-bentoml-request-id"], answer.json()["label"])

    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(4) as pool:
        return dict(pool.map(lambda x: one(http, x), xs))


def shown_row(page: Any, revision: str) -> dict[str, str]:
    row = page.locator(f"#quality-revisions tr[data-revision={revision}]")
    fields = ("predicted", "labelled", "coverage", "metric", "interval")
    return {f: row.locator(f"td[data-field={f}]").inner_text() for f in fields}


def expected_row(entry: dict[str, Any]) -> dict[str, str]:
    return {
        "predicted": f"{entry['predicted']:,}",
        "labelled": f"{entry['labelled']:,}",
        "coverage": percent(entry["coverage"]),
        "metric": percent(entry["accuracy"]),
        "interval": interval(*entry["interval"]),
    }


def test_the_console_shows_a_monitors_quality_per_revision(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    page_url = f"{endpoint}/deployments/{NAME}?tab=quality"
    with Client(endpoint, token) as client, chromium() as browser:
        push(echo_v1, client=client)
        rollout = deploy(NAME, echo_v1, client=client)
        wait_until_ready(rollout, client=client, timeout=120)
        served = classify(rollout.endpoint_url, range(300))

        page = browser.page
        page.goto(page_url)
        page.fill("input[name=token]", token)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(page_url)
        assert page.inner_text("nav.tabs a.active") == "Quality"
        assert page.inner_text("#quality .monitors a.active") == f"{MONITOR} (300)"
        status = page.inner_text("#quality-status")
        assert status.startswith(f"No labels yet for {MONITOR}: send them with POST ")
        assert f"/api/v2/deployments/{NAME}/feedback?monitor={MONITOR}" in status
        assert page.locator("#quality-charts").count() == 0
        assert shown_row(page, "r1")["predicted"] == "300"
        browser.shot("quality-01-no-labels")

        labelled = {x: truth(x) for x in range(260)}
        got = client.send_feedback(
            NAME, MONITOR, [{"id": served[x][0], "label": label} for x, label in labelled.items()]
        )
        assert (got["stored"], got["pending"]) == (260, 0)
        right = sum(served[x][1] == label for x, label in labelled.items())
        assert 0.7 < right / 260 < 0.9, "the served model is right about 80% of the time"

        page.goto(page_url)
        day = client.quality(NAME, MONITOR, since="24h", step=3600)
        [entry] = day["revisions"]
        assert entry["accuracy"] == pytest.approx(right / 260)
        assert shown_row(page, "r1") == expected_row(entry)
        assert page.inner_text("#quality-status") == (
            f"r1 (serving): accuracy {percent(entry['accuracy'])}, 95% interval "
            f"{interval(*entry['interval'])}, over 260 labels of 300 predictions "
            f"(coverage {percent(entry['coverage'])}) in the last 24 hours."
        )
        page.wait_for_selector("#quality-charts [data-plot=metric] canvas")
        page.wait_for_selector("#quality-charts [data-plot=coverage] canvas")
        legend = page.text_content("#quality-charts [data-plot=metric] .u-legend") or ""
        assert "r1" in legend and "95% low" in legend

        confusion = entry["confusion"]
        assert confusion["labels"] == ["even", "odd"]
        for a, actual in enumerate(confusion["labels"]):
            for p, predicted in enumerate(confusion["labels"]):
                cell = page.locator(
                    f"#quality-confusion tr[data-actual={actual}] td[data-predicted={predicted}]"
                )
                assert cell.locator(".n").inner_text() == f"{confusion['matrix'][a][p]:,}"
                kind = "cell-same" if actual == predicted else "cell-flip"
                assert cell.get_attribute("class") == kind
        wrong = 260 - right
        assert page.inner_text("#quality-wrong").startswith(
            f"{wrong} of 260 labelled predictions wrong"
        )
        browser.shot("quality-02-labelled-24h")

        with page.expect_navigation():
            page.select_option("#quality-window", "1h")
        assert "window=1h" in page.url and page.input_value("#quality-step") == ""
        with page.expect_navigation():
            page.select_option("#quality-step", "1m")
        assert "step=1m" in page.url
        hour = client.quality(NAME, MONITOR, since="1h", step=60)
        [entry] = hour["revisions"]
        assert shown_row(page, "r1") == expected_row(entry)
        assert page.locator("#quality-revisions thead th").nth(4).text_content() == "Accuracy"
        page.wait_for_selector("#quality-charts [data-plot=metric] canvas")
        browser.shot("quality-03-last-hour-by-minute")
        assert browser.dialogs == []
