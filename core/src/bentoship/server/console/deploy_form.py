"""The Deploy form's model: its fields as typed, the REST API's deployment body they make, and
the form field that an API error names.

The form's fields map to the body the REST API takes (``POST /api/v2/deployments`` and ``PUT
…/{name}``); the API's one-line error names its field, and :func:`field_error` puts it beside
the form's field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from .. import schemas
from ..deploy_config import DEFAULT_INSTANCE_TYPE

__all__ = [
    "AUTHORIZED",
    "PUBLIC",
    "Body",
    "DeployForm",
    "EnvRow",
    "FieldError",
    "body_of",
    "field_error",
    "form_of_revision",
    "kept_of",
    "read_form",
]

PUBLIC = "public"
AUTHORIZED = "authorized"


@dataclass(frozen=True)
class EnvRow:
    name: str = ""
    value: str = ""


@dataclass(frozen=True)
class DeployForm:
    """The form's values, as typed (numbers stay text until they become the body)."""

    cluster: str = schemas.CLUSTER_NAME
    name: str = ""
    access: str = PUBLIC
    repository: str = ""
    version: str = ""
    instance_type: str = DEFAULT_INSTANCE_TYPE
    min_replicas: str = "1"
    max_replicas: str = "1"
    envs: tuple[EnvRow, ...] = ()
    secrets: tuple[str, ...] = ()

    @property
    def bento(self) -> str:
        return f"{self.repository}:{self.version}" if self.repository or self.version else ""


def read_form(pairs: Iterable[tuple[str, Any]]) -> DeployForm:
    """The form from the posted fields (``FormData.multi_items()``); env rows pair up
    ``env_name`` and ``env_value`` in order."""
    found: dict[str, list[str]] = {}
    for key, value in pairs:
        if isinstance(value, str):
            found.setdefault(key, []).append(value)

    def one(key: str, default: str = "") -> str:
        values = found.get(key)
        return values[0].strip() if values else default

    rows = zip_longest(found.get("env_name", []), found.get("env_value", []), fillvalue="")
    return DeployForm(
        cluster=one("cluster", schemas.CLUSTER_NAME),
        name=one("name"),
        access=one("access", PUBLIC),
        repository=one("repository"),
        version=one("version"),
        instance_type=one("instance_type"),
        min_replicas=one("min_replicas"),
        max_replicas=one("max_replicas"),
        envs=tuple(EnvRow(name.strip(), value) for name, value in rows),
        secrets=tuple(s for s in found.get("secrets", []) if s),
    )


def _first_service(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    services = config.get("services") or {}
    name = next(iter(services), "")
    return name, dict(services.get(name) or {})


def form_of_revision(name: str, bento: str, config: Mapping[str, Any]) -> DeployForm:
    """The form filled with a revision's bento and config (what "Update" opens)."""
    repository, _, version = bento.partition(":")
    _, service = _first_service(config)
    scaling = service.get("scaling") or {}
    return DeployForm(
        cluster=schemas.CLUSTER_NAME,
        name=name,
        access=AUTHORIZED if config.get("access_authorization") else PUBLIC,
        repository=repository,
        version=version,
        instance_type=str(service.get("instance_type") or DEFAULT_INSTANCE_TYPE),
        min_replicas=str(scaling.get("min_replicas", 1)),
        max_replicas=str(scaling.get("max_replicas", 1)),
        envs=tuple(
            EnvRow(str(e.get("name", "")), str(e.get("value", "")))
            for e in config.get("envs") or []
        ),
        secrets=tuple(config.get("secrets") or ()),
    )


def kept_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """What an update from the form keeps of the current config, as body fields: what the
    form does not show (labels, the service's own envs, strategy, cold start timeout, config
    overrides, scaling policy, extras)."""
    _, service = _first_service(config)
    kept_service: dict[str, Any] = {}
    for key in ("envs", "deployment_strategy", "cold_start_timeout", "config_overrides"):
        if service.get(key):
            kept_service[key] = service[key]
    if service.get("extras") is not None:
        kept_service["extras"] = service["extras"]
    policy = (service.get("scaling") or {}).get("policy")
    if policy is not None:
        kept_service["scaling"] = {"policy": policy}
    kept: dict[str, Any] = {"service": kept_service}
    if config.get("labels"):
        kept["labels"] = list(config["labels"])
    return kept


def _integer(text: str) -> int | str | None:
    """A replica count as the body takes it; text that is no integer stays text, which the
    body's rules refuse naming the field."""
    if text == "":
        return None
    return int(text) if re.fullmatch(r"[+-]?[0-9]{1,9}", text) else text


@dataclass(frozen=True)
class Body:
    body: dict[str, Any]
    env_rows: tuple[int, ...]
    """The form's env row of each env of the body (rows left empty are left out)."""


def body_of(form: DeployForm, service: str, kept: Mapping[str, Any] | None = None) -> Body:
    """The REST API's deployment body for ``form``, its service config keyed by ``service``
    (the bento's entry service); with ``kept`` (:func:`kept_of`), an update's."""
    kept = kept or {}
    access: bool | str = {PUBLIC: False, AUTHORIZED: True}.get(form.access, form.access)
    body: dict[str, Any] = {"cluster": form.cluster, "access_authorization": access}
    if form.name:
        body["name"] = form.name
    if form.bento:
        body["bento"] = form.bento
    envs: list[dict[str, str]] = []
    rows: list[int] = []
    for index, row in enumerate(form.envs):
        if row.name or row.value:
            envs.append({"name": row.name, "value": row.value})
            rows.append(index)
    body["envs"] = envs
    if form.secrets:
        body["secrets"] = list(form.secrets)
    if kept.get("labels"):
        body["labels"] = list(kept["labels"])
    kept_service = dict(kept.get("service") or {})
    scaling = dict(kept_service.pop("scaling", None) or {})
    for key in ("min_replicas", "max_replicas"):
        value = _integer(getattr(form, key))
        if value is not None:
            scaling[key] = value
    config: dict[str, Any] = {**kept_service, "instance_type": form.instance_type or None}
    if scaling:
        config["scaling"] = scaling
    body["services"] = {service or "default": config}
    return Body(body, tuple(rows))


LOCATED = re.compile(
    r"\Ainvalid (?:request body|deployment config): (?P<loc>[^:\s]+): (?P<problem>.+)\Z", re.S
)
ENV_LOC = re.compile(r"\Aenvs\[(?P<index>[0-9]+)\](?:\.(?P<part>name|value))?")
SERVICE_LOC = re.compile(r"\Aservices\.[^.\s]+(?:\.(?P<rest>.+))?\Z")
SERVICE_FIELDS = {
    "instance_type": "instance_type",
    "scaling.min_replicas": "min_replicas",
    "scaling.max_replicas": "max_replicas",
    "scaling": "max_replicas",
}
TOP_FIELDS = {
    "name": "name",
    "cluster": "cluster",
    "access_authorization": "access",
    "bento": "version",
    "envs": "envs",
}


FIELD_LABELS = {
    "cluster": "Cluster",
    "name": "Name",
    "access": "Access",
    "version": "Version",
    "instance_type": "Instance type",
    "min_replicas": "Min replicas",
    "max_replicas": "Max replicas",
    "envs": "Envs",
    "secrets": "Secrets",
}


@dataclass(frozen=True)
class FieldError:
    field: str
    """The form field the error is shown beside (``env-<row>-name`` for an env row's name);
    empty for the form as a whole."""
    message: str

    @property
    def label(self) -> str:
        """The field's label, as the form shows it."""
        return FIELD_LABELS.get(self.field, "Envs" if self.field.startswith("env-") else "")


def _field_of_loc(loc: str, env_rows: tuple[int, ...]) -> str:
    if loc in TOP_FIELDS:
        return TOP_FIELDS[loc]
    if loc.startswith("secrets"):
        return "secrets"
    env = ENV_LOC.match(loc)
    if env:
        index = int(env["index"])
        if index >= len(env_rows):
            return "envs"
        return f"env-{env_rows[index]}-{env['part'] or 'name'}"
    service = SERVICE_LOC.match(loc)
    if service:
        return SERVICE_FIELDS.get(service["rest"] or "", "")
    return ""


def field_error(message: str, env_rows: tuple[int, ...] = ()) -> FieldError:
    """The form field an API error names, and what to show beside it."""
    located = LOCATED.match(message)
    if located:
        found = _field_of_loc(located["loc"], env_rows)
        return FieldError(found, located["problem"] if found else message)
    if message.startswith("bento "):
        return FieldError("version", message)
    if message.startswith("deployment ") and "already exists" in message:
        return FieldError("name", message)
    if message.startswith("cluster "):
        return FieldError("cluster", message)
    if message.startswith("asks for "):
        return FieldError("instance_type", message)
    return FieldError("", message)
