"""The API's OpenAPI 3.1 document, made from the app's routes and the body models.

Every route the app serves is listed, with its path parameters, the query parameters it reads,
the body model it checks (see :mod:`.bodies`), the token it needs, and its answers: a JSON
object on success, ``{"error": "..."}`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from ..._version import __version__
from ..paths import PUBLIC_PATHS
from .approvals import ApprovalBody, DecisionBody
from .bodies import (
    AnalysisBody,
    ApiTokenBody,
    ArtifactBody,
    ArtifactPatchBody,
    CanarySplitBody,
    DeploymentBody,
    FinishUploadBody,
    RepositoryBody,
    RevisionBody,
    SecretBody,
    SecretUpdateBody,
    ShadowBody,
)
from .logs import LogDownloadParams, LogSearchParams
from .monitoring import MonitoringParams
from .observability import PROMETHEUS_PATH, EventsParams, MetricsParams
from .params import (
    AnalysisParams,
    ApiTokenListParams,
    ClusterParams,
    ListParams,
    LogsParams,
    Params,
    SecretListParams,
    ShadowPairsParams,
    VersionListParams,
    WaitParams,
    WriteParams,
)
from .quality import FeedbackParams, QualityParams, WatermarkParams
from .traces import TracesParams
from .webhooks import WebhookBody

__all__ = ["document"]

PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/api/v2/deployments"): DeploymentBody,
    ("PUT", "/api/v2/deployments/{name}"): DeploymentBody,
    ("POST", "/api/v2/deployments/{name}/rollback"): RevisionBody,
    ("POST", "/api/v2/deployments/{name}/promote"): RevisionBody,
    ("PUT", "/api/v2/deployments/{name}/canary"): CanarySplitBody,
    ("PUT", "/api/v2/deployments/{name}/analysis"): AnalysisBody,
    ("PUT", "/api/v2/deployments/{name}/shadow"): ShadowBody,
    ("POST", "/api/v2/deployments/{name}/approvals"): ApprovalBody,
    ("POST", "/api/v1/bentoship/webhooks"): WebhookBody,
    ("POST", "/api/v2/deployments/{name}/approvals/{id}/approve"): DecisionBody,
    ("POST", "/api/v2/deployments/{name}/approvals/{id}/reject"): DecisionBody,
    ("POST", "/api/v1/api_tokens"): ApiTokenBody,
    ("POST", "/api/v1/org_secrets"): SecretBody,
    ("PATCH", "/api/v1/org_secrets/{name}"): SecretUpdateBody,
}
for _kind in ("bento", "model"):
    _items = f"/api/v1/{_kind}_repositories/{{repo}}/{_kind}s"
    BODIES[("POST", f"/api/v1/{_kind}_repositories")] = RepositoryBody
    BODIES[("POST", _items)] = ArtifactBody
    BODIES[("PATCH", f"{_items}/{{version}}")] = ArtifactPatchBody
    BODIES[("PATCH", f"{_items}/{{version}}/{{step}}")] = FinishUploadBody

DEPLOYMENT = "/api/v2/deployments/{name}"
QUERIES: dict[tuple[str, str], type[Params]] = {
    ("GET", "/api/v2/deployments"): ListParams,
    ("GET", "/api/v1/api_tokens"): ApiTokenListParams,
    ("GET", "/api/v1/org_secrets"): SecretListParams,
    ("POST", "/api/v1/org_secrets"): ClusterParams,
    ("GET", "/api/v1/org_secrets/{name}"): ClusterParams,
    ("PATCH", "/api/v1/org_secrets/{name}"): ClusterParams,
    ("DELETE", "/api/v1/org_secrets/{name}"): ClusterParams,
    ("POST", "/api/v2/deployments"): WriteParams,
    ("PUT", DEPLOYMENT): WriteParams,
    ("GET", DEPLOYMENT): ClusterParams,
    ("GET", f"{DEPLOYMENT}/pods"): ClusterParams,
    ("DELETE", DEPLOYMENT): ClusterParams,
    ("POST", f"{DEPLOYMENT}/terminate"): ClusterParams,
    ("GET", "/api/v1/instance_types"): ClusterParams,
    ("GET", f"{DEPLOYMENT}/wait"): WaitParams,
    ("GET", f"{DEPLOYMENT}/analysis"): AnalysisParams,
    ("GET", f"{DEPLOYMENT}/shadow/pairs"): ShadowPairsParams,
    ("GET", f"{DEPLOYMENT}/approvals/{{id}}"): AnalysisParams,
    ("POST", f"{DEPLOYMENT}/feedback"): FeedbackParams,
    ("GET", f"{DEPLOYMENT}/feedback"): WatermarkParams,
    ("GET", f"{DEPLOYMENT}/quality"): QualityParams,
    ("GET", f"{DEPLOYMENT}/traces"): TracesParams,
    ("GET", f"{DEPLOYMENT}/revisions/{{revision}}/logs"): LogsParams,
    ("GET", "/api/v1/bento_repositories/{repo}/bentos"): VersionListParams,
    ("GET", "/api/v1/model_repositories/{repo}/models"): VersionListParams,
    ("GET", "/api/v1/bentos"): VersionListParams,
    ("GET", "/api/v1/models"): VersionListParams,
    ("GET", f"{DEPLOYMENT}/logs"): LogSearchParams,
    ("GET", f"{DEPLOYMENT}/logs/download"): LogDownloadParams,
    ("GET", f"{DEPLOYMENT}/metrics"): MetricsParams,
    ("GET", f"{DEPLOYMENT}/events"): EventsParams,
    ("GET", f"{DEPLOYMENT}/monitoring/{{monitor}}"): MonitoringParams,
}
"""Each route's query parameters, by their model (see :mod:`.params`)."""
LINKS: dict[tuple[str, str], list[tuple[str, str, dict[str, str]]]] = {
    ("POST", "/api/v2/deployments"): [
        (method, path, {"name": "$response.body#/name"})
        for method, path in (
            ("GET", DEPLOYMENT),
            ("PUT", DEPLOYMENT),
            ("DELETE", DEPLOYMENT),
            ("POST", f"{DEPLOYMENT}/terminate"),
            ("GET", f"{DEPLOYMENT}/revisions"),
        )
    ],
}
for _kind in ("bento", "model"):
    _repos = f"/api/v1/{_kind}_repositories"
    _one = f"{_repos}/{{repo}}/{_kind}s/{{version}}"
    LINKS[("POST", _repos)] = [
        ("GET", f"{_repos}/{{repo}}", {"repo": "$response.body#/name"}),
        ("POST", f"{_repos}/{{repo}}/{_kind}s", {"repo": "$response.body#/name"}),
    ]
    LINKS[("POST", f"{_repos}/{{repo}}/{_kind}s")] = [
        (method, path, {"repo": "$request.path.repo", "version": "$response.body#/version"})
        for method, path in (("GET", _one), ("PATCH", _one))
    ]
"""What a create answers that later calls use: OpenAPI links, which stateful testing follows."""

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "maxLength": 1000}},
    "required": ["error"],
}


def operation_id(method: str, path: str) -> str:
    return f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}"


def query_parameters(model: type[Params]) -> list[dict[str, Any]]:
    """``model``'s fields as OpenAPI query parameters (``null`` left out: a query has no null)."""
    found = []
    for name, schema in model.model_json_schema()["properties"].items():
        options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
        plain = {k: v for k, v in options[0].items() if k not in ("title", "default")}
        found.append({"name": name, "in": "query", "required": False, "schema": plain})
    return found


def _operation(method: str, path: str, route: Route, defs: dict[str, Any]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PARAMETER.findall(route.path)
    ]
    params = QUERIES.get((method, path))
    if params is not None:
        parameters.extend(query_parameters(params))
    answer: dict[str, Any] = {"application/json": {"schema": {"type": ["object", "array"]}}}
    text = {"schema": {"type": "string"}}
    if path.endswith("/logs/download"):
        answer = {"text/plain": text, "application/x-ndjson": text}
    elif path.endswith("/download"):
        answer = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    elif path == PROMETHEUS_PATH:
        answer = {"text/plain": text}
    elif path.endswith("/logs"):
        answer["text/event-stream"] = text
    operation: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": (route.endpoint.__doc__ or route.name or "").strip().split("\n")[0],
        "parameters": parameters,
        "responses": {
            "200": {"description": "the answer", "content": answer},
            "default": {
                "description": "an error, in one line",
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }
    if path in PUBLIC_PATHS:
        operation["security"] = []
    links = {
        f"{target_method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', target)}": {
            "operationId": operation_id(target_method, target),
            "parameters": parameters_of,
        }
        for target_method, target, parameters_of in LINKS.get((method, path), [])
    }
    if links:
        operation["responses"]["200"]["links"] = links
    model = BODIES.get((method, path))
    if model is not None:
        required = any(field.is_required() for field in model.model_fields.values())
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": defs[model.__name__]}},
        }
    return operation


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``."""
    models = sorted(set(BODIES.values()), key=lambda m: m.__name__)
    refs, extra = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(extra.get("$defs", {}))
    defs = {m.__name__: refs[(m, "validation")] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = PARAMETER.sub(lambda match: "{" + match.group(1) + "}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, route, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bentoship local control plane", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "X-YATAI-API-TOKEN"}
            },
        },
        "security": [{"token": []}],
    }
