"""A project's own pytest tests as a pipeline step: run against what is about to be promoted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..connection import TOKEN_ENV, mask_token
from ..errors import SmokeTestFailed
from ..models import Rollout, RolloutLike, rollout_target

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["run_pytest"]

log = logging.getLogger("bentoship.steps")
SUMMARY_LINES = 30


def run_pytest(
    target: RolloutLike,
    args: Sequence[str],
    *,
    client: Client | None = None,
    timeout: float = 1800.0,
) -> str:
    """Run ``pytest args`` against a deployment (a Rollout or a name) of ``client``'s plane:
    the tests' ``bento_deployment`` fixtures give that deployment (its held candidate, if
    any) instead of deploying. Return pytest's last lines; raise :class:`SmokeTestFailed`
    with them when a test fails. The token reaches pytest in its environment, never its
    command line, and is masked wherever pytest's output shows it."""
    from ..client import Client

    resolved = rollout_target(target)
    name = resolved.name if isinstance(resolved, Rollout) else resolved
    own = client is None
    client = client or Client()
    try:
        connection = client.connection
    finally:
        if own:
            client.close()
    command = [sys.executable, "-m", "pytest", *args]
    command += ["--bentoship-endpoint", connection.endpoint, "--bentoship-deployment", name]
    log.info("running %s against %s", " ".join(["pytest", *args]), name)
    try:
        done = subprocess.run(
            command,
            env={**os.environ, TOKEN_ENV: connection.token},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise SmokeTestFailed(
            f"pytest {' '.join(args)} against {name} took over {timeout:g} s; raise the timeout"
        ) from None
    output = (done.stdout + done.stderr).replace(connection.token, mask_token(connection.token))
    tail = "\n".join(output.splitlines()[-SUMMARY_LINES:])
    for line in tail.splitlines():
        log.info("pytest: %s", line)
    if done.returncode != 0:
        last = tail.splitlines()[-1] if tail else f"exit code {done.returncode}"
        raise SmokeTestFailed(
            f"pytest {' '.join(args)} against {name} failed ({last.strip('= ')}); its output "
            f"ends with:\n{tail}"
        )
    return tail
