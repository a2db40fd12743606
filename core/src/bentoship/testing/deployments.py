"""Deploy a bento for a test, wait until it serves, and delete it afterwards."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BentoshipError, ConfigError
from ..models import DeploymentConfig, DeploymentEvent, LogEntry, Rollout
from .builds import BuildCache, default_build_cache
from .planes import ServerHandle, control_plane

if TYPE_CHECKING:
    import bentoml
    import httpx

    from ..client import Client

__all__ = ["Deployer", "DeploymentHandle", "local_deployment"]

READY_TIMEOUT = 300.0


class DeploymentHandle:
    """A deployment a test made: its URL, clients, and what the plane knows of it."""

    def __init__(self, rollout: Rollout, plane: ServerHandle, api: Client) -> None:
        self.rollout = rollout
        self.plane = plane
        self.api = api
        """The :class:`bentoship.Client` of the plane (shared by the test's deployments)."""

    @property
    def name(self) -> str:
        return self.rollout.name

    @property
    def url(self) -> str:
        """Where the deployment answers (its candidate URL while it is a held candidate)."""
        return self.rollout.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plane.token}"}

    @cached_property
    def client(self) -> bentoml.SyncHTTPClient:
        """bentoml's own client of the service (``handle.client.predict(...)``)."""
        import bentoml

        return bentoml.SyncHTTPClient(self.url, token=self.plane.token, timeout=60)

    @cached_property
    def http(self) -> httpx.Client:
        """An httpx client with the plane's token, based at the deployment's URL."""
        import httpx

        from .._http import tls_context

        return httpx.Client(
            base_url=self.url, headers=self.headers, timeout=60, verify=tls_context(True)
        )

    def call(self, api: str, payload: Mapping[str, Any]) -> Any:
        """POST ``payload`` as JSON to the service API ``api``; its answer as parsed JSON (or
        text), raising :class:`AssertionError` with the service's last log lines on an error."""
        response = self.http.post(f"/{api}", json=dict(payload))
        if response.status_code >= 400:
            raise AssertionError(
                f"{self.name}/{api} answered {response.status_code}: {response.text[:500]}"
                f"{self.log_excerpt()}"
            )
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def logs(self, tail: int = 200) -> list[str]:
        """The last ``tail`` lines the revision wrote."""
        return self.api.logs(self.name, self.rollout.revision or "", tail)

    def search_logs(self, **params: Any) -> list[LogEntry]:
        """The deployment's log lines, as :meth:`bentoship.Client.search_logs` gives them."""
        return self.api.search_logs(self.name, **params)

    def events(self, **params: Any) -> list[DeploymentEvent]:
        return self.api.events(self.name, **params)

    def records(self, monitor: str, **params: Any) -> list[dict[str, Any]]:
        """What the service logged with ``bentoml.monitor(monitor)``, oldest first."""
        return self.api.monitoring_records(self.name, monitor, **params)

    def traces(self, **params: Any) -> list[dict[str, Any]]:
        """The deployment's traces (root spans), newest first; ``handle.api.trace(id)`` gives
        one whole."""
        return self.api.traces(self.name, **params)

    def log_excerpt(self, lines: int = 20) -> str:
        """The service's last log lines as a message's tail ("" when the plane has none)."""
        try:
            tail = self.logs(lines)
        except BentoshipError as exc:
            return f"\n(no log lines of {self.name}: {exc})"
        if not tail:
            return ""
        return f"\nlast {len(tail)} log lines of {self.name}:\n" + "\n".join(tail)

    def close(self) -> None:
        for attribute in ("client", "http"):
            opened = self.__dict__.pop(attribute, None)
            if opened is not None:
                with contextlib.suppress(Exception):
                    opened.close()

    def __repr__(self) -> str:
        return f"DeploymentHandle({self.name!r}, revision={self.rollout.revision!r})"


def _name_for(tag: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", tag.split(":", 1)[0].lower()).strip("-")[:40] or "bento"
    return f"test-{stem}-{uuid.uuid4().hex[:6]}"


class Deployer:
    """Deploys bentos for tests; :meth:`cleanup` deletes every deployment it created and
    discards the candidates it held on deployments it did not create."""

    def __init__(
        self,
        plane: ServerHandle,
        *,
        builds: BuildCache | None = None,
        timeout: float = READY_TIMEOUT,
        existing: str | None = None,
    ) -> None:
        """With ``existing`` (a deployment's name, as a pipeline passes it), every call gives
        that deployment (its held candidate, if any) instead of deploying, and nothing is
        deleted: the same tests then check what a pipeline is about to promote."""
        self.plane = plane
        self.builds = builds
        self.timeout = timeout
        self.existing = existing
        self.handles: list[DeploymentHandle] = []
        self._created: list[str] = []
        self._held: list[str] = []
        self._api: Client | None = None

    @property
    def api(self) -> Client:
        if self._api is None:
            self._api = self.plane.client()
        return self._api

    def bento_of(self, bento: str | Path) -> str:
        """The tag to deploy: ``bento`` itself, or the bento built from a project directory."""
        from ..tags import check_tag

        if isinstance(bento, Path) or Path(bento).is_dir():
            return (self.builds or default_build_cache()).build(bento)
        check_tag(bento)
        return bento

    def __call__(
        self,
        bento: str | Path,
        name: str | None = None,
        config: DeploymentConfig | dict[str, Any] | None = None,
        candidate: bool = False,
    ) -> DeploymentHandle:
        """Build (a project directory), push, deploy and wait until it serves.

        ``name`` defaults to a fresh ``test-<bento>-<6 hex>``. With ``candidate`` the new
        revision is held beside what ``name`` serves (the deployment must exist).
        """
        from ..steps import deploy, push, wait_until_ready

        if self.existing is not None:
            return self._existing(self.existing)
        if candidate and name is None:
            raise ConfigError(
                "candidate=True holds a new revision beside a deployment's serving one: pass "
                "the name of that deployment"
            )
        tag = push(self.bento_of(bento), client=self.api)
        name = name or _name_for(tag)
        existed = self.api.find_deployment(name) is not None
        rollout = deploy(name, tag, config, candidate=candidate, client=self.api)
        if not existed:
            self._created.append(name)
        elif rollout.candidate:
            self._held.append(name)
        handle = DeploymentHandle(rollout, self.plane, self.api)
        self.handles.append(handle)
        wait_until_ready(rollout, client=self.api, timeout=self.timeout)
        return handle

    def _existing(self, name: str) -> DeploymentHandle:
        found = self.api.get_deployment(name)
        held = found.candidate_revision
        bento = (found.candidate_bento if held else found.serving_bento) or found.bento
        rollout = Rollout(
            name,
            bento,
            held or found.serving_revision or found.target_revision,
            found.url,
            candidate=held is not None,
            candidate_url=found.candidate_url,
        )
        handle = DeploymentHandle(rollout, self.plane, self.api)
        self.handles.append(handle)
        return handle

    def cleanup(self) -> None:
        """Delete what this deployer created (and discard what it held), even if some fail."""
        from ..errors import NotFoundError

        for handle in self.handles:
            handle.close()
        api = self.api
        try:
            for name in self._held:
                with contextlib.suppress(BentoshipError):
                    if api.get_deployment(name).candidate_revision:
                        api.discard(name)
            for name in reversed(self._created):
                with contextlib.suppress(NotFoundError):
                    api.delete_deployment(name)
        finally:
            self.handles.clear()
            self._created.clear()
            self._held.clear()
            if self._api is not None:
                self._api.close()
                self._api = None


@contextlib.contextmanager
def local_deployment(
    bento: str | Path,
    *,
    name: str | None = None,
    config: DeploymentConfig | dict[str, Any] | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    server_options: Mapping[str, Any] | None = None,
    timeout: float = READY_TIMEOUT,
) -> Iterator[DeploymentHandle]:
    """Deploy ``bento`` (a tag, or a project directory built once per content) on a local
    control plane started for the block, or on the plane at ``endpoint`` /
    ``$BENTO_CLOUD_API_ENDPOINT``; delete it, and stop that local plane, when the block ends.

    For ``unittest`` and scripts; pytest has the ``bento_deployment`` fixture.
    """
    with control_plane(endpoint=endpoint, token=token, options=server_options) as plane:
        deployer = Deployer(plane, timeout=timeout)
        try:
            yield deployer(bento, name=name, config=config)
        finally:
            deployer.cleanup()
