"""The server's validation of a deployment's name, bento tag and config (pure functions).

A value of the wrong type is refused by the body's model (``invalid request body: <field>``),
one of the right type that breaks a rule by the config's checks (``invalid deployment config``).
"""

from __future__ import annotations

from typing import Any

import pytest

from bentoship.models import DeploymentConfig, config_matches
from bentoship.server.deploy_config import (
    CanaryVersion,
    ConfigInvalid,
    check_body,
    generated_name,
    min_replicas,
    normalize_config,
    process_envs,
    validate_name,
    validate_tag,
)
from bentoship.server.errors import Invalid

DEFAULT_SERVICE = {
    "instance_type": "cpu.small",
    "scaling": {"min_replicas": 1, "max_replicas": 1, "policy": None},
    "envs": [],
    "deployment_strategy": "RollingUpdate",
    "extras": None,
    "cold_start_timeout": None,
    "config_overrides": {},
}


def test_an_empty_config_gets_every_default_for_the_entry_service() -> None:
    assert normalize_config({}, "Echo") == {
        "access_authorization": False,
        "envs": [],
        "labels": [],
        "secrets": None,
        "services": {"Echo": DEFAULT_SERVICE},
        "canary": None,
    }


def test_given_values_are_kept_and_missing_ones_defaulted() -> None:
    body = {
        "access_authorization": True,
        "envs": [{"name": "MODE", "value": 3}, None, {"name": "EMPTY", "value": None}],
        "labels": [{"key": "team", "value": "ml"}],
        "services": {
            "Echo": {
                "instance_type": "cpu.large",
                "scaling": {"min_replicas": 0},
                "envs": [{"name": "WORKERS", "value": "2"}],
                "deployment_strategy": "Recreate",
                "cold_start_timeout": 30,
            }
        },
    }
    config = normalize_config(body, "Echo")
    assert config["access_authorization"] is True
    assert config["envs"] == [{"name": "MODE", "value": "3"}, {"name": "EMPTY", "value": ""}]
    assert config["labels"] == [{"key": "team", "value": "ml"}]
    service = config["services"]["Echo"]
    assert service["instance_type"] == "cpu.large"
    # min 0 (scale to zero) still allows one replica
    assert service["scaling"] == {"min_replicas": 0, "max_replicas": 1, "policy": None}
    assert service["envs"] == [{"name": "WORKERS", "value": "2"}]
    assert service["deployment_strategy"] == "Recreate"
    assert service["cold_start_timeout"] == 30
    assert min_replicas(config) == 0
    # service envs override deployment envs of the same name
    assert process_envs(config) == {"MODE": "3", "EMPTY": "", "WORKERS": "2"}


def test_a_bento_without_a_known_entry_service_keeps_the_named_one() -> None:
    config = normalize_config({"services": {"Svc": {"instance_type": "cpu.medium"}}}, "")
    assert list(config["services"]) == ["Svc"]
    assert config["services"]["Svc"]["instance_type"] == "cpu.medium"
    assert list(normalize_config({}, "")["services"]) == ["default"]


def test_normalising_is_idempotent() -> None:
    once = normalize_config({"services": {"Echo": {"scaling": {"max_replicas": 3}}}}, "Echo")
    assert normalize_config(once, "Echo") == once


def service(**fields: Any) -> dict[str, Any]:
    return {"services": {"Echo": fields}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bento": "echo:v1", "name": 7}, "name"),
        ({"access_authorization": "yes"}, "access_authorization"),
        ({"secrets": "db-password"}, "secrets"),
        ({"services": ["Echo"]}, "services"),
        ({"services": {"Echo": "small"}}, "services.Echo"),
        (service(scaling=[1, 2]), "services.Echo.scaling"),
        (service(scaling={"min_replicas": True}), "services.Echo.scaling.min_replicas"),
        (service(scaling={"min_replicas": 1.5}), "services.Echo.scaling.min_replicas"),
        (service(config_overrides=["x"]), "services.Echo.config_overrides"),
        ({"envs": {"A": "1"}}, "envs"),
        ({"envs": [{"value": "1"}]}, "envs[0].name"),
        ({"envs": [{"name": "A", "value": {"nested": 1}}]}, "envs[0].value"),
        ({"labels": [{"name": "team", "value": "ml"}]}, "labels[0].key"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_by_the_model(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as caught:
        normalize_config(body, "Echo")
    assert not isinstance(caught.value, ConfigInvalid)
    message = str(caught.value)
    assert message.startswith(f"invalid request body: {field}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"secrets": ["ok", "../etc"]}, "secrets[1]"),
        ({"services": {"Other": {}}}, "services.Other"),
        (service(instance_type="gpu.huge"), "services.Echo.instance_type"),
        (service(scaling={"min_replicas": 3, "max_replicas": 1}), "services.Echo.scaling"),
        (service(scaling={"min_replicas": -1}), "services.Echo.scaling.min_replicas"),
        (service(scaling={"max_replicas": 0}), "services.Echo.scaling.max_replicas"),
        (service(deployment_strategy="YOLO"), "services.Echo.deployment_strategy"),
        (service(cold_start_timeout=0), "services.Echo.cold_start_timeout"),
        (service(envs=[{"name": "9LIVES", "value": "1"}]), "services.Echo.envs[0].name"),
        ({"envs": [{"name": "OK", "value": "1"}, {"name": "BAD-NAME"}]}, "envs[1].name"),
        ({"labels": [{"key": "-team", "value": "ml"}]}, "labels[0].key"),
    ],
)
def test_each_bad_field_is_named_in_the_error(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        normalize_config(body, "Echo")
    assert caught.value.field == field
    message = str(caught.value)
    assert message.startswith(f"invalid deployment config: {field}: ")
    assert "\n" not in message


def version(**fields: Any) -> dict[str, Any]:
    return {"versions": {"v2": {"bento": "echo:v2", "weight": 10, **fields}}}


@pytest.mark.parametrize(
    ("canary", "field", "rule"),
    [
        ("10%", "canary", False),
        ({"weight": 10}, "canary.versions", True),
        ({"versions": {"a": {}, "b": {}}}, "canary.versions", True),
        ({"route_type": "cookie", **version()}, "canary.route_type", False),
        ({"route_type": "header", **version()}, "canary.route_by", True),
        ({"versions": {"v2": "echo:v2"}}, "canary.versions.v2", False),
        (version(weight=101), "canary.versions.v2.weight", True),
        (version(weight=True), "canary.versions.v2.weight", False),
        (version(bento="echo"), "canary.versions.v2.bento", True),
        ({"versions": {"v2": {"weight": 10}}}, "canary.versions.v2.bento", True),
        (version(envs=[{"name": "BAD-NAME"}]), "canary.versions.v2.envs[0].name", True),
    ],
)
def test_each_bad_canary_field_is_named(canary: Any, field: str, rule: bool) -> None:
    with pytest.raises(Invalid) as caught:
        check_body({"canary": canary})
    message = str(caught.value)
    if rule:
        assert isinstance(caught.value, ConfigInvalid) and caught.value.field == field
    else:
        assert message.startswith(f"invalid request body: {field}: ")
    assert "\n" not in message


def test_a_canary_config_is_read_as_one_version() -> None:
    canary = {"route_type": "header", "route_by": "X-User", **version(weight=25)}
    parsed = check_body({"canary": canary}).canary
    assert parsed == CanaryVersion("v2", "echo:v2", 25, "header", "X-User", [])
    assert check_body({"bento": "echo:v1", "canary": None}).canary is None
    assert check_body({"bento": "echo:v1", "canary": {}}).canary is None


def test_the_bento_is_required_but_beside_a_canary() -> None:
    bodies: list[dict[str, Any]] = [{}, {"bento": None}, {"canary": {}}]
    for body in bodies:
        with pytest.raises(ConfigInvalid) as caught:
            check_body(body)
        assert caught.value.field == "bento" and "name:version" in str(caught.value)
    assert check_body({"canary": version()}).bento is None


@pytest.mark.parametrize("name", ["a", "svc", "my-svc-2", "0day", "a" * 63])
def test_valid_deployment_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Svc", "my_svc", "-svc", "svc-", "a" * 64, "svc.v2", "svc name"]
)
def test_invalid_deployment_names(name: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        validate_name(name)
    assert caught.value.field == "name" and repr(name) in str(caught.value)


@pytest.mark.parametrize("tag", ["echo:v1", "my-model.v2:2024_01.A", "a:1"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["echo", "echo:", ":v1", "Echo:v1", "echo:v1:x", "echo:-v1", None])
def test_invalid_tags_name_the_field(tag: str | None) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        validate_tag(tag)
    assert caught.value.field == "bento" and "name:version" in str(caught.value)
    with pytest.raises(ConfigInvalid) as other:
        validate_tag(tag, field="model")
    assert other.value.field == "model"


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"envs": {"MODE": "a"}, "min_replicas": 1},
        {"instance_type": "cpu.medium", "min_replicas": 0, "max_replicas": 3},
        {"access_authorization": True, "strategy": "Recreate", "labels": {"team": "ml"}},
    ],
)
def test_what_the_client_sends_matches_what_the_server_stores(settings: dict[str, Any]) -> None:
    """deploy's idempotence: re-applying a config matches the server's normalised copy of it."""
    sent = DeploymentConfig.from_dict(settings).to_api("Echo")
    stored = normalize_config(sent, "Echo")
    assert config_matches(sent, stored)
    changed = DeploymentConfig.from_dict({**settings, "envs": {"MODE": "other"}}).to_api("Echo")
    assert not config_matches(changed, stored)


@pytest.mark.parametrize("bento", ["echo", "my_model.v2", "a" * 63, "x-_"])
def test_a_name_made_from_the_bento_is_a_valid_deployment_name(bento: str) -> None:
    made = generated_name(f"{bento}:v1")
    assert validate_name(made) == made
    assert made.startswith(bento.replace("_", "-").replace(".", "-")[:20].rstrip("-"))
