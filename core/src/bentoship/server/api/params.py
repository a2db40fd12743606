"""The query parameters the API reads, declared once as typed models.

Query values arrive as text, so the models convert (``"5"`` is 5) but stay bounded: numbers are
finite and in range, strings short. Parameters a route does not read are ignored (BentoCloud
clients send more). A failure becomes one short Invalid naming the parameter, never echoing
its value; the models also make the OpenAPI document's parameters.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.requests import HTTPConnection

from ..errors import Invalid

__all__ = [
    "AnalysisParams",
    "ApiTokenListParams",
    "ClusterParams",
    "ListParams",
    "LogsParams",
    "Moment",
    "SecretListParams",
    "ShadowPairsParams",
    "VersionListParams",
    "WaitParams",
    "WriteParams",
    "moment",
    "query",
]

MAX_QUERY_CHARACTERS = 4096
MAX_WAIT_SECONDS = 60.0
Short = Annotated[str, Field(max_length=253)]
Filter = Annotated[str, Field(max_length=MAX_QUERY_CHARACTERS)]
Count = Annotated[int, Field(ge=0, le=10**9)]


DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def _plain_decimal(value: object) -> object:
    """Only plain decimals from a query (``1_0``, ``0x10`` and ``1e3`` are Python's, not ours)."""
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise ValueError("must be a plain decimal number of seconds, such as 30 or 0.5")
    return value


class Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ClusterParams(Params):
    """Routes of a cluster: the local control plane has one, ``local``."""

    cluster: Short | None = None


class WriteParams(ClusterParams):
    """A deployment's create or update: ``promotion=manual`` holds the new revision."""

    promotion: Literal["auto", "manual"] = "auto"


class VersionListParams(Params):
    """BentoCloud's list filter (see :mod:`.query`) and a page size."""

    q: Filter = ""
    search: Filter = ""
    count: Count | None = None


class ListParams(ClusterParams, VersionListParams):
    """A page of deployments."""

    start: Count = 0


class ApiTokenListParams(Params):
    """A page of API tokens, optionally those whose name holds ``search``."""

    start: Count = 0
    count: Count | None = None
    search: Short | None = None


class SecretListParams(ClusterParams):
    """A page of secrets, optionally those whose name holds ``search`` (or ``q``)."""

    start: Count = 0
    count: Count | None = None
    search: Short | None = None
    q: Filter | None = None


class WaitParams(Params):
    """A long poll: the status and phase the caller knows, at most ``timeout`` seconds."""

    status: Short | None = None
    phase: Short | None = None
    timeout: Annotated[
        float,
        BeforeValidator(_plain_decimal),
        Field(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False),
    ] = 30.0


class AnalysisParams(Params):
    """A long poll on an analysis: it answers once more than ``seen`` steps are judged or the
    analysis ended, or after ``timeout`` seconds (0: at once)."""

    seen: Annotated[int, Field(ge=-1, le=1000)] = -1
    timeout: Annotated[
        float,
        BeforeValidator(_plain_decimal),
        Field(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False),
    ] = 0.0


class ShadowPairsParams(Params):
    """Pairs after ``since`` (seconds since the epoch), oldest first, at most ``limit``."""

    since: Annotated[float, BeforeValidator(_plain_decimal), Field(ge=0, allow_inf_nan=False)] = 0.0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class LogsParams(Params):
    """The last ``tail`` lines of a revision's log."""

    tail: Count = 200


DURATION = re.compile(r"(?:\d{1,9}(?:\.\d{1,6})?(?:ms|s|m|h|d|w))+")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EPOCH = re.compile(r"\d{1,12}(?:\.\d{1,9})?")


def moment(text: str, now: float) -> float:
    """Epoch seconds of ``text``: epoch seconds, ISO-8601 (UTC unless it says), or a duration
    (``10m``, ``2h``, ``30s``, ``1d``, ``1h30m``) before ``now``; ValueError otherwise."""
    if DURATION.fullmatch(text):
        return now - sum(float(n) * SECONDS[unit] for n, unit in DURATION_PART.findall(text))
    if EPOCH.fullmatch(text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "send epoch seconds, ISO-8601 (2026-01-02T03:04:05Z) or a time ago (30s, 10m, 2h, 1d)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _valid_moment(text: str) -> str:
    moment(text, 0.0)
    return text


Moment = Annotated[str, Field(max_length=64), AfterValidator(_valid_moment)]


P = TypeVar("P", bound=Params)


def query(model: type[P], request: HTTPConnection) -> P:
    """``request``'s query parameters read by ``model``; Invalid naming the first wrong one."""
    values = {key: value for key, value in request.query_params.items() if value != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "query"
        raise Invalid(f"invalid query parameter {where}: {first['msg']}") from None
