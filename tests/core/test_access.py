"""Who may do what: API tokens, their scopes and expiry, console sessions and CSRF (no process)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bentoship.server.auth import Access
from bentoship.server.console.access_view import safe_next
from bentoship.server.console.sessions import CSRF_FIELD, SESSION_COOKIE, SessionBook
from bentoship.server.console.vendor import STATIC_DIR, check_vendored
from bentoship.server.errors import Forbidden, Invalid
from bentoship.server.store import Store
from bentoship.server.tokens import SERVER_PRINCIPAL, Principal, TokenBook, digest, parse_expiry

SERVER_TOKEN = "server-secret-token"
ROLLBACK = "/api/v2/deployments/steady/rollback"


async def answer(request: Request) -> JSONResponse:
    body = (await request.body()).decode()
    principal = request.scope["state"]["principal"]
    return JSONResponse({"who": principal.name, "body": body})


@pytest.fixture
def book(tmp_path: Path) -> Iterator[TokenBook]:
    store = Store(tmp_path / "state.db")
    yield TokenBook(store, SERVER_TOKEN)
    store.close()


@pytest.fixture
def sessions() -> SessionBook:
    return SessionBook()


@pytest.fixture
def client(book: TokenBook, sessions: SessionBook) -> TestClient:
    paths = [ROLLBACK, "/api/v2/deployments", "/deployments/steady", "/api_tokens", "/metrics"]
    app = Starlette(routes=[Route(p, answer, methods=["GET", "POST"]) for p in paths])
    return TestClient(Access(app, book, sessions), follow_redirects=False)


def token(value: str) -> dict[str, str]:
    return {"X-YATAI-API-TOKEN": value}


def test_requests_without_a_token_get_401_or_the_sign_in_page(client: TestClient) -> None:
    missing = client.get("/api/v2/deployments")
    assert missing.status_code == 401 and "X-YATAI-API-TOKEN" in missing.json()["error"]
    page = client.get("/deployments/steady?tab=logs")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fdeployments%2Fsteady%3Ftab%3Dlogs"
    assert client.post("/deployments/steady").status_code == 401
    wrong = client.get("/api/v2/deployments", headers=token("nope"))
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("wrong API token")
    assert "nope" not in wrong.text
    bearer = client.get("/metrics", headers={"Authorization": f"Bearer {SERVER_TOKEN}"})
    assert bearer.json()["who"] == "server token"


def test_a_pages_own_request_after_its_session_sends_the_whole_page_to_sign_in(
    client: TestClient,
) -> None:
    page = "http://127.0.0.1:8080/deployments/steady?tab=overview"
    for method in ("GET", "POST"):
        polled = client.request(
            method, "/deployments/steady", headers={"HX-Request": "true", "HX-Current-URL": page}
        )
        assert polled.status_code == 204, polled.text
        back = "/login?next=%2Fdeployments%2Fsteady%3Ftab%3Doverview"
        assert polled.headers["HX-Redirect"] == back
    elsewhere = client.get(
        "/deployments/steady", headers={"HX-Request": "true", "HX-Current-URL": "nonsense"}
    )
    assert elsewhere.headers["HX-Redirect"] == "/login?next=%2Fdeployments"


def test_a_request_without_a_token_is_told_both_ways_to_send_one(client: TestClient) -> None:
    missing = client.get("/metrics")
    message = missing.json()["error"]
    assert missing.status_code == 401
    assert "X-YATAI-API-TOKEN" in message and "Authorization: Bearer" in message
    # both ways the message names are accepted
    for headers in (token(SERVER_TOKEN), {"Authorization": f"Bearer {SERVER_TOKEN}"}):
        assert client.get("/metrics", headers=headers).json()["who"] == "server token"


def test_a_read_only_token_reads_but_every_write_gets_403(
    client: TestClient, book: TokenBook
) -> None:
    _, value = book.create("reader", scopes=["read_cluster", "read_organization"])
    assert client.get("/api/v2/deployments", headers=token(value)).json()["who"] == "reader"
    assert client.get("/api_tokens", headers=token(value)).status_code == 200
    refused = client.post(ROLLBACK, headers=token(value))
    assert refused.status_code == 403
    assert "write_cluster or api" in refused.json()["error"] and value not in refused.text
    assert client.post("/deployments/steady", headers=token(value)).status_code == 403
    assert client.post("/api_tokens", headers=token(value)).status_code == 403


def test_scopes_split_cluster_from_organization() -> None:
    deployer = Principal("deployer", "u1", frozenset({"write_cluster"}))
    assert deployer.may("POST", ROLLBACK) and deployer.may("GET", "/api/v2/deployments")
    assert not deployer.may("GET", "/api/v1/bento_repositories/echo")
    assert not deployer.may("POST", "/api/v1/api_tokens")
    assert deployer.may("GET", "/api/v1/auth/current")
    pusher = Principal("pusher", "u2", frozenset({"write_organization"}))
    assert pusher.may("PATCH", "/api/v1/bento_repositories/echo/bentos/v1/start_upload")
    assert not pusher.may("GET", "/api/v2/deployments")
    assert Principal("dev", "u3", frozenset({"api"})).may("DELETE", "/api/v2/deployments/x")


def test_expired_and_revoked_tokens_get_401(client: TestClient, book: TokenBook) -> None:
    record, value = book.create("short", expired_at="2999-01-01T00:00:00Z")
    assert client.get("/api/v2/deployments", headers=token(value)).status_code == 200
    book.store.update_api_token(record.uid, expired_at="2001-01-01T00:00:00.000000Z")
    book._by_digest.clear()
    expired = client.get("/api/v2/deployments", headers=token(value))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]

    other, kept = book.create("kept")
    book.revoke(other.uid)
    revoked = client.get("/api/v2/deployments", headers=token(kept))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]
    assert [t.name for t in book.list()] == ["short"]


def test_a_token_is_stored_hashed_and_cannot_grant_more_than_it_holds(
    book: TokenBook, tmp_path: Path
) -> None:
    record, value = book.create("ci", scopes=["read_cluster", "write_cluster"])
    assert value.startswith("bsp_") and record.digest == digest(value)
    with sqlite3.connect(tmp_path / "state.db") as db:
        dumped = "\n".join(db.iterdump())
    assert value not in dumped and record.digest in dumped
    holder = book.authenticate(value.encode(), clock=0.0)
    assert isinstance(holder, Principal)
    assert book.store.list_api_tokens()[0].last_used_at is not None
    with pytest.raises(Forbidden):
        book.create("wider", scopes=["write_organization"], by=holder)
    assert book.create("narrower", scopes=["read_cluster"], by=holder)[0].scopes == ["read_cluster"]
    with pytest.raises(Invalid, match="unknown scope"):
        book.create("typo", scopes=["admin"])
    with pytest.raises(Invalid, match="in the past"):
        book.create("late", expired_at="2001-01-01T00:00:00Z")
    assert book.create("default")[0].scopes == ["api"]
    assert book.authenticate(SERVER_TOKEN.encode()) is SERVER_PRINCIPAL


def test_expiry_without_a_zone_is_local_time() -> None:
    local = datetime(2030, 1, 2, 3, 4, 5)
    stored = parse_expiry(local.isoformat())
    assert stored is not None and stored.endswith("Z")
    assert datetime.fromisoformat(stored.replace("Z", "+00:00")) == local.astimezone()
    assert parse_expiry("2030-01-02T03:04:05+02:00") == "2030-01-02T01:04:05.000000Z"
    with pytest.raises(Invalid, match="ISO 8601"):
        parse_expiry("next tuesday")


def signed_in(client: TestClient, sessions: SessionBook, value: str) -> str:
    key, session = sessions.open(digest(value))
    client.cookies.set(SESSION_COOKIE, key)
    return session.csrf


def test_a_session_needs_its_csrf_token_for_every_write(
    client: TestClient, sessions: SessionBook
) -> None:
    csrf = signed_in(client, sessions, SERVER_TOKEN)
    assert client.get("/deployments/steady").json()["who"] == "server token"
    cross_site = client.post("/deployments/steady", data={"revision": "r1"})
    assert cross_site.status_code == 403 and "CSRF" in cross_site.text
    forged = client.post("/deployments/steady", data={CSRF_FIELD: "guess", "revision": "r1"})
    assert forged.status_code == 403
    form = client.post("/deployments/steady", data={CSRF_FIELD: csrf, "revision": "r1"})
    assert form.status_code == 200
    assert form.json()["body"] == f"{CSRF_FIELD}={csrf}&revision=r1"
    assert client.post(ROLLBACK, json={}).status_code == 403
    assert client.post(ROLLBACK, json={}, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_a_session_ends_with_its_token(
    client: TestClient, sessions: SessionBook, book: TokenBook
) -> None:
    record, value = book.create("person", scopes=["read_cluster"])
    csrf = signed_in(client, sessions, value)
    assert client.get("/deployments/steady").status_code == 200
    refused = client.post("/deployments/steady", data={CSRF_FIELD: csrf})
    assert refused.status_code == 403 and "read_cluster" in refused.text
    book.revoke(record.uid)
    assert client.get("/deployments/steady").status_code == 303
    assert client.get("/api/v2/deployments").status_code == 401


def test_sign_in_goes_back_only_to_this_server() -> None:
    assert safe_next("/deployments/steady?tab=logs") == "/deployments/steady?tab=logs"
    for outside in ("//evil.example/x", "https://evil.example", "/\\evil.example", "", None):
        assert safe_next(outside) == "/deployments"


def test_vendored_files_match_their_pins(tmp_path: Path) -> None:
    check_vendored()
    copy = tmp_path / "static"
    shutil.copytree(STATIC_DIR, copy)
    script = copy / "vendor" / "htmx.min.js"
    script.write_text(script.read_text() + "\n// changed\n")
    with pytest.raises(RuntimeError, match=r"htmx\.min\.js .* does not match its pinned hash"):
        check_vendored(copy)


def test_sessions_expire(sessions: SessionBook) -> None:
    short = SessionBook(seconds=-1)
    key, _ = short.open("d")
    assert short.get(key) is None
    key, session = sessions.open("d")
    assert sessions.get(key) == session and sessions.get("other") is None
    sessions.close(key)
    assert sessions.get(key) is None


def test_a_new_server_token_never_starts_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bentoship status --token <value>`` must not read the token as an option."""
    import secrets

    from bentoship.server.auth import load_or_create_token

    made = iter(["-starts-with-a-dash", "plain-token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda size: next(made))
    assert load_or_create_token(tmp_path) == "plain-token"
    assert (tmp_path / "token").read_text() == "plain-token\n"


def test_a_token_needs_a_name(book: TokenBook) -> None:
    for name in ("", "   ", "x" * 129):
        with pytest.raises(Invalid, match="name is required"):
            book.create(name)
    assert book.create("  ci  ")[0].name == "ci"
