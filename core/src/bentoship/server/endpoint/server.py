"""A deployment's endpoint: its listening socket on loopback, and the proxy behind it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from .exchange import KEEP_ALIVE_SECONDS, ClientConnection
from .interface import Backends, Role
from .proxy import EndpointProxy

__all__ = ["EndpointServer", "bind_socket"]


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class EndpointServer:
    """One deployment's listening socket and the proxy behind it."""

    def __init__(self, deployment: str, backends: Backends, role: Role = Role.STABLE) -> None:
        self.proxy = EndpointProxy(deployment, backends, role)
        self.server: asyncio.Server | None = None
        self.sweeper: asyncio.Future[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        try:
            sock = bind_socket(host, port)
        except OSError:
            sock = bind_socket(host, 0)
        self.port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: ClientConnection(self.proxy), sock=sock)
        self.sweeper = asyncio.ensure_future(self._close_idle())
        return self.port

    async def _close_idle(self) -> None:
        """Close callers' connections kept alive but idle for KEEP_ALIVE_SECONDS."""
        while True:
            await asyncio.sleep(KEEP_ALIVE_SECONDS / 6)
            idle_since = time.monotonic() - KEEP_ALIVE_SECONDS
            for connection in list(self.proxy.connections):
                if not connection.queue and connection.last_active < idle_since:
                    connection.close()

    async def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.server is not None:
            self.server.close()
            for connection in list(self.proxy.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5.0)
        self.server = None
