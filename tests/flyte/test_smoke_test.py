"""smoke_test_deployment's expected answer (any JSON, as text) and min_match, with no server.

The deployment is given by URL, so the task makes one HTTP call, answered here in-process.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from flytekitplugins.bentoship import smoke_test_deployment

URL = "http://smoke.example.test"


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Set ``answer["body"]`` (JSON) or ``answer["text"]``; calls land in ``answer["calls"]``."""
    state: dict[str, Any] = {"calls": []}

    def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        state["calls"].append((method, url, kwargs.get("json")))
        if "text" in state:
            return httpx.Response(200, text=state["text"])
        return httpx.Response(200, json=state["body"])

    monkeypatch.setattr(httpx, "request", request)
    return state


def test_expected_is_any_json_text(answer: dict[str, Any]) -> None:
    answer["body"] = {"labels": [1, 0], "model": "m:1"}
    expected = json.dumps({"labels": [1, 0], "model": "m:1"})
    out = smoke_test_deployment(rollout=URL, api="predict", payload={"x": [1]}, expected=expected)
    assert json.loads(out) == answer["body"]
    assert answer["calls"] == [("POST", f"{URL}/predict", {"x": [1]})]
    with pytest.raises(Exception, match="expected"):
        smoke_test_deployment(rollout=URL, api="predict", expected='{"labels": [1, 1]}')

    answer["body"] = [1, 0, 1]
    assert smoke_test_deployment(rollout=URL, api="predict", expected="[1, 0, 1]") == "[1, 0, 1]"
    with pytest.raises(Exception, match="expected"):
        smoke_test_deployment(rollout=URL, api="predict", expected="[1, 0, 0]")

    del answer["body"]
    answer["text"] = "hello from v2"
    out = smoke_test_deployment(rollout=URL, api="hello", expected='"hello from v2"')
    assert json.loads(out) == "hello from v2"
    with pytest.raises(Exception, match="expected"):
        smoke_test_deployment(rollout=URL, api="hello", expected='"hello from v9"')
    assert smoke_test_deployment(rollout=URL, api="hello", expected="") == '"hello from v2"'


def test_expected_that_is_not_json_fails_with_a_hint(answer: dict[str, Any]) -> None:
    answer["text"] = "hello"
    with pytest.raises(Exception, match=r"JSON text, such as json\.dumps"):
        smoke_test_deployment(rollout=URL, api="hello", expected="hello")
    assert answer["calls"] == []


def test_min_match_is_a_share_of_matching_items(answer: dict[str, Any]) -> None:
    answer["body"] = [1, 0, 1, 1, 0]
    expected = json.dumps([1, 0, 1, 0, 1])
    out = smoke_test_deployment(rollout=URL, api="predict", expected=expected, min_match=0.6)
    assert json.loads(out) == [1, 0, 1, 1, 0]
    below = r"0\.60 of the answer matches the expected items, below 0\.8"
    with pytest.raises(Exception, match=below):
        smoke_test_deployment(rollout=URL, api="predict", expected=expected, min_match=0.8)
    with pytest.raises(Exception, match="expected"):
        smoke_test_deployment(rollout=URL, api="predict", expected=expected)
    with pytest.raises(Exception, match="min_match below 1 needs a non-empty list"):
        smoke_test_deployment(rollout=URL, api="predict", expected='{"a": 1}', min_match=0.5)
