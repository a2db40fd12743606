"""The console's pages: deployments, one deployment's tabs, bento repositories, API tokens.

Pages are rendered on the server (Jinja2, every value escaped) over the same services as the
API; the browser loads only the vendored htmx and uPlot and the console's own small script.
The access check (``server.auth``) has already signed the request in and checked its scopes
and CSRF token; the sign-in form is the one page open to all.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...shadow import DEFAULT_TOLERANCE
from .. import schemas
from ..api.api_tokens import principal_of, token_json
from ..api.common import Services
from ..api.deployments import deployment_json, revision_json
from ..api.logs import LogSearchParams
from ..api.params import query
from ..api.quality import QualityParams, measure_quality
from ..api.traces import TracesParams, find_traces
from ..errors import Conflict, DomainError, Forbidden
from ..observe.spans import trace_id_of
from ..paths import FAVICON_PATH, SIGNIN_PATH
from ..responses import SECURITY_HEADERS
from ..store import Deployment
from ..tokens import Principal, Scope, TokenBook, digest
from .approvals_view import (
    ApprovalsPanel,
    approvals_panel,
    decision_refusal,
    rollback_refusal,
)
from .data_view import data_table
from .deploy_view import deploy_context, deploy_refusal
from .deploy_view import routes as deploy_routes
from .quality_view import WINDOW_NAMES, quality_panel, quality_window
from .sessions import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGNIN_COOKIE,
    Session,
    SessionBook,
    cookie_header,
    same_secret,
    session_key,
)
from .shadow_view import ShadowPanel, mirror_request, shadow_panel
from .traces_view import (
    log_parts,
    search_form,
    search_query,
    trace_rows,
    waterfall,
    window_label,
)
from .vendor import STATIC_DIR, VENDORED, check_vendored
from .webhooks_view import webhook_panels

__all__ = ["routes"]

LOG_LINES_SHOWN = 500
SIGNIN_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
"""The sign-in form's secret as made here (kept while the browser has it: several sign-in pages
may be open at once, or loaded by the browser itself, as for the favicon)."""
TABS = ("overview", "revisions", "monitoring", "traces", "data", "quality", "logs", "events")
DATA_SAMPLE_ROWS = 20
DATA_HOURS = 6
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


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this server, else the deployments."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/deployments"
    return target


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

    def back(url: str, **message: str) -> RedirectResponse:
        note = "".join(f"&{k}={quote(v, safe='')}" for k, v in message.items())
        if note:
            url += ("&" if "?" in url else "?") + note.lstrip("&")
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    async def signin_form(request: Request) -> Response:
        return signin_page(request, request.query_params.get("next"), "", 200)

    def signin_page(request: Request, target: str | None, error: str, status: int) -> Response:
        kept = request.cookies.get(SIGNIN_COOKIE, "")
        secret = kept if SIGNIN_SECRET.fullmatch(kept) else secrets.token_urlsafe(32)
        response = page(
            request, "login.html", status, signin_csrf=secret, next=safe_next(target), error=error
        )
        response.headers["Set-Cookie"] = cookie_header(SIGNIN_COOKIE, secret, max_age=3600)
        return response

    async def signin(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        target = str(form.get("next") or "")
        given = str(form.get(CSRF_FIELD) or "")
        if not same_secret(given, request.cookies.get(SIGNIN_COOKIE, "")):
            return signin_page(
                request, target, "The form expired or came from another site: try again.", 403
            )
        token = str(form.get("token") or "").strip()
        found = tokens.authenticate(token.encode()) if token else "enter an API token"
        if isinstance(found, str):
            return signin_page(request, target, f"Sign-in refused: {found}.", 401)
        key, _ = sessions.open(digest(token))
        response = RedirectResponse(safe_next(target), status_code=303)
        response.headers.append(
            "Set-Cookie", cookie_header(SESSION_COOKIE, key, max_age=int(SESSION_SECONDS))
        )
        response.headers.append("Set-Cookie", cookie_header(SIGNIN_COOKIE, "", max_age=0))
        return response

    async def signout(request: Request) -> Response:
        sessions.close(session_key(request.scope))
        response = RedirectResponse(SIGNIN_PATH, status_code=303)
        response.headers["Set-Cookie"] = cookie_header(SESSION_COOKIE, "", max_age=0)
        return response

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
            context["pods"] = [
                schemas.pod(dep.name, v) for v in controller.views.replica_views(dep)
            ]
            context["replica_count"] = controller.views.replica_count(dep)
            context["shadow"] = await shadow_of(dep)
            context["approvals"] = approvals_of(request, dep)
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
            context.update(await asyncio.to_thread(_log_search, request, services, name))
        elif tab == "data":
            if observed is not None:
                await observed.ingest()
            context.update(await asyncio.to_thread(_monitoring_data, request, services, name))
        elif tab == "quality":
            context["quality"] = await quality_of(request, dep)
        elif tab == "traces":
            context["traces"] = await traces_of(request, dep)
        elif tab == "events":
            context["events"] = [e.to_json() for e in reversed(controller.events.of(name))]
        context.update(deploy_context(services, dep, data, principal_in(request)))
        return page(request, "deployment.html", **context)

    async def quality_of(request: Request, dep: Deployment) -> dict[str, Any]:
        """The Quality tab: the monitors with records, the window, and the chosen monitor's
        figures as ``GET …/quality`` computes them."""
        params = request.query_params
        window = quality_window(params.get("window", ""), params.get("step", ""))
        found: dict[str, Any] = {
            "window": window,
            "windows": WINDOW_NAMES,
            "monitors": [],
            "monitor": None,
            "asked": params.get("monitor", ""),
            "panel": None,
            "problem": "",
        }
        if observed is None or not services.settings.extensions:
            found["problem"] = (
                "this server measures no model quality: it runs without bentoship's extensions "
                "or without metrics"
            )
            return found
        await observed.ingest()
        monitors = await asyncio.to_thread(_monitors_of, services, dep.name)
        found["monitors"] = monitors
        chosen = found["asked"] or (monitors[0][0] if monitors else "")
        if chosen not in dict(monitors):
            return found
        found["monitor"] = chosen
        asked = QualityParams(monitor=chosen, since=window.window, step=window.step_seconds)
        try:
            answer = await measure_quality(observed, dep.name, asked)
        except DomainError as exc:
            found["problem"] = exc.message
            return found
        found["panel"] = quality_panel(answer, controller.name_of(dep.serving_revision), window)
        return found

    async def traces_of(request: Request, dep: Deployment) -> dict[str, Any]:
        """The Traces tab: the search form, the traces it finds (by their root span) and, with
        ``trace=<id>``, that trace's waterfall."""
        params = request.query_params
        form = search_form(params)
        found: dict[str, Any] = {
            "form": form,
            "windows": WINDOW_NAMES,
            "window": window_label(form),
            "query": search_query(form),
            "any_duration": search_query({**form, "min_duration": ""}),
            "rows": (),
            "problem": "",
            "chosen": params.get("trace", "").strip(),
            "waterfall": None,
            "trace_problem": "",
        }
        if observed is None or not services.settings.extensions:
            found["problem"] = (
                "this server keeps no traces: it runs without bentoship's extensions or without "
                "metrics"
            )
            return found
        try:
            asked = query(TracesParams, request).model_copy(
                update={"since": form["since"], "until": form["until"] or None}
            )
            answer = await find_traces(observed.spans, dep.name, asked)
            found["rows"] = trace_rows(answer["traces"])
        except DomainError as exc:
            found["problem"] = exc.message
        if found["chosen"]:
            try:
                trace_id = trace_id_of(found["chosen"])
            except DomainError as exc:
                found["trace_problem"] = exc.message
                return found
            found["chosen"] = trace_id
            spans = await asyncio.to_thread(observed.spans.trace, trace_id)
            if spans:
                found["waterfall"] = waterfall(trace_id, spans)
            else:
                found["trace_problem"] = (
                    f"trace {trace_id} has no stored span (it was not sampled, is older than "
                    "the retention, or its spans are still on their way)"
                )
        return found

    def approvals_of(request: Request, dep: Deployment) -> ApprovalsPanel | None:
        """The Approval panel: the pending approval, if any, and the decided ones."""
        if not services.settings.extensions:
            return None
        records = [r.to_api() for r in controller.approvals.of(dep.name)]
        return approvals_panel(records, principal_in(request), dep.name, time.time())

    async def decide(
        request: Request, name: str, approval_id: str, approve: bool, comment: str
    ) -> str:
        services.require_extensions()
        principal = principal_in(request)
        refusal = decision_refusal(principal, name, approval_id)
        if refusal or principal is None:
            raise Forbidden(refusal)
        record = await controller.approvals.decide(
            name, approval_id, approve, principal.name, comment
        )
        if approve:
            return f"Approved {record.name}: it is promoted and serves."
        return f"Rejected {record.name}: it is discarded."

    async def shadow_of(dep: Deployment) -> ShadowPanel | None:
        """The Shadow panel of ``dep``'s held candidate; None without one."""
        held = controller.views.candidate_of(dep) if services.settings.extensions else None
        if held is None:
            return None
        state = controller.shadows.state(dep.name)
        figures = None
        if state is not None and state.candidate == held.uid:
            report = await controller.shadows.report(
                dep.name, state.candidate, state.started_at, DEFAULT_TOLERANCE
            )
            figures = {**state.to_api(), "report": report.to_dict()}
        return shadow_panel(dep.name, controller.name_of(held.uid) or "", held.phase, figures)

    async def shadow_live(request: Request) -> Response:
        """The panel's live figures, polled by the page; a reload when its controls are stale."""
        dep = controller.get(request.path_params["name"])
        panel = await shadow_of(dep)
        if panel is None or panel.key != request.query_params.get("key"):
            return Response(status_code=204, headers={"HX-Refresh": "true", **SECURITY_HEADERS})
        return page(request, "shadow_live.html", dep=dep, shadow=panel)

    async def discard(name: str, ref: str | None) -> str:
        held = controller.views.candidate_of(controller.get(name))
        shown = controller.name_of(held.uid) if held else None
        if ref is not None and ref != shown:
            now = f"the candidate is now {shown}" if shown else "there is no candidate now"
            raise Conflict(f"revision {ref} is not the candidate of {name}: {now}")
        await controller.discard(name)
        return f"Discarded {shown}." if shown else "No candidate to discard."

    async def mirror(name: str, share: str, apis: str) -> str:
        if not services.settings.extensions:
            raise Conflict("this server runs without bentoship's extensions: no shadow traffic")
        percent, names = mirror_request(share, apis)
        controller.get(name)
        async with controller.runtime(name).lock:
            state = controller.shadows.start(name, percent, names)
        if state is None:
            return "Stopped mirroring."
        what = f"{', '.join(state.apis)} requests" if state.apis else "requests"
        return f"Mirroring {state.percent}% of {what} to {state.candidate_name}."

    async def log_lines(request: Request) -> Response:
        name = controller.get(request.path_params["name"]).name
        found = await asyncio.to_thread(_log_search, request, services, name)
        return page(request, "log_lines.html", **found)

    async def revision_command(request: Request) -> Response:
        name = request.path_params["name"]
        command = request.path_params["command"]
        form = await request.form(max_files=0, max_fields=10)
        ref = str(form.get("revision") or "") or None
        tab = str(form.get("tab") or "")
        url = f"/deployments/{quote(name)}?tab={tab if tab in TABS else 'revisions'}"
        try:
            if command == "rollback":
                dep = await controller.rollback(name, ref)
                done = f"Rolling back to {controller.name_of(dep.target_revision)}."
            elif command == "promote":
                dep = await controller.promote(name, ref)
                done = f"Promoted {controller.name_of(dep.target_revision)}."
            elif command == "discard":
                done = await discard(name, ref)
            elif command in ("approve", "reject"):
                approval = str(form.get("approval") or "")
                comment = str(form.get("comment") or "")
                done = await decide(request, name, approval, command == "approve", comment)
            elif command == "shadow":
                done = await mirror(
                    name, str(form.get("percent") or ""), str(form.get("apis") or "")
                )
            else:
                raise DomainError(f"no such command: {command}")
        except DomainError as exc:
            return back(url, problem=exc.message)
        return back(url, notice=done)

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

    async def api_tokens(request: Request) -> Response:
        return tokens_page(request)

    def tokens_page(
        request: Request, created: dict[str, Any] | None = None, problem: str = ""
    ) -> Response:
        listed = [token_json(t) for t in tokens.list()]
        return page(
            request,
            "api_tokens.html",
            status=400 if problem else 200,
            tokens=listed,
            scopes=[s.value for s in Scope],
            created=created,
            problem=problem,
            notice=request.query_params.get("notice", ""),
        )

    async def create_token(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=20)
        try:
            record, value = tokens.create(
                str(form.get("name") or ""),
                description=str(form.get("description") or ""),
                scopes=[str(s) for s in form.getlist("scopes")] or None,
                expired_at=str(form.get("expired_at") or "") or None,
                by=principal_of(request),
            )
        except DomainError as exc:
            return tokens_page(request, problem=exc.message)
        return tokens_page(request, created=token_json(record, value))

    async def revoke_token(request: Request) -> Response:
        try:
            token = tokens.revoke(request.path_params["uid"])
        except DomainError as exc:
            return back("/api_tokens", notice=exc.message)
        return back("/api_tokens", notice=f"Revoked {token.name}.")

    one = "/deployments/{name:str}"
    return [
        Route("/", home, methods=["GET"]),
        Route(FAVICON_PATH, favicon, methods=["GET"]),
        Route(SIGNIN_PATH, signin_form, methods=["GET"]),
        Route(SIGNIN_PATH, signin, methods=["POST"]),
        Route("/logout", signout, methods=["POST"]),
        Route("/deployments", deployments, methods=["GET"]),
        *deploy_routes(services, page),
        Route(one, deployment, methods=["GET"]),
        Route(f"{one}/log_lines", log_lines, methods=["GET"]),
        Route(f"{one}/shadow_live", shadow_live, methods=["GET"]),
        Route(f"{one}/{{command:str}}", revision_command, methods=["POST"]),
        Route("/bento_repositories", repositories, methods=["GET"]),
        Route("/webhooks", webhooks, methods=["GET"]),
        Route("/api_tokens", api_tokens, methods=["GET"]),
        Route("/api_tokens", create_token, methods=["POST"]),
        Route("/api_tokens/{uid:str}/revoke", revoke_token, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def principal_in(request: Request) -> Principal | None:
    """Who the console session acts as (set by the access check)."""
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else None


def _monitoring_data(request: Request, services: Services, name: str) -> dict[str, Any]:
    """The Data tab: the deployment's monitors, and for the chosen one its records per minute
    over the last hours and a sample of its newest records."""
    observed = services.observed
    if observed is None:
        return {"monitors": [], "monitor": None}
    store = observed.monitoring
    monitors = _monitors_of(services, name)
    chosen = request.query_params.get("monitor") or (monitors[0][0] if monitors else None)
    if chosen not in dict(monitors):
        return {"monitors": monitors, "monitor": None}
    start = int(time.time() // 60 * 60) - DATA_HOURS * 3600 + 60
    minutes = store.per_minute(name, chosen, since=start)
    sample = [
        {**r, "ingested_at": _clock(r["ingested_at"])}
        for r in reversed(store.records(name, chosen, limit=DATA_SAMPLE_ROWS))
    ]
    return {
        "monitors": monitors,
        "monitor": chosen,
        "minutes": minutes,
        "start": start,
        "slots": DATA_HOURS * 60,
        "peak": max((c for _, c in minutes), default=1),
        "table": data_table(sample, store.columns(chosen)),
        "hours": DATA_HOURS,
    }


def _monitors_of(services: Services, name: str) -> list[tuple[str, int]]:
    """The monitors with records of deployment ``name``, by name, with their record counts."""
    if services.observed is None:
        return []
    store = services.observed.monitoring
    counts = {m: store.count(name, m) for m in sorted(store.monitors())}
    return [(m, n) for m, n in counts.items() if n]


def _clock(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _log_search(request: Request, services: Services, name: str) -> dict[str, Any]:
    """The Logs tab's form values and a page of the lines they find, newest first: the newest
    500, or with ``before`` (a line's seq) the 500 before that line; with the query strings
    of the page of older lines (when there are some) and of the newest page."""
    form = {
        key: request.query_params.get(key, "") for key in ("pattern", "since", "until", "revision")
    }
    paged = urlencode({"tab": "logs", **{k: v for k, v in form.items() if v}})
    found: dict[str, Any] = {
        "form": form,
        "lines": [],
        "problem": "",
        "paged": paged,
        "page_size": LOG_LINES_SHOWN,
        "older": "",
        "before": None,
    }
    observed = services.observed
    if observed is None:
        return {**found, "problem": "this server keeps no logs (--no-metrics)"}
    try:
        params = query(LogSearchParams, request)
        since, until = params.window(time.time())
        with observed.logs.one_search():
            lines = observed.logs.search(
                name,
                since=since,
                until=until,
                revision=params.revision,
                pattern=params.pattern,
                limit=LOG_LINES_SHOWN + 1,
                newest_first=True,
                before=params.before,
            )
            shown = [
                {**line.to_json(), "seq": line.seq, "parts": log_parts(line.line)}
                for line in lines[:LOG_LINES_SHOWN]
            ]
    except DomainError as exc:
        return {**found, "problem": exc.message}
    if len(lines) > LOG_LINES_SHOWN:
        found["older"] = f"{paged}&before={shown[-1]['seq']}"
    return {**found, "lines": shown, "before": params.before}
