"""The ``sitecustomize`` that the control plane puts first on a revision's ``PYTHONPATH``, in a
fresh Python process (no server): bentoml's ASGI middleware class then makes no span of each
ASGI message unless told to, nothing is imported ahead, and the ``sitecustomize`` it hides
still runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bentoship.server.rollout.monitoring_env import SERVICE_SITE, tracing_envs

PROBE = """
import json, sys
ahead = "opentelemetry.instrumentation.asgi" in sys.modules
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
plain = OpenTelemetryMiddleware(lambda *a: None)
told = OpenTelemetryMiddleware(lambda *a: None, exclude_spans=["send"])
print(json.dumps({
    "ahead": ahead,
    "plain": [plain.exclude_receive_span, plain.exclude_send_span],
    "told": [told.exclude_receive_span, told.exclude_send_span],
    "hidden": getattr(sys, "hidden_sitecustomize_ran", False),
}))
"""


@pytest.mark.slow  # two Python processes, each a fraction of a second
def test_revisions_make_no_message_spans_and_the_hidden_sitecustomize_runs(
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.hidden_sitecustomize_ran = True\n")
    _, envs = tracing_envs("http://127.0.0.1:1", "token")
    assert envs["PYTHONPATH"].split(os.pathsep)[0] == SERVICE_SITE
    path = os.pathsep.join([SERVICE_SITE, str(tmp_path)])
    env = {**os.environ, "PYTHONPATH": path}
    answer = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(answer.stdout)
    assert seen == {
        "ahead": False,
        "plain": [True, True],
        "told": [False, True],
        "hidden": True,
    }
    without = {**os.environ, "PYTHONPATH": str(tmp_path)}
    plain = subprocess.run(
        [sys.executable, "-c", PROBE], env=without, capture_output=True, text=True, check=True
    )
    assert json.loads(plain.stdout)["plain"] == [False, False], "bentoml's default otherwise"
