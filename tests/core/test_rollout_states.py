"""The rollout state machine, the derived status, crash-loop detection and the rollback target.

Unit tests: no process, no server; the controller is built over a SQLite store in tmp_path.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bentoship import DeploymentStatus
from bentoship.server.errors import Conflict, NotFound
from bentoship.server.rollout.controller import Controller
from bentoship.server.rollout.crashloop import CrashLoopDetector
from bentoship.server.rollout.phases import (
    TRANSITIONS,
    Health,
    IllegalTransition,
    Lifecycle,
    RevisionPhase,
    check_transition,
    derive_status,
)
from bentoship.server.settings import ServerSettings
from bentoship.server.store import Deployment, Revision, Store

from .records import deployment_record, revision_record

DOCS = Path(__file__).resolve().parents[2] / "docs" / "local-control-plane.md"
P = RevisionPhase


@pytest.mark.parametrize(("current", "target"), sorted(TRANSITIONS))
def test_every_allowed_move_passes(current: RevisionPhase, target: RevisionPhase) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (P.FAILED, P.SERVING),
        (P.FAILED, P.STARTING),
        (P.CANCELLED, P.STARTING),
        (P.CANCELLED, P.SERVING),
        (P.RETIRED, P.SERVING),
        (P.SERVING, P.STARTING),
        (P.STARTING, P.WARM),
        (P.STARTING, P.RETIRED),
        (P.WARM, P.FAILED),
    ],
)
def test_forbidden_moves_raise(current: RevisionPhase, target: RevisionPhase) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
        check_transition(current, target)


def test_a_move_to_the_same_phase_is_no_move() -> None:
    for phase in RevisionPhase:
        check_transition(phase, phase)


def test_the_table_in_the_docs_is_the_table_in_the_code() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| ", DOCS.read_text(), flags=re.MULTILINE)
    documented = {(RevisionPhase(a), RevisionPhase(b)) for a, b in rows}
    assert documented == set(TRANSITIONS)
    assert len(rows) == len(documented)


@pytest.mark.parametrize(
    ("lifecycle", "target", "health", "process", "status"),
    [
        (Lifecycle.TERMINATING, P.SERVING, Health.HEALTHY, True, DeploymentStatus.TERMINATING),
        (Lifecycle.TERMINATED, P.RETIRED, Health.HEALTHY, False, DeploymentStatus.TERMINATED),
        (Lifecycle.ACTIVE, None, Health.HEALTHY, False, DeploymentStatus.DEPLOYING),
        (Lifecycle.ACTIVE, P.STARTING, Health.HEALTHY, True, DeploymentStatus.DEPLOYING),
        (Lifecycle.ACTIVE, P.FAILED, Health.HEALTHY, True, DeploymentStatus.FAILED),
        (Lifecycle.ACTIVE, P.CANCELLED, Health.HEALTHY, True, DeploymentStatus.FAILED),
        (Lifecycle.ACTIVE, P.SERVING, Health.HEALTHY, True, DeploymentStatus.RUNNING),
        (Lifecycle.ACTIVE, P.SERVING, Health.HEALTHY, False, DeploymentStatus.DEPLOYING),
        (Lifecycle.ACTIVE, P.SERVING, Health.UNHEALTHY, False, DeploymentStatus.UNHEALTHY),
        (Lifecycle.ACTIVE, P.SERVING, Health.RESTARTING, False, DeploymentStatus.DEPLOYING),
        (
            Lifecycle.ACTIVE,
            P.SERVING,
            Health.SCALED_TO_ZERO,
            False,
            DeploymentStatus.SCALED_TO_ZERO,
        ),
    ],
)
def test_status_is_derived(
    lifecycle: Lifecycle,
    target: RevisionPhase | None,
    health: Health,
    process: bool,
    status: DeploymentStatus,
) -> None:
    assert derive_status(lifecycle, target, health, serving_process=process) == status


CRASH = [
    "[bentoship] 2026-11-29T21:47:40+0000 starting crash:v1 on port 38123",
    "2026-11-29T21:47:40+0000 [INFO] [cli] Starting production HTTP BentoServer",
    "2026-11-29T21:47:44+0000 [ERROR] [entry_service:Crash:1] Initializing service error",
    "Traceback (most recent call last):",
    '  File "crash_service.py", line 9, in __init__',
    "RuntimeError: deliberate init failure: crash fixture",
    "2026-11-29T21:47:44+0000 [ERROR] [entry_service:Crash:1] Traceback (most recent call last):",
    "RuntimeError: deliberate init failure: crash fixture",
    "2026-11-29T21:47:44+0000 [ERROR] [entry_service:Crash:1] Application startup failed. Exiting.",
    "2026-11-29T21:47:45+0000 [ERROR] [entry_service:Crash:1] Application startup failed. Exiting.",
]
RESPAWN = [
    "2026-11-29T21:47:54+0000 [ERROR] [entry_service:Crash:1] Initializing service error",
    "RuntimeError: deliberate init failure: crash fixture",
    "2026-11-29T21:47:54+0000 [ERROR] [entry_service:Crash:1] Application startup failed. Exiting.",
]


def test_a_crash_loop_is_two_crash_episodes_with_the_exception_as_reason() -> None:
    detector = CrashLoopDetector(crashes=2)
    detector.feed("\n".join(CRASH) + "\n")
    assert detector.episodes and not detector.crash_looping
    text = "\n".join(RESPAWN) + "\n"
    detector.feed(text[:50])
    assert not detector.crash_looping
    detector.feed(text[50:])
    assert detector.crash_looping
    reason = detector.reason()
    assert reason.endswith("RuntimeError: deliberate init failure: crash fixture")
    assert "2 times" in reason and "\n" not in reason


def test_one_crash_is_enough_when_configured_and_a_healthy_start_is_no_crash() -> None:
    once = CrashLoopDetector(crashes=1)
    once.feed("\n".join(CRASH) + "\n")
    assert once.crash_looping and "respawn it forever" in once.reason()
    healthy = CrashLoopDetector(crashes=1)
    healthy.feed(
        "2026-11-29T21:47:40+0000 [INFO] [cli] Starting production HTTP BentoServer\n"
        "2026-11-29T21:47:43+0000 [INFO] [entry_service:Echo:1] Service Echo initialized\n"
        "2026-11-29T21:47:44+0000 [ERROR] [entry_service:Echo:1] a request failed: 500\n"
    )
    assert not healthy.crash_looping


def revision(name: str, seq: int, phase: RevisionPhase, ready_at: str | None) -> Revision:
    return revision_record(name, seq, phase, ready_at)


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    settings = ServerSettings(data_dir=tmp_path, token="t" * 16)
    return Controller(settings, Store(settings.db_path))


def add(
    controller: Controller, serving: int | None, target: int, *revisions: Revision
) -> Deployment:
    name = revisions[0].deployment
    dep = deployment_record(
        name, target=f"{name}-{target}", serving=f"{name}-{serving}" if serving else None
    )
    controller.store.insert_deployment(dep)
    for rev in revisions:
        controller.store.insert_revision(rev)
    return dep


def test_rollback_target_is_the_serving_revision_while_a_newer_one_failed(
    controller: Controller,
) -> None:
    dep = add(
        controller,
        2,
        3,
        revision("svc", 1, P.RETIRED, "2026-01-01T00:01:00Z"),
        revision("svc", 2, P.SERVING, "2026-01-01T00:02:00Z"),
        revision("svc", 3, P.FAILED, None),
    )
    assert controller.views.rollback_target(dep, None).seq == 2


def test_rollback_target_is_the_last_revision_that_served_before_the_current(
    controller: Controller,
) -> None:
    dep = add(
        controller,
        3,
        3,
        revision("svc", 1, P.RETIRED, "2026-01-01T00:01:00Z"),
        revision("svc", 2, P.WARM, "2026-01-01T00:02:00Z"),
        revision("svc", 3, P.SERVING, "2026-01-01T00:03:00Z"),
    )
    assert controller.views.rollback_target(dep, None).seq == 2
    assert controller.views.rollback_target(dep, "r1").seq == 1
    assert controller.views.rollback_target(dep, "svc-1").seq == 1


def test_rollback_refuses_what_never_served_and_what_does_not_exist(
    controller: Controller,
) -> None:
    dep = add(
        controller,
        1,
        2,
        revision("svc", 1, P.SERVING, "2026-01-01T00:01:00Z"),
        revision("svc", 2, P.FAILED, None),
    )
    with pytest.raises(Conflict, match="never became ready"):
        controller.views.rollback_target(dep, "r2")
    with pytest.raises(NotFound, match="no revision 'r9'"):
        controller.views.rollback_target(dep, "r9")
    only = add(controller, 1, 1, revision("solo", 1, P.SERVING, "2026-01-01T00:01:00Z"))
    with pytest.raises(Conflict, match="no earlier good revision"):
        controller.views.rollback_target(only, None)


def test_rollback_refuses_a_discarded_candidate_unless_forced(controller: Controller) -> None:
    discarded = dataclasses.replace(
        revision("svc", 2, P.CANCELLED, "2026-01-01T00:02:00Z"), activated_at=None
    )
    dep = add(
        controller,
        3,
        3,
        revision("svc", 1, P.WARM, "2026-01-01T00:01:00Z"),
        discarded,
        revision("svc", 3, P.SERVING, "2026-01-01T00:03:00Z"),
    )
    with pytest.raises(Conflict, match="r2 of svc never served: it was cancelled"):
        controller.views.rollback_target(dep, "r2")
    assert controller.views.rollback_target(dep, "r2", force=True).seq == 2
    assert controller.views.rollback_target(dep, None).seq == 1, "the last one that served"


def test_move_persists_checks_and_wakes(controller: Controller) -> None:
    add(controller, None, 1, revision("svc", 1, P.STARTING, None))
    moved = controller.move("svc-1", P.FAILED, reason="it crashed")
    assert (moved.phase, moved.reason) == (P.FAILED, "it crashed")
    assert controller.store.get_revision("svc-1").phase == "failed"  # type: ignore[union-attr]
    with pytest.raises(IllegalTransition):
        controller.move("svc-1", P.SERVING)
    assert controller.store.get_revision("svc-1").phase == "failed"  # type: ignore[union-attr]
    dep = controller.get("svc")
    assert controller.views.status(dep) == DeploymentStatus.FAILED
    assert controller.views.reason(dep) == "it crashed"


OLD_SCHEMA = """
CREATE TABLE deployments (
    name TEXT PRIMARY KEY, uid TEXT NOT NULL, cluster TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT, state TEXT NOT NULL,
    target_revision TEXT, serving_revision TEXT, endpoint_port INTEGER,
    reason TEXT NOT NULL DEFAULT '');
CREATE TABLE revisions (
    uid TEXT PRIMARY KEY, deployment TEXT NOT NULL, seq INTEGER NOT NULL,
    bento TEXT NOT NULL, config TEXT NOT NULL, created_at TEXT NOT NULL,
    phase TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', ready_at TEXT,
    activated_at TEXT, UNIQUE (deployment, seq));
"""
"""The state tables of 0.1: a deployment stored its serving revision."""


def old_database(path: Path, script: str) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA + script)
    db.commit()
    db.close()


def test_old_phases_are_migrated_when_the_store_opens(tmp_path: Path) -> None:
    old_database(
        tmp_path / "state.db",
        """
        INSERT INTO deployments VALUES ('old', 'u', 'local', 't', NULL, 'active', 'old-2',
            'old-2', NULL, '');
        INSERT INTO revisions VALUES ('old-1', 'old', 1, 'echo:v1', '{}', 't', 'ready', '',
            '2026-01-01T00:01:00Z', '2026-01-01T00:09:00Z');
        INSERT INTO revisions VALUES ('old-2', 'old', 2, 'echo:v2', '{}', 't', 'ready', '',
            '2026-01-01T00:02:00Z', '2026-01-01T00:02:00Z');
        INSERT INTO revisions VALUES ('old-3', 'old', 3, 'echo:v3', '{}', 't', 'pending', '',
            NULL, NULL);
        """,
    )
    reopened = Store(tmp_path / "state.db")
    phases = {r.seq: r.phase for r in reopened.list_revisions("old")}
    assert phases == {1: "retired", 2: "serving", 3: "starting"}
    assert reopened.get_deployment("old").serving_revision == "old-2"  # type: ignore[union-attr]
    columns = {row[1] for row in reopened.db.execute("PRAGMA table_info(deployments)")}
    assert "serving_revision" not in columns, "one source: the revisions say which one serves"
    reopened.close()
    assert Store(tmp_path / "state.db").get_deployment("old").serving_revision == "old-2"  # type: ignore[union-attr]


def test_the_serving_revision_is_the_one_last_switched_to_and_is_never_stored(
    controller: Controller,
) -> None:
    store = controller.store
    add(
        controller,
        None,
        2,
        revision("svc", 1, P.SERVING, "2026-01-01T00:01:00Z"),
        revision("svc", 2, P.STARTING, None),
    )
    assert store.get_deployment("svc").serving_revision == "svc-1"  # type: ignore[union-attr]
    store.update_revision("svc-2", phase=P.SERVING, activated_at="2026-01-01T00:02:00Z")
    store.update_revision("svc-1", phase=P.WARM)
    assert [d.serving_revision for d in store.list_deployments()] == ["svc-2"]
    store.update_revision("svc-1", phase=P.SERVING, activated_at="2026-01-01T00:03:00Z")
    rolled_back = store.get_deployment("svc")
    assert rolled_back is not None and rolled_back.serving_revision == "svc-1", "a rollback"
    with pytest.raises(ValueError, match="derived"):
        store.update_deployment("svc", serving_revision="svc-2")
    assert store.get_deployment("svc").serving_revision == "svc-1"  # type: ignore[union-attr]


def test_a_database_from_before_candidates_gains_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(
        path,
        """
        INSERT INTO deployments VALUES ('old', 'u', 'local', 't', NULL, 'active', 'r', 'r', 7, '');
        INSERT INTO revisions VALUES ('r', 'old', 1, 'echo:v1', '{}', 't', 'serving', '', 't', 't');
        """,
    )
    store = Store(path)
    dep = store.get_deployment("old")
    assert dep is not None and (dep.endpoint_port, dep.candidate_port, dep.canary) == (
        7,
        None,
        None,
    )
    rev = store.get_revision("r")
    assert rev is not None and rev.verify is False and rev.phase == "serving"
    store.update_deployment("old", canary={"weight": 10}, candidate_port=8)
    assert store.get_deployment("old").canary == {"weight": 10}  # type: ignore[union-attr]
