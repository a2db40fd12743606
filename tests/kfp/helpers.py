"""Helpers for running compiled pipelines the way a cluster would, and reading their results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def task_output(root: Path, task: str, key: str = "Output") -> Any:
    """An output parameter of the one run of ``task`` under a kfp.local pipeline root."""
    found = sorted(root.glob(f"*/{task}/executor_output.json"))
    assert len(found) == 1, f"expected one run of {task} under {root}, found {found}"
    return json.loads(found[0].read_text())["parameterValues"][key]


def task_ran(root: Path, task: str) -> bool:
    return any(root.glob(f"*/{task}/executor_output.json"))


def with_task_env(pipeline_yaml: str, homes: Path) -> str:
    """Give each executor of a compiled pipeline its own BENTOML_HOME under ``homes``.

    Every task then starts with an empty BentoML store, as in its own container: anything one
    task needs from another must travel as an artifact or live on the server.
    """
    documents = list(yaml.safe_load_all(pipeline_yaml))
    for label, executor in documents[0]["deploymentSpec"]["executors"].items():
        env = executor["container"].setdefault("env", [])
        env.append({"name": "BENTOML_HOME", "value": str(homes / label)})
    return yaml.safe_dump_all(documents, sort_keys=False)


def executor_labels(pipeline_yaml: str) -> set[str]:
    return set(next(yaml.safe_load_all(pipeline_yaml))["deploymentSpec"]["executors"])
