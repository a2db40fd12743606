"""The request bodies the API reads, declared once as typed models.

Routes check a body's shape against its model before any rule of the domain runs; the models
also make the OpenAPI document. Types are strict (``"yes"`` is not a bool), names and sizes are
bounded, and a body may carry fields the local control plane does not read (BentoCloud clients
send more). A failure becomes one short Invalid naming the field, never echoing the value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ...tags import shown
from ..errors import Invalid

__all__ = [
    "AnalysisBody",
    "ApiTokenBody",
    "ArtifactBody",
    "ArtifactPatchBody",
    "CanarySplitBody",
    "DeploymentBody",
    "FinishUploadBody",
    "RepositoryBody",
    "RevisionBody",
    "SecretBody",
    "SecretUpdateBody",
    "ShadowBody",
    "ShadowPlan",
    "parse",
]

Name = Annotated[StrictStr, Field(max_length=253)]

# Names whose patterns the document publishes (so generated requests can be valid); the domain
# checks them, and their lengths, with its own hints.
DeploymentName = Annotated[
    StrictStr, Field(json_schema_extra={"pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"})
]
RepositoryName = Annotated[
    StrictStr, Field(json_schema_extra={"pattern": r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$"})
]
Version = Annotated[
    StrictStr, Field(json_schema_extra={"pattern": r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$"})
]
Text = Annotated[StrictStr, Field(max_length=64 * 1024)]


def _scalar(value: object) -> object:
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise PydanticCustomError("scalar_type", "Input should be a string, number, boolean or null")


Scalar = Annotated[
    Any,
    PlainValidator(_scalar),
    WithJsonSchema(
        {"anyOf": [{"type": t} for t in ("string", "integer", "number", "boolean", "null")]}
    ),
]
"""An env or label value: one error at the field itself (a union would name each member)."""
RouteType = Literal["random", "header", "query"]


class Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class EnvItem(Body):
    name: Name
    value: Scalar = None


class LabelItem(Body):
    key: Name
    value: Scalar = None


class Scaling(Body):
    min_replicas: StrictInt | None = None
    max_replicas: StrictInt | None = None


class ServiceConfig(Body):
    instance_type: Name | None = None
    scaling: Scaling | None = None
    envs: list[EnvItem | None] | None = None
    deployment_strategy: Name | None = None
    cold_start_timeout: StrictInt | None = None
    config_overrides: dict[str, Any] | None = None


class CanaryVersion(Body):
    bento: Name | None = None
    weight: StrictInt | None = None
    envs: list[EnvItem | None] | None = None


class CanaryConfig(Body):
    route_type: RouteType | None = None
    route_by: Name | None = None
    versions: dict[Name, CanaryVersion] | None = None


class DeploymentBody(Body):
    """A deployment's create or update (BentoCloud's v2 config)."""

    name: DeploymentName | None = None
    bento: Name | None = None
    cluster: Name | None = None
    dev: StrictBool | None = None
    access_authorization: StrictBool | None = None
    envs: list[EnvItem | None] | None = None
    labels: list[LabelItem | None] | None = None
    secrets: list[Name] | None = None
    services: dict[Name, ServiceConfig | None] | None = None
    canary: CanaryConfig | None = None


class RevisionBody(Body):
    """Rollback and promote: the revision (``r2``, or a uid); none for the default. A
    rollback's ``reason`` (why, with the figures) goes into its event."""

    revision: Name | None = None
    reason: Annotated[StrictStr, Field(max_length=1000)] | None = None
    force: StrictBool = False
    """Roll back to a revision that never served (failed or discarded as a candidate)."""


class ApiTokenBody(Body):
    """A new API token: its name, BentoCloud scopes, and an optional expiry (ISO 8601)."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None
    scopes: (
        Annotated[
            list[
                Literal[
                    "api",
                    "read_organization",
                    "write_organization",
                    "read_cluster",
                    "write_cluster",
                    "approve",
                ]
            ],
            Field(max_length=6),
        ]
        | None
    ) = None
    expired_at: Annotated[StrictStr, Field(max_length=64)] | None = None


class CanarySplitBody(Body):
    """The candidate's share of the endpoint's requests."""

    weight: Annotated[StrictInt, Field(ge=0, le=100)]
    route_type: RouteType | None = None
    route_by: Name | None = None


class CanaryPlan(Body):
    """A canary analysis the control plane runs (``bentoship.CanaryPolicy``'s fields)."""

    steps: list[Annotated[StrictInt, Field(ge=1, le=100)]] | None = Field(None, max_length=100)
    interval: Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)] | None = None
    min_requests: Annotated[StrictInt, Field(ge=1)] | None = None
    min_success_rate: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    max_p99_ratio: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    p99_slack_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    step_timeout: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] | None = None
    route_type: RouteType | None = None
    route_by: Name | None = None
    model_config = ConfigDict(extra="forbid", strict=True)


ApiName = Annotated[StrictStr, Field(min_length=1, max_length=253)]


class ShadowPlan(Body):
    """A shadow analysis the control plane runs (``bentoship.ShadowPolicy``'s fields)."""

    percent: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    min_pairs: Annotated[StrictInt, Field(ge=1, le=10**7)] | None = None
    min_agreement: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    max_p99_ratio: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    p99_slack_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    timeout: Annotated[float, Field(gt=0, le=30 * 86400, allow_inf_nan=False)] | None = None
    apis: list[ApiName] | None = Field(None, min_length=1, max_length=100)
    model_config = ConfigDict(extra="forbid", strict=True)


class AnalysisBody(Body):
    """The analysis of the held candidate: a canary plan or a shadow plan."""

    canary: CanaryPlan | None = None
    shadow: ShadowPlan | None = None
    model_config = ConfigDict(extra="forbid", strict=True)


class ShadowBody(Body):
    """Mirror ``percent`` of the endpoint's requests (to ``apis``, or every API) to the held
    candidate; 0 stops."""

    percent: Annotated[StrictInt, Field(ge=0, le=100)]
    apis: list[ApiName] | None = Field(None, min_length=1, max_length=100)
    model_config = ConfigDict(extra="forbid", strict=True)


class RepositoryBody(Body):
    """A bento or model repository."""

    name: RepositoryName
    description: Text | None = None


class ArtifactPatchBody(Body):
    """A change to a bento or model version's record."""

    version: Version | None = None
    description: Text | None = None
    manifest: dict[str, Any] | None = None
    labels: list[LabelItem] | None = None
    build_at: Name | None = None


class ArtifactBody(ArtifactPatchBody):
    """A bento or model version's record, created."""

    version: Version


class FinishUploadBody(Body):
    status: Literal["success", "failed"] | None = None
    reason: Text | None = None


SecretName = Annotated[
    StrictStr,
    Field(json_schema_extra={"pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"}),
]
SecretPath = Annotated[StrictStr, Field(max_length=1024)]


class SecretItemBody(Body):
    """One key of a secret; its value is sent, never answered."""

    key: Name
    sub_path: SecretPath | None = None
    value: Text | None = None


class SecretContentBody(Body):
    type: Literal["env", "mountfile"]
    items: Annotated[list[SecretItemBody], Field(min_length=1, max_length=100)]
    path: SecretPath | None = None
    stage: Literal["build", "runtime", "all"] | None = None


class SecretBody(Body):
    """A new secret (``bentoml secret create``)."""

    name: SecretName
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None
    content: SecretContentBody


class SecretUpdateBody(Body):
    """A secret's new content (``bentoml secret apply``); an item without a value keeps its own."""

    description: Annotated[StrictStr, Field(max_length=1024)] | None = None
    content: SecretContentBody


M = TypeVar("M", bound=BaseModel)
MAX_SHOWN_KEY = 64


def _where(loc: tuple[int | str, ...]) -> str:
    """The field's path; a long key in it (a service's name) cut as :func:`shown` cuts values."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        name = part if len(part) <= MAX_SHOWN_KEY else shown(part)
        text += f".{name}" if text else name
    return text or "body"


def parse(model: type[M], data: dict[str, Any]) -> M:
    """``data`` checked against ``model``; Invalid naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise Invalid(f"invalid request body: {_where(first['loc'])}: {first['msg']}") from None
