"""The control plane a test deploys to: an ephemeral local one, or one already running."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..connection import ENDPOINT_ENV, TOKEN_ENV, mask_token
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..client import Client
    from ..server import LocalControlPlane

__all__ = ["ServerHandle", "control_plane"]

KEY_FILE_ENV = "BENTOSHIP_SECRETS_KEY_FILE"
RESERVED_OPTIONS = frozenset({"data_dir", "host", "parent_pid", "port", "token"})


@dataclass
class ServerHandle:
    """A control plane under test: where it listens, its token, and the local process if the
    test started it (``local`` is None for a plane given by ``--bentoship-endpoint``)."""

    endpoint: str
    token: str
    local: LocalControlPlane | None = None

    def client(self) -> Client:
        """A new :class:`bentoship.Client` of this plane (close it, or use ``with``)."""
        from ..client import Client

        return Client(self.endpoint, self.token)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the local plane's own log ("" for a plane not started here)."""
        if self.local is None or not self.local.log_path.is_file():
            return ""
        text = self.local.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        where = "local" if self.local is not None else "given"
        return f"ServerHandle({self.endpoint!r}, token={mask_token(self.token)!r}, {where})"


def _given(endpoint: str | None, token: str | None) -> ServerHandle | None:
    endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
    if endpoint is None:
        return None
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"a control plane at {endpoint} needs its API token: pass --bentoship-token or set "
            f"{TOKEN_ENV}"
        )
    return ServerHandle(endpoint.rstrip("/"), token)


def _checked(options: Mapping[str, Any]) -> dict[str, Any]:
    from ..server.options import BY_NAME

    reserved = sorted(RESERVED_OPTIONS.intersection(options))
    if reserved:
        raise ConfigError(
            f"server option {', '.join(reserved)} is chosen by the test plane itself (a "
            "temporary data dir, 127.0.0.1 on a free port); leave it out"
        )
    unknown = sorted(set(options) - set(BY_NAME))
    if unknown:
        known = ", ".join(sorted(set(BY_NAME) - RESERVED_OPTIONS))
        raise ConfigError(f"no server option {', '.join(unknown)}; the options are: {known}")
    return dict(options)


@contextlib.contextmanager
def control_plane(
    *,
    endpoint: str | None = None,
    token: str | None = None,
    options: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> Iterator[ServerHandle]:
    """The plane at ``endpoint`` (or ``$BENTO_CLOUD_API_ENDPOINT``), else a local one started
    in a temporary data dir under ``base_dir`` with ``options`` (any ``bentoship server``
    option by its setting name) and stopped, with every ``bentoml serve`` it started, at the
    end; its folder is removed unless ``base_dir`` was given. Its secrets are sealed with a
    key in that folder unless ``secrets_key_file`` or ``$BENTOSHIP_SECRETS_KEY_FILE`` says."""
    given = _given(endpoint, token)
    if given is not None:
        yield given
        return
    from ..server import LocalControlPlane

    settings = _checked(options or {})
    folder = Path(tempfile.mkdtemp(prefix="bentoship-plane-", dir=base_dir))
    if settings.get("secrets_key_file") is None and not os.environ.get(KEY_FILE_ENV):
        settings["secrets_key_file"] = folder / "secrets.key"
    plane = LocalControlPlane(folder / "data", **settings)
    atexit.register(plane.stop)
    try:
        connection = plane.start()
        yield ServerHandle(connection.endpoint, connection.token, plane)
    finally:
        plane.stop()
        atexit.unregister(plane.stop)
        if base_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
