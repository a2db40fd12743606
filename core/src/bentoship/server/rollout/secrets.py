"""The controller's view of secrets: pin a config's secrets, give a revision's process them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..secrets.book import SecretBook, SecretUnavailable
from ..secrets.delivery import Delivered, SecretDelivery
from ..secrets.logpipe import masked_pipe
from ..secrets.records import SecretRecords
from ..secrets.sealing import Sealer, default_key_file
from ..settings import ServerSettings
from ..store import Revision, Store
from .runner import NotReadyError

__all__ = ["Given", "RevisionSecrets"]


@dataclass
class Given:
    """What one process of a revision gets: variables, a masked log, and how to clean up."""

    envs: dict[str, str] = field(default_factory=dict)
    log_pipe: Callable[[Path], int] | None = None
    delivered: Delivered | None = None

    def remove(self) -> None:
        if self.delivered is not None:
            self.delivered.remove()


class RevisionSecrets:
    """Secrets as revisions use them: pinned in their configs, delivered when they start."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        sealer = Sealer(settings.secrets_key_file or default_key_file())
        self.book = SecretBook(SecretRecords(store.db), sealer)
        self.delivery = SecretDelivery(settings.data_dir, settings.runtime_dir)

    def pin(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with ``secret_versions``: the current version of each secret it names
        (Invalid, changing nothing, when one does not exist)."""
        names = config.get("secrets") or []
        if not names:
            return config
        return {**config, "secret_versions": self.book.pin(list(names))}

    def deliver(self, rev: Revision) -> Given:
        """The pinned versions of ``rev``'s secrets for one process; NotReadyError when one
        cannot be opened (the revision then fails with that reason)."""
        pins: dict[str, str] = rev.config.get("secret_versions") or {}
        if not pins:
            return Given()
        try:
            pinned = self.book.open_pinned(pins)
            delivered = self.delivery.deliver(pinned, f"r{rev.seq}-{rev.uid[:8]}")
        except SecretUnavailable as exc:
            raise NotReadyError(str(exc)) from None
        log_pipe = functools.partial(masked_pipe, masker=delivered.masker)
        return Given(envs=delivered.envs, log_pipe=log_pipe, delivered=delivered)

    def close(self) -> None:
        self.delivery.close()
