"""One check per rule of a deployment body, in the same order on create and on update.

For every field of the body, a bad value gets one 400 naming the field, on create, on update
of an existing deployment and on update of a missing one, before any state is read: the state
store here records every SQL statement its connection runs, and a body that breaks a rule that
needs no state must leave that record empty (and the deployments and revisions as they were).
Only the rule that needs the bento (the service must be its entry service) reads state first.

The real app is built in-process over a temporary data dir and driven with Starlette's
TestClient; no control plane or bentoml process starts (the fast tier).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bentoship.server.app import build_app
from bentoship.server.registry.service import Registry, UploadStatus
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.phases import RevisionPhase
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Artifact, Store, now

from .records import deployment_record, revision_record

TOKEN = "body-rules-token-0123456789"
DEPLOYMENTS = "/api/v2/deployments"
TYPE = "invalid request body: "
"""A value of the wrong type, refused by the body's model."""
RULE = "invalid deployment config: "
"""A value of the right type that breaks a rule (a pattern, a range, a required field)."""
MISSING = object()
"""In a case's body: leave this field out."""
SECRET = "sk-live-51HxQ2eZvKYlo2C0123456789abcdef"
"""A value that looks like a secret: no error message may show it."""


class RecordingStore(Store):
    """The real state store, recording every SQL statement its connection runs (reads too)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.statements: list[str] = []
        self.db.set_trace_callback(self.statements.append)


@dataclass
class Plane:
    client: TestClient
    store: RecordingStore

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused request must leave as it was (read outside the recorded window)."""
        state = (
            self.store.changes,
            [asdict(d) for d in self.store.list_deployments()],
            [
                asdict(r)
                for d in self.store.list_deployments()
                for r in self.store.list_revisions(d.name)
            ],
        )
        self.store.statements.clear()
        return state


def bento(version: str) -> Artifact:
    stamp = now()
    return Artifact(
        kind="bento",
        repository="echo",
        version=version,
        uid=f"echo-{version}-uid",
        description="",
        manifest={"entry_service": "Echo", "service": "service:Echo"},
        labels=[],
        build_at=stamp,
        created_at=stamp,
        updated_at=None,
        upload_status=UploadStatus.SUCCESS,
        upload_finished_reason="",
    )


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """The app over a data dir holding bentos echo:v1 and echo:v2 and a deployment ``web``
    serving echo:v1 (records written directly: nothing runs)."""
    data_dir = tmp_path_factory.mktemp("body-rules")
    settings = ServerSettings(
        data_dir=data_dir,
        token=TOKEN,
        secrets_key_file=data_dir / "secrets.key",
        runtime_dir=data_dir / "runtime",
    )
    store = RecordingStore(settings.db_path)
    store.upsert_artifact(bento("v1"))
    store.upsert_artifact(bento("v2"))
    store.insert_deployment(deployment_record("web", target="web-1", serving="web-1"))
    store.insert_revision(revision_record("web", 1, RevisionPhase.SERVING))
    app = build_app(settings, Registry(settings, store), Controller(settings, store))
    client = TestClient(app, headers={"X-YATAI-API-TOKEN": TOKEN})
    yield Plane(client, store)
    client.close()
    store.close()


TARGETS = {
    "create": ("POST", DEPLOYMENTS, {"name": "fresh", "bento": "echo:v1"}),
    "update": ("PUT", f"{DEPLOYMENTS}/web", {"bento": "echo:v2"}),
    "update-missing": ("PUT", f"{DEPLOYMENTS}/ghost", {"bento": "echo:v2"}),
}
"""Create; update of the deployment that exists; update of one that does not (a 400, not a
404: the body is checked before the deployment is looked up)."""


def body_of(base: dict[str, Any], bad: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in {**base, **bad}.items() if value is not MISSING}


def service(**fields: Any) -> dict[str, Any]:
    return {"services": {"Echo": fields}}


def canary(**fields: Any) -> dict[str, Any]:
    return {"canary": {"versions": {"v2": {"bento": "echo:v2", "weight": 10, **fields}}}}


def env(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "OK", "value": "1"}, fields]


# (a bad body's fields, the field the 400 names, whether the model (TYPE) or a rule refuses it)
CASES: list[tuple[dict[str, Any], str, str]] = [
    # name
    ({"name": 7}, "name", TYPE),
    ({"name": "Bad_Name"}, "name", RULE),
    ({"name": "n" * 50_000}, "name", RULE),
    # bento
    ({"bento": ["echo:v1"]}, "bento", TYPE),
    ({"bento": "b" * 300}, "bento", TYPE),
    ({"bento": "echo"}, "bento", RULE),
    ({"bento": "echo:v1\n"}, "bento", RULE),
    ({"bento": MISSING}, "bento", RULE),
    ({"bento": None}, "bento", RULE),
    # cluster, dev, access_authorization: types only
    ({"cluster": 5}, "cluster", TYPE),
    ({"dev": "yes"}, "dev", TYPE),
    ({"access_authorization": "yes"}, "access_authorization", TYPE),
    ({"access_authorization": 1}, "access_authorization", TYPE),
    # envs
    ({"envs": {"A": "1"}}, "envs", TYPE),
    ({"envs": ["A=1"]}, "envs[0]", TYPE),
    ({"envs": env(value="1")}, "envs[1].name", TYPE),
    ({"envs": env(name=5)}, "envs[1].name", TYPE),
    ({"envs": env(name="A", value={"nested": SECRET})}, "envs[1].value", TYPE),
    ({"envs": env(name="9LIVES")}, "envs[1].name", RULE),
    ({"envs": env(name="A\n")}, "envs[1].name", RULE),
    ({"envs": env(name="A", value=f"{SECRET}\x00")}, "envs[1].value", RULE),
    ({"envs": env(name="A", value=SECRET * 2_000)}, "envs[1].value", RULE),
    # labels
    ({"labels": 5}, "labels", TYPE),
    ({"labels": [{"name": "team", "value": "ml"}]}, "labels[0].key", TYPE),
    ({"labels": [{"key": "team", "value": [SECRET]}]}, "labels[0].value", TYPE),
    ({"labels": [{"key": "-team", "value": "ml"}]}, "labels[0].key", RULE),
    ({"labels": [{"key": "team", "value": f"{SECRET}\x00"}]}, "labels[0].value", RULE),
    # secrets
    ({"secrets": "db-password"}, "secrets", TYPE),
    ({"secrets": ["db", 5]}, "secrets[1]", TYPE),
    ({"secrets": ["db", "../etc"]}, "secrets[1]", RULE),
    # services
    ({"services": ["Echo"]}, "services", TYPE),
    ({"services": {"Echo": "cpu.small"}}, "services.Echo", TYPE),
    (service(instance_type=5), "services.Echo.instance_type", TYPE),
    (service(instance_type="gpu.huge"), "services.Echo.instance_type", RULE),
    (service(instance_type="gpu.a100"), "services.Echo.instance_type", RULE),
    (service(scaling=[1, 2]), "services.Echo.scaling", TYPE),
    (service(scaling={"min_replicas": 3, "max_replicas": 1}), "services.Echo.scaling", RULE),
    (service(scaling={"min_replicas": "1"}), "services.Echo.scaling.min_replicas", TYPE),
    (service(scaling={"min_replicas": True}), "services.Echo.scaling.min_replicas", TYPE),
    (service(scaling={"min_replicas": -1}), "services.Echo.scaling.min_replicas", RULE),
    (service(scaling={"max_replicas": 2.5}), "services.Echo.scaling.max_replicas", TYPE),
    (service(scaling={"max_replicas": 0}), "services.Echo.scaling.max_replicas", RULE),
    (service(envs="A=1"), "services.Echo.envs", TYPE),
    (service(envs=[{"name": "BAD-NAME"}]), "services.Echo.envs[0].name", RULE),
    (service(deployment_strategy=1), "services.Echo.deployment_strategy", TYPE),
    (service(deployment_strategy="YOLO"), "services.Echo.deployment_strategy", RULE),
    (service(cold_start_timeout="30"), "services.Echo.cold_start_timeout", TYPE),
    (service(cold_start_timeout=0), "services.Echo.cold_start_timeout", RULE),
    (service(config_overrides=["x"]), "services.Echo.config_overrides", TYPE),
    # canary
    ({"canary": "10%"}, "canary", TYPE),
    ({"canary": {"route_type": "cookie"}}, "canary.route_type", TYPE),
    ({"canary": {"route_by": 5}}, "canary.route_by", TYPE),
    ({"canary": {"route_type": "header", **canary()["canary"]}}, "canary.route_by", RULE),
    ({"canary": {"versions": ["v2"]}}, "canary.versions", TYPE),
    ({"canary": {"weight": 10}}, "canary.versions", RULE),
    ({"canary": {"versions": {"a": {}, "b": {}}}}, "canary.versions", RULE),
    ({"canary": {"versions": {"v2": "echo:v2"}}}, "canary.versions.v2", TYPE),
    (canary(bento=5), "canary.versions.v2.bento", TYPE),
    (canary(bento="echo"), "canary.versions.v2.bento", RULE),
    (canary(bento=None), "canary.versions.v2.bento", RULE),
    (canary(weight="10"), "canary.versions.v2.weight", TYPE),
    (canary(weight=101), "canary.versions.v2.weight", RULE),
    (canary(weight=None), "canary.versions.v2.weight", RULE),
    (canary(envs=[{"name": 5}]), "canary.versions.v2.envs[0].name", TYPE),
    (canary(envs=[{"name": "BAD-NAME"}]), "canary.versions.v2.envs[0].name", RULE),
]


def case_id(case: tuple[dict[str, Any], str, str]) -> str:
    _, field, kind = case
    return f"{field}-{'type' if kind == TYPE else 'rule'}"


def refused(plane: Plane, method: str, path: str, body: dict[str, Any]) -> tuple[str, list[str]]:
    """The one error of a 400 and the statements the request ran; nothing changed."""
    before = plane.snapshot()
    answer = plane.client.request(method, path, json=body)
    ran = list(plane.store.statements)
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    data = answer.json()
    assert list(data) == ["error"] and isinstance(data["error"], str)
    message: str = data["error"]
    assert "\n" not in message and len(message) < 1000, message[:300]
    assert plane.snapshot() == before, "a refused body changed a deployment or a revision"
    return message, ran


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(("bad", "field", "kind"), CASES, ids=[case_id(c) for c in CASES])
def test_a_bad_field_gets_one_400_naming_it_before_any_state_is_read(
    plane: Plane, target: str, bad: dict[str, Any], field: str, kind: str
) -> None:
    method, path, base = TARGETS[target]
    message, ran = refused(plane, method, path, body_of(base, bad))
    assert message.startswith(f"{kind}{field}: "), message[:300]
    assert ran == [], f"state read before the 400: {ran}"
    assert SECRET not in message and len(message) < 500


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_long_service_or_version_name_is_cut_in_the_message(plane: Plane, target: str) -> None:
    method, path, base = TARGETS[target]
    key = "k" * 5_000
    for bad, field in (
        ({"services": {key: {}}}, "services."),
        ({"canary": {"versions": {key: {"bento": "echo:v2", "weight": 1}}}}, "canary.versions."),
    ):
        message, ran = refused(plane, method, path, body_of(base, bad))
        assert message.startswith(f"{TYPE}{field}") and key not in message, message
        assert ran == []


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_rule_that_needs_no_state_comes_before_one_that_needs_the_bento(
    plane: Plane, target: str
) -> None:
    method, path, base = TARGETS[target]
    bad = {"services": {"Other": {"scaling": {"min_replicas": -1}}}}
    message, ran = refused(plane, method, path, body_of(base, bad))
    assert message.startswith(f"{RULE}services.Other.scaling.min_replicas: ")
    assert ran == []


@pytest.mark.parametrize("target", ["create", "update"])
def test_the_service_must_be_the_bentos_entry_service_checked_once_it_is_read(
    plane: Plane, target: str
) -> None:
    method, path, base = TARGETS[target]
    message, ran = refused(plane, method, path, body_of(base, {"services": {"Other": {}}}))
    assert message == f"{RULE}services.Other: the bento has no service 'Other'; use 'Echo'"
    assert ran and all(s.lstrip().upper().startswith("SELECT") for s in ran), ran
    assert any("artifacts" in s for s in ran)  # the bento was read, and nothing written


def test_a_canary_on_create_is_refused_before_any_state_is_read(plane: Plane) -> None:
    method, path, base = TARGETS["create"]
    message, ran = refused(plane, method, path, body_of(base, canary()))
    assert message.startswith("canary: a canary needs a deployment that already serves")
    assert ran == []


def test_the_recording_sees_the_reads_of_a_body_that_passes_the_checks(plane: Plane) -> None:
    """The control: a good body does read state (a bento that is not here: 404, no change)."""
    for method, path, base in TARGETS.values():
        before = plane.snapshot()
        answer = plane.client.request(method, path, json={**base, "bento": "absent:v1"})
        ran = list(plane.store.statements)
        assert answer.status_code == 404, answer.text
        assert ran and plane.snapshot() == before
    missing = plane.client.put(f"{DEPLOYMENTS}/ghost", json={"bento": "echo:v2"})
    assert missing.status_code == 404
