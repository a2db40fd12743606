"""Webhooks over a fake launcher and a real HTTP receiver on loopback (no process): signed
CloudEvents and Slack bodies for a rollout's events, retries until the receiver answers,
deliveries that survive a restart of the notifier, and a receiver that hangs delays nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from bentoship.server.errors import Invalid
from bentoship.server.rollout.controller import Controller
from bentoship.server.webhooks import Notifier, WebhookBook, signature

from .fakes import FakeClock, FakeLauncher, run_controller, settle
from .test_analyses import held_candidate, settings_in


@dataclass
class Receiver:
    """An HTTP receiver whose answers follow ``statuses`` (then 200), or that hangs."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    got: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((body, dict(request.headers)))
        if self.hang:
            await asyncio.sleep(3600)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self) -> Receiver:
        app = web.Application()
        app.add_routes([web.post("/hook", self.handle)])
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not in time")


def with_notifier(
    tmp_path: Path,
    body: Callable[[Controller, WebhookBook, Callable[[], None]], Awaitable[None]],
) -> None:
    """Run ``body`` with a notifier running; ``body``'s third argument stops it."""

    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        book = WebhookBook(controller.store, first_backoff=0.05)
        notifier = Notifier(book, "http://127.0.0.1:9", poll=0.02)
        task = asyncio.create_task(notifier.run())

        def stop() -> None:
            task.cancel()

        try:
            await body(controller, book, stop)
        finally:
            task.cancel()

    run_controller(settings_in(tmp_path), scenario)


def test_a_rollouts_events_arrive_signed_as_cloudevents_and_slack_bodies(tmp_path: Path) -> None:
    async def body(controller: Controller, book: WebhookBook, stop: Callable[[], None]) -> None:
        receiver = await Receiver().start()
        try:
            cloud = book.add(receiver.url, ["promoted", "rolled_back"])
            slack = book.add(receiver.url, ["promoted"], "slack")
            await held_candidate(controller)
            await controller.promote("web")
            await settle()
            await controller.rollback("web", None, reason="a drill")
            await until(lambda: len(receiver.got) >= 3)
            await until(lambda: {d["state"] for d in book.deliveries(cloud.id)} == {"delivered"})
        finally:
            await receiver.stop()
        events = []
        for raw, headers in receiver.got:
            secret = cloud.secret if "cloudevents" in headers["Content-Type"] else slack.secret
            assert headers["X-Bentoship-Signature"] == signature(secret, raw)
            expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            assert headers["X-Bentoship-Signature"] == expected
            assert signature(secret, raw + b" ") != expected, "a tampered body fails"
            events.append(json.loads(raw))
        kinds = sorted(e.get("type", "slack") for e in events)
        assert kinds == [
            "dev.bentoship.deployment.promoted",
            "dev.bentoship.deployment.rolled_back",
            "slack",
        ]
        cloud_event = next(e for e in events if e.get("type", "").endswith("rolled_back"))
        assert cloud_event["specversion"] == "1.0" and cloud_event["subject"] == "web"
        assert cloud_event["source"].endswith("/deployments/web")
        assert "a drill" in cloud_event["data"]["message"]
        text = next(e for e in events if "text" in e)["text"]
        assert (
            text.startswith("*web*: candidate r2 promoted") and "/deployments/web|console>" in text
        )
        log = book.deliveries(cloud.id)
        assert {d["state"] for d in log} == {"delivered"} and len(log) == 2

    with_notifier(tmp_path, body)


def test_a_failing_receiver_gets_the_event_on_the_fourth_try_even_across_a_restart(
    tmp_path: Path,
) -> None:
    async def body(controller: Controller, book: WebhookBook, stop: Callable[[], None]) -> None:
        receiver = await Receiver(statuses=[500, 500, 500]).start()
        try:
            hook = book.add(receiver.url, ["discarded"])
            await held_candidate(controller)
            await controller.discard("web")
            await until(lambda: any(d["attempts"] >= 2 for d in book.deliveries(hook.id)))
            stop()
            again = Notifier(
                WebhookBook(controller.store, first_backoff=0.05), "http://127.0.0.1:9", poll=0.02
            )
            restarted = asyncio.create_task(again.run())
            await until(lambda: book.deliveries(hook.id)[0]["state"] == "delivered")
            restarted.cancel()
        finally:
            await receiver.stop()
        [delivery] = book.deliveries(hook.id)
        assert delivery["attempts"] == 4 and delivery["status"] == 200
        assert len({raw for raw, _ in receiver.got}) == 1, "the same event each time"

    with_notifier(tmp_path, body)


def test_a_receiver_that_hangs_delays_no_rollout_and_bad_webhooks_are_refused(
    tmp_path: Path,
) -> None:
    async def body(controller: Controller, book: WebhookBook, stop: Callable[[], None]) -> None:
        receiver = await Receiver(hang=True).start()
        try:
            hook = book.add(receiver.url)
            _, r2 = await held_candidate(controller)
            await controller.promote("web")
            await until(lambda: len(receiver.got) >= 1)
            await controller.rollback("web", None)
            await settle()
            assert controller.get("web").target_revision != r2, "the rollout went on"
            assert book.deliveries(hook.id)[0]["state"] == "pending"
        finally:
            await receiver.stop()
        for args, field_name in [
            (("ftp://x",), "url"),
            (("http://x", ["nope"]), "events"),
            (("http://x", None, "xml"), "format"),
        ]:
            with pytest.raises(Invalid, match=f"^{field_name}: "):
                book.add(*args)

    with_notifier(tmp_path, body)
