"""BentoCloud's v1 bento and model routes, including the upload protocol bentoml speaks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .. import schemas
from ..registry.service import KINDS
from .bodies import ArtifactBody, ArtifactPatchBody, FinishUploadBody, RepositoryBody, parse
from .common import Services, json_body
from .params import VersionListParams, query
from .query import ListFilter

__all__ = ["routes"]

Handler = Callable[[Request, str], Awaitable[Response]]


def routes(services: Services) -> list[Route]:
    registry = services.registry
    store = registry.store

    async def list_repositories(request: Request, kind: str) -> Response:
        items = [
            schemas.repository(kind, row, store.latest_artifact(kind, row["name"]))
            for row in store.list_repositories(kind)
        ]
        return JSONResponse(schemas.listing(items))

    async def create_repository(request: Request, kind: str) -> Response:
        body = await json_body(request)
        parse(RepositoryBody, body)
        row = registry.create_repository(kind, body.get("name"), body.get("description"))
        return JSONResponse(schemas.repository(kind, row, None))

    async def get_repository(request: Request, kind: str) -> Response:
        name = request.path_params["repo"]
        row = registry.repository(kind, name)
        return JSONResponse(schemas.repository(kind, row, store.latest_artifact(kind, name)))

    async def list_versions(request: Request, kind: str) -> Response:
        name = request.path_params["repo"]
        row = registry.repository(kind, name)
        params = query(VersionListParams, request)
        wanted = ListFilter.of(params)
        found = [i for i in store.list_artifacts(kind, name) if wanted.matches(i.tag, i.labels)]
        items = found if params.count is None else found[: params.count]
        return JSONResponse(schemas.listing([schemas.artifact(i, row) for i in items]))

    async def list_all_versions(request: Request, kind: str) -> Response:
        wanted = ListFilter.of(query(VersionListParams, request))
        items = [
            schemas.artifact(i, store.get_repository(kind, i.repository))
            for i in store.list_artifacts(kind)
            if wanted.matches(i.tag, i.labels)
        ]
        return JSONResponse(schemas.listing(items))

    async def create_version(request: Request, kind: str) -> Response:
        name = request.path_params["repo"]
        body = await json_body(request)
        parse(ArtifactBody, body)
        item = registry.put_artifact(kind, name, body)
        return JSONResponse(schemas.artifact(item, registry.repository(kind, name)))

    async def get_version(request: Request, kind: str) -> Response:
        p = request.path_params
        row = registry.repository(kind, p["repo"])
        return JSONResponse(
            schemas.artifact(registry.artifact(kind, p["repo"], p["version"], newest=True), row)
        )

    async def update_version(request: Request, kind: str) -> Response:
        p = request.path_params
        row = registry.repository(kind, p["repo"])
        body = await json_body(request)
        parse(ArtifactPatchBody, body)
        item = registry.patch_artifact(kind, p["repo"], p["version"], body)
        return JSONResponse(schemas.artifact(item, row))

    async def upload_step(request: Request, kind: str) -> Response:
        p = request.path_params
        row = registry.repository(kind, p["repo"])
        body = await json_body(request) if p["step"] == "finish_upload" else {}
        parse(FinishUploadBody, body)
        item = registry.upload_step(kind, p["repo"], p["version"], p["step"], body)
        return JSONResponse(schemas.artifact(item, row))

    async def upload(request: Request, kind: str) -> Response:
        p = request.path_params
        row = registry.repository(kind, p["repo"])
        item = await registry.receive_archive(kind, p["repo"], p["version"], request.stream())
        return JSONResponse(schemas.artifact(item, row))

    async def download(request: Request, kind: str) -> Response:
        p = request.path_params
        path = registry.download_path(kind, p["repo"], p["version"])
        return FileResponse(path, media_type="application/octet-stream")

    def of_kind(handler: Handler, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(request, kind)

        return endpoint

    table: list[tuple[str, Handler, str]] = [
        ("{repos}", list_repositories, "GET"),
        ("{repos}", create_repository, "POST"),
        ("{repos}/{{repo:str}}", get_repository, "GET"),
        ("{items}", list_versions, "GET"),
        ("{items}", create_version, "POST"),
        ("{one}", get_version, "GET"),
        ("{one}", update_version, "PATCH"),
        ("{one}/upload", upload, "PUT"),
        ("{one}/download", download, "GET"),
        ("{one}/{{step:str}}", upload_step, "PATCH"),
        ("/api/v1/{kind}s", list_all_versions, "GET"),
    ]
    found: list[Route] = []
    for kind in KINDS:
        repos = f"/api/v1/{kind}_repositories"
        items = f"{repos}/{{repo:str}}/{kind}s"
        one = f"{items}/{{version:str}}"
        for pattern, handler, method in table:
            path = pattern.format(repos=repos, items=items, one=one, kind=kind)
            found.append(Route(path, of_kind(handler, kind), methods=[method]))
    return found
