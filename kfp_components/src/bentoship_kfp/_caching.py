"""Components whose tasks never use the KFP cache.

KFP sets caching per task, not per component. Every component that talks to the server acts on
live state, so a cached result would skip real work: a cached deploy would not deploy, a cached
exit task silently does not roll back, and a cached approval hands an old "approved" to the
promotion without asking anyone. The cache key cannot see the server either, when the endpoint
comes from the environment (a Kubernetes secret), so a cached push could "succeed" against
another server. Only ``build_bento`` (project and model in, archive out) is cacheable.
These classes turn caching off on every task they create inside a pipeline.
"""

from typing import Any

from kfp.dsl.pipeline_task import PipelineTask, TaskState
from kfp.dsl.python_component import PythonComponent
from kfp.dsl.yaml_component import YamlComponent

UNCACHED = frozenset(
    {
        "push_bento",
        "deploy_bento",
        "wait_for_deployment",
        "smoke_test_deployment",
        "promote_deployment",
        "analyze_canary",
        "analyze_shadow",
        "rollback_deployment",
        "check_drift",
        "export_monitoring",
        "send_feedback",
        "check_quality",
        "request_approval",
    }
)
"""The components whose tasks never use the cache."""


def _uncached(task: PipelineTask) -> PipelineTask:
    # Outside a pipeline a task runs at once (kfp.local) and is already final; the local runner
    # never caches single tasks, so only pipeline tasks need the option.
    if task.state == TaskState.FUTURE:
        task.set_caching_options(enable_caching=False)
    return task


class UncachedPythonComponent(PythonComponent):
    """A lightweight Python component whose pipeline tasks have caching disabled."""

    def __call__(self, *args: Any, **kwargs: Any) -> PipelineTask:
        return _uncached(super().__call__(*args, **kwargs))


class UncachedYamlComponent(YamlComponent):
    """A component loaded from YAML whose pipeline tasks have caching disabled."""

    def __call__(self, *args: Any, **kwargs: Any) -> PipelineTask:
        return _uncached(super().__call__(*args, **kwargs))


def never_cached(component: PythonComponent) -> UncachedPythonComponent:
    """Decorator (outermost, above ``@dsl.component``): tasks of this component are not cached."""
    return UncachedPythonComponent(component.component_spec, component.python_func)
