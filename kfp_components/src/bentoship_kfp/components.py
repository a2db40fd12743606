"""Lightweight KFP v2 components, one per bentoship step.

Each component body calls one ``bentoship.steps`` function. Only kfp is imported at module
level; bentoship and bentoml are imported inside the bodies, which run in :data:`BASE_IMAGE`
(it has bentoship-kfp, so also bentoship, bentoml and kfp, installed).

Every component runs in that one image. It is :data:`DEFAULT_IMAGE` (tagged with the package
version) unless the ``BENTOSHIP_KFP_IMAGE`` environment variable, read when this module is
imported, names another. :func:`with_image` returns all the components with another image,
without any environment variable:

    c = with_image("registry.example.com/bentoship-kfp:0.1.0-python3.11")
    deployed = c["deploy_bento"](deployment_name="svc", bento_tag=tag)

Every task can run in its own container with no shared disk: the Bento travels from
``build_bento`` to ``push_bento`` as an artifact (an exported ``.bento`` archive), a model can
come into ``build_bento`` as a ``Model`` artifact, and the deploy step's ``Rollout`` record
travels as JSON text to the wait, smoke-test, promote, canary and rollback tasks.

Verified rollouts: ``deploy_bento(candidate=True)`` holds the new revision on the deployment's
candidate URL, taking no live traffic; ``wait_for_deployment`` and ``smoke_test_deployment``
act on the candidate; ``promote_deployment`` (or ``analyze_canary``, which ramps the candidate's
share of live traffic first, or ``analyze_shadow``, which compares its answers to copies of live
requests first) switches the endpoint to it; ``rollback_deployment`` discards a
candidate that is still held.

Monitoring: ``check_drift`` compares the traffic with the training data, ``export_monitoring``
copies the monitoring records to a warehouse, ``send_feedback`` sends the labels that arrive
after the predictions, and ``check_quality`` holds the serving revision's quality against a
baseline; the checks write HTML artifacts and output a flag for a ``dsl.If``.

People: ``request_approval`` holds the candidate for a person's decision (the console,
``bentoship approve``, the API); the control plane promotes it on approve and discards it on
reject or timeout.

The server comes from the ``endpoint``/``token`` parameters, else the ``BENTO_CLOUD_API_ENDPOINT``
and ``BENTO_CLOUD_API_KEY`` environment variables (in a cluster: a Kubernetes secret exposed as
environment variables), else a local control plane's ``connection.json``.

Tasks of every component but ``build_bento`` are never cached: they act on the live server.
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types.
from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from ._caching import UNCACHED, never_cached
from ._image import DEFAULT_IMAGE, IMAGE_ENV, configured_image, python_component_with_image

__all__ = [
    "BASE_IMAGE",
    "COMPONENTS",
    "DEFAULT_IMAGE",
    "IMAGE_ENV",
    "UNCACHED",
    "analyze_canary",
    "analyze_shadow",
    "build_bento",
    "check_drift",
    "check_quality",
    "deploy_bento",
    "export_monitoring",
    "promote_deployment",
    "push_bento",
    "request_approval",
    "rollback_deployment",
    "send_feedback",
    "smoke_test_deployment",
    "wait_for_deployment",
    "with_image",
]

BASE_IMAGE = configured_image()
"""The image every component runs in: ``$BENTOSHIP_KFP_IMAGE`` when it was set at import,
else :data:`DEFAULT_IMAGE`, which ``kfp_components/Dockerfile`` builds.

It has bentoship-kfp installed, so kfp is already there and the components are compiled with
``install_kfp_package=False`` (no pip install when a task starts, in a cluster or locally).
"""


def _whole_numbers(value):
    """Undo KFP's float conversion of dict/list parameters (protobuf Structs): 1.0 becomes 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False, additional_funcs=[_whole_numbers])
def build_bento(
    project_dir: str,
    bento: Output[Artifact],
    model: Optional[Input[Model]] = None,  # noqa: UP045 (kfp does not read `X | None`)
    version: str = "",
    labels: Optional[dict] = None,  # noqa: UP045
) -> str:
    """Build the Bento in a project directory and output it as one archive.

    Args:
        project_dir: The Bento project (the folder with ``bentofile.yaml``) inside the task's
            image; its Python dependencies must be installed there, as ``bentoml build``
            imports the service.
        bento: The built Bento, exported as a ``.bento`` archive, for ``push_bento``.
        model: A model file written by ``bentoml.models.export_model``; it is imported into
            the task's BentoML store before the build.
        version: The Bento version; empty for one that bentoml generates.
        labels: Labels for the Bento (string values).

    Returns:
        The Bento tag (``name:version``).
    """
    import os

    from bentoship.steps import build

    archive = bento.path + ".bento"  # bentoml appends this suffix when a path lacks it
    tag = build(
        project_dir,
        version=version or None,
        labels={str(k): str(v) for k, v in _whole_numbers(labels or {}).items()},
        models=[model.path] if model is not None else (),
        export_path=archive,
    )
    os.replace(archive, bento.path)
    bento.metadata["tag"] = tag
    return tag


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def push_bento(
    bento: Input[Artifact],
    force: bool = False,
    endpoint: str = "",
    token: str = "",
) -> str:
    """Upload a built Bento archive; a Bento the server already has is a fast no-op.

    Args:
        bento: The archive that ``build_bento`` output.
        force: Upload even when the server already has this Bento.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY`` (prefer the variable: parameters
            are visible in the run's details).

    Returns:
        The Bento tag.
    """
    from pathlib import Path

    from bentoship import Client
    from bentoship.steps import push

    with Client(endpoint or None, token or None) as client:
        return push(Path(bento.path), client=client, force=force)


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False, additional_funcs=[_whole_numbers])
def deploy_bento(
    deployment_name: str,
    bento_tag: str,
    config: Optional[dict] = None,  # noqa: UP045
    candidate: bool = False,
    endpoint: str = "",
    token: str = "",
) -> NamedTuple(
    "DeployOutputs",
    [("rollout", str), ("endpoint_url", str), ("revision", str), ("changed", bool)],
):
    """Create or update a deployment; the same Bento and config again changes nothing.

    Args:
        deployment_name: The deployment's name.
        bento_tag: The Bento to run (pushed already).
        config: Deployment settings: ``instance_type``, ``min_replicas``, ``max_replicas``,
            ``envs``, ``labels``, ``access_authorization``, ``strategy``.
        candidate: Hold the new revision on the deployment's candidate URL, taking no live
            traffic, until ``promote_deployment`` or ``analyze_canary``; without candidate
            revisions (plain BentoCloud) it is an ordinary deploy, and the task logs that.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        rollout: The rollout record as JSON, for the wait, smoke-test, promote, canary and
            rollback tasks.
        endpoint_url: The deployment's endpoint URL.
        revision: The revision this deploy targets.
        changed: False when the deployment already ran this Bento and config.
    """
    from bentoship import Client
    from bentoship.steps import deploy

    with Client(endpoint or None, token or None) as client:
        rollout = deploy(
            deployment_name,
            bento_tag,
            _whole_numbers(config or {}),
            candidate=candidate,
            client=client,
        )
    held = f", held as a candidate at {rollout.candidate_url}" if rollout.candidate else ""
    print(f"deployment {rollout.name}: revision {rollout.revision} of {rollout.bento}{held}")
    return (rollout.to_json(), rollout.endpoint_url, rollout.revision or "", rollout.changed)


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def wait_for_deployment(
    rollout: str,
    timeout: int = 600,
    poll_interval: float = 5.0,
    endpoint: str = "",
    token: str = "",
) -> NamedTuple("WaitOutputs", [("status", str), ("url", str), ("bento", str)]):
    """Wait until the rollout's revision serves; fail with the server's reason and logs if not.

    Args:
        rollout: The deploy task's ``rollout`` output (or a deployment name).
        timeout: Seconds to wait before failing (a KFP task has no timeout of its own).
        poll_interval: Seconds between polls against servers without long-poll waits.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        status: The deployment's status once ready.
        url: The deployment's endpoint URL.
        bento: The Bento it serves.
    """
    from bentoship import Client
    from bentoship.steps import wait_until_ready

    with Client(endpoint or None, token or None) as client:
        info = wait_until_ready(
            rollout, client=client, timeout=timeout, poll_interval=poll_interval
        )
    print(f"deployment {info.name} is {info.status} at {info.url}, serving {info.bento}")
    return (info.status, info.url, info.bento)


@never_cached
@dsl.component(
    base_image=BASE_IMAGE,
    install_kfp_package=False,
    additional_funcs=[_whole_numbers],
)
def smoke_test_deployment(
    rollout: str,
    api: str,
    payload: Optional[dict] = None,  # noqa: UP045
    expected: str = "",
    min_match: float = 1.0,
    method: str = "POST",
    timeout: int = 30,
    auth_token: str = "",
    endpoint: str = "",
    token: str = "",
) -> str:
    """Call one API of the deployment with a sample payload and check the answer.

    Args:
        rollout: The deploy task's ``rollout`` output (or a deployment name).
        api: The API to call, such as ``predict``.
        payload: The JSON request body.
        expected: The expected answer as JSON text; empty to accept any successful answer.
        min_match: With a JSON list as ``expected``: the share of list items that must equal
            the answer's items, position by position (a quality gate: with labelled holdout
            rows as the payload it is the accuracy). 1.0 requires the exact answer.
        method: The HTTP method.
        timeout: Seconds to wait for the answer.
        auth_token: A token for deployments with access authorization.
        endpoint: API endpoint, used only to look up a deployment given by name.
        token: API token, used only to look up a deployment given by name.

    Returns:
        The answer as JSON text.
    """
    import json

    from bentoship.steps import SmokeTest, smoke_test

    test = SmokeTest(
        api=api,
        payload=_whole_numbers(payload or {}),
        expected=json.loads(expected) if expected.strip() else None,
        method=method,
        timeout=timeout,
        min_match=min_match,
    )
    answer = smoke_test(
        rollout, test, token=auth_token or None, endpoint=endpoint or None, api_token=token or None
    )
    return json.dumps(answer)


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote_deployment(
    rollout: str,
    timeout: int = 600,
    endpoint: str = "",
    token: str = "",
) -> str:
    """Switch the endpoint to the rollout's candidate and wait until it serves.

    A rollout that is not a candidate (deployed without ``candidate``, or to plain BentoCloud)
    already serves: it is returned as it is. Put it inside the ``dsl.ExitHandler``, after the
    smoke test, so that a promotion that fails is rolled back.

    Args:
        rollout: The deploy task's ``rollout`` output (or a deployment name: its candidate).
        timeout: Seconds to wait for the promoted revision to serve.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        The promoted rollout record as JSON (no longer a candidate).
    """
    from bentoship import Client
    from bentoship.steps import promote

    with Client(endpoint or None, token or None) as client:
        promoted = promote(rollout, client=client, timeout=timeout)
    print(f"deployment {promoted.name} serves revision {promoted.revision} of {promoted.bento}")
    return promoted.to_json()


@never_cached
@dsl.component(
    base_image=BASE_IMAGE,
    install_kfp_package=False,
    additional_funcs=[_whole_numbers],
)
def analyze_canary(
    rollout: str,
    steps: Optional[list] = None,  # noqa: UP045
    interval: int = 60,
    min_requests: int = 100,
    min_success_rate: float = 0.99,
    max_p99_ratio: float = 1.5,
    p99_slack_ms: int = 50,
    route_type: str = "random",
    route_by: str = "",
    endpoint: str = "",
    token: str = "",
) -> str:
    """Ramp the candidate's share of live traffic, check it at each step, promote or discard it.

    The alternative to ``promote_deployment`` after the smoke test. The figures come from the
    control plane's per-revision counts, so it needs the local control plane; against plain
    BentoCloud it fails, asking to promote instead. A discarded candidate fails the task; its
    figures are printed first. A task has no timeout of its own: the analysis lasts about
    ``interval`` per step, and a step waits up to 10 x ``interval`` for ``min_requests``.

    Args:
        rollout: The deploy task's ``rollout`` output, deployed with ``candidate=True`` and
            ready (after ``wait_for_deployment``).
        steps: The candidate's share of the endpoint's requests at each step, in percent,
            rising; empty for 10, 50, 100.
        interval: Seconds each step lasts.
        min_requests: Answers from the candidate each step needs before it is judged.
        min_success_rate: The share of the candidate's answers that must not be 5xx.
        max_p99_ratio: The candidate's p99 latency may be at most this times the baseline's
            (the revision that served before), plus ``p99_slack_ms``.
        p99_slack_ms: Milliseconds added to the baseline's p99 before the ratio check.
        route_type: ``random``, or ``header`` / ``query`` for sticky routing by ``route_by``.
        route_by: The header or query parameter sticky routing reads.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        The analysis as JSON: the verdict, its reason and every step's figures.
    """
    import json

    from bentoship import CanaryFailed, Client
    from bentoship.steps import analyze_canary as analyze

    policy = {
        "interval": float(interval),
        "min_requests": min_requests,
        "min_success_rate": min_success_rate,
        "max_p99_ratio": max_p99_ratio,
        "p99_slack_ms": float(p99_slack_ms),
        "route_type": route_type,
        "route_by": route_by or None,
    }
    if steps:
        policy["steps"] = [int(weight) for weight in _whole_numbers(steps)]
    with Client(endpoint or None, token or None) as client:
        try:
            analysis = analyze(rollout, policy, client=client)
        except CanaryFailed as failed:
            print(f"canary analysis: {json.dumps(failed.analysis)}")
            raise
    answer = json.dumps(analysis.to_dict())
    print(f"canary analysis: {answer}")
    return answer


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def analyze_shadow(
    rollout: str,
    report: Output[HTML],
    percent: int = 100,
    min_pairs: int = 200,
    min_agreement: float = 0.95,
    tolerance: float = 1e-06,
    max_error_rate_increase: float = 0.01,
    max_p99_ratio: float = 1.5,
    p99_slack_ms: int = 50,
    timeout: int = 600,
    apis: Optional[list] = None,  # noqa: UP045
    endpoint: str = "",
    token: str = "",
) -> str:
    """Mirror live requests to the candidate, compare its answers with the serving revision's,
    then promote or discard it.

    The alternative to ``promote_deployment`` after the smoke test: live callers get only the
    serving revision's answers while a copy of their requests goes to the candidate. The
    control plane runs the analysis, so it needs the local control plane; against plain
    BentoCloud it fails, asking for a smoke test or canary analysis instead. The report of the
    pairs is the ``report`` artifact; a discarded candidate fails the task after it is written.

    Args:
        rollout: The deploy task's ``rollout`` output, deployed with ``candidate=True`` and
            ready (after ``wait_for_deployment``).
        report: The shadow report, one self-contained HTML page.
        percent: The share of the endpoint's requests mirrored to the candidate (1-100).
        min_pairs: Pairs of answers to collect before the candidate is judged.
        min_agreement: The share of compared pairs whose answers must agree.
        tolerance: Numbers in two answers agree when they differ by at most this.
        max_error_rate_increase: The candidate's error rate may be at most this above the
            serving revision's.
        max_p99_ratio: The candidate's p99 latency may be at most this times the serving
            revision's, plus ``p99_slack_ms``.
        p99_slack_ms: Milliseconds added to the serving revision's p99 before the ratio check.
        timeout: Seconds to collect ``min_pairs`` pairs; with fewer by then, it is discarded.
        apis: The APIs whose requests are mirrored, such as ``["predict"]``; empty for every
            API.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        The promoted rollout record as JSON (no longer a candidate), as ``promote_deployment``
        outputs it.
    """
    import os

    from bentoship import Client, Rollout, ShadowFailed
    from bentoship.steps import analyze_shadow as analyze
    from bentoship.steps.promote import promoted_record

    def write_report(page: str) -> None:
        os.makedirs(os.path.dirname(report.path), exist_ok=True)
        with open(report.path, "w", encoding="utf-8") as handle:
            handle.write(page)

    policy = {
        "percent": int(percent),
        "min_pairs": int(min_pairs),
        "min_agreement": min_agreement,
        "tolerance": tolerance,
        "max_error_rate_increase": max_error_rate_increase,
        "max_p99_ratio": max_p99_ratio,
        "p99_slack_ms": float(p99_slack_ms),
        "timeout": float(timeout),
        "apis": list(apis) if apis else None,
    }
    with Client(endpoint or None, token or None) as client:
        try:
            analysis = analyze(rollout, policy, client=client)
        except ShadowFailed as failed:
            write_report(failed.analysis.html())
            print(f"shadow analysis: {failed.analysis.verdict}: {failed.analysis.reason}")
            raise
    write_report(analysis.html())
    print(f"shadow analysis: {analysis.verdict}: {analysis.reason}")
    return promoted_record(Rollout.parse(rollout)).to_json()


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def rollback_deployment(
    rollout: str,
    status: dsl.PipelineTaskFinalStatus,
    revision: str = "",
    timeout: int = 600,
    poll_interval: float = 5.0,
    endpoint: str = "",
    token: str = "",
) -> str:
    """The exit task of a ``dsl.ExitHandler``: roll the deployment back unless the group succeeded.

    A candidate that is still held (``deploy_bento(candidate=True)``, not promoted yet) is
    discarded: the endpoint never left the revision it serves. Otherwise it returns the
    deployment to the revision the deploy step replaced (recorded in the rollout, so it works
    against plain BentoCloud too), or to ``revision``, and waits until that revision serves. A
    rollout whose deploy created the deployment has nothing to return to.

    Args:
        rollout: The deploy task's ``rollout`` output (or a deployment name, to return to the
            server's previous good revision).
        status: The final status of the exit handler's tasks (KFP fills it in).
        revision: A revision to return to instead of the previous one.
        timeout: Seconds to wait for the restored revision to serve.
        poll_interval: Seconds between polls against servers without long-poll waits.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        What it did, in one line.
    """
    if status.state == "SUCCEEDED":
        outcome = f"no rollback: {status.pipeline_task_name} succeeded"
        print(outcome)
        return outcome

    from bentoship import Client, Rollout
    from bentoship.steps import rollback

    why = status.error_message or "no message"
    print(f"{status.pipeline_task_name} is {status.state} ({why}); rolling back")
    record = Rollout.parse(rollout) if rollout.strip().startswith("{") else None
    with Client(endpoint or None, token or None) as client:
        held = None
        if record is not None and record.candidate and not revision:
            found = client.find_deployment(record.name)
            if found is not None and found.candidate_revision == record.revision:
                held = record.revision
        info = rollback(
            rollout,
            revision=revision or None,
            client=client,
            timeout=timeout,
            poll_interval=poll_interval,
        )
    if info is None:
        outcome = "no rollback: the deploy created the deployment, so there is nothing before it"
    elif held is not None and info.serving_revision is None:
        outcome = f"discarded candidate {held}: {info.name} had served nothing before it"
    elif held is not None:
        outcome = f"discarded candidate {held}: {info.name} serves {info.bento} ({info.status})"
    else:
        outcome = f"rolled back: {info.name} serves {info.bento} ({info.status})"
    print(outcome)
    return outcome


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_drift(
    reference: str,
    current: str,
    report: Output[HTML],
    figures: Output[Metrics],
    evidently_report: Output[HTML],
    columns: Optional[list] = None,  # noqa: UP045
    categorical: Optional[list] = None,  # noqa: UP045
    missing_as_drift: bool = False,
    p_value: float = 0.05,
    psi: float = 0.1,
    share: float = 0.5,
    fail_on_drift: bool = False,
    evidently: bool = False,
    endpoint: str = "",
    token: str = "",
) -> NamedTuple("DriftOutputs", [("drifted", bool), ("share_drifted", float), ("summary", str)]):
    """Compare current data with a reference, column by column (KS or chi-squared, and PSI).

    The HTML report is the ``report`` artifact (the KFP UI shows it), and each column's
    figures are ``figures`` metrics. Use ``drifted`` in a ``dsl.If`` to retrain. With
    ``evidently``, Evidently's own page is the ``evidently_report`` artifact.

    Args:
        reference: The reference data: a Parquet path or URI, or JSON: ``{"url", "query"}`` (a
            SQL query on a SQLAlchemy URL), ``{"deployment", "monitor"}`` (a deployment's
            monitoring records on the local control plane).
        current: The current data, given as ``reference`` is.
        columns: The columns to compare (default: all).
        categorical: Columns to test as categories even when they hold numbers.
        missing_as_drift: Count a column on one side only (``missing``) as drifted.
        p_value: A column drifts when its test's p-value is below this...
        psi: ...and its population stability index is at least this.
        share: The data drifts when at least this share of its columns drift.
        fail_on_drift: Fail the task when the data drifts.
        evidently: Also run Evidently's default drift preset (needs ``bentoship[evidently]``
            in the image); else ``evidently_report`` says it was not asked for.
        endpoint: API endpoint for a ``{"deployment", "monitor"}`` side.
        token: API token for such a side.

    Returns:
        drifted: Whether the data drifted; share_drifted: the share of drifted columns;
        summary: one line.
    """
    import os
    import shutil

    from bentoship import Client
    from bentoship.drift import DriftThresholds, Monitor
    from bentoship.drift.tables import side_from_text
    from bentoship.steps import check_drift as check

    sides = [side_from_text(reference), side_from_text(current)]
    monitors = [s for s in sides if isinstance(s, Monitor)]
    client = Client(endpoint or None, token or None) if monitors else None
    page = report.path + ".html"
    try:
        found = check(
            *sides,
            columns=columns or None,
            categorical=categorical or (),
            missing_as_drift=missing_as_drift,
            thresholds=DriftThresholds(p_value=p_value, psi=psi, share=share),
            report_path=page,
            evidently=evidently,
            client=client,
        )
    finally:
        if client is not None:
            client.close()
    shutil.move(page, report.path)
    if evidently:
        shutil.move(report.path + ".evidently.html", evidently_report.path)
    else:
        os.makedirs(os.path.dirname(evidently_report.path), exist_ok=True)
        with open(evidently_report.path, "w", encoding="utf-8") as handle:
            handle.write("<p>Evidently's report was not asked for (evidently=True).</p>")
    for column in found.columns:
        for name in ("statistic", "p_value", "psi"):
            value = getattr(column, name)
            if value is not None:
                figures.log_metric(f"{column.name}.{name}", value)
    figures.log_metric("share_drifted", found.share_drifted)
    print(found.summary())
    if fail_on_drift and found.drifted:
        from bentoship.errors import DriftDetected

        raise DriftDetected(found, report.path)
    return (found.drifted, found.share_drifted, found.summary())


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export_monitoring(
    deployment_name: str,
    monitor: str,
    target: str,
    table: str = "",
    since: str = "",
    source: str = "",
    watermark_column: str = "seq",
    endpoint: str = "",
    token: str = "",
) -> NamedTuple("ExportOutputs", [("count", int), ("watermark", int)]):
    """Export the monitoring records the target does not have yet (no duplicate on a retry).

    Args:
        deployment_name: The deployment (on the local control plane).
        monitor: The monitor's name, as in ``bentoml.monitor("<name>")``.
        target: A Parquet folder, a DuckDB file (``.duckdb``/``.db``) or a SQLAlchemy URL.
        table: The table of a DuckDB or SQL target (default ``monitor_<monitor>``).
        since: Only records ingested since then: ISO-8601, epoch seconds or a time ago
            (``24h``); empty for all.
        source: Where the records are when not on the local control plane (BentoCloud keeps
            none): a Parquet path or URI, or JSON ``{"url", "query"}`` (a SQL query on a
            SQLAlchemy URL) that your collector fills; empty for the deployment's own.
        watermark_column: The column of ``source`` that only rises (a sequence, or epoch
            milliseconds).
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        count: records written by this run; watermark: the highest record ``seq`` exported.
    """
    from bentoship import Client
    from bentoship.steps import export_monitoring as export

    if source:
        result = export(
            deployment_name,
            monitor,
            target,
            source=source,
            watermark_column=watermark_column,
            table=table or None,
        )
    else:
        with Client(endpoint or None, token or None) as client:
            result = export(
                deployment_name,
                monitor,
                target,
                since=since or None,
                table=table or None,
                client=client,
            )
    print(f"exported {result.count} records of {deployment_name}/{monitor} to {result.target}")
    return (result.count, result.watermark)


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def send_feedback(
    deployment_name: str,
    monitor: str,
    source: str,
    id_field: str = "",
    label_field: str = "label",
    id_column: str = "id",
    time_column: str = "",
    watermark_column: str = "",
    endpoint: str = "",
    token: str = "",
) -> NamedTuple(
    "FeedbackOutputs",
    [
        ("sent", int),
        ("stored", int),
        ("duplicates", int),
        ("corrections", int),
        ("pending", int),
    ],
):
    """Send the labels that arrived after the predictions (ground truth) for a monitor's
    predictions; the control plane joins them and keeps each label once.

    Args:
        deployment_name: The deployment whose predictions are labelled.
        monitor: The monitor's name, as in ``bentoml.monitor("<name>")``.
        source: The labels: a Parquet file or folder, or JSON ``{"url", "query"}`` (a SQL
            query on a SQLAlchemy URL); empty to send nothing.
        id_field: The monitor record's field the ids are values of; empty for its
            ``request_id`` (hex, as in the ``X-BentoML-Request-ID`` header, or decimal).
        label_field: The column of the label.
        id_column: The column of the id.
        time_column: The column of when the label was known; empty for when it is received.
        watermark_column: A column that only rises (whole numbers): send only the rows above
            the watermark the control plane keeps for this source, so a re-run sends nothing
            twice; empty to send every row.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        sent: labels sent; stored: new ones; duplicates: ones already held; corrections:
        ones that replaced another label; pending: ones whose prediction is not stored yet.
    """
    if not source.strip():
        print(f"no labels source given; nothing sent for {deployment_name}/{monitor}")
        return (0, 0, 0, 0, 0)

    from bentoship import Client
    from bentoship.steps import send_feedback as send

    with Client(endpoint or None, token or None) as client:
        result = send(
            deployment_name,
            source,
            monitor=monitor,
            id_field=id_field or None,
            label_field=label_field,
            id_column=id_column,
            time_column=time_column or None,
            watermark_column=watermark_column or None,
            client=client,
        )
    print(
        f"sent {result.sent} labels for {deployment_name}/{monitor}: {result.stored} new, "
        f"{result.duplicates} duplicates, {result.corrections} corrections, {result.pending} "
        "waiting for their prediction"
    )
    return (result.sent, result.stored, result.duplicates, result.corrections, result.pending)


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def check_quality(
    deployment_name: str,
    monitor: str,
    report: Output[HTML],
    figures: Output[Metrics],
    metric: str = "accuracy",
    min_value: Optional[float] = None,  # noqa: UP045
    max_drop: float = 0.05,
    baseline: str = "previous_revision",
    training_value: Optional[float] = None,  # noqa: UP045
    min_labels: int = 200,
    since: str = "7d",
    prediction_field: str = "",
    score_field: str = "",
    id_field: str = "",
    raise_on_failure: bool = True,
    rollback_on_failure: bool = False,
    endpoint: str = "",
    token: str = "",
) -> NamedTuple(
    "QualityOutputs",
    [("failed", bool), ("verdict", str), ("summary", str), ("report_json", str)],
):
    """Hold the serving revision's quality (its predictions on ``monitor`` joined to their
    labels) against a baseline.

    It fails when the metric is worse than the baseline by more than ``max_drop`` with its 95%
    interval clear of it, or worse than ``min_value``; with fewer than ``min_labels`` labels
    it is ``not_enough_evidence``, which does not fail. The HTML report is the ``report``
    artifact (the KFP UI shows it), and the figures are ``figures`` metrics. Use ``failed`` in
    a ``dsl.If`` to retrain; with ``raise_on_failure`` a failed check fails the task once the
    artifacts are written.

    Args:
        deployment_name: The deployment whose serving revision to check.
        monitor: The monitor whose predictions were labelled.
        report: The quality report, one self-contained HTML page.
        figures: The serving revision's value, labels, coverage and the baseline's value.
        metric: ``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``, or ``mae``,
            ``rmse``, ``r2``, ``mape``.
        min_value: The metric must not be worse than this.
        max_drop: How much worse than the baseline the metric may be.
        baseline: ``previous_revision``, ``training`` (with ``training_value``), or a number.
        training_value: The metric at training time, for ``baseline="training"``.
        min_labels: Fewer labels are not enough evidence either way.
        since: The predictions since then: a time ago (``7d``) or ISO-8601.
        prediction_field: The record's field of the prediction; empty for the monitor's schema.
        score_field: The record's field of a score, for ROC AUC.
        id_field: The record's field the labels' ids are values of; empty for its
            ``request_id``.
        raise_on_failure: Fail the task when the check fails (a gate).
        rollback_on_failure: When the check fails, roll the deployment back to the previous
            revision first.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        failed: Whether the check failed; verdict: ``passed``, ``failed`` or
        ``not_enough_evidence``; summary: one line; report_json: the report as JSON
        (``bentoship.QualityReport.from_dict``).
    """
    import os

    from bentoship import Client, QualityPolicy
    from bentoship.errors import QualityFailed
    from bentoship.steps import check_quality as check

    try:
        chosen: float | str = float(baseline)
    except ValueError:
        chosen = baseline
    policy = QualityPolicy(
        monitor=monitor,
        metric=metric,
        min_value=min_value,
        max_drop=max_drop,
        baseline=chosen,
        training_value=training_value,
        min_labels=int(min_labels),
        since=since,
        prediction_field=prediction_field or None,
        score_field=score_field or None,
        id_field=id_field or None,
    )
    with Client(endpoint or None, token or None) as client:
        found = check(
            deployment_name,
            policy,
            client=client,
            raise_on_failure=False,
            rollback_on_failure=rollback_on_failure,
        )
    os.makedirs(os.path.dirname(report.path), exist_ok=True)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(found.html())
    for name in ("value", "labels", "coverage", "baseline_value"):
        value = getattr(found, name)
        if value is not None:
            figures.log_metric(name, float(value))
    print(found.summary())
    if found.failed and raise_on_failure:
        raise QualityFailed(found)
    return (found.failed, found.verdict, found.summary(), found.to_json())


@never_cached
@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False, additional_funcs=[_whole_numbers])
def request_approval(
    rollout: str,
    report: Output[HTML],
    message: str = "",
    timeout: int = 86400,
    evidence: Optional[dict] = None,  # noqa: UP045
    required: bool = True,
    raise_on_failure: bool = True,
    endpoint: str = "",
    token: str = "",
) -> NamedTuple("ApprovalOutputs", [("decision", str), ("decided_by", str), ("comment", str)]):
    """Ask a person to approve the held candidate, and wait for the decision.

    The control plane keeps the approval with ``message`` and ``evidence``, promotes the
    candidate when someone approves (the console, ``bentoship approve``, the API) and discards
    it when someone rejects or ``timeout`` seconds pass; the task only waits (a long poll), so
    one that dies leaves no candidate waiting. The decision is the ``report`` artifact; a
    candidate not approved fails the task once it is written. Local control plane only.

    Args:
        rollout: The deploy task's ``rollout`` output, deployed with ``candidate=True`` and
            ready (after ``wait_for_deployment`` and the smoke test).
        report: The decision, one self-contained HTML page: who, their comment, the message
            and the evidence.
        message: What the approver reads.
        timeout: Seconds a person has to decide (default a day); then the candidate is
            discarded.
        evidence: Links and figures for the approver, such as a check's ``summary`` output or
            a dashboard's URL.
        required: False asks nobody and calls no server: the decision is ``not_required`` and
            the candidate stays held, for ``promote_deployment``.
        raise_on_failure: Fail the task when the candidate is not approved; False to branch
            on ``decision`` instead.
        endpoint: API endpoint; empty for ``BENTO_CLOUD_API_ENDPOINT``.
        token: API token; empty for ``BENTO_CLOUD_API_KEY``.

    Returns:
        decision: ``approved``, ``rejected``, ``expired`` (nobody decided in time),
            ``withdrawn`` (the candidate left first) or ``not_required``.
        decided_by: The name of the approver's API token; empty when nobody decided.
        comment: The approver's comment.
    """
    import os

    from bentoship import ApprovalRejected, Client
    from bentoship.steps import request_approval as request

    def write_report(page: str) -> None:
        os.makedirs(os.path.dirname(report.path), exist_ok=True)
        with open(report.path, "w", encoding="utf-8") as handle:
            handle.write(page)

    client = Client(endpoint or None, token or None) if required else None
    try:
        approval = request(
            rollout,
            message,
            float(timeout),
            _whole_numbers(evidence or {}),
            client=client,
            raise_on_failure=raise_on_failure,
            required=required,
        )
    except ApprovalRejected as rejected:
        write_report(rejected.approval.html())
        print(f"approval: {rejected}")
        raise
    finally:
        if client is not None:
            client.close()
    write_report(approval.html())
    said = f" by {approval.decided_by}" if approval.decided_by else ""
    why = f": {approval.comment}" if approval.comment else ""
    print(f"approval of {approval.deployment} {approval.revision}: {approval.state}{said}{why}")
    return (approval.state, approval.decided_by or "", approval.comment)


COMPONENTS = {
    "build_bento": build_bento,
    "push_bento": push_bento,
    "deploy_bento": deploy_bento,
    "wait_for_deployment": wait_for_deployment,
    "smoke_test_deployment": smoke_test_deployment,
    "promote_deployment": promote_deployment,
    "analyze_canary": analyze_canary,
    "analyze_shadow": analyze_shadow,
    "rollback_deployment": rollback_deployment,
    "check_drift": check_drift,
    "export_monitoring": export_monitoring,
    "send_feedback": send_feedback,
    "check_quality": check_quality,
    "request_approval": request_approval,
}
"""Every component by its Python name (the shipped YAML files are named after it)."""


def with_image(image: str) -> dict[str, PythonComponent]:
    """Every component, by name, running in ``image`` instead of :data:`BASE_IMAGE`.

    Only the container image changes: the same bodies, inputs, outputs and caching. Use it when
    the image lives in your own registry and the environment of the pipeline compiler cannot
    be given ``BENTOSHIP_KFP_IMAGE``.
    """
    return {name: python_component_with_image(c, image) for name, c in COMPONENTS.items()}
