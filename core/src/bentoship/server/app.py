"""The REST API: the BentoCloud subset that bentoml speaks, plus bentoship's extensions."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._version import __version__
from ..statuses import DeploymentStatus
from . import schemas
from .archives import ArchiveError, install_archive
from .controller import Conflict, Controller
from .deploy_config import ConfigInvalid, normalize_config, validate_name, validate_tag
from .settings import ServerSettings
from .store import Artifact, Deployment, Store, new_uid, now

TOKEN_HEADER = "x-yatai-api-token"
INFO_PATH = "/api/v1/bentoship/info"
EXTENSIONS = ("revisions", "rollback", "logs", "wait")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,127}$")
MAX_WAIT_SECONDS = 60.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class TokenAuth:
    """Reject every API request without the right ``X-YATAI-API-TOKEN`` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != INFO_PATH:
            given = next((v for k, v in scope["headers"] if k == TOKEN_HEADER.encode()), b"")
            if not hmac.compare_digest(given, self.token):
                problem = "wrong API token" if given else "missing X-YATAI-API-TOKEN header"
                response = error_response(
                    401,
                    f"{problem}; use the token from the server's connection.json "
                    "(or BENTO_CLOUD_API_KEY)",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Api:
    """Route handlers over one controller and store."""

    def __init__(self, settings: ServerSettings, store: Store, controller: Controller) -> None:
        self.settings = settings
        self.store = store
        self.controller = controller

    # helpers

    @staticmethod
    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    @staticmethod
    def check_cluster(request: Request) -> None:
        cluster = request.query_params.get("cluster") or schemas.CLUSTER_NAME
        if cluster != schemas.CLUSTER_NAME:
            raise ApiError(
                404,
                f"cluster {cluster!r} not found; the local control plane has one cluster, 'local'",
            )

    def deployment_or_404(self, name: str) -> Deployment:
        dep = self.store.get_deployment(name)
        if dep is None:
            raise ApiError(
                404,
                f"deployment {name!r} not found (record not found); "
                "list deployments with `bentoship status` or create it first",
            )
        return dep

    def repository_or_404(self, kind: str, name: str) -> Any:
        row = self.store.get_repository(kind, name)
        if row is None:
            raise ApiError(404, f"{kind} repository {name!r} not found (record not found)")
        return row

    def artifact_or_404(self, kind: str, repository: str, version: str) -> Artifact:
        item = self.store.get_artifact(kind, repository, version)
        if item is None:
            raise ApiError(
                404, f"{kind} {repository}:{version} not found (record not found); push it first"
            )
        return item

    def bento_json(self, tag: str) -> dict[str, Any] | None:
        name, _, version = tag.partition(":")
        item = self.store.get_artifact("bento", name, version)
        repo = self.store.get_repository("bento", name)
        return schemas.artifact(item, repo) if item and repo else None

    def deployment_json(self, dep: Deployment) -> dict[str, Any]:
        target = self.store.get_revision(dep.target_revision) if dep.target_revision else None
        latest = (
            schemas.revision(
                target,
                active=True,
                bento=self.bento_json(target.bento),
                extensions=self.controller.revision_extensions(target, dep)
                if self.settings.extensions
                else None,
            )
            if target
            else None
        )
        extensions = None
        if self.settings.extensions:
            extensions = {
                "target_revision": dep.target_revision,
                "serving_revision": dep.serving_revision,
                "reason": self.controller.reason(dep),
                "requests": self.controller.request_counts.get(dep.name, 0),
            }
        return schemas.deployment(
            dep,
            status=self.controller.status(dep),
            latest_revision=latest,
            url=self.controller.endpoint_url(dep),
            labels=target.config.get("labels", []) if target else [],
            extensions=extensions,
        )

    # identity

    async def info(self, request: Request) -> Response:
        if not self.settings.extensions:
            return error_response(404, "not found")
        return JSONResponse(
            {"server": "bentoship", "version": __version__, "extensions": list(EXTENSIONS)}
        )

    async def current_user(self, request: Request) -> Response:
        return JSONResponse(schemas.USER)

    async def current_org(self, request: Request) -> Response:
        return JSONResponse(schemas.organization())

    async def clusters(self, request: Request) -> Response:
        return JSONResponse(schemas.listing([schemas.cluster()]))

    async def cluster(self, request: Request) -> Response:
        if request.path_params["cluster"] != schemas.CLUSTER_NAME:
            raise ApiError(404, f"cluster {request.path_params['cluster']!r} not found")
        return JSONResponse(schemas.cluster())

    async def instance_types(self, request: Request) -> Response:
        self.check_cluster(request)
        return JSONResponse(schemas.instance_types())

    async def secret(self, request: Request) -> Response:
        raise ApiError(
            404,
            f"secret {request.path_params['name']!r} not found (record not found); "
            "the local control plane has no secrets, pass envs instead",
        )

    # repositories, bentos and models

    async def list_repositories(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        rows = self.store.list_repositories(kind)
        items = [
            schemas.repository(kind, row, self.store.latest_artifact(kind, row["name"]))
            for row in rows
        ]
        return JSONResponse(schemas.listing(items))

    async def create_repository(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        body = await self.json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", name):
            raise ApiError(400, f"invalid {kind} repository name {name!r}; use lowercase names")
        row = self.store.create_repository(kind, name, str(body.get("description") or ""))
        return JSONResponse(schemas.repository(kind, row, None))

    async def get_repository(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["repo"]
        row = self.repository_or_404(kind, name)
        return JSONResponse(schemas.repository(kind, row, self.store.latest_artifact(kind, name)))

    async def list_artifacts(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["repo"]
        row = self.repository_or_404(kind, name)
        items = self.store.list_artifacts(kind, name)
        count = request.query_params.get("count")
        if count and count.isdigit():
            items = items[: int(count)]
        return JSONResponse(schemas.listing([schemas.artifact(i, row) for i in items]))

    async def list_all_artifacts(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        items = [
            schemas.artifact(i, self.store.get_repository(kind, i.repository))
            for i in self.store.list_artifacts(kind)
        ]
        return JSONResponse(schemas.listing(items))

    async def create_artifact(self, request: Request) -> Response:
        kind, name = request.path_params["kind"], request.path_params["repo"]
        row = self.repository_or_404(kind, name)
        body = await self.json_body(request)
        version = body.get("version")
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise ApiError(400, f"invalid {kind} version {version!r}")
        if kind == "model" and not isinstance(body.get("manifest"), dict):
            raise ApiError(400, "a model needs a manifest")
        existing = self.store.get_artifact(kind, name, version)
        item = Artifact(
            kind=kind,
            repository=name,
            version=version,
            uid=existing.uid if existing else new_uid(),
            description=str(body.get("description") or ""),
            manifest=body.get("manifest"),
            labels=[
                {"key": str(i.get("key")), "value": str(i.get("value"))}
                for i in body.get("labels") or []
                if isinstance(i, dict)
            ],
            build_at=str(body.get("build_at") or now()),
            created_at=existing.created_at if existing else now(),
            updated_at=now() if existing else None,
            upload_status=existing.upload_status if existing else "pending",
            upload_finished_reason=existing.upload_finished_reason if existing else "",
        )
        self.store.upsert_artifact(item)
        return JSONResponse(schemas.artifact(item, row))

    async def get_artifact(self, request: Request) -> Response:
        p = request.path_params
        row = self.repository_or_404(p["kind"], p["repo"])
        return JSONResponse(
            schemas.artifact(self.artifact_or_404(p["kind"], p["repo"], p["version"]), row)
        )

    async def update_artifact(self, request: Request) -> Response:
        p = request.path_params
        row = self.repository_or_404(p["kind"], p["repo"])
        item = self.artifact_or_404(p["kind"], p["repo"], p["version"])
        body = await self.json_body(request)
        if body.get("description") is not None:
            item.description = str(body["description"])
        if isinstance(body.get("manifest"), dict):
            item.manifest = body["manifest"]
        if isinstance(body.get("labels"), list):
            item.labels = [
                {"key": str(i.get("key")), "value": str(i.get("value"))}
                for i in body["labels"]
                if isinstance(i, dict)
            ]
        item.updated_at = now()
        self.store.upsert_artifact(item)
        return JSONResponse(schemas.artifact(item, row))

    async def upload_step(self, request: Request) -> Response:
        """``start_upload``, ``presign_upload_url`` and ``finish_upload``."""
        p = request.path_params
        row = self.repository_or_404(p["kind"], p["repo"])
        item = self.artifact_or_404(p["kind"], p["repo"], p["version"])
        step = p["step"]
        if step == "start_upload" and item.upload_status != "success":
            item.upload_status = "uploading"
        elif step == "finish_upload":
            body = await self.json_body(request)
            status = body.get("status")
            if (
                status == "success"
                and not self.archive_path(item).exists()
                and p["kind"] == "bento"
            ):
                raise ApiError(
                    400, f"{item.tag} has no uploaded archive; upload it before finishing"
                )
            if status in ("success", "failed"):
                item.upload_status = status
                item.upload_finished_reason = str(body.get("reason") or "")
        elif step not in ("start_upload", "presign_upload_url", "presign_download_url"):
            raise ApiError(404, f"unknown upload step {step!r}")
        self.store.upsert_artifact(item)
        return JSONResponse(schemas.artifact(item, row))

    def archive_path(self, item: Artifact) -> Path:
        return (
            self.settings.data_dir
            / "archives"
            / item.kind
            / item.repository
            / f"{item.version}.tar"
        )

    async def upload(self, request: Request) -> Response:
        p = request.path_params
        kind = p["kind"]
        row = self.repository_or_404(kind, p["repo"])
        item = self.artifact_or_404(kind, p["repo"], p["version"])
        limit = self.settings.max_archive_bytes
        self.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        staging = self.settings.uploads_dir / f"{secrets.token_hex(8)}.tar"
        try:
            size = 0
            with staging.open("wb") as handle:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(
                            400,
                            f"archive is larger than {limit} bytes; "
                            "raise the server's --max-archive-bytes to accept it",
                        )
                    handle.write(chunk)
            try:
                await asyncio.to_thread(
                    install_archive,
                    kind,
                    staging,
                    name=item.repository,
                    version=item.version,
                    store_dir=self.settings.store_dir(kind),
                    max_bytes=limit,
                )
            except ArchiveError as exc:
                raise ApiError(400, f"rejected {kind} archive for {item.tag}: {exc}") from None
            target = self.archive_path(item)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)
        item.upload_status = "success"
        item.upload_finished_reason = ""
        item.updated_at = now()
        self.store.upsert_artifact(item)
        return JSONResponse(schemas.artifact(item, row))

    async def download(self, request: Request) -> Response:
        p = request.path_params
        item = self.artifact_or_404(p["kind"], p["repo"], p["version"])
        path = self.archive_path(item)
        if item.upload_status != "success" or not path.exists():
            raise ApiError(404, f"{item.tag} has no uploaded archive (record not found)")
        return FileResponse(path, media_type="application/octet-stream")

    # deployments

    def resolve_bento(self, tag: object) -> tuple[str, str]:
        """Return (tag, entry service) for a pushed bento, or raise a clear 4xx."""
        try:
            text = validate_tag(tag)
        except ConfigInvalid as exc:
            raise ApiError(400, str(exc)) from None
        name, _, version = text.partition(":")
        item = self.store.get_artifact("bento", name, version)
        if item is None or item.upload_status != "success":
            raise ApiError(
                404,
                f"bento {text} not found on this server (record not found); "
                "push it first with `bentoml push` or bentoship's push step",
            )
        manifest = item.manifest or {}
        for model in manifest.get("models") or []:
            model_tag = model if isinstance(model, str) else ""
            model_name, _, model_version = model_tag.partition(":")
            found = self.store.get_artifact("model", model_name, model_version)
            if model_tag and (found is None or found.upload_status != "success"):
                raise ApiError(
                    400,
                    f"bento {text} needs model {model_tag}, which was not pushed; push it first",
                )
        entry = str(manifest.get("entry_service") or "")
        if not entry:
            services = manifest.get("services") or []
            entry = str(services[0].get("name", "")) if services else ""
        return text, entry

    def config_from(self, body: dict[str, Any], entry: str) -> dict[str, Any]:
        try:
            return normalize_config(body, entry)
        except ConfigInvalid as exc:
            raise ApiError(400, str(exc)) from None

    async def create_deployment(self, request: Request) -> Response:
        self.check_cluster(request)
        body = await self.json_body(request)
        tag, entry = self.resolve_bento(body.get("bento"))
        raw_name = (
            body.get("name") or f"{tag.split(':')[0].replace('_', '-')}-{secrets.token_hex(3)}"
        )
        try:
            name = validate_name(raw_name)
        except ConfigInvalid as exc:
            raise ApiError(400, str(exc)) from None
        config = self.config_from(body, entry)
        async with self.controller.lock(name):
            if self.store.get_deployment(name) is not None:
                raise ApiError(
                    409, f"deployment {name!r} already exists; update it instead of creating it"
                )
            dep = await self.controller.create(name, tag, config)
        return JSONResponse(self.deployment_json(dep))

    async def get_deployment(self, request: Request) -> Response:
        self.check_cluster(request)
        return JSONResponse(
            self.deployment_json(self.deployment_or_404(request.path_params["name"]))
        )

    async def update_deployment(self, request: Request) -> Response:
        self.check_cluster(request)
        name = request.path_params["name"]
        self.deployment_or_404(name)
        body = await self.json_body(request)
        tag, entry = self.resolve_bento(body.get("bento"))
        config = self.config_from(body, entry)
        async with self.controller.lock(name):
            self.deployment_or_404(name)
            dep = await self.controller.update(name, tag, config)
        return JSONResponse(self.deployment_json(dep))

    async def list_deployments(self, request: Request) -> Response:
        self.check_cluster(request)
        query = request.query_params
        needle = query.get("search") or query.get("q") or ""
        items = [d for d in self.store.list_deployments() if needle in d.name]
        start = int(query["start"]) if (query.get("start") or "").isdigit() else 0
        count = int(query["count"]) if (query.get("count") or "").isdigit() else len(items)
        page = [self.deployment_json(d) for d in items[start : start + count]]
        return JSONResponse(schemas.listing(page, start=start, total=len(items)))

    async def terminate_deployment(self, request: Request) -> Response:
        self.check_cluster(request)
        name = request.path_params["name"]
        self.deployment_or_404(name)
        async with self.controller.lock(name):
            dep = await self.controller.terminate(name)
        return JSONResponse(self.deployment_json(dep))

    async def delete_deployment(self, request: Request) -> Response:
        self.check_cluster(request)
        name = request.path_params["name"]
        self.deployment_or_404(name)
        async with self.controller.lock(name):
            dep = await self.controller.delete(name)
        data = self.deployment_json(dep)
        data["status"] = DeploymentStatus.TERMINATED
        return JSONResponse(data)

    # extensions

    def require_extensions(self) -> None:
        if not self.settings.extensions:
            raise ApiError(404, "not found")

    async def revisions(self, request: Request) -> Response:
        self.require_extensions()
        dep = self.deployment_or_404(request.path_params["name"])
        items = [
            schemas.revision(
                rev,
                active=rev.uid == dep.serving_revision,
                bento=self.bento_json(rev.bento),
                extensions=self.controller.revision_extensions(rev, dep),
            )
            for rev in self.store.list_revisions(dep.name)
        ]
        return JSONResponse(schemas.listing(items))

    async def rollback(self, request: Request) -> Response:
        self.require_extensions()
        name = request.path_params["name"]
        self.deployment_or_404(name)
        body = await self.json_body(request)
        ref = body.get("revision")
        if ref is not None and not isinstance(ref, str):
            raise ApiError(400, "revision must be a revision uid or name such as 'r2'")
        async with self.controller.lock(name):
            try:
                dep = await self.controller.rollback(name, ref)
            except LookupError as exc:
                raise ApiError(404, str(exc)) from None
            except Conflict as exc:
                raise ApiError(409, str(exc)) from None
        return JSONResponse(self.deployment_json(dep))

    async def logs(self, request: Request) -> Response:
        self.require_extensions()
        dep = self.deployment_or_404(request.path_params["name"])
        ref = request.path_params["revision"]
        tail_raw = request.query_params.get("tail") or "200"
        if not tail_raw.isdigit():
            raise ApiError(400, f"tail must be a whole number of lines, got {tail_raw!r}")
        for rev in self.store.list_revisions(dep.name):
            if ref in (rev.uid, f"r{rev.seq}", str(rev.seq)):
                lines = self.controller.logs(rev, min(int(tail_raw), 10000))
                return JSONResponse({"revision": rev.uid, "name": f"r{rev.seq}", "lines": lines})
        raise ApiError(404, f"deployment {dep.name} has no revision {ref!r} (record not found)")

    async def wait(self, request: Request) -> Response:
        self.require_extensions()
        name = request.path_params["name"]
        dep = self.deployment_or_404(name)
        known = request.query_params.get("status") or self.controller.status(dep)
        try:
            timeout = float(request.query_params.get("timeout") or 30)
        except ValueError:
            raise ApiError(400, "timeout must be a number of seconds") from None
        await self.controller.wait_for_change(name, known, min(max(timeout, 0.0), MAX_WAIT_SECONDS))
        return JSONResponse(self.deployment_json(self.deployment_or_404(name)))


def _with_kind(handler: Any, kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        request.path_params["kind"] = kind
        response: Response = await handler(request)
        return response

    return endpoint


def _artifact_routes(api: Api, kind: str) -> list[Route]:
    repos = f"/api/v1/{kind}_repositories"
    items = f"{repos}/{{repo:str}}/{kind}s"
    one = f"{items}/{{version:str}}"
    table = [
        (repos, api.list_repositories, "GET"),
        (repos, api.create_repository, "POST"),
        (f"{repos}/{{repo:str}}", api.get_repository, "GET"),
        (items, api.list_artifacts, "GET"),
        (items, api.create_artifact, "POST"),
        (one, api.get_artifact, "GET"),
        (one, api.update_artifact, "PATCH"),
        (f"{one}/upload", api.upload, "PUT"),
        (f"{one}/download", api.download, "GET"),
        (f"{one}/{{step:str}}", api.upload_step, "PATCH"),
        (f"/api/v1/{kind}s", api.list_all_artifacts, "GET"),
    ]
    return [
        Route(path, _with_kind(handler, kind), methods=[method]) for path, handler, method in table
    ]


def build_app(settings: ServerSettings, store: Store, controller: Controller) -> ASGIApp:
    api = Api(settings, store, controller)
    routes = [
        Route(INFO_PATH, api.info),
        Route("/api/v1/auth/current", api.current_user),
        Route("/api/v1/current_org", api.current_org),
        Route("/api/v1/clusters", api.clusters),
        Route("/api/v1/clusters/{cluster:str}", api.cluster),
        Route("/api/v1/instance_types", api.instance_types),
        Route("/api/v1/org_secrets/{name:str}", api.secret),
        Route("/api/v2/deployments", api.list_deployments, methods=["GET"]),
        Route("/api/v2/deployments", api.create_deployment, methods=["POST"]),
        Route("/api/v2/deployments/{name:str}", api.get_deployment, methods=["GET"]),
        Route("/api/v2/deployments/{name:str}", api.update_deployment, methods=["PUT"]),
        Route("/api/v2/deployments/{name:str}", api.delete_deployment, methods=["DELETE"]),
        Route(
            "/api/v2/deployments/{name:str}/terminate", api.terminate_deployment, methods=["POST"]
        ),
        Route("/api/v2/deployments/{name:str}/revisions", api.revisions, methods=["GET"]),
        Route(
            "/api/v2/deployments/{name:str}/revisions/{revision:str}/logs",
            api.logs,
            methods=["GET"],
        ),
        Route("/api/v2/deployments/{name:str}/rollback", api.rollback, methods=["POST"]),
        Route("/api/v2/deployments/{name:str}/wait", api.wait, methods=["GET"]),
        *_artifact_routes(api, "bento"),
        *_artifact_routes(api, "model"),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no such API route: {request.method} {request.url.path}")

    app = Starlette(
        routes=routes, exception_handlers={ApiError: api_error, 404: not_found, 405: not_found}
    )
    return TokenAuth(app, settings.token)
