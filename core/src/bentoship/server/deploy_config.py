"""A deployment's config (the body of create and update): checked in two steps, in this order.

1. :func:`check_body`, which reads no state: the body's types (its model,
   :class:`~.api.bodies.DeploymentBody`), then the patterns and ranges of its values
   (:func:`check_config`), then the bento it needs. Every rule that does not depend on the
   bento lives here, each once.
2. :func:`config_for`, once the bento is resolved: the rules that depend on it (a service's
   name must be the bento's entry service) and the defaults of what the body left out.

Create and update call both, in this order. A failure is one line naming the field; it may say
what was given (cut short by :func:`~bentoship.tags.shown`), never an env or label value.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from ..tags import TAG_PATTERN, shown
from .api.bodies import CanaryConfig, DeploymentBody, EnvItem, LabelItem, ServiceConfig, parse
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


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigInvalid(
            "name",
            f"{shown(name)} is not a valid deployment name; use lowercase letters, digits and '-' "
            "(at most 63 characters, starting and ending with a letter or digit)",
        )
    return name


def validate_tag(tag: str | None, field: str = "bento") -> str:
    if tag is None:
        raise ConfigInvalid(field, "missing; give the bento tag as 'name:version'")
    if not TAG_PATTERN.match(tag):
        raise ConfigInvalid(field, f"{shown(tag)} is not a bento tag; give it as 'name:version'")
    return tag


def _value(value: object, field: str) -> str:
    text = "" if value is None else str(value)
    if "\x00" in text or len(text) > MAX_VALUE_CHARACTERS:
        raise ConfigInvalid(
            field, f"holds a NUL byte or is longer than {MAX_VALUE_CHARACTERS} characters"
        )
    return text


def _envs(items: list[EnvItem | None] | None, field: str) -> list[dict[str, str]]:
    envs: list[dict[str, str]] = []
    for index, item in enumerate(items or []):
        if item is None:
            continue
        if not ENV_NAME_PATTERN.match(item.name):
            raise ConfigInvalid(
                f"{field}[{index}].name", f"{shown(item.name)} is not an env var name"
            )
        envs.append({"name": item.name, "value": _value(item.value, f"{field}[{index}].value")})
    return envs


def _labels(items: list[LabelItem | None] | None, field: str) -> list[dict[str, str]]:
    labels: list[dict[str, str]] = []
    for index, item in enumerate(items or []):
        if item is None:
            continue
        if not LABEL_KEY_PATTERN.match(item.key):
            raise ConfigInvalid(
                f"{field}[{index}].key",
                f"{shown(item.key)} is not a label key; use letters, digits, '-', '_', '.' "
                "and '/' (at most 253 characters)",
            )
        labels.append({"key": item.key, "value": _value(item.value, f"{field}[{index}].value")})
    return labels


def secret_names(names: list[str] | None) -> list[str] | None:
    """The secrets a config names, each once, in order; None for none."""
    unique: list[str] = []
    for index, name in enumerate(names or []):
        if not SECRET_NAME_PATTERN.match(name):
            raise ConfigInvalid(f"secrets[{index}]", f"{shown(name)} is not a secret name")
        if name not in unique:
            unique.append(name)
    return unique or None


def _at_least(value: int, field: str, minimum: int) -> int:
    if value < minimum:
        raise ConfigInvalid(field, f"expected an integer >= {minimum}, got {shown(value)}")
    return value


def _service(name: str, given: ServiceConfig | None) -> dict[str, Any]:
    """One service's config, every default filled in (a missing service gets only defaults)."""
    field = f"services.{name}"
    raw = given or ServiceConfig()
    instance_type = raw.instance_type or DEFAULT_INSTANCE_TYPE
    if instance_type not in INSTANCE_TYPES and not GPU_INSTANCE_TYPE.match(instance_type):
        raise ConfigInvalid(
            f"{field}.instance_type",
            f"unknown instance type {shown(instance_type)}; choose one of "
            f"{', '.join(INSTANCE_TYPES)}, or a gpu.<model>.<n> type that "
            "`bentoml deployment list-instance-types` shows",
        )
    scaling = raw.scaling
    min_given = scaling.min_replicas if scaling else None
    max_given = scaling.max_replicas if scaling else None
    min_replicas = (
        1 if min_given is None else _at_least(min_given, f"{field}.scaling.min_replicas", 0)
    )
    max_replicas = (
        max(min_replicas, 1)
        if max_given is None
        else _at_least(max_given, f"{field}.scaling.max_replicas", 1)
    )
    if min_replicas > max_replicas:
        raise ConfigInvalid(f"{field}.scaling", "min_replicas must not exceed max_replicas")
    strategy = raw.deployment_strategy or "RollingUpdate"
    if strategy not in STRATEGIES:
        raise ConfigInvalid(
            f"{field}.deployment_strategy",
            f"{shown(strategy)} is not one of {', '.join(STRATEGIES)}",
        )
    cold_start = raw.cold_start_timeout
    if cold_start is not None:
        _at_least(cold_start, f"{field}.cold_start_timeout", 1)
    return {
        "instance_type": instance_type,
        "scaling": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "policy": (scaling.model_extra or {}).get("policy") if scaling else None,
        },
        "envs": _envs(raw.envs, f"{field}.envs"),
        "deployment_strategy": strategy,
        "extras": (raw.model_extra or {}).get("extras"),
        "cold_start_timeout": cold_start,
        "config_overrides": raw.config_overrides or {},
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


def _canary(raw: CanaryConfig | None) -> CanaryVersion | None:
    """The canary version asked for, or None for no canary (none given, or ``{}``)."""
    if raw is None or not raw.model_fields_set:
        return None
    route_type = raw.route_type or "random"
    route_by = raw.route_by or None
    if route_type != "random" and route_by is None:
        raise ConfigInvalid(
            "canary.route_by", f"route_type {route_type} needs the name to route by"
        )
    versions = raw.versions or {}
    if len(versions) != 1:
        raise ConfigInvalid(
            "canary.versions",
            "the local control plane runs one canary version; give one {name: {bento, weight}}",
        )
    ((name, version),) = versions.items()
    field = f"canary.versions.{name}"
    weight = version.weight
    if weight is None or not 0 <= weight <= 100:
        raise ConfigInvalid(
            f"{field}.weight", f"expected a percentage from 0 to 100, got {shown(weight)}"
        )
    return CanaryVersion(
        name=name,
        bento=validate_tag(version.bento, f"{field}.bento"),
        weight=weight,
        route_type=route_type,
        route_by=route_by,
        envs=_envs(version.envs, f"{field}.envs"),
    )


@dataclass(frozen=True)
class CheckedBody:
    """A deployment body that passed every rule that needs no state, its values normalised."""

    name: str | None
    """The deployment's name, or None to make one from the bento's (on create)."""
    bento: str | None
    """The bento tag; None only beside a canary (whose main bento is the one serving)."""
    access_authorization: bool
    envs: list[dict[str, str]]
    labels: list[dict[str, str]]
    secrets: list[str] | None
    services: dict[str, dict[str, Any]]
    """Each service the body names, with its defaults filled in."""
    canary: CanaryVersion | None


def check_config(body: dict[str, Any]) -> CheckedBody:
    """The type, then the pattern or range, of every field of a body, reading no state; the
    bento may be missing (a config alone, as a test gives it).

    Invalid (``invalid request body: <field>: …``) for a value of the wrong type, ConfigInvalid
    (``invalid deployment config: <field>: …``) for a value of the right type that breaks a rule.
    """
    typed = parse(DeploymentBody, body)
    return CheckedBody(
        name=validate_name(typed.name) if typed.name else None,
        bento=None if typed.bento is None else validate_tag(typed.bento),
        access_authorization=bool(typed.access_authorization),
        envs=_envs(typed.envs, "envs"),
        labels=_labels(typed.labels, "labels"),
        secrets=secret_names(typed.secrets),
        services={key: _service(key, value) for key, value in (typed.services or {}).items()},
        canary=_canary(typed.canary),
    )


def check_body(body: dict[str, Any]) -> CheckedBody:
    """Step 1 of a create or update, reading no state: :func:`check_config`, and the bento is
    required (but beside a canary, whose main bento is then the one serving)."""
    checked = check_config(body)
    if checked.bento is None and checked.canary is None:
        validate_tag(None)  # ConfigInvalid: bento: missing
    return checked


def config_for(checked: CheckedBody, entry_service: str) -> dict[str, Any]:
    """Step 2, once the bento (of the canary, when there is one) is known: the stored config.

    The only rule left is the bento's: the one service configured is its entry service ("" for
    a bento that names none: the body's first service, else ``default``).
    """
    unknown = [name for name in checked.services if entry_service and name != entry_service]
    if unknown:
        raise ConfigInvalid(
            f"services.{unknown[0]}",
            f"the bento has no service {shown(unknown[0])}; use {shown(entry_service)}",
        )
    service = entry_service or next(iter(checked.services), "default")
    canary = checked.canary
    return {
        "access_authorization": checked.access_authorization,
        "envs": [*checked.envs, *(canary.envs if canary else [])],
        "labels": checked.labels,
        "secrets": checked.secrets,
        "services": {service: checked.services.get(service) or _service(service, None)},
        "canary": {"name": canary.name, "weight": canary.weight} if canary else None,
    }


def normalize_config(body: dict[str, Any], entry_service: str) -> dict[str, Any]:
    """The stored config of a config alone (no bento needed) whose bento's entry service is
    known: :func:`check_config`, then :func:`config_for`."""
    return config_for(check_config(body), entry_service)


def generated_name(tag: str) -> str:
    """A deployment name made from a bento tag's name (on a create that gives none); always
    valid: the bento name's '_' and '.' become '-', cut to leave room for a random suffix."""
    stem = re.sub(r"[^a-z0-9-]", "-", tag.partition(":")[0])[:56].strip("-") or "deployment"
    return f"{stem}-{secrets.token_hex(3)}"


def process_envs(config: dict[str, Any]) -> dict[str, str]:
    """The environment a revision's process gets: deployment envs, then service envs."""
    envs = {item["name"]: item["value"] for item in config.get("envs") or []}
    for service in (config.get("services") or {}).values():
        envs.update({item["name"]: item["value"] for item in service.get("envs") or []})
    return envs


def min_replicas(config: dict[str, Any]) -> int:
    services = config.get("services") or {}
    return min((s["scaling"]["min_replicas"] for s in services.values()), default=1)
