"""The Webhooks page: each webhook the deployments' events go to, with its recent deliveries
(the event, the state, the last answer's status code, the tries, the next try and the error),
as ``GET /api/v1/bentoship/webhooks/{id}/deliveries`` lists them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..webhooks import MAX_ATTEMPTS, WebhookBook

__all__ = ["DeliveryRow", "WebhookPanel", "delivery_row", "shown_url", "webhook_panels"]

DELIVERIES_SHOWN = 20
URL_PATH_SHOWN = 12
"""Characters of a receiver URL's path shown: a Slack incoming-webhook URL's path is its
secret."""


@dataclass(frozen=True)
class DeliveryRow:
    event: int
    kind: str
    deployment: str
    message: str
    state: str
    status: str
    attempts: str
    next_try: str
    error: str
    updated: str


@dataclass(frozen=True)
class WebhookPanel:
    id: str
    url: str
    events: str
    format: str
    created: str
    summary: str
    rows: tuple[DeliveryRow, ...]


def shown_url(url: str) -> str:
    """A receiver's URL with its path cut after URL_PATH_SHOWN characters (and no query)."""
    parts = urlsplit(url)
    path = parts.path
    cut = path[:URL_PATH_SHOWN] + ("…" if len(path) > URL_PATH_SHOWN or parts.query else "")
    return f"{parts.scheme}://{parts.netloc}{cut}"


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _clock(stamp: str | None) -> str:
    if not stamp:
        return "—"
    return datetime.fromtimestamp(_epoch(stamp), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _wait(seconds: float) -> str:
    if seconds < 1:
        return "due now"
    if seconds < 120:
        return f"in {seconds:.0f} s"
    return f"in {seconds / 60:.0f} min"


def delivery_row(delivery: Mapping[str, Any], now: float) -> DeliveryRow:
    """One delivery of the log, as the page shows it."""
    next_at = delivery.get("next_at")
    if delivery["state"] == "pending" and next_at:
        next_try = f"{_wait(_epoch(next_at) - now)} ({_clock(next_at)[11:]})"
    else:
        next_try = "—"
    status = delivery.get("status")
    attempts = int(delivery.get("attempts") or 0)
    return DeliveryRow(
        event=int(delivery["event"]),
        kind=str(delivery.get("kind") or "(pruned)"),
        deployment=str(delivery.get("deployment") or ""),
        message=str(delivery.get("message") or ""),
        state=str(delivery["state"]),
        status="—" if status is None else str(status),
        attempts=f"{attempts} of {MAX_ATTEMPTS}",
        next_try=next_try,
        error=str(delivery.get("error") or ""),
        updated=_clock(delivery.get("updated_at")) if attempts else "—",
    )


def webhook_panels(
    book: WebhookBook, now: float, limit: int = DELIVERIES_SHOWN
) -> list[WebhookPanel]:
    """Every webhook, oldest first, with its newest ``limit`` deliveries."""
    panels = []
    for hook in book.all():
        deliveries = book.deliveries(hook.id, limit)
        states = Counter(d["state"] for d in deliveries)
        summary = ", ".join(
            f"{states[s]} {s}" for s in ("delivered", "pending", "failed") if s in states
        )
        panels.append(
            WebhookPanel(
                id=hook.id,
                url=shown_url(hook.url),
                events=", ".join(sorted(hook.events)),
                format=hook.format,
                created=_clock(hook.created_at),
                summary=summary or "no delivery yet",
                rows=tuple(delivery_row(d, now) for d in deliveries),
            )
        )
    return panels
