"""The local control plane's connection file: where it listens and its API token."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "ENDPOINT_ENV",
    "TOKEN_ENV",
    "Connection",
    "default_home",
    "mask_token",
    "read_connection",
    "resolve_connection",
]

CONNECTION_FILE = "connection.json"


def default_home() -> Path:
    """The local control plane's data directory: ``$BENTOSHIP_HOME`` or ``~/.bentoship``."""
    return Path(os.environ.get("BENTOSHIP_HOME") or Path.home() / ".bentoship")


@dataclass(frozen=True)
class Connection:
    endpoint: str
    token: str
    source: str = field(default="the token argument", compare=False)
    """Where the token came from, as an error names it: a flag, a variable, a file's path."""

    def __repr__(self) -> str:
        return f"Connection(endpoint={self.endpoint!r}, token={mask_token(self.token)!r})"


def mask_token(token: str) -> str:
    """Show at most the first four characters of a token."""
    return f"{token[:4]}…" if len(token) > 8 else "****"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_connection(data_dir: Path, connection: Connection) -> Path:
    path = data_dir / CONNECTION_FILE
    payload = {"endpoint": connection.endpoint, "token": connection.token}
    write_private(path, json.dumps(payload) + "\n")
    return path


def read_connection(data_dir: Path | None = None) -> Connection:
    """Read ``connection.json`` from the data directory, or raise a ConfigError."""
    path = (data_dir or default_home()) / CONNECTION_FILE
    try:
        payload = json.loads(path.read_text())
        return Connection(
            endpoint=str(payload["endpoint"]),
            token=str(payload["token"]),
            source=f"the connection file {path}",
        )
    except FileNotFoundError:
        raise ConfigError(
            f"no bentoship connection at {path}: start `bentoship server`, then set "
            "BENTOSHIP_HOME to its --data-dir (the default is ~/.bentoship), "
            f"or pass --endpoint and --token, or set {ENDPOINT_ENV} and {TOKEN_ENV}"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"unreadable connection file {path} ({exc}); restart `bentoship server` to rewrite it"
        ) from None


ENDPOINT_ENV = "BENTO_CLOUD_API_ENDPOINT"
TOKEN_ENV = "BENTO_CLOUD_API_KEY"


def resolve_connection(
    endpoint: str | None = None,
    token: str | None = None,
    *,
    home: Path | None = None,
    token_source: str = "the token argument",
) -> Connection:
    """Explicit values, else the ``BENTO_CLOUD_API_*`` variables, else ``connection.json``.

    ``token_source`` names an explicit ``token`` in errors (the CLI says ``--token``).
    """
    if endpoint and token:
        return Connection(endpoint=endpoint.rstrip("/"), token=token, source=token_source)
    env_endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    env_token = token or os.environ.get(TOKEN_ENV)
    if env_endpoint and env_token:
        source = token_source if token else TOKEN_ENV
        return Connection(endpoint=env_endpoint.rstrip("/"), token=env_token, source=source)
    if env_endpoint or env_token:
        missing = TOKEN_ENV if env_endpoint else ENDPOINT_ENV
        raise ConfigError(f"an endpoint and a token go together: set {missing} as well")
    return read_connection(home)
