"""A TCP proxy on loopback that drops or delays a share of the connections it accepts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``target_port``; drop or delay ``fault_rate`` of connections.

    A dropped connection is closed after the request arrived, half the time before it is
    forwarded and half the time after the server answered (a lost response).
    """

    def __init__(self, target_port: int, *, fault_rate: float = 0.3, seed: int = 7) -> None:
        self.target_port = target_port
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(10)
        return self

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        roll = self.rng.random()
        first = await reader.read(65536)
        if roll < self.fault_rate / 3:
            self.counts["dropped before forwarding"] += 1
            writer.close()
            return
        if roll < 2 * self.fault_rate / 3:
            self.counts["delayed"] += 1
            await asyncio.sleep(0.5)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up_writer.write(first)
        await up_writer.drain()
        if roll < self.fault_rate:
            self.counts["response lost"] += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(up_reader.read(1), 30)
            await asyncio.sleep(0.2)
            up_writer.close()
            writer.close()
            return
        self.counts["forwarded"] += 1
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
