"""The Deploy form's pages: create a deployment, or update one, from the console.

The form (``console.deploy_form``) makes the body the REST API takes, and that body goes
through the same rules in the same order (``check_body``, the bento, ``config_for``, then the
controller), so the form accepts and refuses what the API does. The API's one-line error is
shown beside the form's field it names. Nothing is created or changed when a rule refuses the
body.

The deployment page's status follows a rollout live (:func:`live_status`): polled while the
target revision starts, then the page reloads once it settles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ...refs import entry_service
from .. import schemas
from ..api.common import Services, check_cluster
from ..api.deployments import deployment_json
from ..deploy_config import check_body, config_for, generated_name
from ..endpoint.try_tickets import TICKET_PARAM, issue_ticket
from ..errors import DomainError, NotFound
from ..gpu.inventory import Inventory
from ..registry.service import UploadStatus
from ..responses import SECURITY_HEADERS
from ..store import Deployment
from ..tokens import Principal
from .common import PageRenderer
from .deploy_form import (
    DeployForm,
    EnvRow,
    FieldError,
    body_of,
    field_error,
    form_of_revision,
    kept_of,
    read_form,
)

__all__ = [
    "LiveStatus",
    "TryIt",
    "VersionChoice",
    "deploy_context",
    "deploy_refusal",
    "instance_type_choices",
    "live_status",
    "routes",
    "settled_message",
    "try_it",
    "update_refusal",
    "version_choices",
]

MAX_VERSIONS = 50
"""Versions of a repository the form lists, newest first."""
MAX_FORM_FIELDS = 1000
UNSETTLED_STATUSES = frozenset({"deploying", "terminating", "image-building"})
FAILED_STATUSES = frozenset({"failed", "unhealthy"})
POLL_SECONDS = 2


def _refusal(principal: Principal | None, method: str, path: str, what: str) -> str:
    if principal is None:
        return f"Sign in with a token that has the write_cluster scope to {what}."
    if principal.may(method, path):
        return ""
    held = ", ".join(sorted(principal.scopes)) or "none"
    return (
        f"{what.capitalize()} needs the write_cluster scope (or api): this session's token "
        f"{principal.name} has {held}. Sign in with a token that has it."
    )


def deploy_refusal(principal: Principal | None) -> str:
    """Why this session may not create a deployment (as ``POST /api/v2/deployments`` would
    refuse it); empty when it may."""
    return _refusal(principal, "POST", "/api/v2/deployments", "deploy")


def update_refusal(principal: Principal | None, name: str) -> str:
    """Why this session may not update deployment ``name``; empty when it may."""
    return _refusal(principal, "PUT", f"/api/v2/deployments/{quote(name)}", "update")


@dataclass(frozen=True)
class TryIt:
    """The "Try it" link: the service's own Swagger UI, at its endpoint's ``/``."""

    href: str
    refusal: str
    """Why a browser link cannot open it (the endpoint needs a token); empty when it can."""


def try_it(url: str, ticket: str | None, refusal: str = "") -> TryIt:
    """The link to the Swagger UI: plain for a public deployment (``ticket`` None); for an
    authorized one, with a ticket the endpoint trades for a cookie of that deployment alone."""
    href = url.rstrip("/") + "/"
    if ticket is None:
        return TryIt(href, "")
    if refusal:
        return TryIt(href, refusal)
    return TryIt(f"{href}?{urlencode({TICKET_PARAM: ticket})}", "")


@dataclass(frozen=True)
class LiveStatus:
    """The deployment's status as the page's title shows it, polled while a rollout runs."""

    status: str
    detail: str
    polling: bool
    key: str
    """What the page shows, so that a poll sees when it changed."""


def live_status(data: Mapping[str, Any]) -> LiveStatus:
    """From the deployment's JSON (the API's): polled while its status is not settled or its
    target revision starts."""
    status = str(data.get("status") or "")
    ext = data.get("bentoship") or {}
    target = ext.get("target_revision")
    phase = ext.get("target_phase")
    replicas = ext.get("replicas") or {}
    parts = []
    if target:
        parts.append(f"{target} {phase}" if phase else str(target))
    if replicas.get("desired"):
        parts.append(f"{replicas.get('ready', 0)}/{replicas['desired']} ready")
    polling = status in UNSETTLED_STATUSES or phase == "starting"
    key = f"{status}:{target or ''}:{phase or ''}"
    return LiveStatus(status, ", ".join(parts), polling, key)


def settled_message(name: str, data: Mapping[str, Any]) -> dict[str, str]:
    """What the page says once a rollout it followed settles: a notice, or the problem (with
    the server's reason) when it failed."""
    shown = live_status(data)
    reason = str((data.get("bentoship") or {}).get("reason") or "")
    if shown.status in FAILED_STATUSES:
        return {
            "problem": f"{name} is {shown.status}: {reason or shown.detail or 'no reason given'}"
        }
    return {"notice": f"{name} is {shown.status}" + (f": {shown.detail}." if shown.detail else ".")}


def deploy_context(
    services: Services, dep: Deployment, data: Mapping[str, Any], principal: Principal | None
) -> dict[str, Any]:
    """What the deployment page adds: its live status, the "Try it" link and the "Update"
    button (or why this session may not update)."""
    controller = services.controller
    serving = controller.serving_of(dep) or controller.target_of(dep)
    authorized = bool(serving and serving.config.get("access_authorization"))
    urls = data.get("urls") or [""]
    refusal = update_refusal(principal, dep.name)
    ticket = issue_ticket(services.settings.token, dep.name) if authorized else None
    denied = (
        "Authorized access: opening the service's pages from here needs a session that may "
        "change deployments (write_cluster or api); callers send 'Authorization: Bearer "
        "<the server's token>'"
        if refusal
        else ""
    )
    return {
        "live": live_status(data),
        "try_it": try_it(str(urls[0]), ticket, denied),
        "update_refusal": refusal,
    }


@dataclass(frozen=True)
class VersionChoice:
    version: str
    labels: tuple[tuple[str, str], ...]
    created: str


def _clock(stamp: str) -> str:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def version_choices(artifacts: Iterable[Any]) -> list[VersionChoice]:
    """The versions of one repository that finished uploading, newest first (as the store
    lists them), with their labels and creation time; at most MAX_VERSIONS."""
    found = []
    for item in artifacts:
        if item.upload_status != UploadStatus.SUCCESS:
            continue
        labels = tuple((str(x.get("key", "")), str(x.get("value", ""))) for x in item.labels)
        found.append(VersionChoice(item.version, labels, _clock(item.created_at)))
        if len(found) == MAX_VERSIONS:
            break
    return found


@dataclass(frozen=True)
class Choices:
    clusters: tuple[str, ...]
    repositories: tuple[str, ...]
    versions: list[VersionChoice]
    instance_types: list[tuple[str, str]]
    """(name, description), CPU types first, then the GPU types this machine offers."""
    gpus: str
    secrets: list[tuple[str, str]]
    """(name, what it holds: type and keys, never a value)."""


def _secret_summary(shape: Mapping[str, Any]) -> str:
    keys = ", ".join(str(i.get("key", "")) for i in shape.get("items") or [])
    kind = str(shape.get("type") or "")
    where = f" at {shape['path']}" if kind == "mountfile" and shape.get("path") else ""
    return f"{kind}{where}: {keys}" if keys else kind


def instance_type_choices(inventory: Inventory, current: str = "") -> list[tuple[str, str]]:
    """(name, description) of the instance types the API lists (``GET
    /api/v1/instance_types``: the CPU types, then the GPU types of this machine's GPUs), and
    ``current`` (an update's) when it is not among them."""
    offered = [(str(t["name"]), str(t["description"])) for t in schemas.instance_types(inventory)]
    if current and current not in dict(offered):
        offered.append((current, "not offered by this machine"))
    return offered


def routes(services: Services, page: PageRenderer) -> list[Route]:
    """The form's pages (before the deployment page's routes: ``/deployments/{name}/update``
    is one of them)."""
    controller, registry = services.controller, services.registry
    store = registry.store

    def principal_of(request: Request) -> Principal | None:
        found = request.scope.get("state", {}).get("principal")
        return found if isinstance(found, Principal) else None

    def repositories() -> tuple[str, ...]:
        return tuple(str(row["name"]) for row in store.list_repositories("bento"))

    def versions_of(repository: str) -> list[VersionChoice]:
        if not repository:
            return []
        return version_choices(store.list_artifacts("bento", repository))

    def choices(form: DeployForm) -> Choices:
        return Choices(
            clusters=(schemas.CLUSTER_NAME,),
            repositories=repositories(),
            versions=versions_of(form.repository),
            instance_types=instance_type_choices(controller.gpus.inventory, form.instance_type),
            gpus=controller.gpus.inventory.describe(),
            secrets=[(s.name, _secret_summary(s.shape)) for s in controller.secrets.book.find()],
        )

    def render(
        request: Request,
        form: DeployForm,
        *,
        updating: str | None = None,
        error: FieldError | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        principal = principal_of(request)
        refusal = update_refusal(principal, updating) if updating else deploy_refusal(principal)
        action = f"/deployments/{quote(updating)}/update" if updating else "/deploy"
        offered = choices(form)
        target = controller.target_of(controller.get(updating)) if updating else None
        return page(
            request,
            "deploy_form.html",
            deployed=target.bento if target else "",
            status=status,
            form=form,
            choices=offered,
            versions=offered.versions,
            rows=[*form.envs, EnvRow()],
            updating=updating,
            refusal=refusal,
            error=error,
            errors={error.field: error.message} if error else {},
            action=action,
        )

    def service_of(form: DeployForm) -> str:
        """The entry service of the chosen bento (its config's key); empty when unknown."""
        if not form.repository or not form.version:
            return ""
        item = registry.newest("bento", form.repository, form.version)
        return entry_service(item.manifest) if item else ""

    def first_choice() -> DeployForm:
        names = repositories()
        repository = names[0] if names else ""
        versions = versions_of(repository)
        return DeployForm(repository=repository, version=versions[0].version if versions else "")

    async def posted(request: Request) -> DeployForm:
        data = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        return read_form(data.multi_items())

    async def new_form(request: Request) -> Response:
        return render(request, first_choice())

    async def create(request: Request) -> Response:
        form = await posted(request)
        made = body_of(form, service_of(form))
        try:
            check_cluster(form.cluster)
            checked = check_body(made.body)
            assert checked.bento is not None  # check_body requires it without a canary
            tag, entry = registry.resolve_bento(checked.bento)
            config = config_for(checked, entry)
            name = checked.name or generated_name(tag)
            dep = await controller.create(name, tag, config)
        except DomainError as exc:
            wrong = field_error(exc.message, made.env_rows)
            return render(request, form, error=wrong, status=exc.status)
        started = controller.name_of(dep.target_revision) or "the first revision"
        return _redirect(dep.name, f"Deploying {dep.name}: {started} of {tag} is starting.")

    async def update_form(request: Request) -> Response:
        dep = controller.get(request.path_params["name"])
        target = controller.target_of(dep)
        form = (
            form_of_revision(dep.name, target.bento, target.config)
            if target
            else DeployForm(name=dep.name)
        )
        return render(request, form, updating=dep.name)

    async def update(request: Request) -> Response:
        name = request.path_params["name"]
        form = replace(await posted(request), name=name, cluster=schemas.CLUSTER_NAME)
        dep = controller.get(name)
        target = controller.target_of(dep)
        made = body_of(form, service_of(form), kept_of(target.config) if target else None)
        before = dep.target_revision
        try:
            checked = check_body(made.body)
            assert checked.bento is not None  # check_body requires it without a canary
            tag, entry = registry.resolve_bento(checked.bento)
            config = config_for(checked, entry)
            dep = await controller.update(name, tag, config)
        except DomainError as exc:
            wrong = field_error(exc.message, made.env_rows)
            return render(request, form, updating=name, error=wrong, status=exc.status)
        if dep.target_revision == before:
            return _redirect(name, f"No change: {name} already runs {tag} with this config.")
        started = controller.name_of(dep.target_revision)
        return _redirect(name, f"Updating {name}: {started} of {tag} is starting.")

    async def versions(request: Request) -> Response:
        repository = request.query_params.get("repository", "")
        found = versions_of(repository)
        chosen = DeployForm(repository=repository, version=found[0].version if found else "")
        return page(request, "deploy_versions.html", form=chosen, versions=found, errors={})

    async def env_row(request: Request) -> Response:
        return page(request, "deploy_env_row.html", row=EnvRow(), index="", errors={})

    async def live(request: Request) -> Response:
        """The title's status while a rollout runs; once it settles, on the Overview, the page
        again (its facts and replicas changed) with what it settled to."""
        try:
            dep = controller.get(request.path_params["name"])
        except NotFound:
            return Response(status_code=204, headers={"HX-Refresh": "true", **SECURITY_HEADERS})
        data = deployment_json(services, dep)
        shown = live_status(data)
        tab = request.query_params.get("tab", "overview")
        if shown.polling or tab != "overview":
            return page(request, "deploy_status.html", dep=dep, live=shown, tab=tab)
        query = urlencode(settled_message(dep.name, data))
        again = f"/deployments/{quote(dep.name)}?{query}"
        return Response(status_code=204, headers={"HX-Redirect": again, **SECURITY_HEADERS})

    one = "/deployments/{name:str}"
    return [
        Route("/deploy", new_form, methods=["GET"]),
        Route("/deploy", create, methods=["POST"]),
        Route("/deploy/versions", versions, methods=["GET"]),
        Route("/deploy/env_row", env_row, methods=["GET"]),
        Route(f"{one}/update", update_form, methods=["GET"]),
        Route(f"{one}/update", update, methods=["POST"]),
        Route(f"{one}/status", live, methods=["GET"]),
    ]


def _redirect(name: str, notice: str) -> RedirectResponse:
    query = urlencode({"notice": notice})
    return RedirectResponse(
        f"/deployments/{quote(name)}?{query}", status_code=303, headers=SECURITY_HEADERS
    )
