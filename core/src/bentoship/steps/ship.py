"""The ship step: push, deploy, wait, smoke-test; roll back and re-raise on any failure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..client import Client
from ..models import DeploymentConfig, Rollout
from .deploy import deploy
from .push import push
from .rollback import rollback
from .smoke import SmokeTest, smoke_test
from .wait import wait_until_ready

log = logging.getLogger("bentoship.steps")


def ship(
    name: str,
    bento: str | Path,
    config: DeploymentConfig | dict[str, Any] | None = None,
    *,
    smoke: SmokeTest | None = None,
    client: Client | None = None,
    timeout: float = 600.0,
    poll_interval: float = 5.0,
    token: str | None = None,
) -> Rollout:
    """Push ``bento``, deploy it as ``name``, wait until it serves and smoke-test it.

    Any failure after the deploy rolls the deployment back before the error is re-raised.
    """
    client = client or Client()
    tag = push(bento, client=client)
    rollout = deploy(name, tag, config, client=client)
    try:
        wait_until_ready(rollout, client=client, timeout=timeout, poll_interval=poll_interval)
        if smoke is not None:
            smoke_test(rollout, smoke, token=token, client=client)
    except Exception as exc:
        log.error("shipping %s to %s failed (%s); rolling back", tag, name, exc)
        rollback(rollout, client=client, timeout=timeout, poll_interval=poll_interval)
        raise
    return rollout
