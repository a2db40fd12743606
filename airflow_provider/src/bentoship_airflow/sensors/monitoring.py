"""A sensor that waits until a deployment's monitor has enough new records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from bentoship_airflow.hooks.bentocloud import DEFAULT_CONN_ID, BentoCloudHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class BentoMonitoringRecordsSensor(BaseSensorOperator):
    """Wait until the monitor of ``deployment_name`` holds at least ``min_records`` records
    newer than ``after`` (a record ``seq``: the ``watermark`` of the last export, say), so that
    a drift check or an export has enough to work on.

    :param deployment_name: the deployment, on the local control plane.
    :param monitor: the monitor's name, as in ``bentoml.monitor("<name>")``.
    :param min_records: how many new records to wait for.
    :param after: count only records whose ``seq`` is above this; ``None`` counts them all.
    """

    template_fields: Sequence[str] = ("deployment_name", "monitor", "after")

    def __init__(
        self,
        *,
        deployment_name: str,
        monitor: str,
        min_records: int,
        after: Any = None,
        bentocloud_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if min_records < 1:
            raise ValueError("min_records must be at least 1")
        self.deployment_name = deployment_name
        self.monitor = monitor
        self.min_records = min_records
        self.after = after
        self.bentocloud_conn_id = bentocloud_conn_id

    def poke(self, context: Context) -> bool:
        from bentoship import BentoshipError, NotFoundError

        after = 0 if self.after in (None, "") else int(self.after)
        try:
            with BentoCloudHook(self.bentocloud_conn_id).get_conn() as client:
                records = client.monitoring_records(
                    self.deployment_name, self.monitor, after=after, limit=self.min_records
                )
        except NotFoundError as exc:
            if "has no records" not in str(exc):
                raise AirflowException(str(exc)) from None
            records = []
        except BentoshipError as exc:
            raise AirflowException(str(exc)) from None
        self.log.info(
            "%s/%s: %d of %d new records after seq %d",
            self.deployment_name,
            self.monitor,
            len(records),
            self.min_records,
            after,
        )
        return len(records) >= self.min_records
