"""``Client`` and ``AsyncClient``: BentoCloud's REST API (v1 bentos, v2 deployments) over httpx.

Both clients have the same methods with the same names; each operation is written once, as a
plan (see :mod:`bentoship._http`), and each client only runs plans, blocking or awaiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from . import _http
from ._http import Call, Plan, RetryPolicy, Sleep
from .connection import Connection, mask_token, resolve_connection
from .errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ResponseLost,
)
from .models import DeploymentEvent, DeploymentInfo, LogEntry, RevisionInfo, TrafficReport
from .refs import entry_service

__all__ = ["DEFAULT_TIMEOUT", "AsyncClient", "Client"]

DEFAULT_TIMEOUT = 30.0
INFO_PATH = "/api/v1/bentoship/info"
NDJSON = "application/x-ndjson"
LONG_POLL_SLACK = 10.0
LONG_POLL_LIMIT = 60.0
"""The longest wait the server's ``…/wait`` accepts, in seconds."""
PIECE = 1 << 20
"""The size of the pieces a large request body is sent in."""
T = TypeVar("T")


def _deployment_path(name: str, suffix: str = "") -> str:
    return f"/api/v2/deployments/{name}{suffix}"


def _not_found(name: str) -> str:
    return f"deployment {name!r} not found; check the name, or deploy it first"


def _follow_call(name: str, since: str | None, revision: str | None, pattern: str | None) -> Call:
    """The request of a followed log (a stream of server-sent events)."""
    search = {"since": since, "revision": revision, "pattern": pattern, "follow": "true"}
    params = {key: value for key, value in search.items() if value is not None}
    return Call("GET", _deployment_path(name, "/logs"), params=params, not_found=_not_found(name))


def _promotion(candidate: bool) -> dict[str, str] | None:
    return {"promotion": "manual"} if candidate else None


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A large body sent in pieces of ``PIECE`` bytes: httpcore's blocking write copies what is
    left of its buffer after each partial send, so one large piece costs time quadratic in its
    size (a 63 MiB body: 0.2 s, in pieces 0.08 s)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._body), PIECE):
            yield self._body[start : start + PIECE]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece


class _Plans:
    """Every API operation as a plan, for one endpoint, token and retry policy."""

    def __init__(
        self,
        endpoint: str | None,
        token: str | None,
        *,
        timeout: float,
        retry: RetryPolicy | None,
    ) -> None:
        self.connection: Connection = resolve_connection(endpoint, token)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._extensions: frozenset[str] | None = None

    @classmethod
    def from_env(cls, *, home: Path | None = None, **kwargs: Any) -> Self:
        """Connect with ``BENTO_CLOUD_API_*``, else ``connection.json`` in ``home``."""
        return cls.from_connection(resolve_connection(home=home), **kwargs)

    @classmethod
    def from_connection(cls, connection: Connection, **kwargs: Any) -> Self:
        """Connect as ``connection`` says; a rejected token's error names its ``source``."""
        client = cls(connection.endpoint, connection.token, **kwargs)
        client.connection = connection
        return client

    @property
    def endpoint(self) -> str:
        return self.connection.endpoint

    def __repr__(self) -> str:
        token = mask_token(self.connection.token)
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, token={token!r})"

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        headers = _http.trace_headers()
        if call.content is not None:
            request = http.build_request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers={"Content-Type": call.content_type, **headers},
                timeout=call.timeout or self.timeout,
            )
            if len(call.content) > PIECE:
                request.stream = _Pieces(call.content)
            return request
        return http.build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json,
            headers=headers,
            timeout=call.timeout or self.timeout,
        )

    # the plans

    def _exchange(self, call: Call) -> Plan[Any]:
        try:
            response: httpx.Response = yield call
        except httpx.HTTPError as exc:
            raise _http.transport_error(self.endpoint, call, exc) from None
        _http.raise_for_response(response, call, self.connection)
        return response.json()

    def _send(self, call: Call) -> Plan[Any]:
        return _http.retrying(
            self.retry, lambda: self._exchange(call), lambda exc: _http.retryable(exc, call)
        )

    def _plan_extensions(self) -> Plan[frozenset[str]]:
        if self._extensions is None:
            try:
                answer = yield from self._send(Call("GET", INFO_PATH, not_found="no extensions"))
            except (NotFoundError, InvalidRequestError, AuthenticationError):
                answer = None
            found: frozenset[str] = frozenset()
            if isinstance(answer, dict) and answer.get("server") == "bentoship":
                found = frozenset(str(e) for e in answer.get("extensions") or [])
            self._extensions = found
        return self._extensions

    def _plan_deployment(self, call: Call) -> Plan[DeploymentInfo]:
        return DeploymentInfo.from_api((yield from self._send(call)))

    def _plan_get_deployment(self, name: str) -> Plan[DeploymentInfo]:
        call = Call("GET", _deployment_path(name), not_found=_not_found(name))
        return (yield from self._plan_deployment(call))

    def _plan_find_deployment(self, name: str) -> Plan[DeploymentInfo | None]:
        try:
            return (yield from self._plan_get_deployment(name))
        except NotFoundError:
            return None

    def _plan_list_deployments(self) -> Plan[list[DeploymentInfo]]:
        answer = yield from self._send(Call("GET", "/api/v2/deployments", params={"count": 1000}))
        return [DeploymentInfo.from_api(item) for item in answer["items"]]

    def _plan_create_deployment(
        self, name: str, bento: str, config: dict[str, Any], candidate: bool
    ) -> Plan[DeploymentInfo]:
        body = _http.deployment_body(name, bento, config)
        call = Call(
            "POST",
            "/api/v2/deployments",
            params=_promotion(candidate),
            json=body,
            idempotent=False,
        )

        def attempt() -> Plan[DeploymentInfo]:
            try:
                return (yield from self._plan_deployment(call))
            except ResponseLost as lost:
                existing = yield from self._plan_find_deployment(name)
                if existing is not None and existing.bento == bento:
                    return existing
                if existing is not None:
                    raise
                raise _Unanswered(str(lost)) from None

        return (
            yield from _http.retrying(self.retry, attempt, lambda exc: isinstance(exc, _Unanswered))
        )

    def _plan_update_deployment(
        self, name: str, bento: str, config: dict[str, Any], candidate: bool
    ) -> Plan[DeploymentInfo]:
        body = _http.deployment_body(None, bento, config)
        call = Call(
            "PUT",
            _deployment_path(name),
            params=_promotion(candidate),
            json=body,
            not_found=_not_found(name),
        )
        return (yield from self._plan_deployment(call))

    def _plan_promote(self, name: str, revision: str | None) -> Plan[DeploymentInfo]:
        call = Call(
            "POST",
            _deployment_path(name, "/promote"),
            json={"revision": revision} if revision else {},
            not_found=f"deployment {name!r} or its revision {revision!r} not found",
        )
        return (yield from self._plan_deployment(call))

    def _plan_discard(self, name: str) -> Plan[DeploymentInfo]:
        call = Call("POST", _deployment_path(name, "/discard"), not_found=_not_found(name))
        return (yield from self._plan_deployment(call))

    def _plan_set_canary(
        self, name: str, weight: int, route_type: str, route_by: str | None
    ) -> Plan[DeploymentInfo]:
        call = Call(
            "PUT",
            _deployment_path(name, "/canary"),
            json={"weight": weight, "route_type": route_type, "route_by": route_by},
            not_found=_not_found(name),
        )
        return (yield from self._plan_deployment(call))

    def _plan_traffic(self, name: str) -> Plan[TrafficReport]:
        call = Call("GET", _deployment_path(name, "/traffic"), not_found=_not_found(name))
        return TrafficReport.from_api((yield from self._send(call)))

    def _plan_start_analysis(
        self, name: str, canary: dict[str, Any] | None, shadow: dict[str, Any] | None
    ) -> Plan[dict[str, Any]]:
        if (canary is None) == (shadow is None):
            raise ConfigError("start_analysis: pass one plan, canary= or shadow=")
        plan = {"canary": canary} if canary is not None else {"shadow": shadow}
        call = Call(
            "PUT", _deployment_path(name, "/analysis"), json=plan, not_found=_not_found(name)
        )
        return dict((yield from self._send(call)))

    def _plan_send_feedback(
        self,
        name: str,
        monitor: str,
        labels: list[dict[str, Any]] | bytes,
        id_field: str | None,
        source: tuple[str, int] | None = None,
    ) -> Plan[dict[str, Any]]:
        params: dict[str, Any] = {"monitor": monitor}
        if id_field:
            params["id_field"] = id_field
        if source is not None:
            params["source"], params["watermark"] = source
        if isinstance(labels, bytes):
            body = labels
            kind = "application/vnd.apache.parquet" if body[:4] == b"PAR1" else NDJSON
        else:
            body = "\n".join(json.dumps(label) for label in labels).encode()
            kind = NDJSON
        call = Call(
            "POST",
            _deployment_path(name, "/feedback"),
            params=params,
            content=body,
            content_type=kind,
            timeout=300.0,
            not_found=_not_found(name),
        )
        return dict((yield from self._send(call)))

    def _plan_feedback_watermark(self, name: str, monitor: str, source: str) -> Plan[int | None]:
        call = Call(
            "GET",
            _deployment_path(name, "/feedback"),
            params={"monitor": monitor, "source": source},
            not_found=_not_found(name),
        )
        found = (yield from self._send(call))["watermark"]
        return None if found is None else int(found)

    def _plan_quality(
        self, name: str, monitor: str, params: dict[str, Any]
    ) -> Plan[dict[str, Any]]:
        wanted = {k: v for k, v in params.items() if v is not None}
        call = Call(
            "GET",
            _deployment_path(name, "/quality"),
            params={"monitor": monitor, **wanted},
            timeout=120.0,
            not_found=_not_found(name),
        )
        return dict((yield from self._send(call)))

    def _plan_request_approval(
        self, name: str, message: str, timeout: float, evidence: dict[str, Any] | None
    ) -> Plan[dict[str, Any]]:
        call = Call(
            "POST",
            _deployment_path(name, "/approvals"),
            json={"message": message, "timeout": timeout, "evidence": evidence},
            not_found=_not_found(name),
        )
        return dict((yield from self._send(call)))

    def _plan_approvals(self, name: str) -> Plan[list[dict[str, Any]]]:
        call = Call("GET", _deployment_path(name, "/approvals"), not_found=_not_found(name))
        return list((yield from self._send(call))["approvals"])

    def _plan_approval(self, name: str, approval_id: str, wait: float) -> Plan[dict[str, Any]]:
        wait = min(max(wait, 0.0), LONG_POLL_LIMIT)
        call = Call(
            "GET",
            _deployment_path(name, f"/approvals/{approval_id}"),
            params={"timeout": f"{wait:.3f}"},
            timeout=wait + LONG_POLL_SLACK,
            not_found=f"approval {approval_id} of {name} not found",
        )
        return dict((yield from self._send(call)))

    def _plan_decide(
        self, name: str, approval_id: str | None, approve: bool, comment: str
    ) -> Plan[dict[str, Any]]:
        if approval_id is None:
            pending = [
                a for a in (yield from self._plan_approvals(name)) if a["state"] == "pending"
            ]
            if not pending:
                raise InvalidRequestError(
                    f"deployment {name} has no pending approval; `bentoship approvals {name}` "
                    "lists them"
                )
            approval_id = str(pending[0]["id"])
        verb = "approve" if approve else "reject"
        call = Call(
            "POST",
            _deployment_path(name, f"/approvals/{approval_id}/{verb}"),
            json={"comment": comment},
            idempotent=False,
            not_found=f"approval {approval_id} of {name} not found",
        )
        return dict((yield from self._send(call)))

    def _plan_set_shadow(
        self, name: str, percent: int, apis: list[str] | None
    ) -> Plan[dict[str, Any]]:
        call = Call(
            "PUT",
            _deployment_path(name, "/shadow"),
            json={"percent": percent, "apis": apis},
            not_found=_not_found(name),
        )
        return dict((yield from self._send(call)))

    def _plan_traces(self, name: str, params: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
        extensions = yield from self._plan_extensions()
        if "traces" not in extensions:
            raise InvalidRequestError(
                "this server keeps no traces (BentoCloud has no API for them); read them in "
                "the OTLP backend your services export to"
            )
        query = {key: value for key, value in params.items() if value is not None}
        call = Call(
            "GET", _deployment_path(name, "/traces"), params=query, not_found=_not_found(name)
        )
        return list((yield from self._send(call))["traces"])

    def _plan_trace(self, trace_id: str) -> Plan[list[dict[str, Any]]]:
        call = Call(
            "GET",
            f"/api/v2/traces/{trace_id}",
            not_found=f"trace {trace_id!r} not found; it may not be sampled, or is past retention",
        )
        return list((yield from self._send(call))["spans"])

    def _plan_shadow(self, name: str) -> Plan[dict[str, Any]]:
        call = Call("GET", _deployment_path(name, "/shadow"), not_found=_not_found(name))
        return dict((yield from self._send(call)))

    def _plan_shadow_pairs(self, name: str, since: float, limit: int) -> Plan[list[dict[str, Any]]]:
        call = Call(
            "GET",
            _deployment_path(name, "/shadow/pairs"),
            params={"since": f"{max(since, 0.0):.9f}", "limit": limit},
            not_found=_not_found(name),
        )
        return list((yield from self._send(call))["pairs"])

    def _plan_analysis(self, name: str, seen: int, timeout: float) -> Plan[dict[str, Any]]:
        timeout = min(max(timeout, 0.0), LONG_POLL_LIMIT)
        call = Call(
            "GET",
            _deployment_path(name, "/analysis"),
            params={"seen": seen, "timeout": f"{timeout:.3f}"},
            timeout=timeout + LONG_POLL_SLACK,
            not_found=f"deployment {name} not found, or it has had no analysis",
        )
        return dict((yield from self._send(call)))

    def _plan_terminate_deployment(self, name: str) -> Plan[DeploymentInfo]:
        call = Call("POST", _deployment_path(name, "/terminate"), not_found=_not_found(name))
        return (yield from self._plan_deployment(call))

    def _plan_delete_deployment(self, name: str) -> Plan[None]:
        yield from self._send(Call("DELETE", _deployment_path(name), not_found=_not_found(name)))

    def _plan_list_revisions(self, name: str) -> Plan[list[RevisionInfo]]:
        call = Call("GET", _deployment_path(name, "/revisions"), not_found=_not_found(name))
        answer = yield from self._send(call)
        return [RevisionInfo.from_api(item) for item in answer["items"]]

    def _plan_rollback(
        self, name: str, revision: str | None, reason: str | None = None, force: bool = False
    ) -> Plan[DeploymentInfo]:
        body: dict[str, Any] = {"revision": revision} if revision else {}
        if reason:
            body["reason"] = reason[:1000]
        if force:
            body["force"] = True
        call = Call(
            "POST",
            _deployment_path(name, "/rollback"),
            json=body,
            idempotent=revision is not None,
            not_found=f"deployment {name!r} or its revision {revision!r} not found",
        )
        return (yield from self._plan_deployment(call))

    def _plan_logs(self, name: str, revision: str, tail: int) -> Plan[list[str]]:
        call = Call(
            "GET",
            _deployment_path(name, f"/revisions/{revision}/logs"),
            params={"tail": tail},
            not_found=f"deployment {name!r} has no revision {revision!r}",
        )
        return list((yield from self._send(call))["lines"])

    def _plan_search_logs(self, name: str, search: dict[str, Any]) -> Plan[list[LogEntry]]:
        params = {key: value for key, value in search.items() if value is not None}
        call = Call(
            "GET", _deployment_path(name, "/logs"), params=params, not_found=_not_found(name)
        )
        return [LogEntry.from_api(line) for line in (yield from self._send(call))["lines"]]

    def _plan_events(
        self, name: str, after: int | None, since: str | None, limit: int | None = None
    ) -> Plan[list[DeploymentEvent]]:
        given = {"after": after, "since": since or None, "limit": limit}
        params = {key: value for key, value in given.items() if value is not None}
        call = Call(
            "GET", _deployment_path(name, "/events"), params=params, not_found=_not_found(name)
        )
        return [DeploymentEvent.from_api(e) for e in (yield from self._send(call))["events"]]

    def _plan_metrics(self, name: str, query: dict[str, Any]) -> Plan[dict[str, Any]]:
        params = {key: value for key, value in query.items() if value is not None}
        call = Call(
            "GET", _deployment_path(name, "/metrics"), params=params, not_found=_not_found(name)
        )
        return dict((yield from self._send(call)))

    def _plan_monitoring_records(
        self, name: str, monitor: str, after: int | None, limit: int, since: str | None = None
    ) -> Plan[list[dict[str, Any]]]:
        extensions = yield from self._plan_extensions()
        if "monitoring" not in extensions:
            raise InvalidRequestError(
                "this server keeps no monitoring data (BentoCloud has no API for it); export "
                "from where your collector writes it: export_monitoring(..., source=<Parquet "
                "path or SqlQuery>)"
            )
        call = Call(
            "GET",
            _deployment_path(name, f"/monitoring/{monitor}"),
            params={
                "limit": limit,
                **({} if after is None else {"after": after}),
                **({} if since is None else {"since": since}),
            },
            not_found=f"monitor {monitor!r} of deployment {name!r} has no records",
        )
        return list((yield from self._send(call))["records"])

    def _plan_wait_for_change(
        self, name: str, status: str, timeout: float, phase: str | None
    ) -> Plan[DeploymentInfo]:
        timeout = min(max(timeout, 0.0), LONG_POLL_LIMIT)
        params: dict[str, Any] = {"status": status, "timeout": f"{timeout:.3f}"}
        if phase:
            params["phase"] = phase
        call = Call(
            "GET",
            _deployment_path(name, "/wait"),
            params=params,
            timeout=timeout + LONG_POLL_SLACK,
            not_found=_not_found(name),
        )
        return (yield from self._plan_deployment(call))

    def _plan_get_bento(self, tag: str) -> Plan[dict[str, Any]]:
        name, _, version = tag.partition(":")
        call = Call(
            "GET",
            f"/api/v1/bento_repositories/{name}/bentos/{version or 'latest'}",
            not_found=f"bento {name}:{version} is not on the server; push it first",
        )
        return dict((yield from self._send(call)))

    def _plan_bento_uploaded(self, tag: str) -> Plan[bool]:
        try:
            bento = yield from self._plan_get_bento(tag)
        except NotFoundError:
            return False
        return bento.get("upload_status") == "success"

    def _plan_entry_service(self, tag: str) -> Plan[str]:
        return entry_service((yield from self._plan_get_bento(tag)).get("manifest"))

    def _plan_resolve_bento(self, tag: str) -> Plan[tuple[str, str]]:
        bento = yield from self._plan_get_bento(tag)
        name, _, version = tag.partition(":")
        if version == "latest":
            version = str(bento.get("version") or bento.get("name") or version)
        return f"{name}:{version}", entry_service(bento.get("manifest"))

    def _plan_current_user(self) -> Plan[dict[str, Any]]:
        return dict((yield from self._send(Call("GET", "/api/v1/auth/current"))))


class _Unanswered(ResponseLost):
    """A create got no answer and the deployment does not exist: it may be sent again."""


class Client(_Plans):
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
            verify=_http.tls_context(),
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

    def _run(self, plan: Plan[T]) -> T:
        return _http.run_blocking(
            plan, lambda call: self._http.send(self._request(self._http, call))
        )

    def get_extensions(self) -> frozenset[str]:
        """The local control plane's extensions; empty on plain BentoCloud."""
        return self._run(self._plan_extensions())

    def current_user(self) -> dict[str, Any]:
        return self._run(self._plan_current_user())

    def get_deployment(self, name: str) -> DeploymentInfo:
        return self._run(self._plan_get_deployment(name))

    def find_deployment(self, name: str) -> DeploymentInfo | None:
        """The deployment, or None when it does not exist."""
        return self._run(self._plan_find_deployment(name))

    def list_deployments(self) -> list[DeploymentInfo]:
        return self._run(self._plan_list_deployments())

    def create_deployment(
        self, name: str, bento: str, config: dict[str, Any], *, candidate: bool = False
    ) -> DeploymentInfo:
        """Create ``name``; when an answer is lost, look before creating again.

        ``candidate`` holds the revision for verification (the ``candidates`` extension).
        """
        return self._run(self._plan_create_deployment(name, bento, config, candidate))

    def update_deployment(
        self, name: str, bento: str, config: dict[str, Any], *, candidate: bool = False
    ) -> DeploymentInfo:
        return self._run(self._plan_update_deployment(name, bento, config, candidate))

    def promote(self, name: str, revision: str | None = None) -> DeploymentInfo:
        """Switch the endpoint to the candidate (``revision``, if given, must be it)."""
        return self._run(self._plan_promote(name, revision))

    def discard(self, name: str) -> DeploymentInfo:
        """Stop the candidate; the endpoint keeps serving what it serves."""
        return self._run(self._plan_discard(name))

    def set_canary(
        self, name: str, weight: int, route_type: str = "random", route_by: str | None = None
    ) -> DeploymentInfo:
        """Give the candidate ``weight`` percent of the endpoint's traffic."""
        return self._run(self._plan_set_canary(name, weight, route_type, route_by))

    def traffic(self, name: str) -> TrafficReport:
        """The endpoint's counts per revision."""
        return self._run(self._plan_traffic(name))

    def start_analysis(
        self,
        name: str,
        canary: dict[str, Any] | None = None,
        *,
        shadow: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Have the control plane run a canary or a shadow analysis of ``name``'s held
        candidate (one plan: a ``CanaryPolicy`` or a ``ShadowPolicy`` as a dict)."""
        return self._run(self._plan_start_analysis(name, canary, shadow))

    def send_feedback(
        self,
        name: str,
        monitor: str,
        labels: list[dict[str, Any]] | bytes,
        *,
        id_field: str | None = None,
        source: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        """Send labels for ``monitor``'s predictions: ``{"id", "label", "time"?}`` objects, or
        the bytes of a Parquet file with those columns or of JSON lines of those objects. ``id``
        is the record's ``request_id`` (decimal, or the 16 hex digits of the
        ``X-BentoML-Request-ID`` header), or the value of the record's field ``id_field``.
        ``source``: (a name of where the labels come from, the watermark they reach), kept with
        them (see :meth:`feedback_watermark`). The counts: received, stored, duplicates,
        corrections, pending (no prediction stored yet)."""
        return self._run(self._plan_send_feedback(name, monitor, labels, id_field, source))

    def feedback_watermark(self, name: str, monitor: str, source: str) -> int | None:
        """The watermark the labels sent from ``source`` reached (None: none sent yet)."""
        return self._run(self._plan_feedback_watermark(name, monitor, source))

    def quality(self, name: str, monitor: str, **params: Any) -> dict[str, Any]:
        """``monitor``'s predictions joined to their labels, per revision and time bucket:
        ``since``, ``until``, ``step``, ``revision``, ``task``, ``prediction_field``,
        ``score_field``, ``id_field`` as the ``GET …/quality`` route takes them."""
        return self._run(self._plan_quality(name, monitor, params))

    def request_approval(
        self,
        name: str,
        message: str = "",
        timeout: float = 86400.0,
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A pending approval of ``name``'s held candidate (the pending one, if any): the
        control plane promotes on approve, discards on reject or after ``timeout`` seconds."""
        return self._run(self._plan_request_approval(name, message, timeout, evidence))

    def approvals(self, name: str) -> list[dict[str, Any]]:
        """``name``'s approvals, newest first."""
        return self._run(self._plan_approvals(name))

    def approval(self, name: str, approval_id: str, wait: float = 0.0) -> dict[str, Any]:
        """One approval; with ``wait``, once decided or after ``wait`` seconds (a long poll)."""
        return self._run(self._plan_approval(name, approval_id, wait))

    def approve(
        self, name: str, approval_id: str | None = None, comment: str = ""
    ) -> dict[str, Any]:
        """Approve (the pending approval, by default): the candidate is promoted."""
        return self._run(self._plan_decide(name, approval_id, True, comment))

    def reject(
        self, name: str, approval_id: str | None = None, comment: str = ""
    ) -> dict[str, Any]:
        """Reject (the pending approval, by default): the candidate is discarded."""
        return self._run(self._plan_decide(name, approval_id, False, comment))

    def set_shadow(self, name: str, percent: int, apis: list[str] | None = None) -> dict[str, Any]:
        """Mirror ``percent`` of ``name``'s requests (to ``apis``, or every API) to its held
        candidate; 0 stops. The mirroring's state and figures."""
        return self._run(self._plan_set_shadow(name, percent, apis))

    def shadow(self, name: str) -> dict[str, Any]:
        """``name``'s mirroring: its state, counts and the report of the pairs so far."""
        return self._run(self._plan_shadow(name))

    def shadow_pairs(self, name: str, since: float = 0.0, limit: int = 100) -> list[dict[str, Any]]:
        """``name``'s pairs of answers after ``since`` (seconds since the epoch), oldest first."""
        return self._run(self._plan_shadow_pairs(name, since, limit))

    def traces(
        self,
        name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        min_duration: float | None = None,
        status: str | None = None,
        revision: str | None = None,
        q: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """``name``'s traces (their root spans), newest first, on the local control plane."""
        params = {"since": since, "until": until, "min_duration": min_duration}
        params |= {"status": status, "revision": revision, "q": q, "limit": limit}
        return self._run(self._plan_traces(name, params))

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every stored span of one trace (its 32 hex digits, or a record's decimal id)."""
        return self._run(self._plan_trace(trace_id))

    def analysis(self, name: str, seen: int = -1, timeout: float = 0.0) -> dict[str, Any]:
        """``name``'s latest analysis; with ``timeout``, once it judged more than ``seen``
        steps or ended (a long poll)."""
        return self._run(self._plan_analysis(name, seen, timeout))

    def terminate_deployment(self, name: str) -> DeploymentInfo:
        return self._run(self._plan_terminate_deployment(name))

    def delete_deployment(self, name: str) -> None:
        self._run(self._plan_delete_deployment(name))

    def list_revisions(self, name: str) -> list[RevisionInfo]:
        return self._run(self._plan_list_revisions(name))

    def rollback(
        self,
        name: str,
        revision: str | None = None,
        *,
        reason: str | None = None,
        force: bool = False,
    ) -> DeploymentInfo:
        """Serve ``revision`` (default: the previous good one) again; ``reason`` (on the local
        control plane) is said in the rollback's event. A revision that never served (failed
        or discarded as a candidate) is refused unless ``force``."""
        return self._run(self._plan_rollback(name, revision, reason, force))

    def logs(self, name: str, revision: str, tail: int = 200) -> list[str]:
        return self._run(self._plan_logs(name, revision, tail))

    def search_logs(
        self,
        name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        revision: str | None = None,
        pattern: str | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]:
        """The deployment's log lines: ``since``/``until`` as epoch seconds, ISO-8601 or a time
        ago (``10m``); ``pattern`` is an RE2 regex; the last ``limit`` matches, oldest first."""
        search = {"since": since, "until": until, "revision": revision, "pattern": pattern}
        return self._run(self._plan_search_logs(name, {**search, "limit": limit}))

    def follow_logs(
        self,
        name: str,
        *,
        since: str | None = None,
        revision: str | None = None,
        pattern: str | None = None,
    ) -> Iterator[LogEntry]:
        """The matching recent lines, then every new one as it is written (until closed)."""
        call = _follow_call(name, since, revision, pattern)
        with self._http.stream("GET", call.path, params=call.params, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                _http.raise_for_response(response, call, self.connection)
            for line in response.iter_lines():
                if line.startswith("data:"):
                    yield LogEntry.from_api(json.loads(line[5:]))

    def events(
        self,
        name: str,
        *,
        after: int | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[DeploymentEvent]:
        """The deployment's events, oldest first: with ``after`` (a cursor, the last id read; 0
        for the first), the oldest ``limit`` after it, else the newest; from ``since``."""
        return self._run(self._plan_events(name, after, since, limit))

    def metrics(
        self,
        name: str,
        *,
        since: str = "1h",
        until: str | None = None,
        step: int = 10,
        revision: str | None = None,
    ) -> dict[str, Any]:
        """The deployment's metrics per revision (series over ``t``, and ``totals``)."""
        query = {"since": since, "until": until, "step": step, "revision": revision}
        return self._run(self._plan_metrics(name, query))

    def monitoring_records(
        self,
        name: str,
        monitor: str,
        *,
        after: int | None = None,
        limit: int = 10_000,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """A monitor's newest ``limit`` records, oldest first; with ``after``, the oldest
        ``limit`` whose ``seq`` is above it; with ``since`` (ISO-8601, epoch seconds or a time
        ago such as ``24h``), only those ingested since then. Each has its ``seq``, revision,
        bento and ingest time."""
        return self._run(self._plan_monitoring_records(name, monitor, after, limit, since))

    def wait_for_change(
        self, name: str, status: str, timeout: float, phase: str | None = None
    ) -> DeploymentInfo:
        """Long-poll until the status (or target ``phase``) changes or ``timeout`` passes."""
        return self._run(self._plan_wait_for_change(name, status, timeout, phase))

    def get_bento(self, tag: str) -> dict[str, Any]:
        return self._run(self._plan_get_bento(tag))

    def bento_uploaded(self, tag: str) -> bool:
        return self._run(self._plan_bento_uploaded(tag))

    def entry_service(self, tag: str) -> str:
        return self._run(self._plan_entry_service(tag))

    def resolve_bento(self, tag: str) -> tuple[str, str]:
        """(tag, entry service) of a bento on the server; ``name:latest`` becomes its newest
        version there."""
        return self._run(self._plan_resolve_bento(tag))


class AsyncClient(_Plans):
    """The asyncio twin of :class:`Client`: the same methods, awaited, holding no thread."""

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
            verify=_http.tls_context(),
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

    async def _run(self, plan: Plan[T]) -> T:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(value)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            try:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                else:
                    value = await self._http.send(self._request(self._http, step))
            except Exception as exc:
                error = exc

    async def get_extensions(self) -> frozenset[str]:
        """The local control plane's extensions; empty on plain BentoCloud."""
        return await self._run(self._plan_extensions())

    async def current_user(self) -> dict[str, Any]:
        return await self._run(self._plan_current_user())

    async def get_deployment(self, name: str) -> DeploymentInfo:
        return await self._run(self._plan_get_deployment(name))

    async def find_deployment(self, name: str) -> DeploymentInfo | None:
        """The deployment, or None when it does not exist."""
        return await self._run(self._plan_find_deployment(name))

    async def list_deployments(self) -> list[DeploymentInfo]:
        return await self._run(self._plan_list_deployments())

    async def create_deployment(
        self, name: str, bento: str, config: dict[str, Any], *, candidate: bool = False
    ) -> DeploymentInfo:
        """Create ``name``; when an answer is lost, look before creating again.

        ``candidate`` holds the revision for verification (the ``candidates`` extension).
        """
        return await self._run(self._plan_create_deployment(name, bento, config, candidate))

    async def update_deployment(
        self, name: str, bento: str, config: dict[str, Any], *, candidate: bool = False
    ) -> DeploymentInfo:
        return await self._run(self._plan_update_deployment(name, bento, config, candidate))

    async def promote(self, name: str, revision: str | None = None) -> DeploymentInfo:
        """Switch the endpoint to the candidate (``revision``, if given, must be it)."""
        return await self._run(self._plan_promote(name, revision))

    async def discard(self, name: str) -> DeploymentInfo:
        """Stop the candidate; the endpoint keeps serving what it serves."""
        return await self._run(self._plan_discard(name))

    async def set_canary(
        self, name: str, weight: int, route_type: str = "random", route_by: str | None = None
    ) -> DeploymentInfo:
        """Give the candidate ``weight`` percent of the endpoint's traffic."""
        return await self._run(self._plan_set_canary(name, weight, route_type, route_by))

    async def start_analysis(
        self,
        name: str,
        canary: dict[str, Any] | None = None,
        *,
        shadow: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._run(self._plan_start_analysis(name, canary, shadow))

    async def send_feedback(
        self,
        name: str,
        monitor: str,
        labels: list[dict[str, Any]] | bytes,
        *,
        id_field: str | None = None,
        source: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        return await self._run(self._plan_send_feedback(name, monitor, labels, id_field, source))

    async def feedback_watermark(self, name: str, monitor: str, source: str) -> int | None:
        return await self._run(self._plan_feedback_watermark(name, monitor, source))

    async def quality(self, name: str, monitor: str, **params: Any) -> dict[str, Any]:
        return await self._run(self._plan_quality(name, monitor, params))

    async def request_approval(
        self,
        name: str,
        message: str = "",
        timeout: float = 86400.0,
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._run(self._plan_request_approval(name, message, timeout, evidence))

    async def approvals(self, name: str) -> list[dict[str, Any]]:
        return await self._run(self._plan_approvals(name))

    async def approval(self, name: str, approval_id: str, wait: float = 0.0) -> dict[str, Any]:
        return await self._run(self._plan_approval(name, approval_id, wait))

    async def approve(
        self, name: str, approval_id: str | None = None, comment: str = ""
    ) -> dict[str, Any]:
        return await self._run(self._plan_decide(name, approval_id, True, comment))

    async def reject(
        self, name: str, approval_id: str | None = None, comment: str = ""
    ) -> dict[str, Any]:
        return await self._run(self._plan_decide(name, approval_id, False, comment))

    async def set_shadow(
        self, name: str, percent: int, apis: list[str] | None = None
    ) -> dict[str, Any]:
        return await self._run(self._plan_set_shadow(name, percent, apis))

    async def shadow(self, name: str) -> dict[str, Any]:
        return await self._run(self._plan_shadow(name))

    async def shadow_pairs(
        self, name: str, since: float = 0.0, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._run(self._plan_shadow_pairs(name, since, limit))

    async def traces(
        self,
        name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        min_duration: float | None = None,
        status: str | None = None,
        revision: str | None = None,
        q: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        params = {"since": since, "until": until, "min_duration": min_duration}
        params |= {"status": status, "revision": revision, "q": q, "limit": limit}
        return await self._run(self._plan_traces(name, params))

    async def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return await self._run(self._plan_trace(trace_id))

    async def analysis(self, name: str, seen: int = -1, timeout: float = 0.0) -> dict[str, Any]:
        return await self._run(self._plan_analysis(name, seen, timeout))

    async def traffic(self, name: str) -> TrafficReport:
        """The endpoint's counts per revision."""
        return await self._run(self._plan_traffic(name))

    async def terminate_deployment(self, name: str) -> DeploymentInfo:
        return await self._run(self._plan_terminate_deployment(name))

    async def delete_deployment(self, name: str) -> None:
        await self._run(self._plan_delete_deployment(name))

    async def list_revisions(self, name: str) -> list[RevisionInfo]:
        return await self._run(self._plan_list_revisions(name))

    async def rollback(
        self,
        name: str,
        revision: str | None = None,
        *,
        reason: str | None = None,
        force: bool = False,
    ) -> DeploymentInfo:
        return await self._run(self._plan_rollback(name, revision, reason, force))

    async def logs(self, name: str, revision: str, tail: int = 200) -> list[str]:
        return await self._run(self._plan_logs(name, revision, tail))

    async def search_logs(
        self,
        name: str,
        *,
        since: str | None = None,
        until: str | None = None,
        revision: str | None = None,
        pattern: str | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]:
        search = {"since": since, "until": until, "revision": revision, "pattern": pattern}
        return await self._run(self._plan_search_logs(name, {**search, "limit": limit}))

    async def follow_logs(
        self,
        name: str,
        *,
        since: str | None = None,
        revision: str | None = None,
        pattern: str | None = None,
    ) -> AsyncIterator[LogEntry]:
        call = _follow_call(name, since, revision, pattern)
        async with self._http.stream(
            "GET", call.path, params=call.params, timeout=None
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _http.raise_for_response(response, call, self.connection)
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    yield LogEntry.from_api(json.loads(line[5:]))

    async def events(
        self,
        name: str,
        *,
        after: int | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[DeploymentEvent]:
        return await self._run(self._plan_events(name, after, since, limit))

    async def metrics(
        self,
        name: str,
        *,
        since: str = "1h",
        until: str | None = None,
        step: int = 10,
        revision: str | None = None,
    ) -> dict[str, Any]:
        query = {"since": since, "until": until, "step": step, "revision": revision}
        return await self._run(self._plan_metrics(name, query))

    async def monitoring_records(
        self,
        name: str,
        monitor: str,
        *,
        after: int | None = None,
        limit: int = 10_000,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        return await self._run(self._plan_monitoring_records(name, monitor, after, limit, since))

    async def wait_for_change(
        self, name: str, status: str, timeout: float, phase: str | None = None
    ) -> DeploymentInfo:
        """Long-poll until the status (or target ``phase``) changes or ``timeout`` passes."""
        return await self._run(self._plan_wait_for_change(name, status, timeout, phase))

    async def get_bento(self, tag: str) -> dict[str, Any]:
        return await self._run(self._plan_get_bento(tag))

    async def bento_uploaded(self, tag: str) -> bool:
        return await self._run(self._plan_bento_uploaded(tag))

    async def entry_service(self, tag: str) -> str:
        return await self._run(self._plan_entry_service(tag))

    async def resolve_bento(self, tag: str) -> tuple[str, str]:
        return await self._run(self._plan_resolve_bento(tag))
