"""Operators for each bentoship step: build, push, deploy, smoke-test, promote, canary, shadow,
roll back.

Only ``airflow.sdk`` is imported at module level; bentoship, bentoml and httpx are imported when
a task runs, so DAG parsing stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from bentoship_airflow.hooks.bentocloud import DEFAULT_CONN_ID, BentoCloudHook
from bentoship_airflow.links.bento import BentoDeploymentLink, BentoEndpointLink, persist_links
from bentoship_airflow.links.shadow import BentoShadowReportLink, persist_shadow_report_link

if TYPE_CHECKING:
    from airflow.sdk import Context

    from bentoship import Client, Rollout, ShadowAnalysis, ShadowPolicy

ROLLOUT_XCOM_KEY = "rollout"
CANARY_XCOM_KEY = "canary_analysis"
APPROVAL_XCOM_KEY = "approval"
SHADOW_XCOM_KEY = "shadow_analysis"
ROLLOUT_STATE_KEY = "bentoship_rollout"
LOG_TAIL_LINES = 40


def _default_deferrable() -> bool:
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


class _BentoOperator(BaseOperator):
    """Shared plumbing: the hook, rollout records, and failures that show the server's reason."""

    ui_color = "#ffe5cc"

    def __init__(self, *, bentocloud_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bentocloud_conn_id = bentocloud_conn_id

    @property
    def hook(self) -> BentoCloudHook:
        return BentoCloudHook(self.bentocloud_conn_id)

    def fail(self, exc: Exception, logs: str = "", events: str = "") -> AirflowException:
        """Log the revision's log tail and the deployment's events, then return the one-line
        error to raise."""
        lines = (logs or getattr(exc, "logs", "") or "").splitlines()[-LOG_TAIL_LINES:]
        if lines:
            self.log.error("Last %d log lines of the revision:\n%s", len(lines), "\n".join(lines))
        happened = events or getattr(exc, "events", "") or ""
        if happened:
            self.log.error("Latest events of the deployment:\n%s", happened)
        return AirflowException(str(exc))

    @staticmethod
    def parse_rollout(value: Any) -> Rollout | None:
        """The rollout from a Rollout, its dict (XCom) or JSON text; None when not given."""
        from bentoship import Rollout

        if value is None or value == "":
            return None
        return Rollout.parse(value)

    def candidate_rollout(
        self,
        context: Context,
        rollout: Any,
        deploy_task_id: str | None,
        record_links: Callable[[Context], None] = persist_links,
    ) -> Rollout:
        """The rollout given, else the one ``deploy_task_id`` pushed; with neither, the links
        are recorded empty (``record_links``) and the task fails saying what to give."""
        found = self.parse_rollout(_rollout_from(context, rollout, deploy_task_id))
        if found is None:
            record_links(context)
            raise AirflowException(
                f"{self.task_id}: give the rollout of a deploy with candidate=True "
                "(rollout= or deploy_task_id=)"
            )
        return found

    def link(
        self, context: Context, client: Client, target: Rollout | str, url: str | None = None
    ) -> None:
        """Record the extra links of the deployment ``target`` (a rollout, a name or a URL).

        Every operator that declares the links calls this (or :func:`persist_links`) on each path
        of ``execute``: Airflow resolves them when the task ends, and logs an error for a task
        that recorded none.
        """
        from bentoship import Rollout

        if isinstance(target, Rollout):
            name: str | None = target.name
            url = url or target.endpoint_url
        elif target.startswith(("http://", "https://")):
            name, url = None, url or target
        else:
            name = target
            if url is None:
                found = client.find_deployment(name)
                url = found.url if found is not None else None
        persist_links(context, endpoint=client.endpoint, deployment=name, url=url)


class BentoBuildOperator(_BentoOperator):
    """Build a Bento from a project directory; returns its tag.

    :param project_dir: directory with ``bentofile.yaml``.
    :param version: version of the built Bento (default: generated).
    :param labels: labels to add to the Bento.
    :param model_files: exported model files to import first (when training ran elsewhere).
    :param export_path: also write the Bento as one archive file here.
    :param push: push the Bento in the same task, for executors without a shared disk.
    """

    template_fields: Sequence[str] = (
        "project_dir",
        "version",
        "labels",
        "model_files",
        "export_path",
    )

    def __init__(
        self,
        *,
        project_dir: str,
        version: str | None = None,
        labels: dict[str, str] | None = None,
        model_files: Sequence[str] = (),
        export_path: str | None = None,
        push: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.version = version
        self.labels = labels
        self.model_files = model_files
        self.export_path = export_path
        self.push = push

    def execute(self, context: Context) -> str:
        from bentoship import BentoshipError
        from bentoship.steps import build, push

        try:
            tag = build(
                self.project_dir,
                version=self.version,
                labels=self.labels,
                models=list(self.model_files or ()),
                export_path=self.export_path,
            )
            self.log.info("Built bento %s", tag)
            if self.push:
                with self.hook.get_conn() as client:
                    push(tag, client=client)
                self.log.info("Pushed bento %s", tag)
        except BentoshipError as exc:
            raise self.fail(exc) from None
        return tag


class BentoPushOperator(_BentoOperator):
    """Push a Bento (a tag in the local store, or an exported archive); returns its tag.

    A Bento the server already has is a fast no-op unless ``force`` is set.
    """

    template_fields: Sequence[str] = ("bento",)

    def __init__(self, *, bento: str, force: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bento = bento
        self.force = force

    def execute(self, context: Context) -> str:
        from bentoship import BentoshipError
        from bentoship.steps import push

        try:
            with self.hook.get_conn() as client:
                tag = push(self.bento, client=client, force=self.force)
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info("Bento %s is on %s", tag, self.bentocloud_conn_id)
        return tag


class BentoDeployOperator(_BentoOperator):
    """Create or update a deployment, then (by default) wait until its new revision is ready.

    Re-applying the same bento and config creates no new revision, and a retried task
    re-attaches to the rollout it started. Returns the rollout record (a dict), which the smoke
    test, promote and rollback operators take; it is also pushed under the XCom key ``rollout``
    before waiting, so a rollback task finds it even when the wait fails.

    :param deployment_name: the deployment to create or update.
    :param bento: the bento tag to run.
    :param config: deployment config: ``instance_type``, ``min_replicas``, ``max_replicas``,
        ``envs``, ``labels``, ``access_authorization``, ``strategy``.
    :param candidate: hold the new revision on the deployment's candidate URL, taking no live
        traffic, until :class:`BentoPromoteOperator` (verify it with the smoke test first).
    :param wait_for_completion: wait until the new revision serves (default True).
    :param timeout: seconds to wait before the rollout counts as failed.
    :param poll_interval: seconds between polls against servers without the long-poll.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    """

    template_fields: Sequence[str] = ("deployment_name", "bento", "config")
    template_fields_renderers = {"config": "json"}
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        deployment_name: str,
        bento: str,
        config: dict[str, Any] | None = None,
        candidate: bool = False,
        wait_for_completion: bool = True,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        deferrable: bool = _default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.bento = bento
        self.config = config
        self.candidate = candidate
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._rollout: Rollout | None = None
        self._finished = False

    def _reattach(self, context: Context) -> Rollout | None:
        store = context.get("task_state_store")
        saved = store.get(ROLLOUT_STATE_KEY) if store is not None else None
        rollout = self.parse_rollout(saved) if saved else None
        if rollout and rollout.name == self.deployment_name and rollout.bento == self.bento:
            self.log.info("Re-attaching to rollout of revision %s", rollout.revision)
            return rollout
        return None

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError, check_rollout
        from bentoship.steps import deploy, wait_until_ready

        try:
            with self.hook.get_conn() as client:
                rollout = self._reattach(context)
                if rollout is None:
                    rollout = deploy(
                        self.deployment_name,
                        self.bento,
                        self.config,
                        candidate=self.candidate,
                        client=client,
                    )
                    store = context.get("task_state_store")
                    if store is not None:
                        store.set(ROLLOUT_STATE_KEY, rollout.to_json())
                self._rollout = rollout
                self.log.info(
                    "Deployment %s: revision %s (%s)%s",
                    rollout.name,
                    rollout.revision,
                    "created" if rollout.created else "updated" if rollout.changed else "unchanged",
                    f", a candidate at {rollout.candidate_url}" if rollout.candidate else "",
                )
                context["ti"].xcom_push(key=ROLLOUT_XCOM_KEY, value=rollout.to_dict())
                self.link(context, client, rollout)
                if not self.wait_for_completion:
                    return rollout.to_dict()
                if self.deferrable and check_rollout(rollout, client=client).pending:
                    self._defer(rollout)
                wait_until_ready(
                    rollout,
                    client=client,
                    timeout=self.timeout,
                    poll_interval=self.poll_interval,
                    on_status=lambda dep: self.log.info(
                        "Deployment %s is %s", dep.name, dep.status
                    ),
                )
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self._finished = True
        return rollout.to_dict()

    def _defer(self, rollout: Rollout) -> None:
        import time

        from bentoship_airflow.triggers.bento import BentoDeploymentTrigger

        self.defer(
            trigger=BentoDeploymentTrigger(
                deployment_name=rollout.name,
                rollout=rollout.to_dict(),
                bentocloud_conn_id=self.bentocloud_conn_id,
                timeout=self.timeout,
                poll_interval=self.poll_interval,
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise self.fail(
                AirflowException(event.get("message", "rollout failed")),
                event.get("logs", ""),
                event.get("events", ""),
            )
        self.log.info(
            "Deployment %s serves revision %s", event["deployment"], event.get("revision")
        )
        return dict(event["rollout"])

    def on_kill(self) -> None:
        """Put the deployment back on its last good revision if the rollout was interrupted."""
        if self._rollout is None or self._finished or not self._rollout.changed:
            return
        from bentoship.steps import abort

        with self.hook.get_conn() as client:
            self.log.warning("Killed mid-rollout: %s", abort(self._rollout, client=client))


def _target(operator: _BentoOperator, context: Context, rollout: Any, name: str | None) -> Any:
    parsed = operator.parse_rollout(rollout)
    if parsed is not None:
        return parsed
    if name:
        return name
    persist_links(context)  # the task fails, but its links resolve without an XCom error
    raise AirflowException(
        f"{operator.task_id}: give a rollout (e.g. the deploy task's output) or a deployment_name"
    )


class BentoSmokeTestOperator(_BentoOperator):
    """Call one API of the deployment and check the answer; returns the answer.

    :param rollout: the deploy operator's output (or give ``deployment_name``).
    :param api: the API to call, e.g. ``predict``.
    :param payload: the JSON body to send.
    :param expected: the JSON the API must answer.
    :param check: a callable that gets the answer and returns True when it is right.
    :param send_api_token: send the connection's token as ``Authorization: Bearer`` (for
        deployments with access authorization).
    """

    template_fields: Sequence[str] = ("rollout", "deployment_name", "api", "payload", "expected")
    template_fields_renderers = {"payload": "json", "expected": "json"}
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        api: str,
        rollout: Any = None,
        deployment_name: str | None = None,
        payload: Any = None,
        expected: Any = None,
        check: Callable[[Any], bool] | None = None,
        method: str = "POST",
        send_api_token: bool = False,
        request_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deployment_name = deployment_name
        self.api = api
        self.payload = payload
        self.expected = expected
        self.check = check
        self.method = method
        self.send_api_token = send_api_token
        self.request_timeout = request_timeout

    def execute(self, context: Context) -> Any:
        from bentoship import BentoshipError
        from bentoship.steps import SmokeTest, smoke_test

        target = _target(self, context, self.rollout, self.deployment_name)
        test = SmokeTest(
            api=self.api,
            payload=self.payload if self.payload is not None else {},
            expected=self.expected,
            check=self.check,
            method=self.method,
            timeout=self.request_timeout,
        )
        try:
            with self.hook.get_conn() as client:
                self.link(context, client, target)  # before the call: a failed test links too
                token = client.connection.token if self.send_api_token else None
                answer = smoke_test(target, test, token=token, client=client)
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info("Smoke test of %s passed", self.api)
        return answer


class BentoRollbackOperator(_BentoOperator):
    """Roll a deployment back to the revision its last rollout replaced, or to a named one.

    Typically runs with ``trigger_rule="one_failed"`` after the deploy and smoke-test tasks.

    :param rollout: a rollout record; default: pulled from ``deploy_task_id``'s XCom.
    :param deploy_task_id: the deploy task whose rollout to undo.
    :param deployment_name: roll this deployment back to ``revision`` or its previous good one.
    :param revision: the revision to return to (a name such as ``r2`` or a uid).
    :param wait_for_completion: wait until the restored revision serves (default True).
    """

    template_fields: Sequence[str] = ("rollout", "deployment_name", "revision")
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        rollout: Any = None,
        deploy_task_id: str | None = None,
        deployment_name: str | None = None,
        revision: str | None = None,
        wait_for_completion: bool = True,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deploy_task_id = deploy_task_id
        self.deployment_name = deployment_name
        self.revision = revision
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> dict[str, Any] | None:
        from bentoship import BentoshipError
        from bentoship.steps import rollback

        rollout = _rollout_from(context, self.rollout, self.deploy_task_id)
        if rollout is None and self.deploy_task_id:
            persist_links(context)  # nothing to link to, recorded: no "XCom not found"
            raise AirflowSkipException(
                f"{self.deploy_task_id} recorded no rollout (it failed before deploying); "
                "nothing to roll back"
            )
        target = _target(self, context, rollout, self.deployment_name)
        try:
            with self.hook.get_conn() as client:
                self.link(context, client, target)  # before the rollback: a failed one links too
                dep = rollback(
                    target,
                    revision=self.revision,
                    client=client,
                    wait=self.wait_for_completion,
                    timeout=self.timeout,
                    poll_interval=self.poll_interval,
                )
                if dep is None:
                    self.log.warning("Nothing to roll back to: the rollout created the deployment")
                    return None
                self.link(context, client, dep.name, dep.url)  # the restored revision's URL
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info("Deployment %s is back on revision %s", dep.name, dep.target_revision)
        return {"deployment": dep.name, "revision": dep.target_revision, "bento": dep.bento}


def _no_shadow_links(context: Context) -> None:
    persist_links(context)
    persist_shadow_report_link(context)


def _rollout_from(context: Context, rollout: Any, task_id: str | None) -> Any:
    """The rollout given, else the one ``task_id`` pushed; None when neither is there."""
    if rollout is None and task_id:
        rollout = context["ti"].xcom_pull(task_ids=task_id, key=ROLLOUT_XCOM_KEY)
    return rollout


class BentoPromoteOperator(_BentoOperator):
    """Switch the deployment's endpoint to the rollout's candidate; returns the promoted rollout.

    Runs after the smoke test of a deploy with ``candidate=True``: until now the candidate took
    no live traffic. A rollout that is not a candidate already serves and is returned as it is.

    :param rollout: the deploy operator's output (or give ``deploy_task_id``).
    :param deploy_task_id: the deploy task whose rollout to promote.
    :param deployment_name: promote this deployment's current candidate instead.
    :param timeout: seconds to wait until the promoted revision serves.
    """

    template_fields: Sequence[str] = ("rollout", "deployment_name")
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        rollout: Any = None,
        deploy_task_id: str | None = None,
        deployment_name: str | None = None,
        timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deploy_task_id = deploy_task_id
        self.deployment_name = deployment_name
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError
        from bentoship.steps import promote

        rollout = _rollout_from(context, self.rollout, self.deploy_task_id)
        target = _target(self, context, rollout, self.deployment_name)
        try:
            with self.hook.get_conn() as client:
                self.link(context, client, target)
                promoted = promote(target, client=client, timeout=self.timeout)
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info("Deployment %s serves revision %s", promoted.name, promoted.revision)
        return promoted.to_dict()


class BentoCanaryAnalysisOperator(_BentoOperator):
    """Ramp the candidate's share of live traffic, check it at each step, promote or discard.

    At each step of ``steps`` (percent of the endpoint's requests) the candidate's success rate
    and p99, from the control plane's per-revision counts, are checked against the thresholds
    and the baseline revision's. Returns the analysis (verdict, reason, every step's figures);
    a discarded candidate fails the task, with the analysis under the XCom key
    ``canary_analysis``. Needs the local control plane (BentoCloud has no per-revision counts).

    :param rollout: the deploy operator's output, deployed with ``candidate=True``.
    :param deploy_task_id: the deploy task whose rollout to analyse (instead of ``rollout``).
    :param steps: the candidate's weights, rising (default 10, 50, 100).
    :param interval: seconds per step (default 60).
    :param min_requests: answers the candidate must give at each step (default 100).
    :param min_success_rate: share of non-5xx answers (default 0.99).
    :param max_p99_ratio: the candidate's p99 may be at most this times the baseline's...
    :param p99_slack_ms: ...plus this many milliseconds (defaults 1.5 and 50).
    :param route_type: ``random``, or ``header``/``query`` for sticky routing by ``route_by``.
    :param route_by: the header or query parameter whose value is hashed.
    :param timeout: seconds to wait for the verdict (and until a promoted candidate serves).
    :param step_timeout: seconds a step may wait for ``min_requests`` (default 10 x interval).
    :param deferrable: the control plane runs the analysis and the task waits for its verdict
        in the triggerer, holding no worker slot (a server without analysis plans is watched
        from the worker).
    """

    template_fields: Sequence[str] = ("rollout",)
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        rollout: Any = None,
        deploy_task_id: str | None = None,
        steps: Sequence[int] = (10, 50, 100),
        interval: float = 60.0,
        min_requests: int = 100,
        min_success_rate: float = 0.99,
        max_p99_ratio: float = 1.5,
        p99_slack_ms: float = 50.0,
        route_type: str = "random",
        route_by: str | None = None,
        timeout: float = 600.0,
        step_timeout: float | None = None,
        deferrable: bool = _default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deploy_task_id = deploy_task_id
        self.step_timeout = step_timeout
        self.deferrable = deferrable
        self.steps = steps
        self.interval = interval
        self.min_requests = min_requests
        self.min_success_rate = min_success_rate
        self.max_p99_ratio = max_p99_ratio
        self.p99_slack_ms = p99_slack_ms
        self.route_type = route_type
        self.route_by = route_by
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError, CanaryFailed, CanaryPolicy
        from bentoship.steps import analyze_canary

        rollout = self.candidate_rollout(context, self.rollout, self.deploy_task_id)
        try:
            policy = CanaryPolicy(
                steps=tuple(self.steps),
                interval=self.interval,
                min_requests=self.min_requests,
                min_success_rate=self.min_success_rate,
                max_p99_ratio=self.max_p99_ratio,
                p99_slack_ms=self.p99_slack_ms,
                route_type=self.route_type,
                route_by=self.route_by,
                step_timeout=self.step_timeout,
            )
            with self.hook.get_conn() as client:
                self.link(context, client, rollout)
                if self.deferrable and "analysis" in client.get_extensions():
                    client.start_analysis(rollout.name, policy.to_dict())
                    self._defer_analysis(rollout.name)
                analysis = analyze_canary(rollout, policy, client=client, timeout=self.timeout)
        except CanaryFailed as exc:
            context["ti"].xcom_push(key=CANARY_XCOM_KEY, value=exc.analysis)
            raise self.fail(exc) from None
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self.log.info("Canary %s promoted: %s", rollout.revision, analysis.reason)
        return analysis.to_dict()

    def _defer_analysis(self, name: str) -> None:
        import time

        from bentoship_airflow.triggers.bento import BentoCanaryAnalysisTrigger

        self.log.info("The control plane runs the canary analysis of %s; deferring", name)
        self.defer(
            trigger=BentoCanaryAnalysisTrigger(
                deployment_name=name,
                bentocloud_conn_id=self.bentocloud_conn_id,
                deadline=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from bentoship.steps.canary import analysis_from, rejection

        if event.get("status") != "success":
            raise self.fail(AirflowException(event.get("message", "canary analysis failed")))
        record = event["analysis"]
        analysis = analysis_from(record)
        for step in analysis.steps:
            self.log.info("Canary %s %s", analysis.candidate, step.describe())
        if not analysis.promoted:
            context["ti"].xcom_push(key=CANARY_XCOM_KEY, value=analysis.to_dict())
            raise self.fail(AirflowException(rejection(analysis, record["state"])))
        self.log.info("Canary %s promoted: %s", analysis.candidate, analysis.reason)
        return analysis.to_dict()


class BentoShadowAnalysisOperator(_BentoOperator):
    """Mirror live requests to the held candidate, compare its answers with the serving
    revision's, then promote or discard it.

    The control plane copies ``percent`` of the endpoint's live requests (to ``apis``, or every
    API) to the candidate until ``min_pairs`` pairs of answers are in (or ``timeout``), then
    promotes the candidate when the pairs agree and its errors and p99 hold, else discards it;
    callers get the serving revision's answers throughout. Returns the analysis (``verdict``,
    ``reason``, ``report``); a discarded candidate fails the task, with the analysis under the
    XCom key ``shadow_analysis``. Needs the local control plane (BentoCloud does not mirror).

    :param rollout: the deploy operator's output, deployed with ``candidate=True``.
    :param deploy_task_id: the deploy task whose rollout to analyse (instead of ``rollout``).
    :param percent: share of the live requests to mirror, 1-100.
    :param min_pairs: pairs of answers to judge on.
    :param min_agreement: share of the compared pairs whose answers must agree.
    :param tolerance: numbers within this agree.
    :param max_error_rate_increase: the candidate's error rate may be this much above the
        serving revision's.
    :param max_p99_ratio: the candidate's p99 may be at most this times the serving revision's...
    :param p99_slack_ms: ...plus this many milliseconds.
    :param timeout: seconds to mirror before judging what is in; the task waits a minute more.
    :param apis: the APIs to mirror (default every API).
    :param deferrable: wait for the verdict in the triggerer, holding no worker slot.
    """

    template_fields: Sequence[str] = ("rollout", "percent", "min_pairs", "min_agreement", "apis")
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink(), BentoShadowReportLink())

    def __init__(
        self,
        *,
        rollout: Any = None,
        deploy_task_id: str | None = None,
        percent: int | str = 100,
        min_pairs: int | str = 200,
        min_agreement: float | str = 0.95,
        tolerance: float = 1e-6,
        max_error_rate_increase: float = 0.01,
        max_p99_ratio: float = 1.5,
        p99_slack_ms: float = 50.0,
        timeout: float = 600.0,
        apis: Sequence[str] | None = None,
        deferrable: bool = _default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deploy_task_id = deploy_task_id
        self.percent = percent
        self.min_pairs = min_pairs
        self.min_agreement = min_agreement
        self.tolerance = tolerance
        self.max_error_rate_increase = max_error_rate_increase
        self.max_p99_ratio = max_p99_ratio
        self.p99_slack_ms = p99_slack_ms
        self.timeout = timeout
        self.apis = apis
        self.deferrable = deferrable

    def policy(self) -> ShadowPolicy:
        """The gate; templated numbers arrive as text and are read back as numbers."""
        from bentoship import ShadowPolicy

        try:
            percent, min_pairs = _number(self.percent, int), _number(self.min_pairs, int)
            min_agreement = _number(self.min_agreement, float)
        except ValueError as exc:
            raise AirflowException(
                f"{self.task_id}: percent and min_pairs are whole numbers, "
                f"min_agreement a fraction ({exc})"
            ) from None
        return ShadowPolicy.from_dict(
            {
                "percent": percent,
                "min_pairs": min_pairs,
                "min_agreement": min_agreement,
                "tolerance": self.tolerance,
                "max_error_rate_increase": self.max_error_rate_increase,
                "max_p99_ratio": self.max_p99_ratio,
                "p99_slack_ms": self.p99_slack_ms,
                "timeout": self.timeout,
                "apis": self.apis,
            }
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import BentoshipError, ShadowFailed
        from bentoship.steps import analyze_shadow
        from bentoship.steps.shadow import start_shadow

        rollout = self.candidate_rollout(
            context, self.rollout, self.deploy_task_id, _no_shadow_links
        )
        try:
            with self.hook.get_conn() as client:
                self.link(context, client, rollout)
                persist_shadow_report_link(
                    context, endpoint=client.endpoint, deployment=rollout.name
                )
                policy = self.policy()
                if self.deferrable:
                    record = start_shadow(rollout, policy, client=client)
                    if record["state"] == "running":
                        self._defer_analysis(rollout.name)
                    return self._verdict(context, record)
                analysis = analyze_shadow(rollout, policy, client=client)
        except ShadowFailed as exc:
            self._tell(exc.analysis)
            context["ti"].xcom_push(key=SHADOW_XCOM_KEY, value=exc.analysis.to_dict())
            raise self.fail(exc) from None
        except BentoshipError as exc:
            raise self.fail(exc) from None
        self._tell(analysis)
        return analysis.to_dict()

    def _defer_analysis(self, name: str) -> None:
        import time

        from bentoship_airflow.triggers.bento import BentoShadowAnalysisTrigger

        wait = float(self.timeout) + 60.0
        self.log.info("The control plane runs the shadow analysis of %s; deferring", name)
        self.defer(
            trigger=BentoShadowAnalysisTrigger(
                deployment_name=name,
                bentocloud_conn_id=self.bentocloud_conn_id,
                deadline=time.time() + wait,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "success":
            raise self.fail(AirflowException(event.get("message", "shadow analysis failed")))
        return self._verdict(context, event["analysis"])

    def _verdict(self, context: Context, record: dict[str, Any]) -> dict[str, Any]:
        """The task's result from the control plane's analysis record, or its failure."""
        from bentoship import ShadowAnalysis
        from bentoship.steps.shadow import shadow_rejection

        analysis = ShadowAnalysis.from_record(record)
        self._tell(analysis)
        if not analysis.promoted:
            context["ti"].xcom_push(key=SHADOW_XCOM_KEY, value=analysis.to_dict())
            raise self.fail(AirflowException(shadow_rejection(analysis)))
        return analysis.to_dict()

    def _tell(self, analysis: ShadowAnalysis) -> None:
        if analysis.report is not None:
            self.log.info("Shadow %s: %s", analysis.candidate, analysis.report.summary())
        self.log.info("Shadow %s was %s: %s", analysis.candidate, analysis.verdict, analysis.reason)


class BentoApprovalOperator(_BentoOperator):
    """Ask a person to approve the held candidate, and wait for the decision.

    The control plane keeps the approval with ``message`` and ``evidence`` (links and
    figures of the pipeline's checks, e.g. the shadow or quality task's result), promotes the
    candidate when someone approves (the console, `bentoship approve NAME`, the API) and
    discards it when someone rejects or ``timeout`` seconds pass. Deferrable (the default), the
    task waits in the triggerer and holds no worker slot for those days. Returns the decision
    (``state``, ``decided_by``, ``comment``); a candidate not approved fails the task, with the
    decision under the XCom key ``approval``.

    :param rollout: the deploy operator's output, deployed with ``candidate=True``.
    :param deploy_task_id: the deploy task whose rollout to approve (instead of ``rollout``).
    :param message: what the approver reads.
    :param timeout: seconds a person has to decide (default a day).
    :param evidence: links and figures for the approver (templated).
    :param deferrable: wait for the decision in the triggerer, holding no worker slot.
    """

    template_fields: Sequence[str] = ("rollout", "message", "evidence", "timeout")
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        rollout: Any = None,
        deploy_task_id: str | None = None,
        message: str = "",
        timeout: float | str = 86400.0,
        evidence: dict[str, Any] | None = None,
        deferrable: bool = _default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rollout = rollout
        self.deploy_task_id = deploy_task_id
        self.message = message
        self.timeout = timeout
        self.evidence = evidence
        self.deferrable = deferrable

    def execute(self, context: Context) -> dict[str, Any]:
        from bentoship import ApprovalRejected, BentoshipError
        from bentoship.steps import request_approval
        from bentoship.steps.approval import outcome_of, start_approval

        rollout = self.candidate_rollout(context, self.rollout, self.deploy_task_id)
        try:
            timeout = float(_number(self.timeout, float))
        except ValueError:
            persist_links(context)
            raise AirflowException(
                f"{self.task_id}: timeout is a number of seconds, not {self.timeout!r}"
            ) from None
        self.timeout = timeout
        try:
            with self.hook.get_conn() as client:
                self.link(context, client, rollout)
                if self.deferrable:
                    record = start_approval(
                        rollout, self.message, timeout, self.evidence, client=client
                    )
                    if record["state"] == "pending":
                        self._defer_decision(rollout.name, record["id"])
                    return outcome_of(record, rollout.name).to_dict()
                approval = request_approval(
                    rollout, self.message, timeout, self.evidence, client=client
                )
        except ApprovalRejected as exc:
            context["ti"].xcom_push(key=APPROVAL_XCOM_KEY, value=exc.approval.to_dict())
            raise self.fail(exc) from None
        except BentoshipError as exc:
            raise self.fail(exc) from None
        return approval.to_dict()

    def _defer_decision(self, name: str, approval_id: str) -> None:
        import time

        from bentoship_airflow.triggers.bento import BentoApprovalTrigger

        wait = float(self.timeout) + 60.0
        self.log.info(
            "Approval %s of %s is pending; deferring until someone decides (`bentoship approve "
            "%s` or `bentoship reject %s`)",
            approval_id,
            name,
            name,
            name,
        )
        self.defer(
            trigger=BentoApprovalTrigger(
                deployment_name=name,
                approval_id=approval_id,
                bentocloud_conn_id=self.bentocloud_conn_id,
                deadline=time.time() + wait,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from bentoship import ApprovalRejected
        from bentoship.steps.approval import outcome_of

        if event.get("status") != "success":
            raise self.fail(AirflowException(event.get("message", "the approval failed")))
        record = event["approval"]
        try:
            return outcome_of(record, record["deployment"]).to_dict()
        except ApprovalRejected as exc:
            context["ti"].xcom_push(key=APPROVAL_XCOM_KEY, value=exc.approval.to_dict())
            raise self.fail(exc) from None


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """A templated number (rendered as text) as ``kind``; anything else as it is."""
    return kind(value) if isinstance(value, str) else value
