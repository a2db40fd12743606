"""One flytekit task per bentoship step.

Each task maps its inputs to one call of :mod:`bentoship.steps` and returns the step's result.
Nothing is cached: build versions, pushes, deploys and rollbacks must run every time. The Bento
travels between tasks as a ``.bento`` archive (a ``FlyteFile``), and the deploy step's
``Rollout`` as JSON text, so every task can run in its own pod. Optional inputs default to
None, which means bentoship's own default; the endpoint and token come from the inputs, else
``BENTO_CLOUD_API_ENDPOINT`` / ``BENTO_CLOUD_API_KEY``, else the Flyte secret ``bentoship/api_key``,
else the local control plane's ``connection.json``. Every task runs in the plugin's image
(:data:`flytekitplugins.bentoship.image.IMAGE`).

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
from .image import IMAGE
from .rollback import roll_back


class BuildOutputs(NamedTuple):
    tag: str
    bento: FlyteFile


class DeployAndWaitOutputs(NamedTuple):
    rollout: str
    url: str


class ApprovalOutputs(NamedTuple):
    decision: str
    """``approved``, ``rejected``, ``expired``, ``withdrawn`` or ``not_required``."""
    decided_by: str
    """The name of the approver's API token; empty when nobody decided."""
    comment: str


def _given(**options: object) -> dict[str, typing.Any]:
    """The options that were set, so that bentoship's defaults apply to the others."""
    return {key: value for key, value in options.items() if value is not None}


@task(cache=False, container_image=IMAGE)
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


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
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


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def deploy_bento(
    name: str,
    bento: str,
    config: dict | None = None,
    candidate: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Create or update deployment ``name`` to run ``bento``; return the Rollout as JSON.

    ``config`` takes instance_type, min_replicas, max_replicas, envs, labels,
    access_authorization and strategy. With ``candidate``, the new revision is held on the
    deployment's candidate URL, taking no live traffic, until :func:`promote_deployment`
    (verify it with :func:`smoke_test_deployment` first). Re-running with the same bento and
    config makes no new revision, so retries are safe.
    """
    from bentoship.steps import deploy

    with client(endpoint, token) as api:
        return deploy(name, bento, config, candidate=candidate, client=api).to_json()


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def promote_deployment(
    rollout: str,
    timeout: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Switch the endpoint to the rollout's candidate; return the promoted Rollout as JSON.

    A rollout that is not a candidate already serves and is returned as it is.
    """
    from bentoship.steps import promote

    with client(endpoint, token) as api:
        return promote(rollout, client=api, **_given(timeout=timeout)).to_json()


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def analyze_canary(
    rollout: str,
    steps: list[int] | None = None,
    interval: float | None = None,
    min_requests: int | None = None,
    min_success_rate: float | None = None,
    max_p99_ratio: float | None = None,
    p99_slack_ms: float | None = None,
    route_type: str | None = None,
    route_by: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Ramp the candidate's share of live traffic, check it at each step, promote or discard.

    Defaults: steps 10, 50, 100 (percent), 60 s each, at least 100 requests per step, a success
    rate of at least 0.99, and a p99 of at most 1.5 x the baseline's + 50 ms. Returns the
    analysis (verdict, reason, every step's figures) as JSON; a discarded candidate fails the
    task with the same figures in its message.
    """
    from bentoship.steps import analyze_canary as analyze

    policy = _given(
        steps=steps,
        interval=interval,
        min_requests=min_requests,
        min_success_rate=min_success_rate,
        max_p99_ratio=max_p99_ratio,
        p99_slack_ms=p99_slack_ms,
        route_type=route_type,
        route_by=route_by,
    )
    with client(endpoint, token) as api:
        return json.dumps(analyze(rollout, policy, client=api).to_dict())


@task(
    cache=False,
    enable_deck=True,
    deck_fields=(),  # only the report: the inputs deck would show the token
    secret_requests=[API_KEY_SECRET],
    container_image=IMAGE,
)
def analyze_shadow(
    rollout: str,
    percent: int | None = None,
    min_pairs: int | None = None,
    min_agreement: float | None = None,
    tolerance: float | None = None,
    max_error_rate_increase: float | None = None,
    max_p99_ratio: float | None = None,
    p99_slack_ms: float | None = None,
    timeout: float | None = None,
    apis: list[str] | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Mirror live requests to the candidate, compare its answers with the serving revision's,
    then promote it, or discard it and fail; the report of the pairs is the task's *Shadow
    report* deck.

    Defaults (``bentoship.ShadowPolicy``): 100% of the requests to every API (``apis`` names
    some, such as ``["predict"]``; empty is every API) until 200 pairs or 600 s, then at least
    0.95 of the compared pairs must agree (numbers within 1e-6), the error rate may rise by at
    most 0.01 and the p99 be at most 1.5 x the serving revision's + 50 ms. Returns the promoted
    Rollout as JSON, as :func:`promote_deployment` does. Local control plane only: it runs the
    analysis and mirrors the requests.
    """
    from bentoship import Rollout, ShadowFailed
    from bentoship.steps import analyze_shadow as analyze
    from bentoship.steps.promote import promoted_record

    policy = _given(
        percent=percent,
        min_pairs=min_pairs,
        min_agreement=min_agreement,
        tolerance=tolerance,
        max_error_rate_increase=max_error_rate_increase,
        max_p99_ratio=max_p99_ratio,
        p99_slack_ms=p99_slack_ms,
        timeout=timeout,
        apis=apis or None,
    )
    with client(endpoint, token) as api:
        try:
            analysis = analyze(rollout, policy, client=api)
        except ShadowFailed as failed:
            flytekit.Deck("Shadow report", failed.analysis.html())
            raise
    flytekit.Deck("Shadow report", analysis.html())
    return promoted_record(Rollout.parse(rollout)).to_json()


@task(
    cache=False,
    enable_deck=True,
    deck_fields=(),  # only the decision: the inputs deck would show the token
    secret_requests=[API_KEY_SECRET],
    container_image=IMAGE,
)
def request_approval(
    rollout: str,
    message: str = "",
    timeout: float | None = None,
    evidence: dict | None = None,
    required: bool = True,
    raise_on_failure: bool = True,
    endpoint: str | None = None,
    token: str | None = None,
) -> ApprovalOutputs:
    """Ask a person to approve the held candidate, and wait for the decision; the decision
    is the task's *Approval* deck.

    The control plane keeps the approval with ``message`` and ``evidence`` (links and figures),
    promotes the candidate when someone approves (the console, ``bentoship approve``, the API,
    an Airflow or KFP user of the same plane) and discards it when someone rejects or
    ``timeout`` seconds pass (default a day); the task only waits, so one that dies leaves no
    candidate waiting. A candidate not approved fails the task (``raise_on_failure=False``:
    branch on ``decision``). ``required=False`` asks nobody and calls no server: the decision
    is ``not_required`` and the candidate stays held for :func:`promote_deployment`, so an
    optional approval needs no ``conditional``. Local control plane only.

    flytekit's own ``approve()`` node fits better when the decision belongs to the Flyte
    execution: someone approves in Flyte's UI (or with ``flytectl``/``FlyteRemote``), no
    control plane keeps it, and the workflow then promotes. This task fits when the decision
    belongs to the deployment: the control plane applies it and its timeout, promotes or
    discards, and the console, the CLI and the other orchestrators see the same approval.
    """
    from bentoship import ApprovalRejected
    from bentoship.steps import request_approval as request

    options = _given(timeout=timeout)
    try:
        if required:
            with client(endpoint, token) as api:
                approval = request(
                    rollout,
                    message,
                    evidence=evidence,
                    client=api,
                    raise_on_failure=raise_on_failure,
                    **options,
                )
        else:
            approval = request(rollout, message, evidence=evidence, required=False)
    except ApprovalRejected as rejected:
        flytekit.Deck("Approval", rejected.approval.html())
        raise
    flytekit.Deck("Approval", approval.html())
    return ApprovalOutputs(approval.state, approval.decided_by or "", approval.comment)


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
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


def _expected_answer(expected: str | None) -> typing.Any:
    """The expected answer decoded from its JSON text; None (no expectation) when empty."""
    if expected is None or not expected.strip():
        return None
    try:
        return json.loads(expected)
    except ValueError:
        raise ValueError(
            "expected must be JSON text, such as json.dumps(answer) (a text answer is quoted: "
            f"'\"hello\"'); got {expected[:100]!r}"
        ) from None


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def smoke_test_deployment(
    rollout: str,
    api: str,
    payload: dict | None = None,
    expected: str | None = None,
    min_match: float = 1.0,
    method: str = "POST",
    access_token: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Call ``api`` of the deployment (deploy output, name or URL); return the answer as JSON.

    ``expected`` is the expected answer as JSON text (any JSON: an object, a list, a string such
    as ``'"hello"'``, a number), as the KFP component takes it; empty or None accepts any
    successful answer. With a JSON list as ``expected`` and ``min_match`` below 1, that share of
    the answer's items must equal the expected items, position by position (with labelled
    holdout rows as the payload, a minimum accuracy); 1.0 requires the exact answer. Fails when
    the call fails or the answer does not match. ``access_token`` is sent as a bearer token, for
    deployments with access authorization.
    """
    from bentoship.steps import SmokeTest, smoke_test

    test = SmokeTest(
        api=api,
        payload=payload or {},
        expected=_expected_answer(expected),
        method=method,
        min_match=min_match,
    )
    lookup_endpoint, lookup_token = credentials(endpoint, token)
    answer = smoke_test(
        rollout, test, token=access_token, endpoint=lookup_endpoint, api_token=lookup_token
    )
    return json.dumps(answer)


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
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

    Use it as ``on_failure`` of a workflow whose inputs are all among this task's inputs (for
    example ``rollout`` and ``endpoint``): Flyte then passes the failed workflow's inputs and its
    ``err``. For a workflow with other inputs, use ``workflow_with_rollback`` instead. Returns ""
    when the deploy created the deployment, so there is nothing to go back to.
    """
    return roll_back(rollout, revision, wait, timeout, endpoint, token, err)


@task(cache=False, secret_requests=[API_KEY_SECRET], container_image=IMAGE)
def deploy_and_wait(
    name: str,
    bento: str,
    config: dict | None = None,
    candidate: bool = False,
    timeout: float | None = None,
    poll_interval: float | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> DeployAndWaitOutputs:
    """The plain-task twin of :class:`BentoDeploymentTask`, for clusters without the connector.

    Deploy (as a candidate with ``candidate``), wait until ready, and roll back (discard a
    candidate) before failing when the rollout fails. ``url`` is where the rollout answers: the
    candidate URL for a candidate. It holds its pod while it waits.
    """
    from bentoship.steps import deploy, rollback, wait_until_ready

    with client(endpoint, token) as api:
        rollout = deploy(name, bento, config, candidate=candidate, client=api)
        try:
            options = _given(timeout=timeout, poll_interval=poll_interval)
            wait_until_ready(rollout, client=api, **options)
        except Exception:
            rollback(rollout, client=api, wait=False)
            raise
    return DeployAndWaitOutputs(rollout=rollout.to_json(), url=rollout.url)
