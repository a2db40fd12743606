"""Approvals on the control plane over a fake launcher: approve promotes, reject and the
deadline discard, a candidate that leaves withdraws the approval, bad requests change nothing;
and deciding needs the approve scope (no process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bentoship.server.errors import Conflict, Invalid
from bentoship.server.rollout.approvals import ApprovalState
from bentoship.server.rollout.controller import Controller
from bentoship.server.tokens import Principal, Scope

from .fakes import FakeClock, FakeLauncher, run_controller, settle
from .test_analyses import held_candidate, settings_in


def test_approve_promotes_and_the_decision_is_an_event(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        _, r2 = await held_candidate(controller)
        approvals = controller.approvals
        record = approvals.request("web", "ship it?", 3600, {"smoke": "passed"})
        assert record.pending and record.name == "r2" and record.evidence == {"smoke": "passed"}
        assert approvals.request("web", "again?", 3600) == record, "one pending per candidate"
        waiting = asyncio.ensure_future(approvals.wait("web", record.id, 30))
        await settle()
        decided = await approvals.decide("web", record.id, True, "alice", "figures are fine")
        assert (await waiting).state == ApprovalState.APPROVED
        assert decided.decided_by == "alice" and decided.comment == "figures are fine"
        await settle()
        assert controller.get("web").serving_revision == r2
        with pytest.raises(Conflict, match=r"approved already \(by alice\)"):
            await approvals.decide("web", record.id, False, "bob")
        messages = [e.message for e in controller.events.of("web") if e.kind == "approval"]
        assert messages == [
            "approval " + record.id + " of r2 requested: ship it?",
            "approval " + record.id + " of r2 approved by alice: figures are fine",
        ]

    run_controller(settings_in(tmp_path), scenario)


def test_reject_and_the_deadline_discard_and_a_leaving_candidate_withdraws(
    tmp_path: Path,
) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        r1, r2 = await held_candidate(controller)
        approvals = controller.approvals
        first = approvals.request("web", timeout=3600)
        rejected = await approvals.decide("web", first.id, False, "bob", "p99 too high")
        await settle()
        assert rejected.state == ApprovalState.REJECTED
        assert controller.get("web").serving_revision == r1
        assert controller.store.get_revision(r2).phase == "cancelled"  # type: ignore[union-attr]

        await controller.update("web", "echo:v3", {}, verify=True)
        await settle()
        late = approvals.request("web", timeout=0.2)
        expired = await approvals.wait("web", late.id, 5)
        assert expired.state == ApprovalState.EXPIRED
        await settle()
        assert controller.get("web").target_revision == r1

        await controller.update("web", "echo:v4", {}, verify=True)
        await settle()
        gone = approvals.request("web", timeout=3600)
        await controller.discard("web")
        assert approvals.get("web", gone.id).state == ApprovalState.WITHDRAWN

    run_controller(settings_in(tmp_path), scenario)


def test_bad_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async def scenario(controller: Controller, launcher: FakeLauncher, clock: FakeClock) -> None:
        await controller.create("web", "echo:v1", {})
        await settle()
        approvals = controller.approvals
        with pytest.raises(Conflict, match="no held candidate to approve"):
            approvals.request("web")
        await controller.update("web", "echo:v2", {}, verify=True)
        await settle()
        for kwargs, field in [
            ({"timeout": 0}, "timeout"),
            ({"timeout": 31 * 86400}, "timeout"),
            ({"evidence": [1]}, "evidence"),
            ({"message": "x" * 3000}, "message"),
        ]:
            with pytest.raises(Invalid, match=f"^{field}: "):
                approvals.request("web", **kwargs)  # type: ignore[arg-type]
        assert approvals.of("web") == []

    run_controller(settings_in(tmp_path), scenario)


def test_deciding_needs_the_approve_scope() -> None:
    path = "/api/v2/deployments/web/approvals/abc123/approve"
    writer = Principal("ci", "u1", frozenset({Scope.WRITE_CLUSTER, Scope.READ_CLUSTER}))
    approver = Principal("lead", "u2", frozenset({Scope.APPROVE}))
    assert not writer.may("POST", path) and "needs approve" in writer.refusal("POST", path)
    assert writer.may("POST", "/api/v2/deployments/web/approvals")
    assert approver.may("POST", path.replace("approve", "reject"))
    assert Principal("all", None, frozenset({Scope.API})).may("POST", path)
