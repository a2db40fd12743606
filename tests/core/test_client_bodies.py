"""Large request bodies leave the client in pieces and arrive whole, with their length and
their type (a loopback HTTP server in a thread; no process)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bentoship import AsyncClient, Client
from bentoship.client import PIECE


class Digest(BaseHTTPRequestHandler):
    """Answers a POST with the length, SHA-256 and content type of the body it read."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        answer = {
            "length": length,
            "sha256": hashlib.sha256(body).hexdigest(),
            "type": self.headers["Content-Type"],
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def digest_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Digest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_lines(size: int) -> bytes:
    line = b'{"id": "0123456789abcdef", "label": "fraud"}\n'
    return line * (size // len(line) + 1)


def test_a_large_body_arrives_whole_from_both_clients(digest_url: str) -> None:
    body = json_lines(3 * PIECE + 17)
    expected = {
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "type": "application/x-ndjson",
    }
    with Client(digest_url, "t" * 24) as client:
        assert client.send_feedback("web", "fraud", body) == expected

    async def send() -> dict[str, object]:
        async with AsyncClient(digest_url, "t" * 24) as client:
            return await client.send_feedback("web", "fraud", body)

    assert asyncio.run(send()) == expected


def test_parquet_bytes_are_sent_as_parquet(digest_url: str) -> None:
    body = b"PAR1" + bytes(PIECE) + b"PAR1"
    with Client(digest_url, "t" * 24) as client:
        answer = client.send_feedback("web", "fraud", body)
    assert answer["type"] == "application/vnd.apache.parquet"
    assert answer["length"] == len(body)
