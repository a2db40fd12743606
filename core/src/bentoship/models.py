"""Public records passed between the client, the steps and the orchestrators."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InvalidRequestError

__all__ = [
    "DeploymentConfig",
    "DeploymentEvent",
    "DeploymentInfo",
    "LogEntry",
    "ReplicaCount",
    "RevisionInfo",
    "Rollout",
    "RolloutLike",
    "TrafficReport",
    "rollout_target",
]


def _target(revision: dict[str, Any] | None) -> dict[str, Any]:
    targets = (revision or {}).get("targets") or []
    main = next((t for t in targets if t and t.get("name") == "main"), None)
    return main or (targets[0] if targets and targets[0] else {})


def _bento_tag(target: dict[str, Any]) -> str:
    bento = target.get("bento") or {}
    repository = (bento.get("repository") or {}).get("name")
    return f"{repository}:{bento.get('name')}" if repository else ""


@dataclass(frozen=True)
class ReplicaCount:
    """The serving revision's replicas (local control plane): ready to take requests, and
    desired (running, not draining), beside its ``scaling`` bounds."""

    ready: int
    desired: int
    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.ready}/{self.desired} replicas ready (min {self.min}, max {self.max})"

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> ReplicaCount | None:
        if not data:
            return None
        return cls(*(int(data.get(key) or 0) for key in ("ready", "desired", "min", "max")))


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as the server last reported it."""

    name: str
    status: str
    url: str
    bento: str
    config: dict[str, Any]
    target_revision: str | None = None
    serving_revision: str | None = None
    reason: str = ""
    target_phase: str = ""
    """The target revision's phase (local control plane): ``candidate`` while it is held."""
    candidate_revision: str | None = None
    """The revision held for verification, while there is one (local control plane)."""
    candidate_url: str = ""
    """Where the candidate answers before it takes live traffic (local control plane)."""
    canary: dict[str, Any] | None = None
    """The candidate's share of the endpoint: ``{weight, route_type, route_by}``."""
    recreate: str = ""
    """Why the target revision's rollout stops the serving one first (only its GPUs fit it)."""
    replicas: ReplicaCount | None = None
    """The serving revision's replicas (local control plane); None where the server has none."""
    serving_bento: str = ""
    """The serving revision's bento (local control plane); ``bento`` is the target's."""
    candidate_bento: str = ""
    """The held candidate's bento, while there is one (local control plane)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeploymentInfo:
        latest = data.get("latest_revision")
        target = _target(latest)
        extra = data.get("bentoship") or {}
        urls = data.get("urls") or []
        return cls(
            name=str(data["name"]),
            status=str(data.get("status", "unknown")),
            url=str(urls[0]) if urls else "",
            bento=_bento_tag(target),
            config=dict(target.get("config") or {}),
            target_revision=extra.get("target_revision") or _revision_ref(latest),
            serving_revision=extra.get("serving_revision"),
            reason=str(extra.get("reason") or ""),
            target_phase=str(extra.get("target_phase") or ""),
            candidate_revision=extra.get("candidate_revision"),
            candidate_url=str(extra.get("candidate_url") or ""),
            canary=extra.get("canary"),
            recreate=str(extra.get("recreate") or ""),
            replicas=ReplicaCount.from_api(extra.get("replicas")),
            serving_bento=str(extra.get("serving_bento") or ""),
            candidate_bento=str(extra.get("candidate_bento") or ""),
            raw=data,
        )


def _revision_ref(revision: dict[str, Any] | None) -> str | None:
    """How a revision is named: its name (``r3``) when the server gives one, else its uid."""
    if not revision:
        return None
    return revision.get("name") or revision.get("uid")


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of a deployment (from the local control plane's revisions extension)."""

    uid: str
    name: str
    bento: str
    config: dict[str, Any]
    phase: str
    serving: bool
    warm: bool
    reason: str
    created_at: str
    port: int | None = None
    pid: int | None = None
    requests: int = 0
    errors: int = 0

    @property
    def seq(self) -> int:
        """The revision's number: 2 for ``r2`` (0 when the server names it otherwise)."""
        digits = self.name[1:] if self.name.startswith("r") else ""
        return int(digits) if digits.isdigit() else 0

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RevisionInfo:
        target = _target(data)
        extra = data.get("bentoship") or {}
        return cls(
            uid=str(data["uid"]),
            name=str(data.get("name", "")),
            bento=_bento_tag(target) or str(extra.get("bento", "")),
            config=dict(target.get("config") or {}),
            phase=str(extra.get("phase", data.get("status", ""))),
            serving=bool(extra.get("serving", data.get("status") == "active")),
            warm=bool(extra.get("warm", False)),
            reason=str(extra.get("reason") or ""),
            created_at=str(data.get("created_at", "")),
            port=extra.get("port"),
            pid=extra.get("pid"),
            requests=int(extra.get("requests") or 0),
            errors=int(extra.get("errors") or 0),
        )


@dataclass(frozen=True)
class TrafficReport:
    """What the endpoint counted per revision: requests, 5xx answers and a latency histogram.

    ``latency_buckets[name][i]`` counts answers that took at most ``latency_bounds[i]`` seconds
    (and more than the bound before); the last bucket counts the slower ones. Counts only grow,
    so the difference of two reports is the traffic between them.
    """

    latency_bounds: tuple[float, ...]
    requests: dict[str, int]
    errors: dict[str, int]
    latency_buckets: dict[str, tuple[int, ...]]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TrafficReport:
        items = data.get("revisions") or []
        return cls(
            latency_bounds=tuple(float(b) for b in data.get("latency_bounds") or ()),
            requests={str(i["revision"]): int(i["requests"]) for i in items},
            errors={str(i["revision"]): int(i["errors"]) for i in items},
            latency_buckets={
                str(i["revision"]): tuple(int(c) for c in i["latency_buckets"]) for i in items
            },
        )


@dataclass(frozen=True)
class LogEntry:
    """One line of a deployment's log: when, from which revision and stream."""

    time: str
    revision: str
    stream: str
    line: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> LogEntry:
        return cls(str(data["time"]), str(data["revision"]), str(data["stream"]), str(data["line"]))

    def __str__(self) -> str:
        return f"{self.time} {self.revision} {self.stream} {self.line}"


@dataclass(frozen=True)
class DeploymentEvent:
    """Something that happened to a deployment (see the control plane's event kinds)."""

    id: int
    time: str
    kind: str
    revision: str | None
    message: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeploymentEvent:
        revision = data.get("revision")
        return cls(
            int(data["id"]),
            str(data["time"]),
            str(data["kind"]),
            str(revision) if revision else None,
            str(data["message"]),
        )

    def __str__(self) -> str:
        return f"{self.time} {self.kind} {self.revision or '-'} {self.message}"


def _pairs(value: object, option: str, key: str) -> dict[str, str]:
    """``envs`` or ``labels`` as a mapping, from a mapping or from BentoCloud's list of
    ``{"<key>": ..., "value": ...}`` (``name`` for envs, ``key`` for labels; either is taken)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list) and all(
        isinstance(item, Mapping) and (item.get(key) or item.get("name") or item.get("key"))
        for item in value
    ):
        return {
            str(item.get(key) or item.get("name") or item.get("key")): str(item.get("value", ""))
            for item in value
        }
    raise InvalidRequestError(
        f"{option}: expected a mapping {{NAME: value}} or BentoCloud's list "
        f'[{{"{key}": NAME, "value": value}}], got {type(value).__name__}'
        + (" of other items" if isinstance(value, list) else "")
    )


@dataclass(frozen=True)
class DeploymentConfig:
    """What a deployment runs with, besides its bento."""

    instance_type: str | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    envs: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    """Names of secrets (``bentoml secret create``) the deployment gets."""
    labels: dict[str, str] = field(default_factory=dict)
    access_authorization: bool = False
    strategy: str | None = None

    def __post_init__(self) -> None:
        for key in ("min_replicas", "max_replicas"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidRequestError(f"{key} must be a whole number >= 0, got {value!r}")
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise InvalidRequestError(
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeploymentConfig:
        """Accept the plain mapping that orchestrators pass around (unknown keys are errors)."""
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequestError(
                f"unknown deployment config key {unknown[0]!r}; "
                f"use one of {', '.join(sorted(known))}"
            )
        for key in ("min_replicas", "max_replicas"):
            value = data.get(key)
            if isinstance(value, float) and value.is_integer():
                data[key] = int(value)
        data["envs"] = _pairs(data.get("envs"), "envs", "name")
        data["secrets"] = [str(name) for name in data.get("secrets") or []]
        data["labels"] = _pairs(data.get("labels"), "labels", "key")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_api(self, service: str) -> dict[str, Any]:
        """The BentoCloud config body for ``service`` (the bento's entry service)."""
        scaling: dict[str, int] = {}
        if self.min_replicas is not None:
            scaling["min_replicas"] = self.min_replicas
        if self.max_replicas is not None:
            scaling["max_replicas"] = self.max_replicas
        service_config: dict[str, Any] = {}
        if self.instance_type:
            service_config["instance_type"] = self.instance_type
        if scaling:
            service_config["scaling"] = scaling
        if self.strategy:
            service_config["deployment_strategy"] = self.strategy
        body: dict[str, Any] = {
            "access_authorization": self.access_authorization,
            "envs": [{"name": k, "value": v} for k, v in sorted(self.envs.items())],
            "labels": [{"key": k, "value": v} for k, v in sorted(self.labels.items())],
            "services": {service: service_config} if service else {},
        }
        if self.secrets:
            body["secrets"] = list(self.secrets)
        return body


def config_matches(wanted: dict[str, Any], current: dict[str, Any]) -> bool:
    """True when every setting in ``wanted`` already holds in ``current`` (a server config)."""

    def pairs(items: Any, key: str) -> dict[str, str]:
        return {str(i[key]): str(i.get("value", "")) for i in items or [] if i}

    if bool(wanted.get("access_authorization")) != bool(current.get("access_authorization")):
        return False
    if pairs(wanted.get("envs"), "name") != pairs(current.get("envs"), "name"):
        return False
    if list(wanted.get("secrets") or []) != list(current.get("secrets") or []):
        return False
    for name, service in (wanted.get("services") or {}).items():
        have = (current.get("services") or {}).get(name) or {}
        for key, value in service.items():
            if key == "scaling":
                scaling = have.get("scaling") or {}
                if any(scaling.get(k) != v for k, v in value.items()):
                    return False
            elif have.get(key) != value:
                return False
    return True


@dataclass(frozen=True)
class Rollout:
    """What ``deploy`` did, and everything a later step needs to wait for or undo it.

    It is JSON-serialisable, so orchestrators pass it between tasks (XCom, KFP and Flyte outputs).
    """

    name: str
    bento: str
    revision: str | None
    endpoint_url: str
    previous_revision: str | None = None
    previous_bento: str | None = None
    previous_config: dict[str, Any] | None = None
    created: bool = False
    changed: bool = True
    candidate: bool = False
    """True while the revision is held for verification: it is not serving the endpoint yet."""
    candidate_url: str = ""
    """Where a candidate answers before it is promoted (its smoke test calls this URL)."""

    @property
    def url(self) -> str:
        """The URL to test this rollout on: the candidate URL while it is a candidate."""
        return self.candidate_url if self.candidate and self.candidate_url else self.endpoint_url

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rollout:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise InvalidRequestError(
                f"not a bentoship rollout record ({exc}); pass the output of the deploy step"
            ) from None

    @classmethod
    def from_json(cls, text: str) -> Rollout:
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidRequestError(
                "rollout is not valid JSON; pass the output of the deploy step"
            ) from None
        if not isinstance(data, dict):
            raise InvalidRequestError("rollout JSON must be an object; pass the deploy output")
        return cls.from_dict(data)

    @classmethod
    def parse(cls, value: Rollout | Mapping[str, Any] | str) -> Rollout:
        """A Rollout from a Rollout, its dict (XCom), or its JSON text (KFP and Flyte outputs)."""
        if isinstance(value, Rollout):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(dict(value))
        if isinstance(value, str):
            return cls.from_json(value)
        raise InvalidRequestError(
            f"a rollout must be a Rollout, a dict or JSON text, not {type(value).__name__}; "
            "pass the output of the deploy step"
        )


RolloutLike = Rollout | Mapping[str, Any] | str
"""What every step that acts on a rollout accepts: a Rollout, its dict or JSON, or a name."""


def rollout_target(value: RolloutLike) -> Rollout | str:
    """A Rollout for a Rollout, dict or JSON object text; other text (a name or URL) as it is."""
    if isinstance(value, str) and not value.strip().startswith("{"):
        text = value.strip()
        if not text:
            raise InvalidRequestError(
                "give a rollout (the deploy step's output) or a deployment name"
            )
        return text
    return Rollout.parse(value)
