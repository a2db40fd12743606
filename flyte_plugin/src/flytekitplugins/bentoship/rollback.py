"""Roll back when a workflow fails, whatever else the workflow takes: ``workflow_with_rollback``.

Flyte hands a workflow's ``on_failure`` handler the workflow's inputs, and flytekit requires the
handler to take every one of them, with the same type (else the first run or registration fails
with ``FlyteFailureNodeInputMismatchException``). So ``on_failure=rollback_deployment`` only
fits a workflow whose inputs are all inputs of ``rollback_deployment``.

:func:`workflow_with_rollback` makes ``@workflow`` with a handler of the workflow's own
interface (plus ``err``): it rolls back the ``rollout`` input, passes on the inputs named like
those of ``rollback_deployment`` (``revision``, ``wait``, ``timeout``, ``endpoint``, ``token``)
and ignores the others. On a cluster the handler's pod finds it through the workflow:
``--resolver flytekitplugins.bentoship.rollback.rollback_resolver -- workflow-module <module>
workflow <name>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flytekit import workflow
from flytekit.configuration import SerializationSettings
from flytekit.core.base_task import TaskResolverMixin
from flytekit.core.interface import Interface, transform_function_to_interface
from flytekit.core.python_auto_container import PythonAutoContainerTask
from flytekit.core.tracker import TrackedInstance, extract_task_module
from flytekit.types.error import FlyteError

from ._connection import API_KEY_SECRET, client
from .image import IMAGE

if TYPE_CHECKING:
    from flytekit.image_spec import ImageSpec

ROLLOUT_INPUT = "rollout"
ERROR_INPUT = "err"
PASSED_ON = ("revision", "wait", "timeout", "endpoint", "token")
"""Inputs of ``rollback_deployment`` that the handler takes from the workflow's inputs."""


def roll_back(
    rollout: str,
    revision: str | None = None,
    wait: bool | None = None,
    timeout: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    err: FlyteError | None = None,
) -> str:
    """The body of ``rollback_deployment``: roll back, return the revision that serves or ""."""
    from bentoship.steps import rollback

    if err is not None:
        print(f"rolling back after a failure: {err.message}")
    options: dict[str, Any] = {
        key: value for key, value in {"wait": wait, "timeout": timeout}.items() if value is not None
    }
    with client(endpoint, token) as api:
        dep = rollback(rollout, revision=revision, client=api, **options)
    if dep is None:
        return ""
    return dep.serving_revision or dep.target_revision or ""


class RollbackResolver(TrackedInstance, TaskResolverMixin):
    """Finds a workflow's rollback handler in a pod: it is the workflow's ``on_failure``."""

    def name(self) -> str:
        return "bentoship rollback resolver"

    def load_task(self, loader_args: list[str]) -> RollbackOnFailure:
        _, module_name, _, workflow_name, *_ = loader_args
        module = importlib.import_module(module_name)
        handler = getattr(getattr(module, workflow_name), "on_failure", None)
        if not isinstance(handler, RollbackOnFailure):
            raise TypeError(
                f"{module_name}.{workflow_name} is not a workflow made by workflow_with_rollback"
            )
        return handler

    def loader_args(self, settings: SerializationSettings, t: RollbackOnFailure) -> list[str]:
        _, module_name, workflow_name, _ = extract_task_module(t.workflow_function)
        return ["workflow-module", module_name, "workflow", workflow_name]

    def get_all_tasks(self) -> list[RollbackOnFailure]:
        raise NotImplementedError


rollback_resolver = RollbackResolver()


class RollbackOnFailure(PythonAutoContainerTask):
    """The failure handler of one workflow: its inputs are the workflow's, plus ``err``.

    It rolls back the workflow's ``rollout`` input as ``rollback_deployment`` does, and returns
    the revision that serves ("" when the deploy created the deployment). Make it with
    :func:`workflow_with_rollback`, which also gives it to the workflow.
    """

    def __init__(
        self,
        workflow_function: Callable[..., Any],
        container_image: str | ImageSpec | None = None,
    ) -> None:
        name, _, _, _ = extract_task_module(workflow_function)
        inputs = dict(transform_function_to_interface(workflow_function).inputs_with_defaults)
        if ROLLOUT_INPUT not in inputs:
            raise TypeError(
                f"workflow {name} has no `{ROLLOUT_INPUT}` input: the rollback needs the deploy "
                "step's rollout record (or the deployment's name)"
            )
        if ERROR_INPUT in inputs:
            raise TypeError(
                f"workflow {name} has an input `{ERROR_INPUT}`: that name is reserved for the "
                "error Flyte hands the failure handler"
            )
        inputs[ERROR_INPUT] = (FlyteError | None, None)
        self._workflow_function = workflow_function
        super().__init__(
            name=f"{name}.rollback_deployment",
            task_config=None,
            interface=Interface(inputs=inputs, outputs={"o0": str}),
            container_image=container_image or IMAGE,
            task_resolver=rollback_resolver,
            secret_requests=[API_KEY_SECRET],
        )

    @property
    def workflow_function(self) -> Callable[..., Any]:
        return self._workflow_function

    def execute(self, **kwargs: Any) -> str:
        options = {key: kwargs[key] for key in PASSED_ON if key in kwargs}
        return roll_back(kwargs[ROLLOUT_INPUT], err=kwargs.get(ERROR_INPUT), **options)


def workflow_with_rollback(
    _workflow_function: Callable[..., Any] | None = None,
    *,
    container_image: str | ImageSpec | None = None,
    **workflow_options: Any,
) -> Any:
    """``@workflow`` whose failure handler rolls back its ``rollout`` input.

    Use it in place of ``@workflow(on_failure=rollback_deployment)`` for a workflow with inputs
    ``rollback_deployment`` does not have::

        @workflow_with_rollback
        def verify(rollout: str, payload: dict, expected: str, endpoint: str | None = None) -> str:
            ...

    The workflow must take ``rollout`` (the deploy step's output, or a deployment name). Its
    inputs ``revision``, ``wait``, ``timeout``, ``endpoint`` and ``token``, if any, go to the
    rollback too. ``container_image`` is the handler's image (default: the plugin's image);
    other keyword arguments go to ``@workflow``. Bind the result to the function's name (as the
    decorator syntax does): the handler's pod finds it there.
    """
    if "on_failure" in workflow_options:
        raise TypeError("workflow_with_rollback makes the on_failure handler; do not pass one")

    def wrap(function: Callable[..., Any]) -> Any:
        handler = RollbackOnFailure(function, container_image=container_image)
        return workflow(function, on_failure=handler, **workflow_options)

    if _workflow_function is None:
        return wrap
    return wrap(_workflow_function)
