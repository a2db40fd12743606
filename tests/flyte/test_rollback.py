"""The on_failure pattern of docs/flyte.md, for a workflow with inputs rollback does not take.

The workflows run locally, as ``pyflyte run`` runs them. bentoship's rollback step is replaced
by a recorder here; tests/flyte/test_example_workflow.py rolls a real deployment back with the
same pattern.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
from flytekit import task, workflow
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.exceptions.user import FlyteFailureNodeInputMismatchException
from flytekit.tools.module_loader import load_object_from_module
from flytekit.tools.translator import get_serializable
from flytekit.types.error import FlyteError

import bentoship.steps
from flytekitplugins.bentoship import (
    IMAGE,
    RollbackOnFailure,
    rollback_deployment,
    workflow_with_rollback,
)
from flytekitplugins.bentoship.rollback import rollback_resolver

ROLLOUT = json.dumps({"name": "gated"})
ENDPOINT = "http://bentoship.example.test"


@task
def new_rollout() -> str:
    return ROLLOUT


@task
def quality_gate(answer: str, min_accuracy: float) -> float:
    accuracy = float(answer)
    if accuracy < min_accuracy:
        raise ValueError(f"accuracy {accuracy} is below the quality gate {min_accuracy}")
    return accuracy


@workflow_with_rollback
def verify(
    rollout: str, answer: str, min_accuracy: float = 0.8, endpoint: str | None = None
) -> float:
    return quality_gate(answer=answer, min_accuracy=min_accuracy)


@workflow
def ship(answer: str, endpoint: str | None = None) -> float:
    return verify(rollout=new_rollout(), answer=answer, endpoint=endpoint)


def verify_with_plain_on_failure(rollout: str, answer: str) -> float:
    return quality_gate(answer=answer, min_accuracy=0.8)


@pytest.fixture
def rollbacks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record bentoship's rollback step instead of calling a server."""
    calls: list[dict[str, Any]] = []

    def rollback(target: str, *, revision: str | None, client: Any, **options: Any) -> None:
        calls.append(
            {"target": target, "revision": revision, "endpoint": client.endpoint, **options}
        )

    monkeypatch.setattr(bentoship.steps, "rollback", rollback)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "test-token")
    return calls


def test_plain_rollback_task_refuses_a_workflow_with_other_inputs() -> None:
    """What the helper is for: flytekit wants the handler to take every workflow input."""
    plain = workflow(verify_with_plain_on_failure, on_failure=rollback_deployment)
    with pytest.raises(FlyteFailureNodeInputMismatchException):
        plain(rollout=ROLLOUT, answer="0.9")


def test_failure_rolls_back_the_rollout_input(
    rollbacks: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Exception, match=r"below the quality gate 0\.8"):
        ship(answer="0.21", endpoint=ENDPOINT)
    assert rollbacks == [{"target": ROLLOUT, "revision": None, "endpoint": ENDPOINT}]
    assert "rolling back after a failure" in capsys.readouterr().out


def test_success_rolls_nothing_back(rollbacks: list[dict[str, Any]]) -> None:
    assert ship(answer="0.93", endpoint=ENDPOINT) == pytest.approx(0.93)
    assert rollbacks == []


def test_handler_takes_the_workflows_inputs_and_err() -> None:
    handler = verify.on_failure
    assert isinstance(handler, RollbackOnFailure)
    inputs = handler.python_interface.inputs
    assert {k: v for k, v in inputs.items() if k != "err"} == verify.python_interface.inputs
    assert inputs["err"] == FlyteError | None
    assert handler.python_interface.inputs_with_defaults["min_accuracy"] == (float, 0.8)


def test_handler_serializes_for_a_pod_that_finds_it_through_the_workflow() -> None:
    settings = SerializationSettings(ImageConfig.auto_default_image())
    entities: OrderedDict[Any, Any] = OrderedDict()
    spec = get_serializable(entities, settings, verify)
    failure = spec.template.failure_node
    assert failure is not None
    assert failure.task_node.reference_id.name == f"{verify.name}.rollback_deployment"
    bound = {binding.var for binding in failure.inputs}
    assert bound == {"rollout", "answer", "min_accuracy", "endpoint", "err"}

    template = get_serializable(entities, settings, verify.on_failure).template
    assert isinstance(IMAGE, str) or template.container.image == IMAGE.image_name()
    assert [(s.group, s.key) for s in template.security_context.secrets] == [
        ("bentoship", "api_key")
    ]
    args = list(template.container.args)
    resolver_location = args[args.index("--resolver") + 1]
    loader_args = args[args.index("--") + 1 :]
    assert loader_args == ["workflow-module", __name__, "workflow", "verify"]
    # What pyflyte-execute does in the handler's pod:
    resolver = load_object_from_module(resolver_location)
    assert resolver is rollback_resolver
    assert resolver.load_task(loader_args) is verify.on_failure


def _no_rollout(answer: str) -> str:
    return answer


def _err_input(rollout: str, err: str) -> str:
    return rollout


@pytest.mark.parametrize(
    ("function", "options", "message"),
    [
        (_no_rollout, {}, "has no `rollout` input"),
        (_err_input, {}, "has an input `err`"),
        (verify_with_plain_on_failure, {"on_failure": rollback_deployment}, "do not pass one"),
    ],
)
def test_workflow_with_rollback_refuses_what_cannot_roll_back(
    function: Callable[..., Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        workflow_with_rollback(function, **options)
