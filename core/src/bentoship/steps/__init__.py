"""The orchestrator-neutral pipeline steps that every wrapper exposes."""

from .build import build
from .deploy import deploy
from .local_store import import_bento_file, import_model_file
from .push import push
from .rollback import abort, rollback
from .ship import ship
from .smoke import SmokeTest, smoke_test
from .wait import async_wait_until_ready, wait_until_ready

__all__ = [
    "SmokeTest",
    "abort",
    "async_wait_until_ready",
    "build",
    "deploy",
    "import_bento_file",
    "import_model_file",
    "push",
    "rollback",
    "ship",
    "smoke_test",
    "wait_until_ready",
]
