"""A raw HTTP view of the control plane's API for server tests (the core client is tested apart)."""

from __future__ import annotations

import time
from typing import Any

import bentoml
import httpx

from bentoship.server import LocalControlPlane


class Api:
    def __init__(self, plane: LocalControlPlane) -> None:
        assert plane.connection is not None
        self.plane = plane
        self.http = httpx.Client(
            base_url=plane.connection.endpoint,
            headers={"X-YATAI-API-TOKEN": plane.connection.token},
            timeout=90,
        )

    def cloud_client(self) -> bentoml.cloud.BentoCloudClient:
        assert self.plane.connection is not None
        return bentoml.cloud.BentoCloudClient(
            api_key=self.plane.connection.token, endpoint=self.plane.connection.endpoint
        )

    def push(self, tag: str) -> None:
        bentoml.bentos.push(tag, _cloud_client=self.cloud_client())

    def create(self, name: str, bento: str, **config: Any) -> dict[str, Any]:
        response = self.http.post(
            "/api/v2/deployments", json={"name": name, "bento": bento, **config}
        )
        response.raise_for_status()
        return dict(response.json())

    def update(self, name: str, bento: str, **config: Any) -> dict[str, Any]:
        response = self.http.put(f"/api/v2/deployments/{name}", json={"bento": bento, **config})
        response.raise_for_status()
        return dict(response.json())

    def get(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v2/deployments/{name}")
        response.raise_for_status()
        return dict(response.json())

    def revisions(self, name: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/api/v2/deployments/{name}/revisions")
        response.raise_for_status()
        return list(response.json()["items"])

    def rollback(self, name: str, revision: str | None = None) -> dict[str, Any]:
        body = {"revision": revision} if revision else {}
        response = self.http.post(f"/api/v2/deployments/{name}/rollback", json=body)
        response.raise_for_status()
        return dict(response.json())

    def logs(self, name: str, revision: str, tail: int = 200) -> list[str]:
        response = self.http.get(
            f"/api/v2/deployments/{name}/revisions/{revision}/logs", params={"tail": tail}
        )
        response.raise_for_status()
        return list(response.json()["lines"])

    def wait_status(self, name: str, wanted: set[str], timeout: float = 90) -> dict[str, Any]:
        """Long-poll until the deployment's status is one of ``wanted``."""
        deadline = time.monotonic() + timeout
        dep = self.get(name)
        while dep["status"] not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed {dep['status']}, wanted {wanted}")
            response = self.http.get(
                f"/api/v2/deployments/{name}/wait", params={"status": dep["status"], "timeout": 10}
            )
            response.raise_for_status()
            dep = response.json()
        return dep

    def url(self, name: str) -> str:
        return str(self.get(name)["urls"][0])
