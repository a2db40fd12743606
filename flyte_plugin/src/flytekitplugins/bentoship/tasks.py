"""One flytekit task per bentoship step.

Each task maps its inputs to one call of :mod:`bentoship.steps` and returns the step's result.
Nothing is cached: build versions, pushes, deploys and rollbacks must run every time. The Bento
travels between tasks as a ``.bento`` archive (a ``FlyteFile``), and the deploy step's
``Rollout`` as JSON text, so every task can run in its own pod. Optional inputs default to
None, which means bentoship's own default; the endpoint and token come from the inputs, else
``BENTO_CLOUD_API_ENDPOINT`` / ``BENTO_CLOUD_API_KEY``, else the Flyte secret ``bentoship/api_key``,
else the local control plane's ``connection.json``.

bentoml is imported inside the task bodies only, so importing this module stays cheap.
"""

import json
import typing
from pathlib import Path
from typing import NamedTuple

import flytekit
from flytekit import task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.error import FlyteError
from flytekit.types.file import FlyteFile

from ._connection import API_KEY_SECRET, client, credentials


class BuildOutputs(NamedTuple):
    tag: str
    bento: FlyteFile


class DeployAndWaitOutputs(NamedTuple):
    rollout: str
    url: str


def _given(**options: object) -> dict[str, typing.Any]:
    """The options that were set, so that bentoship's defaults apply to the others."""
    return {key: value for key, value in options.items() if value is not None}


@task(cache=False)
def build_bento(
    project_dir: FlyteDirectory,
    version: str | None = None,
    labels: dict[str, str] | None = None,
    models: list[FlyteFile] | None = None,
) -> BuildOutputs:
    """Build the Bento project in ``project_dir``; return its tag and the Bento as an archive.

    ``models`` are files written by ``bentoml.models.export_model``, imported before the build
    so that a model trained in another pod is packed into the Bento.
    """
    from bentoship.steps import build

    project = Path(project_dir.download())
    model_files = [Path(model.download()) for model in models or []]
    out_dir = Path(flytekit.current_context().working_directory) / "bentoship-build"
    archive = out_dir / "bento.bento"
    tag = build(project, version=version, labels=labels, models=model_files, export_path=archive)
    named = archive.rename(out_dir / f"{tag.replace(':', '-')}.bento")
    return BuildOutputs(tag=tag, bento=FlyteFile(str(named)))


@task(cache=False, secret_requests=[API_KEY_SECRET])
def push_bento(
    bento: FlyteFile,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Upload the Bento archive; return its tag. A Bento already on the server is a no-op."""
    from bentoship.steps import push

    archive = Path(bento.download())
    with client(endpoint, token) as api:
        return push(archive, client=api, force=force)


@task(cache=False, secret_requests=[API_KEY_SECRET])
def deploy_bento(
    name: str,
    bento: str,
    config: dict | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Create or update deployment ``name`` to run ``bento``; return the Rollout as JSON.

    ``config`` takes instance_type, min_replicas, max_replicas, envs, labels,
    access_authorization and strategy. Re-running with the same bento and config makes no new
    revision, so retries are safe.
    """
    from bentoship.steps import deploy

    with client(endpoint, token) as api:
        return deploy(name, bento, config, client=api).to_json()


@task(cache=False, secret_requests=[API_KEY_SECRET])
def wait_for_deployment(
    rollout: str,
    timeout: float | None = None,
    poll_interval: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Wait until the rollout (deploy output, or a deployment name) serves; return its URL.

    Fails with the server's status, reason and the last error in the revision's logs.
    """
    from bentoship.steps import wait_until_ready

    with client(endpoint, token) as api:
        options = _given(timeout=timeout, poll_interval=poll_interval)
        return wait_until_ready(rollout, client=api, **options).url


@task(cache=False, secret_requests=[API_KEY_SECRET])
def smoke_test_deployment(
    rollout: str,
    api: str,
    payload: dict | None = None,
    expected: dict | None = None,
    method: str = "POST",
    access_token: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Call ``api`` of the deployment (deploy output, name or URL); return the answer as JSON.

    Fails when the call fails or the answer differs from ``expected``. ``access_token`` is sent
    as a bearer token, for deployments with access authorization.
    """
    from bentoship.steps import SmokeTest, smoke_test

    test = SmokeTest(api=api, payload=payload or {}, expected=expected, method=method)
    lookup_endpoint, lookup_token = credentials(endpoint, token)
    answer = smoke_test(
        rollout, test, token=access_token, endpoint=lookup_endpoint, api_token=lookup_token
    )
    return json.dumps(answer)


@task(cache=False, secret_requests=[API_KEY_SECRET])
def rollback_deployment(
    rollout: str,
    revision: str | None = None,
    wait: bool | None = None,
    timeout: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    err: FlyteError | None = None,
) -> str:
    """Roll back to the revision the deploy replaced (or ``revision``); return what serves.

    Use it as ``on_failure`` of a workflow whose inputs are among this task's inputs (for
    example ``rollout``): Flyte then passes the failed workflow's inputs and its ``err``.
    Returns "" when the deploy created the deployment, so there is nothing to go back to.
    """
    from bentoship.steps import rollback

    if err is not None:
        print(f"rolling back after a failure: {err.message}")
    with client(endpoint, token) as api:
        options = _given(wait=wait, timeout=timeout)
        dep = rollback(rollout, revision=revision, client=api, **options)
    if dep is None:
        return ""
    return dep.serving_revision or dep.target_revision or ""


@task(cache=False, secret_requests=[API_KEY_SECRET])
def deploy_and_wait(
    name: str,
    bento: str,
    config: dict | None = None,
    timeout: float | None = None,
    poll_interval: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> DeployAndWaitOutputs:
    """The plain-task twin of :class:`BentoDeploymentTask`, for clusters without the connector.

    It runs bentoship's ``ship`` step without a smoke test: deploy, wait until green, and roll
    back before failing when the rollout fails. It holds its pod while it waits.
    """
    from bentoship.steps import ship

    with client(endpoint, token) as api:
        options = _given(timeout=timeout, poll_interval=poll_interval)
        rollout = ship(name, bento, config, client=api, **options)
    return DeployAndWaitOutputs(rollout=rollout.to_json(), url=rollout.endpoint_url)
