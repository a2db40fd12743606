"""The orchestrator-neutral pipeline steps that every wrapper exposes."""

from .approval import Approval, request_approval
from .build import build
from .canary import analyze_canary
from .deploy import deploy
from .drift import check_drift
from .export import ExportResult, export_monitoring
from .local_store import import_bento_file, import_model_file
from .promote import discard, promote
from .push import push
from .quality import FeedbackResult, check_quality, send_feedback
from .rollback import abort, rollback
from .shadow import analyze_shadow
from .ship import ship
from .smoke import SmokeTest, smoke_test
from .wait import async_wait_until_ready, wait_until_ready

__all__ = [
    "Approval",
    "ExportResult",
    "FeedbackResult",
    "SmokeTest",
    "abort",
    "analyze_canary",
    "analyze_shadow",
    "async_wait_until_ready",
    "build",
    "check_drift",
    "check_quality",
    "deploy",
    "discard",
    "export_monitoring",
    "import_bento_file",
    "import_model_file",
    "promote",
    "push",
    "request_approval",
    "rollback",
    "send_feedback",
    "ship",
    "smoke_test",
    "wait_until_ready",
]
