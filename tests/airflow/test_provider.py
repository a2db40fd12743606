"""Provider discovery, the hook, and a failed rollout's trigger event (unit level); the
deferrable deploy and canary operators run in tests/airflow/test_operators.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# croniter (which airflow.sdk imports) runs `file` on the interpreter when first imported, through
# platform.architecture(). Imported here, at collection, outside the fast tier's process watch,
# so that the first test of a session to import Airflow does not count as starting a process.
import croniter  # noqa: F401
import pytest

from bentoship import Client
from bentoship.connection import Connection, write_connection
from bentoship.server import LocalControlPlane
from bentoship.steps import push


class TaskInstanceStandIn:
    """Just enough of a task instance for ``op.execute({"ti": ...})``: it records XCom pushes."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def test_providers_manager_discovers_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "bentoship-airflow" in manager.providers
    hook = ProvidersManagerTaskRuntime().hooks["bentocloud"]  # where task code finds hooks
    assert hook is not None
    assert hook.hook_class_name == "bentoship_airflow.hooks.bentocloud.BentoCloudHook"
    assert "bentoship_airflow.links.bento.BentoDeploymentLink" in manager.extra_links_class_names
    assert "bentoship_airflow.links.bento.BentoEndpointLink" in manager.extra_links_class_names
    triggers = {t.package_name: t.trigger_class_name for t in manager.trigger}
    assert triggers.get("bentoship-airflow") == "bentoship_airflow.triggers.bento"
    behaviours = manager.field_behaviours["bentocloud"]
    assert behaviours["relabeling"]["password"] == "API token"
    assert "extra__bentocloud__timeout" in manager.connection_form_widgets


@pytest.mark.slow
def test_operator_modules_import_nothing_heavy() -> None:
    code = (
        "import sys; import bentoship_airflow.operators.bento, bentoship_airflow.sensors.bento, "
        "bentoship_airflow.hooks.bentocloud, bentoship_airflow.triggers.bento; "
        "print(sorted(m for m in ('bentoml', 'bentoship.client', 'bentoship.steps') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_hook_test_connection(bentocloud_connection: LocalControlPlane, monkeypatch: Any) -> None:
    from bentoship_airflow.hooks.bentocloud import BentoCloudHook

    ok, message = BentoCloudHook().test_connection()
    assert ok and bentocloud_connection.endpoint in message
    wrong = {
        "conn_type": "bentocloud",
        "host": bentocloud_connection.endpoint,
        "password": "nope-x",
    }
    monkeypatch.setenv("AIRFLOW_CONN_BENTOCLOUD_WRONG", json.dumps(wrong))
    ok, message = BentoCloudHook("bentocloud_wrong").test_connection()
    assert not ok and "rejected the API token" in message and "nope-x" not in message


def test_hook_falls_back_to_environment_without_default_connection(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from bentoship_airflow.hooks.bentocloud import BentoCloudHook

    monkeypatch.delenv("AIRFLOW_CONN_BENTOCLOUD_DEFAULT", raising=False)
    write_connection(tmp_path, Connection("http://127.0.0.1:4321", "file-token-0123456789"))
    monkeypatch.setenv("BENTOSHIP_HOME", str(tmp_path))
    with BentoCloudHook().get_conn() as client:
        assert client.endpoint == "http://127.0.0.1:4321"
        assert client.connection.token == "file-token-0123456789"
    monkeypatch.setenv("BENTO_CLOUD_API_ENDPOINT", "http://127.0.0.1:5678")
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "env-token-0123456789")
    with BentoCloudHook().get_conn() as client:
        assert client.endpoint == "http://127.0.0.1:5678"
        assert client.connection.token == "env-token-0123456789"


def test_failed_rollout_event_raises_with_reason_and_logs(
    bentocloud_connection: LocalControlPlane, crash_bento: str, capfd: Any
) -> None:
    from airflow.sdk.exceptions import AirflowException

    from bentoship_airflow.operators.bento import BentoDeployOperator
    from bentoship_airflow.triggers.bento import BentoDeploymentTrigger

    with Client.from_env(home=bentocloud_connection.data_dir) as client:
        push(crash_bento, client=client)
    op = BentoDeployOperator(
        task_id="deploy", deployment_name="af-crash", bento=crash_bento, wait_for_completion=False
    )
    rollout = op.execute({"ti": TaskInstanceStandIn()})  # type: ignore[arg-type]
    trigger = BentoDeploymentTrigger("af-crash", rollout=rollout, timeout=60)
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload["status"] == "error"
    assert "deliberate init failure" in event.payload["message"]
    with pytest.raises(AirflowException, match="deliberate init failure"):
        op.execute_complete({}, event.payload)  # type: ignore[arg-type]
    captured = capfd.readouterr()
    task_log = captured.out + captured.err
    assert "log lines of the revision" in task_log
    assert "deliberate init failure: crash fixture" in task_log
