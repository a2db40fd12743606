"""Replica choice by least outstanding requests, without processes."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp

from bentoship.server.endpoint.balancing import Replica, choose


@dataclass
class Stand:
    """A serving process as the balancer sees it (no process behind it)."""

    revision: str = "uid-1"
    name: str = "r1"
    url: str = "http://127.0.0.1:1"
    alive: bool = True

    pool: object = None

    def session(self) -> aiohttp.ClientSession:
        raise AssertionError("the balancer never opens a session")

    def connections(self) -> object:
        return self.pool


def replicas(count: int) -> list[Replica[Stand]]:
    made = [Replica(index, Stand()) for index in range(count)]
    for replica in made:
        replica.ready = True
    return made


def test_the_replica_with_fewest_outstanding_requests_is_chosen() -> None:
    pool = replicas(3)
    pool[0].outstanding, pool[1].outstanding, pool[2].outstanding = 4, 1, 2
    chosen = choose(pool)
    assert chosen is pool[1]


def test_ties_go_round_robin_so_3000_sequential_requests_split_evenly() -> None:
    pool = replicas(3)
    for _ in range(3000):
        chosen = choose(pool)
        assert chosen is not None
        chosen.started()
        chosen.finished(answered=True)
    assert [r.answered for r in pool] == [1000, 1000, 1000]


def test_concurrent_requests_of_uneven_length_spread_within_ten_percent() -> None:
    pool = replicas(3)
    rng = random.Random(16)
    in_flight: list[tuple[int, Replica[Stand]]] = []
    for step in range(3000):
        chosen = choose(pool)
        assert chosen is not None
        chosen.started()
        in_flight.append((step + rng.randint(1, 12), chosen))
        for done in [item for item in in_flight if item[0] <= step]:
            in_flight.remove(done)
            done[1].finished(answered=True)
    for _, replica in in_flight:
        replica.finished(answered=True)
    assert sum(r.answered for r in pool) == 3000
    assert all(900 <= r.answered <= 1100 for r in pool), [r.answered for r in pool]


def test_replicas_not_ready_draining_or_dead_get_no_request() -> None:
    pool = replicas(4)
    pool[0].ready = False
    pool[1].draining = True
    pool[2].process.alive = False
    assert {id(choose(pool)) for _ in range(10)} == {id(pool[3])}
    pool[3].draining = True
    assert choose(pool) is None


def test_a_replica_is_an_upstream_of_its_revision() -> None:
    replica = replicas(2)[1]
    assert type(replica.revision) is str and replica.revision == "uid-1"
    assert replica.name == "r1"
    replica.process.pool = object()
    assert replica.connections() is replica.process.pool


def test_a_draining_replica_waits_for_its_outstanding_requests() -> None:
    async def scenario() -> None:
        replica = replicas(1)[0]
        replica.started()
        replica.started()
        waiting = asyncio.ensure_future(replica.drained(5.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        replica.finished(answered=True)
        replica.finished(answered=False)
        assert await waiting
        assert replica.answered == 1
        replica.started()
        assert not await replica.drained(0.1)

    asyncio.run(scenario())
