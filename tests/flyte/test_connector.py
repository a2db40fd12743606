"""The connector's create/get/delete through flytekit's registry, against a real control plane."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import httpx
import pytest
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit import workflow
from flytekit.configuration import ImageConfig, SerializationSettings
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate
from flytekit.tools.translator import get_serializable

from bentoship import Client, Rollout
from bentoship.steps import deploy, push, wait_until_ready
from flytekitplugins.bentoship import (
    BentoDeploymentConnector,
    BentoDeploymentMetadata,
    BentoDeploymentTask,
)

TERMINAL = (TaskExecution.SUCCEEDED, TaskExecution.FAILED)

deploy_task = BentoDeploymentTask(name="tests.flyte.deploy_and_wait", timeout_seconds=120)


@workflow
def ship_echo(name: str, bento: str) -> str:
    return deploy_task(name=name, bento=bento).url


def connector() -> BentoDeploymentConnector:
    found = ConnectorRegistry.get_connector("bentoship_deployment")
    assert isinstance(found, BentoDeploymentConnector)
    return found


def template_of(task: BentoDeploymentTask) -> TaskTemplate:
    settings = SerializationSettings(ImageConfig.auto_default_image())
    return get_serializable(OrderedDict(), settings, task).template


def inputs_of(task: BentoDeploymentTask, **values: Any) -> LiteralMap:
    ctx = FlyteContextManager.current_context()
    return TypeEngine.dict_to_literal_map(ctx, values, task.get_input_types())


def create(task: BentoDeploymentTask, **values: Any) -> BentoDeploymentMetadata:
    meta = asyncio.run(connector().create(template_of(task), inputs=inputs_of(task, **values)))
    # propeller keeps the metadata encoded between calls
    decoded = BentoDeploymentMetadata.decode(meta.encode())
    assert decoded == meta
    return decoded


def get_until_done(meta: BentoDeploymentMetadata) -> Resource:
    """Call get as propeller would until a terminal phase (the metadata's deadline bounds it)."""
    while True:
        resource = asyncio.run(connector().get(meta))
        if resource.phase in TERMINAL:
            return resource
        assert resource.phase == TaskExecution.RUNNING, resource


def version_at(url: str) -> str:
    return str(httpx.post(f"{url}/echo", json={"text": "x"}, timeout=30).json()["version"])


@pytest.fixture
def pushed(api: Client, echo_v1: str, echo_v2: str) -> None:
    push(echo_v1, client=api)
    push(echo_v2, client=api)


DEPLOYMENT = "conn"
"""The one deployment of the module: the tests after the first update the one it leaves."""


def serving(api: Client, bento: str) -> Rollout:
    """``DEPLOYMENT`` serving ``bento``: as the tests before left it (no new revision), or
    created now when a test runs on its own."""
    rollout = deploy(DEPLOYMENT, bento, client=api)
    wait_until_ready(rollout, client=api, timeout=60)
    return rollout


@pytest.mark.usefixtures("cloud_env", "pushed")
def test_create_get_delete_against_the_server(api: Client, echo_v1: str, echo_v2: str) -> None:
    task = BentoDeploymentTask(name="tests.flyte.connector_direct", timeout_seconds=120)

    # create, then get until green: a new deployment
    first_meta = create(task, name=DEPLOYMENT, bento=echo_v1, config={"min_replicas": 1})
    first = Rollout.from_json(first_meta.rollout)
    assert first.created and first.revision
    done = get_until_done(first_meta)
    assert done.phase == TaskExecution.SUCCEEDED, done.message
    assert done.outputs is not None and done.outputs["rollout"] == first_meta.rollout
    assert version_at(done.outputs["url"]) == "v1"
    assert api.get_deployment(DEPLOYMENT).serving_revision == first.revision

    # an update aborted while it rolls out: delete rolls it back, and a second delete is a no-op
    aborted_meta = create(task, name=DEPLOYMENT, bento=echo_v2, config={"min_replicas": 1})
    aborted = Rollout.from_json(aborted_meta.rollout)
    assert aborted.changed and aborted.previous_revision == first.revision
    connector().delete(aborted_meta)
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.target_revision == first.revision and dep.bento == echo_v1
    connector().delete(aborted_meta)
    assert api.get_deployment(DEPLOYMENT).target_revision == first.revision
    after_abort = get_until_done(aborted_meta)
    assert after_abort.phase == TaskExecution.FAILED
    assert "no longer targets this rollout" in str(after_abort.message)
    wait_until_ready(DEPLOYMENT, client=api, timeout=60)
    assert version_at(dep.url) == "v1"


@pytest.mark.usefixtures("cloud_env", "pushed")
def test_failing_rollout_is_failed_with_the_servers_reason_and_rolled_back(
    api: Client, echo_v1: str, crash_bento: str
) -> None:
    push(crash_bento, client=api)
    good = serving(api, echo_v1)

    task = BentoDeploymentTask(name="tests.flyte.connector_crash", timeout_seconds=120)
    meta = create(task, name=DEPLOYMENT, bento=crash_bento)
    done = get_until_done(meta)

    assert done.phase == TaskExecution.FAILED
    message = str(done.message)
    crashed = next(r for r in api.list_revisions(DEPLOYMENT) if r.bento == crash_bento)
    assert crashed.phase == "failed" and crashed.reason
    assert crashed.reason in message
    assert "deliberate init failure: crash fixture" in message
    assert f"rolled {DEPLOYMENT} back to revision {good.revision}" in message
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.target_revision == good.revision == dep.serving_revision
    assert dep.bento == echo_v1
    wait_until_ready(DEPLOYMENT, client=api, timeout=60)
    assert version_at(dep.url) == "v1"


@pytest.mark.usefixtures("cloud_env", "pushed")
def test_connector_task_runs_in_a_local_workflow(
    api: Client, echo_v1: str, echo_v2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow's task goes through the connector; the rollout it finished is not undone by
    a late delete."""
    before = serving(api, echo_v1)
    phases: list[int] = []
    metas: list[BentoDeploymentMetadata] = []
    real_get = connector().get

    async def observed_get(resource_meta: BentoDeploymentMetadata, **kwargs: Any) -> Resource:
        resource = await real_get(resource_meta, **kwargs)
        phases.append(resource.phase)
        metas.append(resource_meta)
        return resource

    monkeypatch.setattr(connector(), "get", observed_get)
    url = ship_echo(name=DEPLOYMENT, bento=echo_v2)

    # the workflow went through the connector: it called get until the rollout succeeded
    assert phases and phases[-1] == TaskExecution.SUCCEEDED
    assert set(phases[:-1]) <= {TaskExecution.RUNNING}
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.bento == echo_v2 and dep.serving_revision == dep.target_revision
    assert dep.serving_revision != before.revision
    assert url == dep.url and version_at(url) == "v2"

    finished = Rollout.from_json(metas[-1].rollout)
    assert finished.revision == dep.serving_revision
    connector().delete(metas[-1])
    dep = api.get_deployment(DEPLOYMENT)
    assert dep.serving_revision == finished.revision == dep.target_revision
    assert version_at(dep.url) == "v2"
