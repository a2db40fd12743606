"""Typed events: the sentence of each is derived from its fields, the fields survive the outbox,
readers page on from a cursor and lose nothing, and retention spares what a registered reader
has not read. No process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bentoship.server.rollout import events as ev
from bentoship.server.rollout.events import EVENT_TYPES, EventLog, event_from
from bentoship.server.store import Store

SENTENCES: list[tuple[ev.DeploymentEvent, str, str]] = [
    (ev.Created("r2", "echo:v2"), "created", "r2 created: echo:v2"),
    (ev.Starting("r2", "echo:v2"), "starting", "r2 (echo:v2) is starting"),
    (ev.Ready("r2"), "ready", "r2 is ready"),
    (ev.Held("r2"), "held", "r2 is held as a candidate, without live traffic"),
    (ev.Switched("r2", 1, "r1"), "switched", "the endpoint now serves r2 (was r1)"),
    (ev.Switched("r1", 3, None), "switched", "the endpoint now serves r1 on 3 replicas"),
    (ev.Failed("r2", "it crashed"), "failed", "r2 failed: it crashed"),
    (ev.Failed("r2", ""), "failed", "r2 failed"),
    (ev.Cancelled("r3", "superseded"), "cancelled", "r3 was cancelled: superseded"),
    (ev.Warm("r1"), "warm", "r1 is kept warm for a rollback"),
    (ev.Retired("r1"), "retired", "r1 is retired (stopped)"),
    (ev.RolledBack("r1", "r2"), "rolled_back", "rollback to r1 (was serving r2)"),
    (ev.RolledBack("r1", None), "rolled_back", "rollback to r1 (was serving nothing)"),
    (ev.Promoted("r2"), "promoted", "candidate r2 promoted"),
    (ev.Discarded("r2"), "discarded", "r2 discarded"),
    (ev.CanaryWeight("r2", 10), "canary", "r2 takes 10% of the endpoint's requests"),
    (
        ev.AnalysisStarted("r2", "10%, 100%", 30.0),
        "analysis",
        "the control plane analyses r2: steps 10%, 100%, 30 s each",
    ),
    (
        ev.StepJudged("r2", 10, True, "at 10%: candidate 57 requests; held"),
        "analysis",
        "canary r2 at 10%: candidate 57 requests; held",
    ),
    (
        ev.AnalysisEnded("r2", "discarded", "at 10%: only 3 requests"),
        "verdict",
        "analysis of r2: discarded: at 10%: only 3 requests",
    ),
    (
        ev.ShadowStarted("r2", 50, "predict"),
        "shadow",
        "50% of the endpoint's requests to predict are mirrored to r2",
    ),
    (
        ev.ShadowStarted("r2", 100, ""),
        "shadow",
        "100% of the endpoint's requests are mirrored to r2",
    ),
    (
        ev.ShadowStopped("r2", 240, "r2 is serving"),
        "shadow",
        "mirroring to r2 stopped after 240 pairs: r2 is serving",
    ),
    (
        ev.ShadowJudged("r2", False, "agrees on 70.0% of 200 pairs; discarded"),
        "analysis",
        "shadow r2 agrees on 70.0% of 200 pairs; discarded",
    ),
    (
        ev.ApprovalRequested("r2", "a1b2", "ship r2?"),
        "approval",
        "approval a1b2 of r2 requested: ship r2?",
    ),
    (
        ev.ApprovalDecided("r2", "a1b2", "rejected", "lead", "p99 too high"),
        "approval",
        "approval a1b2 of r2 rejected by lead: p99 too high",
    ),
    (
        ev.ApprovalDecided("r2", "a1b2", "expired", "", ""),
        "approval",
        "approval a1b2 of r2 expired",
    ),
    (ev.Crashed("r1", 0, 137), "crashed", "r1 replica 0 exited (code 137); restarting"),
    (ev.Restarted("r1"), "restarted", "r1 serves again"),
    (ev.Restarted("r1", 2), "restarted", "r1 replica 2 serves again"),
    (ev.Restarted("r1", on_gpus=True), "restarted", "r1 starts again on its GPUs"),
    (
        ev.GpusGiven("r1", 0, "0,1", "instance type gpu.a100.2"),
        "gpus",
        "r1 gets GPU 0,1 (instance type gpu.a100.2)",
    ),
    (ev.GpusGiven("r1", 1, "2", "gpu 1"), "gpus", "r1 replica 1 gets GPU 2 (gpu 1)"),
    (ev.Recreating("r2", "only r1's GPUs fit r2"), "recreate", "only r1's GPUs fit r2"),
    (
        ev.Scaled("r1", 2, 3, 4, 1),
        "scaled",
        "r1 scales from 2 to 3 replicas (4 requests outstanding, concurrency 1)",
    ),
    (
        ev.ScaleUpHeld("r1", 4, 3, "no free GPU"),
        "scaled",
        "r1 scale-up to 4 held at 3: no free GPU",
    ),
    (ev.ReplicaAdded("r1", 2), "scaled", "r1 replica 2 started (scale-up)"),
    (ev.ScaledToZero("r1", 300.4), "scaled_to_zero", "scaled to zero after 300 s idle"),
    (ev.Woken("r1"), "woken", "a request arrived: starting again"),
    (ev.Terminated(None, "web"), "terminated", "deployment web terminated"),
    (
        ev.InternalError(None, "RuntimeError: boom"),
        "internal_error",
        "internal error: RuntimeError: boom",
    ),
]


def test_every_typed_event_has_its_sentence_checked() -> None:
    assert {type(event) for event, _, _ in SENTENCES} == set(EVENT_TYPES.values())


@pytest.mark.parametrize(("event", "kind", "sentence"), SENTENCES, ids=lambda v: str(v)[:40])
def test_the_sentence_is_derived_from_the_typed_fields(
    event: ev.DeploymentEvent, kind: str, sentence: str
) -> None:
    assert (event.kind, event.describe()) == (kind, sentence)
    fields = json.loads(json.dumps(event.fields()))
    assert event_from(fields) == event, "the stored fields give the same event back"


def test_the_outbox_keeps_the_fields_and_the_sentence(tmp_path: Path) -> None:
    log = EventLog(Store(tmp_path / "state.db"))
    stored = log.publish("web", ev.CanaryWeight("r2", 50))
    (read,) = log.of("web")
    assert read == stored and read.id == stored.id > 0
    assert read.to_json()["data"] == {"type": "CanaryWeight", "revision": "r2", "weight": 50}
    assert (read.kind, read.revision, read.message) == (
        "canary",
        "r2",
        "r2 takes 50% of the endpoint's requests",
    )


def test_a_reader_5000_events_behind_pages_on_from_its_cursor_and_loses_none(
    tmp_path: Path,
) -> None:
    log = EventLog(Store(tmp_path / "state.db"), keep_rows=1000)
    log.register("webhooks")
    for i in range(6000):
        log.publish("web", ev.CanaryWeight("r2", i % 101))
        log.publish("api", ev.Ready("r1"))
    cursor, seen = 0, []
    while page := log.of("web", after=cursor, limit=1000):
        seen += [e.id for e in page]
        cursor = page[-1].id
    assert len(seen) == 6000 == len(set(seen)) and seen == sorted(seen)
    assert len(log.of("web")) == 1000, "without a cursor, the newest"


def test_retention_drops_old_and_surplus_events_but_none_a_reader_has_not_passed(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state.db")
    log = EventLog(store, keep_rows=100, keep_seconds=3600)
    cursor = log.register("webhooks")
    assert cursor == 0
    ids = [log.publish("web", ev.Ready(f"r{i}")).id for i in range(300)]
    assert log.prune() == 0, "the reader has read none of them"
    log.advance("webhooks", ids[149])
    assert log.prune() == 150, "beyond the newest 100, but only up to the reader's cursor"
    left = [e.id for e in log.of("web", after=0, limit=1000)]
    assert left == ids[150:]
    log.advance("webhooks", ids[-1])
    assert log.prune() == 50, "the rest beyond the newest 100"
    assert [e.id for e in log.of("web", after=0, limit=1000)] == ids[200:]
    assert log.prune(now=10**10) == 100, "older than the age bound"
    assert log.register("webhooks") == ids[-1], "a reader's cursor is kept"
