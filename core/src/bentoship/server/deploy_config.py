"""Validation and normalisation of a deployment's config (the body of create and update)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..tags import TAG_PATTERN, shown
from .errors import Invalid
from .secrets.content import NAME_PATTERN as SECRET_NAME_PATTERN

NAME_PATTERN = re.compile(r"\A[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
ENV_NAME_PATTERN = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
LABEL_KEY_PATTERN = re.compile(r"\A[A-Za-z0-9](?:[-A-Za-z0-9_./]{0,251}[A-Za-z0-9])?\Z")
MAX_VALUE_CHARACTERS = 64 * 1024
STRATEGIES = ("RollingUpdate", "Recreate", "RampedSlowRollout", "BestEffortControlledRollout")

INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    "cpu.small": {"cpu": "1", "memory": "2Gi", "price": "0"},
    "cpu.medium": {"cpu": "2", "memory": "4Gi", "price": "0"},
    "cpu.large": {"cpu": "4", "memory": "8Gi", "price": "0"},
}
DEFAULT_INSTANCE_TYPE = "cpu.small"
GPU_INSTANCE_TYPE = re.compile(r"\Agpu\.[a-z0-9]+\.[1-9][0-9]{0,2}\Z")
"""``gpu.<model>.<n>``; whether this machine has those GPUs is the GPU allocator's check."""


class ConfigInvalid(Invalid):
    """A config field is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid deployment config: {field}: {problem}")
        self.field = field


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigInvalid(
            "name",
            f"{shown(name)} is not a valid deployment name; use lowercase letters, digits and '-' "
            "(at most 63 characters, starting and ending with a letter or digit)",
        )
    return name


def validate_tag(tag: object, field: str = "bento") -> str:
    if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
        raise ConfigInvalid(field, f"{shown(tag)} is not a bento tag; give it as 'name:version'")
    return tag


def _pairs(value: object, field: str, key: str) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigInvalid(field, f"expected a list of {{{key}, value}} objects")
    items: list[dict[str, str]] = []
    for index, item in enumerate(value):
        if item is None:
            continue
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            raise ConfigInvalid(f"{field}[{index}]", f"expected an object with a string '{key}'")
        raw = item.get("value", "")
        if isinstance(raw, (dict, list)):
            raise ConfigInvalid(f"{field}[{index}].value", "expected a string, number or bool")
        text = "" if raw is None else str(raw)
        if "\x00" in text or len(text) > MAX_VALUE_CHARACTERS:
            raise ConfigInvalid(
                f"{field}[{index}].value",
                f"holds a NUL byte or is longer than {MAX_VALUE_CHARACTERS} characters",
            )
        items.append({key: item[key], "value": text})
    return items


def _labels(value: object, field: str) -> list[dict[str, str]]:
    labels = _pairs(value, field, "key")
    for index, label in enumerate(labels):
        if not LABEL_KEY_PATTERN.match(label["key"]):
            raise ConfigInvalid(
                f"{field}[{index}].key",
                f"{shown(label['key'])} is not a label key; use letters, digits, '-', '_', '.' "
                "and '/' (at most 253 characters)",
            )
    return labels


def _envs(value: object, field: str) -> list[dict[str, str]]:
    envs = _pairs(value, field, "name")
    for index, env in enumerate(envs):
        if not ENV_NAME_PATTERN.match(env["name"]):
            raise ConfigInvalid(
                f"{field}[{index}].name", f"{shown(env['name'])} is not an env var name"
            )
    return envs


def secret_names(value: object) -> list[str] | None:
    """The secrets a config names, each once, in order; None for none."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ConfigInvalid("secrets", "expected a list of secret names")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or not SECRET_NAME_PATTERN.match(name):
            raise ConfigInvalid(f"secrets[{index}]", f"{shown(name)} is not a secret name")
        if name not in names:
            names.append(name)
    return names or None


def _int(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigInvalid(field, f"expected an integer >= {minimum}, got {shown(value)}")
    return value


def _service(name: str, raw: object) -> dict[str, Any]:
    field = f"services.{name}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigInvalid(field, "expected an object")
    instance_type = raw.get("instance_type") or DEFAULT_INSTANCE_TYPE
    if instance_type not in INSTANCE_TYPES and not (
        isinstance(instance_type, str) and GPU_INSTANCE_TYPE.match(instance_type)
    ):
        raise ConfigInvalid(
            f"{field}.instance_type",
            f"unknown instance type {shown(instance_type)}; choose one of "
            f"{', '.join(INSTANCE_TYPES)}, or a gpu.<model>.<n> type that "
            "`bentoml deployment list-instance-types` shows",
        )
    scaling = raw.get("scaling") or {}
    if not isinstance(scaling, dict):
        raise ConfigInvalid(f"{field}.scaling", "expected an object")
    min_replicas = scaling.get("min_replicas")
    max_replicas = scaling.get("max_replicas")
    min_replicas = (
        1 if min_replicas is None else _int(min_replicas, f"{field}.scaling.min_replicas", 0)
    )
    max_replicas = (
        max(min_replicas, 1)
        if max_replicas is None
        else _int(max_replicas, f"{field}.scaling.max_replicas", 1)
    )
    if min_replicas > max_replicas:
        raise ConfigInvalid(f"{field}.scaling", "min_replicas must not exceed max_replicas")
    strategy = raw.get("deployment_strategy") or "RollingUpdate"
    if strategy not in STRATEGIES:
        raise ConfigInvalid(
            f"{field}.deployment_strategy",
            f"{shown(strategy)} is not one of {', '.join(STRATEGIES)}",
        )
    cold_start = raw.get("cold_start_timeout")
    if cold_start is not None:
        _int(cold_start, f"{field}.cold_start_timeout", 1)
    overrides = raw.get("config_overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigInvalid(f"{field}.config_overrides", "expected an object")
    return {
        "instance_type": instance_type,
        "scaling": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "policy": scaling.get("policy"),
        },
        "envs": _envs(raw.get("envs"), f"{field}.envs"),
        "deployment_strategy": strategy,
        "extras": raw.get("extras"),
        "cold_start_timeout": cold_start,
        "config_overrides": overrides,
    }


def check_body(body: dict[str, Any]) -> None:
    """Refuse a body whose fields are wrong whatever its bento (before the bento is looked up)."""
    if body.get("name"):
        validate_name(body["name"])
    if body.get("bento") is not None:
        validate_tag(body["bento"])
    _envs(body.get("envs"), "envs")
    _labels(body.get("labels"), "labels")
    secret_names(body.get("secrets"))
    parse_canary(body.get("canary"))


def normalize_config(body: dict[str, Any], entry_service: str) -> dict[str, Any]:
    """Return the config with every default filled in, or raise ConfigInvalid naming the field."""
    access = body.get("access_authorization", False)
    if access is None:
        access = False
    if not isinstance(access, bool):
        raise ConfigInvalid("access_authorization", f"expected true or false, got {shown(access)}")
    services_raw = body.get("services") or {}
    if not isinstance(services_raw, dict):
        raise ConfigInvalid("services", "expected an object keyed by service name")
    unknown = [name for name in services_raw if entry_service and name != entry_service]
    if unknown:
        raise ConfigInvalid(
            f"services.{unknown[0]}",
            f"the bento has no service {shown(unknown[0])}; use {shown(entry_service)}",
        )
    service_name = entry_service or next(iter(services_raw), "default")
    return {
        "access_authorization": access,
        "envs": _envs(body.get("envs"), "envs"),
        "labels": _labels(body.get("labels"), "labels"),
        "secrets": secret_names(body.get("secrets")),
        "services": {service_name: _service(service_name, services_raw.get(service_name))},
        "canary": None,
    }


@dataclass(frozen=True)
class CanaryVersion:
    """BentoCloud's ``canary`` config, as the local control plane runs it: one version."""

    name: str
    bento: str
    weight: int
    route_type: str
    route_by: str | None
    envs: list[dict[str, str]]


ROUTE_TYPES = ("random", "header", "query")


def parse_canary(raw: object) -> CanaryVersion | None:
    """The canary version asked for, or None; ConfigInvalid names the field that is wrong."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ConfigInvalid("canary", "expected an object {route_type, route_by, versions}")
    route_type = raw.get("route_type") or "random"
    if route_type not in ROUTE_TYPES:
        raise ConfigInvalid(
            "canary.route_type", f"{shown(route_type)} is not one of random, header, query"
        )
    route_by = raw.get("route_by") or None
    if route_type != "random" and not isinstance(route_by, str):
        raise ConfigInvalid(
            "canary.route_by", f"route_type {route_type} needs the name to route by"
        )
    versions = raw.get("versions") or {}
    if not isinstance(versions, dict) or len(versions) != 1:
        raise ConfigInvalid(
            "canary.versions",
            "the local control plane runs one canary version; give one {name: {bento, weight}}",
        )
    ((name, version),) = versions.items()
    field = f"canary.versions.{name}"
    if not isinstance(version, dict):
        raise ConfigInvalid(field, "expected an object {bento, weight}")
    weight = version.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ConfigInvalid(
            f"{field}.weight", f"expected a percentage from 0 to 100, got {shown(weight)}"
        )
    return CanaryVersion(
        name=str(name),
        bento=validate_tag(version.get("bento"), f"{field}.bento"),
        weight=weight,
        route_type=route_type,
        route_by=route_by,
        envs=_envs(version.get("envs"), f"{field}.envs"),
    )


def process_envs(config: dict[str, Any]) -> dict[str, str]:
    """The environment a revision's process gets: deployment envs, then service envs."""
    envs = {item["name"]: item["value"] for item in config.get("envs") or []}
    for service in (config.get("services") or {}).values():
        envs.update({item["name"]: item["value"] for item in service.get("envs") or []})
    return envs


def min_replicas(config: dict[str, Any]) -> int:
    services = config.get("services") or {}
    return min((s["scaling"]["min_replicas"] for s in services.values()), default=1)
