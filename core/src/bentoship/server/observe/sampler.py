"""Every 10 s, what each revision did and uses, written to the metrics store.

From the endpoint's count (TrafficBook): answers by status class and latency, as what was
added since the last sample, and requests in flight. From each running revision: bentoml's own
``/metrics`` (requests and in-progress), the CPU and memory (psutil) of the processes that
carry its replica marker, and its GPUs (NVML) when there are any. Before the metrics route
reads the store, ``flush_traffic`` writes the endpoint's counts up to that moment, so totals
are exact.

With a writer (the control plane's), the samples are written by the analytics writer's thread,
and the processes are read (``/proc``, psutil, NVML) in a worker thread: the loop only counts
and scrapes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

from ...refs import revision_name
from ..endpoint.traffic import LATENCY_BOUNDS, RevisionTraffic
from ..rollout.runner import marked_processes
from .gpu import GpuReader
from .series import RESOLUTION, Sample, SeriesStore
from .writer import AnalyticsWriter

if TYPE_CHECKING:
    from ..rollout.controller import Controller
    from ..rollout.launcher import ReplicaHandle

__all__ = ["Sampler"]

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 2.0
SERVICE_REQUESTS = "bentoml_service_request_total"
SERVICE_IN_PROGRESS = "bentoml_service_request_in_progress"


@dataclass
class _Seen:
    """A revision's cumulative counts at the last sample."""

    by_class: list[int] = field(default_factory=lambda: [0] * 5)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))


class Sampler:
    def __init__(
        self,
        controller: Controller,
        series: SeriesStore,
        *,
        interval: float = RESOLUTION,
        gpu: GpuReader | None = None,
        writer: AnalyticsWriter | None = None,
    ) -> None:
        self.controller = controller
        self.series = series
        self.writer = writer
        self.interval = interval
        self.gpu = gpu if gpu is not None else GpuReader()
        self.latest: dict[str, dict[str, float]] = {}
        """The last gauges read of each running revision (by uid), for the Prometheus page."""
        self._seen: dict[str, _Seen] = {}
        self._service_seen: dict[int, float] = {}
        self._processes: dict[int, psutil.Process] = {}
        self._names: dict[str, tuple[str, str]] = {}

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled; prune once a minute."""
        rounds = 0
        while True:
            await asyncio.sleep(self.interval - time.time() % self.interval)
            try:
                await self.sample()
                rounds += 1
                if rounds % 6 == 0:
                    await self._wrote(self.series.prune)
            except Exception:
                log.exception("sampling metrics failed")

    def flush_traffic(self) -> concurrent.futures.Future[None]:
        """Write the endpoint's counts added since the last sample (no readings). They are
        counted now; with a writer, written by its thread: await the future before reading."""
        samples = list(self._traffic_samples(with_gauges=False).values())
        return self._write(lambda: self.series.write(samples))

    def _write(self, call: Callable[[], None]) -> concurrent.futures.Future[None]:
        if self.writer is not None:
            return self.writer.submit(call)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        call()
        done.set_result(None)
        return done

    async def _wrote(self, call: Callable[[], None]) -> None:
        await asyncio.wrap_future(self._write(call))

    async def sample(self) -> None:
        samples = self._traffic_samples(with_gauges=True)
        running = self._running()
        held = [self.controller.gpus.held_by(uid) for uid, _ in running]
        if self.writer is not None:  # the control plane: /proc, psutil and NVML off the loop
            usage = await asyncio.to_thread(self._read_usage, running, held)
        else:
            usage = self._read_usage(running, held)
        readings = await asyncio.gather(
            *(
                self._read_process(uid, proc, gauges)
                for (uid, proc), gauges in zip(running, usage, strict=True)
            )
        )
        latest: dict[str, dict[str, float]] = {}
        for uid, counters, gauges in readings:
            gauges = _merged(latest.setdefault(uid, {}), gauges, SUMMED_GAUGES)
            named = self._name(uid)
            if named is None:
                continue
            sample = samples.setdefault(uid, Sample(*named, {}, {}, {}))
            _merged(sample.counters, counters, set(counters))
            sample.gauges.update(gauges)
        self.latest = latest
        written = list(samples.values())
        await self._wrote(lambda: self.series.write(written))

    def _name(self, uid: str) -> tuple[str, str] | None:
        named = self._names.get(uid)
        if named is None:
            rev = self.controller.store.get_revision(uid)
            if rev is None:
                return None
            named = self._names[uid] = (rev.deployment, revision_name(rev.seq))
        return named

    def _traffic_samples(self, *, with_gauges: bool) -> dict[str, Sample]:
        """What each counted revision added since the last sample, by uid (a revision no longer
        counted, its deployment deleted, is forgotten)."""
        counted = self.controller.traffic.revisions()
        for uid in set(self._seen) - set(counted):
            del self._seen[uid]
            self._names.pop(uid, None)
        found: dict[str, Sample] = {}
        for uid, traffic in counted.items():
            named = self._name(uid)
            if named is None:
                continue
            counters, latency = self._added(uid, traffic)
            gauges = {"in_progress": float(traffic.in_progress)} if with_gauges else {}
            if counters or latency or gauges:
                found[uid] = Sample(*named, counters, gauges, latency)
        return found

    def _added(self, uid: str, traffic: RevisionTraffic) -> tuple[dict[str, float], dict[int, int]]:
        seen = self._seen.setdefault(uid, _Seen())
        counters = {
            f"requests_{c + 1}xx": float(now - before)
            for c, (now, before) in enumerate(zip(traffic.by_class, seen.by_class, strict=True))
            if now != before
        }
        latency = {
            index: now - before
            for index, (now, before) in enumerate(zip(traffic.buckets, seen.buckets, strict=True))
            if now != before
        }
        seen.by_class = list(traffic.by_class)
        seen.buckets = list(traffic.buckets)
        return counters, latency

    def _running(self) -> list[tuple[str, ReplicaHandle]]:
        """Every live process (each replica of each revision), with its revision's uid."""
        return [
            (uid, proc)
            for rt in self.controller.runtimes.values()
            for uid, pool in rt.processes.items()
            for proc in pool.processes()
            if proc.alive
        ]

    def _read_usage(
        self, running: list[tuple[str, ReplicaHandle]], held: list[tuple[int, ...]]
    ) -> list[dict[str, float]]:
        """Each process's CPU, memory and GPU readings (``held``: the GPUs its revision holds),
        with its workers' (the PIDs that carry its replica marker). Blocks (scans ``/proc``)."""
        marked = marked_processes() if running else {}
        found = []
        for (_, proc), gpus in zip(running, held, strict=True):
            pids = {proc.pid, *marked.get(proc.marker, [])}
            gauges = self._usage(pids)
            gauges.update(self.gpu.read(pids, gpus))
            found.append(gauges)
        return found

    async def _read_process(
        self, uid: str, proc: ReplicaHandle, gauges: dict[str, float]
    ) -> tuple[str, dict[str, float], dict[str, float]]:
        """``gauges``: the process's readings (``_read_usage``); its bentoml counts added."""
        counters: dict[str, float] = {}
        scraped = await self._scrape(proc)
        if scraped is not None:
            total, in_progress = scraped
            before = self._service_seen.get(proc.pid, 0.0)
            counters["service_requests"] = total - before if total >= before else total
            self._service_seen[proc.pid] = total
            gauges["service_in_progress"] = in_progress
        return uid, counters, gauges

    def _usage(self, pids: set[int]) -> dict[str, float]:
        cpu = rss = 0.0
        for pid in pids:
            process = self._processes.get(pid)
            try:
                if process is None:
                    process = self._processes[pid] = psutil.Process(pid)
                    process.cpu_percent(None)
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss
            except psutil.Error:
                self._processes.pop(pid, None)
        for pid in [p for p in self._processes if p not in pids]:
            with contextlib.suppress(KeyError):
                if not self._processes[pid].is_running():
                    del self._processes[pid]
        return {"cpu_percent": cpu, "memory_rss_bytes": rss}

    async def _scrape(self, proc: ReplicaHandle) -> tuple[float, float] | None:
        """bentoml's request total and requests in progress, from the revision's /metrics."""
        import aiohttp
        from prometheus_client.parser import text_string_to_metric_families

        try:
            async with proc.session().get(
                f"{proc.url}/metrics", timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
            ) as response:
                if response.status != 200:
                    return None
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        total = in_progress = 0.0
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == SERVICE_REQUESTS:
                        total += sample.value
                    elif sample.name == SERVICE_IN_PROGRESS:
                        in_progress += sample.value
        except ValueError:
            return None
        return total, in_progress


SUMMED_GAUGES = {"cpu_percent", "memory_rss_bytes", "service_in_progress"}
"""Gauges that add up over a revision's replicas (its GPU readings are the revision's already)."""


def _merged(into: dict[str, float], more: dict[str, float], summed: set[str]) -> dict[str, float]:
    """``into`` updated with one replica's readings ``more``: ``summed`` keys add up."""
    for key, value in more.items():
        into[key] = into.get(key, 0.0) + value if key in summed else value
    return into
