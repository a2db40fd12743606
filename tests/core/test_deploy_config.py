"""The server's validation of a deployment's name, bento tag and config (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from bentoship.models import DeploymentConfig, config_matches
from bentoship.server.deploy_config import (
    CanaryVersion,
    ConfigInvalid,
    min_replicas,
    normalize_config,
    parse_canary,
    process_envs,
    validate_name,
    validate_tag,
)

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
        ({"access_authorization": "yes"}, "access_authorization"),
        ({"secrets": "db-password"}, "secrets"),
        ({"secrets": ["ok", "../etc"]}, "secrets[1]"),
        ({"services": ["Echo"]}, "services"),
        ({"services": {"Other": {}}}, "services.Other"),
        ({"services": {"Echo": "small"}}, "services.Echo"),
        (service(instance_type="gpu.huge"), "services.Echo.instance_type"),
        (service(scaling=[1, 2]), "services.Echo.scaling"),
        (service(scaling={"min_replicas": 3, "max_replicas": 1}), "services.Echo.scaling"),
        (service(scaling={"min_replicas": -1}), "services.Echo.scaling.min_replicas"),
        (service(scaling={"min_replicas": True}), "services.Echo.scaling.min_replicas"),
        (service(scaling={"min_replicas": 1.5}), "services.Echo.scaling.min_replicas"),
        (service(scaling={"max_replicas": 0}), "services.Echo.scaling.max_replicas"),
        (service(deployment_strategy="YOLO"), "services.Echo.deployment_strategy"),
        (service(cold_start_timeout=0), "services.Echo.cold_start_timeout"),
        (service(config_overrides=["x"]), "services.Echo.config_overrides"),
        (service(envs=[{"name": "9LIVES", "value": "1"}]), "services.Echo.envs[0].name"),
        ({"envs": {"A": "1"}}, "envs"),
        ({"envs": [{"value": "1"}]}, "envs[0]"),
        ({"envs": [{"name": "OK", "value": "1"}, {"name": "BAD-NAME"}]}, "envs[1].name"),
        ({"labels": [{"name": "team", "value": "ml"}]}, "labels[0]"),
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
    ("canary", "field"),
    [
        ("10%", "canary"),
        ({"weight": 10}, "canary.versions"),
        ({"versions": {"a": {}, "b": {}}}, "canary.versions"),
        ({"route_type": "cookie", **version()}, "canary.route_type"),
        ({"route_type": "header", **version()}, "canary.route_by"),
        ({"versions": {"v2": "echo:v2"}}, "canary.versions.v2"),
        (version(weight=101), "canary.versions.v2.weight"),
        (version(weight=True), "canary.versions.v2.weight"),
        (version(bento="echo"), "canary.versions.v2.bento"),
        (version(envs=[{"name": "BAD-NAME"}]), "canary.versions.v2.envs[0].name"),
    ],
)
def test_each_bad_canary_field_is_named(canary: Any, field: str) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        parse_canary(canary)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_a_canary_config_is_read_as_one_version() -> None:
    parsed = parse_canary({"route_type": "header", "route_by": "X-User", **version(weight=25)})
    assert parsed == CanaryVersion("v2", "echo:v2", 25, "header", "X-User", [])
    assert parse_canary(None) is None and parse_canary({}) is None


@pytest.mark.parametrize("name", ["a", "svc", "my-svc-2", "0day", "a" * 63])
def test_valid_deployment_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Svc", "my_svc", "-svc", "svc-", "a" * 64, "svc.v2", "svc name", None, 7]
)
def test_invalid_deployment_names(name: object) -> None:
    with pytest.raises(ConfigInvalid) as caught:
        validate_name(name)
    assert caught.value.field == "name" and repr(name) in str(caught.value)


@pytest.mark.parametrize("tag", ["echo:v1", "my-model.v2:2024_01.A", "a:1"])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["echo", "echo:", ":v1", "Echo:v1", "echo:v1:x", "echo:-v1", 3])
def test_invalid_tags_name_the_field(tag: object) -> None:
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
