"""``Client`` and ``AsyncClient``: BentoCloud's REST API (v1 bentos, v2 deployments) over httpx."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from . import _http
from ._http import Call, RetryPolicy
from .connection import Connection, mask_token, resolve_connection
from .errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ServerUnavailableError,
)
from .models import DeploymentInfo, RevisionInfo

DEFAULT_TIMEOUT = 30.0
INFO_PATH = "/api/v1/bentoship/info"
LONG_POLL_SLACK = 10.0


class ResponseLost(ServerUnavailableError):
    """A non-idempotent request may have reached the server, but its answer was lost."""


def _deployment_path(name: str, suffix: str = "") -> str:
    return f"/api/v2/deployments/{name}{suffix}"


def _bento_path(tag: str) -> tuple[str, str]:
    name, _, version = tag.partition(":")
    return f"/api/v1/bento_repositories/{name}/bentos/{version or 'latest'}", f"{name}:{version}"


def _not_found(name: str) -> str:
    return f"deployment {name!r} not found; check the name, or deploy it first"


class _Calls:
    """The requests both clients send, and how their answers are read."""

    @staticmethod
    def get_deployment(name: str) -> Call:
        return Call("GET", _deployment_path(name), not_found=_not_found(name))

    @staticmethod
    def list_deployments() -> Call:
        return Call("GET", "/api/v2/deployments", params={"count": 1000})

    @staticmethod
    def create_deployment(name: str | None, bento: str, config: dict[str, Any]) -> Call:
        body = _http.deployment_body(name, bento, config)
        return Call("POST", "/api/v2/deployments", json=body, idempotent=False)

    @staticmethod
    def update_deployment(name: str, bento: str, config: dict[str, Any]) -> Call:
        body = _http.deployment_body(None, bento, config)
        return Call("PUT", _deployment_path(name), json=body, not_found=_not_found(name))

    @staticmethod
    def terminate_deployment(name: str) -> Call:
        return Call("POST", _deployment_path(name, "/terminate"), not_found=_not_found(name))

    @staticmethod
    def delete_deployment(name: str) -> Call:
        return Call("DELETE", _deployment_path(name), not_found=_not_found(name))

    @staticmethod
    def list_revisions(name: str) -> Call:
        return Call("GET", _deployment_path(name, "/revisions"), not_found=_not_found(name))

    @staticmethod
    def rollback(name: str, revision: str | None) -> Call:
        body = {"revision": revision} if revision else {}
        return Call(
            "POST",
            _deployment_path(name, "/rollback"),
            json=body,
            idempotent=revision is not None,
            not_found=f"deployment {name!r} or its revision {revision!r} not found",
        )

    @staticmethod
    def logs(name: str, revision: str, tail: int) -> Call:
        return Call(
            "GET",
            _deployment_path(name, f"/revisions/{revision}/logs"),
            params={"tail": tail},
            not_found=f"deployment {name!r} has no revision {revision!r}",
        )

    @staticmethod
    def wait(name: str, status: str, timeout: float) -> Call:
        return Call(
            "GET",
            _deployment_path(name, "/wait"),
            params={"status": status, "timeout": timeout},
            timeout=timeout + LONG_POLL_SLACK,
            not_found=_not_found(name),
        )

    @staticmethod
    def get_bento(tag: str) -> Call:
        path, shown = _bento_path(tag)
        return Call("GET", path, not_found=f"bento {shown} is not on the server; push it first")

    @staticmethod
    def current_user() -> Call:
        return Call("GET", "/api/v1/auth/current")

    @staticmethod
    def info() -> Call:
        return Call("GET", INFO_PATH, not_found="no bentoship extensions")

    @staticmethod
    def extensions(answer: Any) -> frozenset[str]:
        if isinstance(answer, dict) and answer.get("server") == "bentoship":
            return frozenset(str(e) for e in answer.get("extensions") or [])
        return frozenset()

    @staticmethod
    def entry_service(bento: dict[str, Any]) -> str:
        manifest = bento.get("manifest") or {}
        entry = manifest.get("entry_service") or ""
        if not entry and manifest.get("services"):
            entry = manifest["services"][0].get("name", "")
        return str(entry)


class _Base:
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.connection: Connection = resolve_connection(endpoint, token)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._extensions: frozenset[str] | None = None

    @classmethod
    def from_env(cls, *, home: Path | None = None, **kwargs: Any) -> Self:
        """Connect with ``BENTO_CLOUD_API_*``, else ``connection.json`` in ``home``."""
        connection = resolve_connection(home=home)
        return cls(connection.endpoint, connection.token, **kwargs)

    @property
    def endpoint(self) -> str:
        return self.connection.endpoint

    def __repr__(self) -> str:
        token = mask_token(self.connection.token)
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, token={token!r})"

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        return http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            timeout=call.timeout or self.timeout,
        )

    def _fault(self, call: Call, exc: httpx.HTTPError) -> ServerUnavailableError:
        error = _http.unreachable(self.endpoint, exc)
        if not call.idempotent and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ResponseLost(f"{call.method} {call.path}: {error}")
        return ServerUnavailableError(str(error))

    def _answer(self, call: Call, response: httpx.Response) -> Any:
        _http.raise_for_response(response, call, self.endpoint, self.connection.token)
        return response.json()


class Client(_Base):
    """A synchronous client for BentoCloud or the local control plane.

    ``Client()`` reads ``BENTO_CLOUD_API_ENDPOINT``/``BENTO_CLOUD_API_KEY``, else the local
    control plane's ``connection.json`` (``$BENTOSHIP_HOME`` or ``~/.bentoship``).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint, token, timeout=timeout, retry=retry)
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers=_http.client_headers(self.connection.token),
            transport=transport,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call) -> Any:
        delays = self.retry.delays()
        while True:
            try:
                response = self._http.send(self._request(self._http, call))
            except httpx.HTTPError as exc:
                delay = next(delays, None) if _http.retryable_error(exc, call) else None
                if delay is None:
                    raise self._fault(call, exc) from None
                time.sleep(delay)
                continue
            if _http.retryable_status(response, call):
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            return self._answer(call, response)

    @property
    def extensions(self) -> frozenset[str]:
        """The local control plane's extensions; empty on plain BentoCloud."""
        if self._extensions is None:
            try:
                self._extensions = _Calls.extensions(self._send(_Calls.info()))
            except (NotFoundError, InvalidRequestError, AuthenticationError):
                self._extensions = frozenset()
        return self._extensions

    def current_user(self) -> dict[str, Any]:
        return dict(self._send(_Calls.current_user()))

    def get_deployment(self, name: str) -> DeploymentInfo:
        return DeploymentInfo.from_api(self._send(_Calls.get_deployment(name)))

    def find_deployment(self, name: str) -> DeploymentInfo | None:
        try:
            return self.get_deployment(name)
        except NotFoundError:
            return None

    def list_deployments(self) -> list[DeploymentInfo]:
        items = self._send(_Calls.list_deployments())["items"]
        return [DeploymentInfo.from_api(item) for item in items]

    def create_deployment(self, name: str, bento: str, config: dict[str, Any]) -> DeploymentInfo:
        """Create ``name``; when an answer is lost, look before creating again."""
        delays = self.retry.delays()
        while True:
            try:
                return DeploymentInfo.from_api(
                    self._send(_Calls.create_deployment(name, bento, config))
                )
            except ResponseLost:
                existing = self.find_deployment(name)
                if existing is not None and existing.bento == bento:
                    return existing
                delay = next(delays, None)
                if existing is not None or delay is None:
                    raise
                time.sleep(delay)

    def update_deployment(self, name: str, bento: str, config: dict[str, Any]) -> DeploymentInfo:
        return DeploymentInfo.from_api(self._send(_Calls.update_deployment(name, bento, config)))

    def terminate_deployment(self, name: str) -> DeploymentInfo:
        return DeploymentInfo.from_api(self._send(_Calls.terminate_deployment(name)))

    def delete_deployment(self, name: str) -> None:
        self._send(_Calls.delete_deployment(name))

    def list_revisions(self, name: str) -> list[RevisionInfo]:
        items = self._send(_Calls.list_revisions(name))["items"]
        return [RevisionInfo.from_api(item) for item in items]

    def rollback(self, name: str, revision: str | None = None) -> DeploymentInfo:
        return DeploymentInfo.from_api(self._send(_Calls.rollback(name, revision)))

    def logs(self, name: str, revision: str, tail: int = 200) -> list[str]:
        return list(self._send(_Calls.logs(name, revision, tail))["lines"])

    def wait_for_change(self, name: str, status: str, timeout: float) -> DeploymentInfo:
        """Long-poll until the status differs from ``status`` or ``timeout`` passes."""
        return DeploymentInfo.from_api(self._send(_Calls.wait(name, status, timeout)))

    def get_bento(self, tag: str) -> dict[str, Any]:
        return dict(self._send(_Calls.get_bento(tag)))

    def bento_uploaded(self, tag: str) -> bool:
        try:
            return self.get_bento(tag).get("upload_status") == "success"
        except NotFoundError:
            return False

    def entry_service(self, tag: str) -> str:
        return _Calls.entry_service(self.get_bento(tag))


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`, for triggers and connectors that must not block."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint, token, timeout=timeout, retry=retry)
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            headers=_http.client_headers(self.connection.token),
            transport=transport,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call) -> Any:
        delays = self.retry.delays()
        while True:
            try:
                response = await self._http.send(self._request(self._http, call))
            except httpx.HTTPError as exc:
                delay = next(delays, None) if _http.retryable_error(exc, call) else None
                if delay is None:
                    raise self._fault(call, exc) from None
                await asyncio.sleep(delay)
                continue
            if _http.retryable_status(response, call):
                delay = next(delays, None)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
            return self._answer(call, response)

    async def get_extensions(self) -> frozenset[str]:
        if self._extensions is None:
            try:
                self._extensions = _Calls.extensions(await self._send(_Calls.info()))
            except (NotFoundError, InvalidRequestError, AuthenticationError):
                self._extensions = frozenset()
        return self._extensions

    async def current_user(self) -> dict[str, Any]:
        return dict(await self._send(_Calls.current_user()))

    async def get_deployment(self, name: str) -> DeploymentInfo:
        return DeploymentInfo.from_api(await self._send(_Calls.get_deployment(name)))

    async def list_revisions(self, name: str) -> list[RevisionInfo]:
        items = (await self._send(_Calls.list_revisions(name)))["items"]
        return [RevisionInfo.from_api(item) for item in items]

    async def rollback(self, name: str, revision: str | None = None) -> DeploymentInfo:
        return DeploymentInfo.from_api(await self._send(_Calls.rollback(name, revision)))

    async def logs(self, name: str, revision: str, tail: int = 200) -> list[str]:
        return list((await self._send(_Calls.logs(name, revision, tail)))["lines"])

    async def wait_for_change(self, name: str, status: str, timeout: float) -> DeploymentInfo:
        return DeploymentInfo.from_api(await self._send(_Calls.wait(name, status, timeout)))
