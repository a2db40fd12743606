"""The console's pages: deployments, one deployment's tabs, bento repositories, webhooks; the
sign-in and API tokens pages (``access_view``), the Deploy form (``deploy_view``) and the
deployment page's commands (``commands_view``) are routed here too.

Pages are rendered on the server (Jinja2, every value escaped) over the same services as the
API; the browser loads only the vendored htmx and uPlot and the console's own small script.
The access check (``server.auth``) has already signed the request in and checked its scopes
and CSRF token; the sign-in form is the one page open to all.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...statuses import DeploymentStatus
from .. import schemas
from ..api.common import Services
from ..api.deployments import deployment_json, revision_json
from ..paths import FAVICON_PATH
from ..responses import SECURITY_HEADERS
from ..store import Deployment
from ..tokens import TokenBook
from .access_view import signin_routes, token_routes
from .approvals_view import rollback_refusal
from .commands_view import approvals_of, shadow_of
from .commands_view import routes as command_routes
from .common import principal_in
from .deploy_view import deploy_context, deploy_refusal
from .deploy_view import routes as deploy_routes
from .sessions import Session, SessionBook
from .tabs_view import TABS, log_search, monitoring_data, quality_of, traces_of
from .vendor import STATIC_DIR, VENDORED, check_vendored
from .webhooks_view import webhook_panels

__all__ = ["routes"]

RANGES = {"15m": "15 minutes", "1h": "1 hour", "6h": "6 hours", "24h": "24 hours"}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["vendored"] = VENDORED
    return env


def shown_config(data: dict[str, Any]) -> str:
    """The target revision's config as the Overview shows it, env values hidden (they may be
    secrets)."""
    revision = data.get("latest_revision") or {}
    targets = revision.get("targets") or [{}]
    config = dict(targets[0].get("config") or {})
    if config.get("envs"):
        config["envs"] = [{**env, "value": "(hidden)"} for env in config["envs"]]
    return json.dumps(config, indent=2, sort_keys=True)


def routes(services: Services, tokens: TokenBook, sessions: SessionBook) -> list[BaseRoute]:
    check_vendored()
    env = _environment()
    controller = services.controller
    observed = services.observed

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = request.scope.get("state", {}).get("session")
        principal = request.scope.get("state", {}).get("principal")
        html = env.get_template(template).render(
            csrf=session.csrf if isinstance(session, Session) else "",
            principal=principal,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def home(request: Request) -> Response:
        return RedirectResponse("/deployments", status_code=303)

    def per_minute(name: str) -> float | None:
        if observed is None:
            return None
        now = time.time()
        totals = observed.series.query(name, since=now - 60, until=now)["totals"]
        return sum(float(t["requests"] or 0) for t in totals.values())

    async def deployments(request: Request) -> Response:
        if observed is not None:
            await asyncio.wrap_future(observed.sampler.flush_traffic())
        rows = []
        for dep in controller.store.list_deployments():
            data = deployment_json(services, dep)
            serving = controller.serving_of(dep)
            shown_revision = serving or controller.target_of(dep)
            rows.append(
                {
                    "data": data,
                    "serving": controller.name_of(dep.serving_revision),
                    "target": controller.name_of(dep.target_revision),
                    "replicas": controller.views.replica_count(dep)["ready"],
                    "bento": shown_revision.bento if shown_revision else None,
                    "per_minute": await asyncio.to_thread(per_minute, dep.name),
                }
            )
        refusal = deploy_refusal(principal_in(request))
        return page(request, "deployments.html", rows=rows, deploy_refusal=refusal)

    async def deployment(request: Request) -> Response:
        name = request.path_params["name"]
        dep = controller.get(name)
        tab = request.query_params.get("tab", "overview")
        if tab not in TABS:
            tab = "overview"
        data = deployment_json(services, dep)
        context: dict[str, Any] = {
            "tab": tab,
            "tabs": TABS,
            "dep": dep,
            "data": data,
            "config": shown_config(data),
            "serving": controller.name_of(dep.serving_revision),
            "target": controller.name_of(dep.target_revision),
            "notice": request.query_params.get("notice", ""),
            "problem": request.query_params.get("problem", ""),
            "ranges": RANGES,
        }
        if tab == "overview":
            context.update(replicas_of(dep))
            context["shadow"] = await shadow_of(services, dep)
            context["approvals"] = approvals_of(request, services, dep)
        elif tab == "revisions":
            context["revisions"] = [
                revision_json(services, rev, dep, active=rev.uid == dep.serving_revision)
                for rev in reversed(controller.views.revisions(name))
            ]
            context["refusals"] = {
                rev["name"]: rollback_refusal(rev.get("bentoship") or {"name": rev["name"]})
                for rev in context["revisions"]
            }
            context["candidate"] = controller.name_of(
                c.uid if (c := controller.views.candidate_of(dep)) else None
            )
        elif tab == "logs":
            context.update(await asyncio.to_thread(log_search, request, services, name))
        elif tab == "data":
            if observed is not None:
                await observed.ingest()
            context.update(await asyncio.to_thread(monitoring_data, request, services, name))
        elif tab == "quality":
            context["quality"] = await quality_of(request, services, dep)
        elif tab == "traces":
            context["traces"] = await traces_of(request, services, dep)
        elif tab == "events":
            context["events"] = [e.to_json() for e in reversed(controller.events.of(name))]
        context.update(deploy_context(services, dep, data, principal_in(request)))
        return page(request, "deployment.html", **context)

    def replicas_of(dep: Deployment) -> dict[str, Any]:
        views = controller.views
        return {
            "pods": [schemas.pod(dep.name, v) for v in views.replica_views(dep)],
            "replica_count": views.replica_count(dep),
            "scaled_to_zero": views.status(dep) is DeploymentStatus.SCALED_TO_ZERO,
        }

    async def replicas_live(request: Request) -> Response:
        """The overview's replicas, polled by the page."""
        dep = controller.get(request.path_params["name"])
        return page(request, "replicas_live.html", dep=dep, **replicas_of(dep))

    async def log_lines(request: Request) -> Response:
        name = controller.get(request.path_params["name"]).name
        found = await asyncio.to_thread(log_search, request, services, name)
        return page(request, "log_lines.html", **found)

    async def webhooks(request: Request) -> Response:
        if not services.settings.extensions:
            problem = "this server runs without bentoship's extensions: it sends no webhooks"
            return page(request, "webhooks.html", webhooks=[], problem=problem)
        panels = await asyncio.to_thread(webhook_panels, controller.webhooks, time.time())
        return page(request, "webhooks.html", webhooks=panels, problem="")

    async def repositories(request: Request) -> Response:
        store = services.registry.store
        listed = [
            {"repo": repo, "versions": store.list_artifacts("bento", repo["name"])}
            for repo in store.list_repositories("bento")
        ]
        return page(request, "bento_repositories.html", repositories=listed)

    one = "/deployments/{name:str}"
    return [
        Route("/", home, methods=["GET"]),
        Route(FAVICON_PATH, favicon, methods=["GET"]),
        *signin_routes(tokens, sessions, page),
        Route("/deployments", deployments, methods=["GET"]),
        *deploy_routes(services, page),
        Route(one, deployment, methods=["GET"]),
        Route(f"{one}/log_lines", log_lines, methods=["GET"]),
        Route(f"{one}/replicas_live", replicas_live, methods=["GET"]),
        *command_routes(services, page),
        Route("/bento_repositories", repositories, methods=["GET"]),
        Route("/webhooks", webhooks, methods=["GET"]),
        *token_routes(tokens, page),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
