"""Notifications: the deployments' typed events, delivered to webhooks a team configured.

Each webhook names the event kinds it wants (or all of those below), a format (CloudEvents 1.0
JSON, or a Slack incoming-webhook body with a link to the console page) and a secret: every
body is signed with HMAC-SHA256 in ``X-Bentoship-Signature: sha256=<hex>``. The notifier reads
the events from its cursor in the outbox, queues one delivery per event and webhook in the
state store, and sends them in the background: a failed delivery is tried again with a
backoff (2 s, doubling to 10 min, up to MAX_ATTEMPTS), across a restart of the control plane.
No rollout ever waits on a delivery; each delivery's outcome is kept in a log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import Invalid, NotFound
from .store import Event, Store, new_uid, now

__all__ = ["NOTIFIED_KINDS", "Notifier", "Webhook", "WebhookBook", "signature"]

log = logging.getLogger("bentoship.server")

NOTIFIED_KINDS = frozenset(
    {
        "failed",
        "rolled_back",
        "promoted",
        "discarded",
        "approval",
        "crashed",
        "restarted",
        "verdict",
        "internal_error",
    }
)
"""Rollout failed, rolled back, promoted, discarded, approvals, a crash, a replica replaced,
an analysis's verdict, and internal errors."""
FORMATS = ("cloudevents", "slack")
MAX_ATTEMPTS = 8
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 600.0
TIMEOUT = 10.0
POLL_SECONDS = 0.5
READER = "webhooks"
SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL, format TEXT NOT NULL,
    secret TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    webhook TEXT NOT NULL, event INTEGER NOT NULL, attempts INTEGER NOT NULL,
    next_at REAL NOT NULL, state TEXT NOT NULL, status INTEGER, error TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (webhook, event)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at);
"""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Bentoship-Signature`` of ``body``: ``sha256=`` and the HMAC's hex digest."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: frozenset[str]
    format: str
    secret: str
    created_at: str

    def wants(self, kind: str) -> bool:
        return kind in self.events

    def to_api(self, *, with_secret: bool = False) -> dict[str, Any]:
        found = {
            "id": self.id,
            "url": self.url,
            "events": sorted(self.events),
            "format": self.format,
            "created_at": self.created_at,
            "secret": self.secret if with_secret else self.secret[:4] + "…",
        }
        return found


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise Invalid("url: send the receiver's http:// or https:// URL")
    return url


class WebhookBook:
    """The webhooks and their deliveries, in the state store."""

    def __init__(self, store: Store, *, first_backoff: float = FIRST_BACKOFF) -> None:
        self.store = store
        self.first_backoff = first_backoff
        self._db: sqlite3.Connection = store.db
        self._db.executescript(SCHEMA)

    def add(self, url: object, events: object = None, format: object = "cloudevents") -> Webhook:
        """A new webhook (its secret is shown once, in the answer)."""
        checked = _check_url(url)
        if format not in FORMATS:
            raise Invalid(f"format: {' or '.join(FORMATS)}, not {format!r}")
        if events is None:
            wanted = NOTIFIED_KINDS
        elif isinstance(events, list) and events and all(isinstance(e, str) for e in events):
            unknown = sorted(set(events) - NOTIFIED_KINDS)
            if unknown:
                raise Invalid(
                    f"events: {unknown[0]!r} is not notified; use some of "
                    f"{', '.join(sorted(NOTIFIED_KINDS))}"
                )
            wanted = frozenset(events)
        else:
            raise Invalid("events: send a list of event kinds, or null for all of them")
        hook = Webhook(new_uid()[:12], checked, wanted, str(format), secrets.token_hex(24), now())
        with self._db:
            self._db.execute(
                "INSERT INTO webhooks VALUES (?,?,?,?,?,?)",
                (hook.id, hook.url, json.dumps(sorted(wanted)), hook.format, hook.secret, now()),
            )
        return hook

    def ensure(self, url: str, events: frozenset[str] | None) -> Webhook:
        """The webhook of ``url`` (made once; ``--notify`` on every start)."""
        for hook in self.all():
            if hook.url == url:
                return hook
        return self.add(url, sorted(events) if events else None)

    def all(self) -> list[Webhook]:
        rows = self._db.execute("SELECT * FROM webhooks ORDER BY created_at").fetchall()
        return [
            Webhook(
                r["id"],
                r["url"],
                frozenset(json.loads(r["events"])),
                r["format"],
                r["secret"],
                r["created_at"],
            )
            for r in rows
        ]

    def get(self, hook_id: str) -> Webhook:
        found = next((h for h in self.all() if h.id == hook_id), None)
        if found is None:
            raise NotFound(f"webhook {hook_id} not found; list them with GET the webhooks route")
        return found

    def remove(self, hook_id: str) -> None:
        self.get(hook_id)
        with self._db:
            self._db.execute("DELETE FROM webhooks WHERE id=?", (hook_id,))
            self._db.execute("DELETE FROM deliveries WHERE webhook=?", (hook_id,))

    def queue(self, events: list[Event]) -> int:
        """One pending delivery per event and webhook that wants it; how many."""
        hooks = self.all()
        rows = [
            (h.id, e.id, 0, time.time(), "pending", None, "", now())
            for e in events
            for h in hooks
            if h.wants(e.kind)
        ]
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO deliveries VALUES (?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def due(self, limit: int = 50) -> list[tuple[str, int, int]]:
        """(webhook, event id, attempts so far) of deliveries due now."""
        rows = self._db.execute(
            "SELECT webhook, event, attempts FROM deliveries WHERE state='pending' AND "
            "next_at<=? ORDER BY next_at LIMIT ?",
            (time.time(), limit),
        ).fetchall()
        return [(r["webhook"], int(r["event"]), int(r["attempts"])) for r in rows]

    def record(
        self, hook_id: str, event_id: int, attempts: int, status: int | None, error: str
    ) -> None:
        """A delivery's try: delivered (2xx), or again after a backoff, or given up."""
        delivered = status is not None and 200 <= status < 300
        if delivered:
            state, next_at = "delivered", time.time()
        elif attempts >= MAX_ATTEMPTS:
            state, next_at = "failed", time.time()
        else:
            state = "pending"
            next_at = time.time() + min(self.first_backoff * 2 ** (attempts - 1), MAX_BACKOFF)
        with self._db:
            self._db.execute(
                "UPDATE deliveries SET attempts=?, next_at=?, state=?, status=?, error=?, "
                "updated_at=? WHERE webhook=? AND event=?",
                (attempts, next_at, state, status, error[:300], now(), hook_id, event_id),
            )

    def deliveries(self, hook_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The webhook's deliveries, the newest event first: its kind, the state (pending,
        delivered or failed), the tries so far, the last answer's status and error, and when
        a pending one is tried next (``next_at``, ISO 8601 UTC)."""
        self.get(hook_id)
        rows = self._db.execute(
            "SELECT d.*, e.kind, e.deployment, e.message FROM deliveries d LEFT JOIN events e "
            "ON e.id = d.event WHERE d.webhook=? ORDER BY d.event DESC LIMIT ?",
            (hook_id, limit),
        ).fetchall()
        return [
            {
                "event": int(r["event"]),
                "kind": r["kind"],
                "deployment": r["deployment"],
                "message": r["message"],
                "state": r["state"],
                "attempts": int(r["attempts"]),
                "status": r["status"],
                "error": r["error"],
                "next_at": _iso(float(r["next_at"])) if r["state"] == "pending" else None,
                "updated_at": r["updated_at"],
            }
            for r in rows
        ]

    def event(self, event_id: int) -> Event | None:
        row = self._db.execute("SELECT * FROM events WHERE id=?", (event_id,)).fetchone()
        return Event(**dict(row)) if row else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body_of(hook: Webhook, event: Event, console: str) -> bytes:
    """The delivery's body in the webhook's format."""
    page = f"{console}/deployments/{event.deployment}"
    if hook.format == "slack":
        return json.dumps(
            {"text": f"*{event.deployment}*: {event.message} (<{page}|console>)"}
        ).encode()
    data = json.loads(event.data) if event.data else {}
    cloud_event = {
        "specversion": "1.0",
        "id": str(event.id),
        "source": page,
        "type": f"dev.bentoship.deployment.{event.kind}",
        "subject": event.deployment,
        "time": datetime.fromtimestamp(event.time, UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "deployment": event.deployment,
            "revision": event.revision,
            "kind": event.kind,
            "message": event.message,
            "fields": data,
        },
    }
    return json.dumps(cloud_event).encode()


class Notifier:
    """Reads the events from its cursor, queues deliveries, and sends them in the background."""

    def __init__(self, book: WebhookBook, console: str, *, poll: float = POLL_SECONDS) -> None:
        self.book = book
        self.console = console
        self.poll = poll
        self._sending: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        import httpx

        store = self.book.store
        cursor = store.register_event_reader(READER)
        from .._http import tls_context

        async with httpx.AsyncClient(
            timeout=TIMEOUT, trust_env=False, verify=tls_context()
        ) as http:
            while True:
                events = store.events_after(cursor, 500)
                if events:
                    self.book.queue(events)
                    cursor = events[-1].id
                    store.move_event_reader(READER, cursor)
                for hook_id, event_id, attempts in self.book.due():
                    key = (hook_id, event_id)
                    if key in self._sending:
                        continue
                    self._sending.add(key)
                    task = asyncio.create_task(self._deliver(http, hook_id, event_id, attempts))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await asyncio.sleep(self.poll)

    async def _deliver(self, http: Any, hook_id: str, event_id: int, attempts: int) -> None:
        try:
            try:
                hook = self.book.get(hook_id)
            except NotFound:
                return
            event = self.book.event(event_id)
            if event is None:
                self.book.record(hook_id, event_id, MAX_ATTEMPTS, None, "the event was pruned")
                return
            body = body_of(hook, event, self.console)
            headers = {
                "Content-Type": "application/cloudevents+json"
                if hook.format == "cloudevents"
                else "application/json",
                "X-Bentoship-Signature": signature(hook.secret, body),
                "X-Bentoship-Event": str(event.id),
            }
            status: int | None = None
            error = ""
            try:
                answer = await http.post(hook.url, content=body, headers=headers)
                status = answer.status_code
                if status >= 300:
                    error = f"HTTP {status}"
            except Exception as exc:  # a receiver's fault, whatever it is, is one failed try
                error = f"{type(exc).__name__}: {exc}"[:300]
            self.book.record(hook_id, event_id, attempts + 1, status, error)
            if error:
                log.warning(
                    "webhook %s, event %d: %s (try %d)", hook_id, event_id, error, attempts + 1
                )
        finally:
            self._sending.discard((hook_id, event_id))
