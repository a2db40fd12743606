"""Tokens, bad input and unsafe archives: clear errors and no change of server state."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from bentoship.server import LocalControlPlane

from .api import Api

PUBLIC_PATHS = (
    "/api/v1/bentoship/info",
    "/api/v1/bentoship/openapi.json",
    "/login",
    "/favicon.ico",
)
"""Discovery, the API's description, the console's sign-in form: the routes without a token."""


def api_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """Every (method, path) the server's app routes, read from the app built in-process."""
    from bentoship.server.app import build_app
    from bentoship.server.registry.service import Registry
    from bentoship.server.rollout.controller import Controller
    from bentoship.server.settings import ServerSettings
    from bentoship.server.store import Store

    settings = ServerSettings(data_dir=tmp_path, token="t")
    store = Store(tmp_path / "routes.db")
    app = build_app(settings, Registry(settings, store), Controller(settings, store))
    routes = []
    for route in app.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, Route):
            continue  # the console's static files, open to all
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"x\1", route.path)
        routes += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    store.close()
    return routes


def test_every_route_rejects_missing_and_wrong_token(
    shared_plane: LocalControlPlane, tmp_path: Path
) -> None:
    routes = api_routes(tmp_path)
    assert len(routes) > 30
    assert shared_plane.connection is not None
    token = shared_plane.connection.token
    # the token the server checks is kept private, and so is the connection file naming it
    for name in ("token", "connection.json"):
        assert (shared_plane.data_dir / name).stat().st_mode & 0o777 == 0o600
    assert (shared_plane.data_dir / "token").read_text().strip() == token
    with httpx.Client(base_url=shared_plane.connection.endpoint) as http:
        right = http.get("/api/v1/auth/current", headers={"X-YATAI-API-TOKEN": token})
        assert right.status_code == 200
        for method, path in routes:
            if path in PUBLIC_PATHS:
                # open to all; a sign-in sent without the form's CSRF secret is refused
                expected = 403 if (method, path) == ("POST", "/login") else 200
                assert http.request(method, path).status_code in (expected, 204), (method, path)
                continue
            missing = http.request(method, path)
            wrong = http.request(method, path, headers={"X-YATAI-API-TOKEN": "wrong"})
            assert wrong.status_code == 401, (method, path)
            assert "wrong API token" in wrong.text
            if not (path.startswith("/api/") or path == "/metrics"):
                # a console page: the sign-in form, or a 401 for a form sent without a session
                expected = 303 if method == "GET" else 401
                assert missing.status_code == expected, (method, path)
                continue
            assert missing.status_code == 401, (method, path)
            assert "X-YATAI-API-TOKEN" in missing.json()["error"]


def _tar(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("./src/escape")
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tar.addfile(info)
    return buffer.getvalue()


BENTO_YAML = b"name: evil\nversion: v1\nservice: service:Evil\n"


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (_tar({"./bento.yaml": BENTO_YAML, "../../outside.txt": b"x"}), "'..'"),
        (_tar({"./bento.yaml": BENTO_YAML, "/tmp/outside-abs.txt": b"x"}), "absolute path"),
        (_tar({"./bento.yaml": BENTO_YAML}, link="/etc/passwd"), "link"),
        (_tar({"./README.md": b"hello"}), "not a bento"),
        (b"this is not a tar archive at all", "not a readable tar"),
        (_tar({"./bento.yaml": b"name: other\nversion: v9\n"}), "not evil:v1"),
    ],
)
def test_unsafe_or_wrong_archives_are_rejected_with_nothing_written(
    shared_plane: LocalControlPlane, archive: bytes, problem: str
) -> None:
    api = Api(shared_plane)
    api.http.post("/api/v1/bento_repositories", json={"name": "evil", "description": ""})
    api.http.post(
        "/api/v1/bento_repositories/evil/bentos", json={"version": "v1", "description": ""}
    )
    api.http.patch("/api/v1/bento_repositories/evil/bentos/v1/start_upload")
    response = api.http.put(
        "/api/v1/bento_repositories/evil/bentos/v1/upload",
        content=archive,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 400
    assert problem in response.json()["error"]
    store_dir = shared_plane.data_dir / "bentoml" / "bentos" / "evil"
    assert not (store_dir / "v1").exists()
    assert list(store_dir.glob("*")) == [] if store_dir.exists() else True
    assert not (shared_plane.data_dir.parent / "outside.txt").exists()
    assert not Path("/tmp/outside-abs.txt").exists()
    assert list((shared_plane.data_dir / "uploads").glob("*")) == []
    bento = api.http.get("/api/v1/bento_repositories/evil/bentos/v1").json()
    assert bento["upload_status"] != "success"


@pytest.mark.slow
def test_oversized_archive_is_rejected(tmp_path: Path) -> None:
    # start_control_plane cannot pass --max-archive-bytes: start this plane by hand
    plane = LocalControlPlane(tmp_path / "small")
    plane.args += ["--max-archive-bytes", "1000"]
    plane.start()
    try:
        api = Api(plane)
        api.http.post("/api/v1/bento_repositories", json={"name": "big", "description": ""})
        api.http.post(
            "/api/v1/bento_repositories/big/bentos", json={"version": "v1", "description": ""}
        )
        archive = _tar({"./bento.yaml": b"name: big\nversion: v1\n", "./src/blob": b"0" * 5000})
        response = api.http.put("/api/v1/bento_repositories/big/bentos/v1/upload", content=archive)
        assert response.status_code == 400
        assert "larger than 1000 bytes" in response.json()["error"]
        assert not (plane.data_dir / "bentoml" / "bentos" / "big" / "v1").exists()
    finally:
        plane.stop()


def test_bad_requests_get_clear_errors_and_change_nothing(
    shared_plane: LocalControlPlane, echo_v1: str
) -> None:
    api = Api(shared_plane)
    api.push(echo_v1)
    before = api.http.get("/api/v2/deployments").json()

    unknown = api.http.get("/api/v2/deployments/no-such-deployment")
    assert unknown.status_code == 404 and "no-such-deployment" in unknown.json()["error"]
    unknown_update = api.http.put("/api/v2/deployments/no-such", json={"bento": echo_v1})
    assert unknown_update.status_code == 404

    cases = [
        ({"name": "ok-name", "bento": "not a tag"}, 400, "bento"),
        ({"name": "ok-name", "bento": "nosuch:v1"}, 404, "nosuch:v1"),
        ({"name": "Bad_Name", "bento": echo_v1}, 400, "name"),
        (
            {
                "name": "ok-name",
                "bento": echo_v1,
                "services": {"Echo": {"instance_type": "gpu.huge"}},
            },
            400,
            "services.Echo.instance_type",
        ),
        (
            {
                "name": "ok-name",
                "bento": echo_v1,
                "services": {"Echo": {"scaling": {"min_replicas": 3, "max_replicas": 1}}},
            },
            400,
            "services.Echo.scaling",
        ),
        ({"name": "ok-name", "bento": echo_v1, "envs": [{"value": "1"}]}, 400, "envs[0]"),
        (
            {"name": "ok-name", "bento": echo_v1, "access_authorization": "yes"},
            400,
            "access_authorization",
        ),
        ({"name": "ok-name", "bento": echo_v1, "services": {"Other": {}}}, 400, "services.Other"),
    ]
    for body, status, needle in cases:
        response = api.http.post("/api/v2/deployments", json=body)
        assert response.status_code == status, body
        message = response.json()["error"]
        assert needle in message and "\n" not in message, message
    assert (
        api.http.post("/api/v2/deployments?cluster=mars", json={"bento": echo_v1}).status_code
        == 404
    )
    assert api.http.post("/api/v2/deployments", content=b"{not json").status_code == 400
    assert api.http.get("/api/v2/deployments").json() == before


def test_no_extensions_hides_them(start_control_plane: object) -> None:
    plane: LocalControlPlane = start_control_plane(extensions=False)  # type: ignore[operator]
    api = Api(plane)
    assert api.http.get(PUBLIC_PATHS[0]).status_code == 404
    assert api.http.get("/api/v2/deployments/x/revisions").status_code == 404
    assert api.http.post("/api/v2/deployments/x/rollback").status_code == 404
    assert api.http.get("/api/v1/auth/current").status_code == 200
