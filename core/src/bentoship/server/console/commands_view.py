"""The deployment page's commands (rollback, promote, discard, approve or reject, shadow
traffic), and the Overview's panels of a held candidate that offer some of them (Shadow,
Approval)."""

from __future__ import annotations

import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...shadow import DEFAULT_TOLERANCE
from ..api.common import Services
from ..errors import Conflict, DomainError, Forbidden
from ..responses import SECURITY_HEADERS
from ..store import Deployment
from .approvals_view import ApprovalsPanel, approvals_panel, decision_refusal
from .common import PageRenderer, back, principal_in
from .shadow_view import ShadowPanel, mirror_request, shadow_panel
from .tabs_view import TABS

__all__ = ["approvals_of", "routes", "shadow_of"]


def approvals_of(request: Request, services: Services, dep: Deployment) -> ApprovalsPanel | None:
    """The Approval panel: the pending approval, if any, and the decided ones."""
    if not services.settings.extensions:
        return None
    records = [r.to_api() for r in services.controller.approvals.of(dep.name)]
    return approvals_panel(records, principal_in(request), dep.name, time.time())


async def shadow_of(services: Services, dep: Deployment) -> ShadowPanel | None:
    """The Shadow panel of ``dep``'s held candidate; None without one."""
    controller = services.controller
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


def routes(services: Services, page: PageRenderer) -> list[Route]:
    """The Shadow panel's live figures, and the commands posted from the deployment page
    (after the Deploy form's routes: ``/deployments/{name}/update`` is one of them)."""
    controller = services.controller

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

    async def shadow_live(request: Request) -> Response:
        """The panel's live figures, polled by the page; a reload when its controls are stale."""
        dep = controller.get(request.path_params["name"])
        panel = await shadow_of(services, dep)
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

    one = "/deployments/{name:str}"
    return [
        Route(f"{one}/shadow_live", shadow_live, methods=["GET"]),
        Route(f"{one}/{{command:str}}", revision_command, methods=["POST"]),
    ]
