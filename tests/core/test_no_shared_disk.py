"""Each step in its own process with its own BENTOML_HOME, as on machines with no shared disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bentoship.server import LocalControlPlane

PROJECT = Path(__file__).resolve().parents[2] / "dags_examples" / "example_bento"


def run_step(home: Path, code: str, plane: LocalControlPlane) -> str:
    assert plane.connection is not None
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTO_CLOUD_API_ENDPOINT": plane.connection.endpoint,
        "BENTO_CLOUD_API_KEY": plane.connection.token,
    }
    prelude = f"import sys; sys.path.insert(0, {str(PROJECT)!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=home.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    marked = [line for line in result.stdout.splitlines() if "RESULT=" in line]
    assert marked, result.stdout[-2000:]
    return marked[-1].split("RESULT=", 1)[1]


@pytest.mark.slow
def test_train_build_push_deploy_on_separate_machines(
    shared_plane: LocalControlPlane, tmp_path: Path
) -> None:
    model_file = tmp_path / "handoff" / "model.bentomodel"
    archive = tmp_path / "handoff" / "service.bento"
    model_file.parent.mkdir()

    model_tag = run_step(
        tmp_path / "train-home",
        f"""
        import bentoml, train
        X, y = train.generate_data()
        tag = train.save_model(train.train_model(X, y))
        bentoml.models.export_model(tag, {str(model_file)!r})
        print("RESULT=" + tag)
        """,
        shared_plane,
    )
    assert model_file.is_file()

    bento_tag = run_step(
        tmp_path / "build-home",
        f"""
        from bentoship.steps import build
        tag = build({str(PROJECT)!r}, models=[{str(model_file)!r}], export_path={str(archive)!r})
        print("RESULT=" + tag)
        """,
        shared_plane,
    )
    assert archive.is_file()

    pushed = run_step(
        tmp_path / "push-home",
        f"""
        from bentoship.steps import push
        print("RESULT=" + push({str(archive)!r}))
        """,
        shared_plane,
    )
    assert pushed == bento_tag

    answer = run_step(
        tmp_path / "deploy-home",
        f"""
        import json, train
        from bentoship.steps import SmokeTest, deploy, smoke_test, wait_until_ready
        rollout = deploy("handoff", {bento_tag!r})
        wait_until_ready(rollout, timeout=120)
        X, y = train.holdout(20)
        answer = smoke_test(rollout, SmokeTest("predict", {{"features": X.tolist()}}))
        print("RESULT=" + json.dumps(answer))
        """,
        shared_plane,
    )
    predictions = json.loads(answer)
    assert len(predictions) == 20 and set(predictions) <= {0, 1}
    assert not (tmp_path / "deploy-home" / "models").exists()
    assert model_tag.startswith("example_classifier:")
