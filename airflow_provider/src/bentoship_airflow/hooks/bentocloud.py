"""The BentoCloud hook: bentoship clients built from an Airflow connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from bentoship import AsyncClient, Client

DEFAULT_CONN_ID = "bentocloud_default"


def credentials(conn: Connection) -> tuple[str, str]:
    """(endpoint, token) from a ``bentocloud`` connection: endpoint in host, token as password."""
    from bentoship.errors import ConfigError

    host = (conn.host or "").rstrip("/")
    if host and "://" not in host:
        scheme = conn.schema or "https"
        host = f"{scheme}://{host}"
    if host and conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    if not host or not conn.password:
        raise ConfigError(
            f"connection {conn.conn_id!r} needs the endpoint URL in host and the API token "
            "as password"
        )
    return host, conn.password


def request_timeout(conn: Connection | None) -> float:
    extra = conn.extra_dejson if conn is not None else {}
    value = extra.get("timeout") or extra.get("extra__bentocloud__timeout")
    return float(value) if value else 30.0


class BentoCloudHook(BaseHook):
    """Talks to BentoCloud or a bentoship local control plane through a ``bentocloud`` connection.

    When the default connection ``bentocloud_default`` does not exist, the client falls back to
    ``BENTO_CLOUD_API_ENDPOINT``/``BENTO_CLOUD_API_KEY``, then to the local control plane's
    ``connection.json``.

    :param bentocloud_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "bentocloud_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "bentocloud"
    hook_name = "BentoCloud"

    def __init__(self, bentocloud_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bentocloud_conn_id = bentocloud_conn_id

    def _connection(self) -> Connection | None:
        try:
            return self.get_connection(self.bentocloud_conn_id)
        except AirflowNotFoundException:
            if self.bentocloud_conn_id != DEFAULT_CONN_ID:
                raise
            return None

    async def _aconnection(self) -> Connection | None:
        try:
            return await BaseHook.aget_connection(self.bentocloud_conn_id)
        except AirflowNotFoundException:
            if self.bentocloud_conn_id != DEFAULT_CONN_ID:
                raise
            return None

    def get_conn(self) -> Client:
        """A synchronous :class:`bentoship.Client`; close it (or use ``with``) when done."""
        from bentoship import Client

        conn = self._connection()
        if conn is None:
            return Client.from_env()
        endpoint, token = credentials(conn)
        return Client(endpoint, token, timeout=request_timeout(conn))

    async def get_async_conn(self) -> AsyncClient:
        """An :class:`bentoship.AsyncClient` for triggers; read without blocking the event loop."""
        from bentoship import AsyncClient

        conn = await self._aconnection()
        if conn is None:
            return AsyncClient.from_env()
        endpoint, token = credentials(conn)
        return AsyncClient(endpoint, token, timeout=request_timeout(conn))

    def test_connection(self) -> tuple[bool, str]:
        from bentoship.errors import BentoshipError

        try:
            with self.get_conn() as client:
                user = client.current_user()
                return True, f"Connected to {client.endpoint} as {user.get('name', 'unknown')}"
        except BentoshipError as exc:
            return False, str(exc)
