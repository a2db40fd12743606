"""A sensor that waits until a deployment is green."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from bentoship_airflow.hooks.bentocloud import DEFAULT_CONN_ID, BentoCloudHook
from bentoship_airflow.links.bento import BentoDeploymentLink, BentoEndpointLink, persist_links

if TYPE_CHECKING:
    from airflow.sdk import Context


class BentoDeploymentSensor(BaseSensorOperator):
    """Wait until ``deployment_name`` serves (the revision of ``rollout``, when given).

    Fails at once, with the server's reason, when the rollout fails.

    :param deployment_name: the deployment to watch.
    :param rollout: the deploy operator's output, to wait for that revision.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    """

    template_fields: Sequence[str] = ("deployment_name", "rollout")
    operator_extra_links = (BentoDeploymentLink(), BentoEndpointLink())

    def __init__(
        self,
        *,
        deployment_name: str,
        rollout: Any = None,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.rollout = rollout
        self.bentocloud_conn_id = bentocloud_conn_id
        self.deferrable = deferrable

    def _rollout(self) -> dict[str, Any] | None:
        """The rollout as a dict (it may come templated as JSON text), or None."""
        from bentoship import Rollout

        if self.rollout is None or self.rollout == "":
            return None
        return Rollout.parse(self.rollout).to_dict()

    def poke(self, context: Context) -> bool:
        from bentoship import BentoshipError, check_rollout

        try:
            with BentoCloudHook(self.bentocloud_conn_id).get_conn() as client:
                check = check_rollout(self._rollout() or self.deployment_name, client=client)
                if check.deployment is not None:
                    dep = check.deployment
                    persist_links(
                        context, endpoint=client.endpoint, deployment=dep.name, url=dep.url
                    )
        except BentoshipError as exc:
            raise AirflowException(str(exc)) from None
        if check.failed:
            raise AirflowException(check.message)
        self.log.info("Deployment %s is %s", check.name, check.status)
        return check.ready

    def execute(self, context: Context) -> None:
        if not self.deferrable:
            super().execute(context)
            return
        if self.poke(context):
            return
        from bentoship_airflow.triggers.bento import BentoDeploymentTrigger

        self.defer(
            trigger=BentoDeploymentTrigger(
                deployment_name=self.deployment_name,
                rollout=self._rollout(),
                bentocloud_conn_id=self.bentocloud_conn_id,
                timeout=float(self.timeout),
                poll_interval=float(self.poke_interval),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") != "success":
            raise AirflowException(event.get("message", "deployment failed"))
        self.log.info("Deployment %s is ready", event["deployment"])
