"""The control plane's ``/metrics``: the Prometheus exposition format, by prometheus_client.

Labelled by deployment and revision (``r3``): the endpoint's answers by status class and their
latency, requests in flight, and the last readings of each running revision's process tree and
GPUs. An existing Prometheus scrapes it with the API token as a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ...refs import revision_name
from ..endpoint.traffic import LATENCY_BOUNDS

if TYPE_CHECKING:
    from ..rollout.controller import Controller
    from .sampler import Sampler

__all__ = ["RevisionCollector", "registry_for"]

LABELS = ["deployment", "revision"]
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
READINGS = {
    "cpu_percent": ("bentoship_revision_cpu_percent", "CPU use of the revision's processes"),
    "memory_rss_bytes": (
        "bentoship_revision_memory_rss_bytes",
        "Resident memory of the revision's processes",
    ),
    "gpu_utilization_percent": (
        "bentoship_revision_gpu_utilization_percent",
        "Utilisation of the busiest GPU the revision uses",
    ),
    "gpu_memory_bytes": ("bentoship_revision_gpu_memory_bytes", "GPU memory the revision uses"),
}


class RevisionCollector(Collector):
    """Reads the controller's counts and the sampler's readings at each scrape."""

    def __init__(self, controller: Controller, sampler: Sampler | None = None) -> None:
        self.controller = controller
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "bentoship_requests",
            "Answers of the deployment's endpoint, by revision and status class",
            labels=[*LABELS, "status_class"],
        )
        latency = HistogramMetricFamily(
            "bentoship_request_duration_seconds",
            "Time to answer through the deployment's endpoint",
            labels=LABELS,
        )
        in_progress = GaugeMetricFamily(
            "bentoship_requests_in_progress",
            "Requests the endpoint forwarded that have no answer yet",
            labels=LABELS,
        )
        info = GaugeMetricFamily(
            "bentoship_revision_info",
            "Each revision: its phase and bento (always 1)",
            labels=[*LABELS, "phase", "bento"],
        )
        store = self.controller.store
        names: dict[str, list[str]] = {}
        for dep in store.list_deployments():
            for rev in store.list_revisions(dep.name):
                names[rev.uid] = [dep.name, revision_name(rev.seq)]
                info.add_metric([*names[rev.uid], rev.phase, rev.bento], 1.0)
        for uid, traffic in self.controller.traffic.revisions().items():
            if uid not in names:
                continue
            labels = names[uid]
            for status_class, count in zip(CLASSES, traffic.by_class, strict=True):
                requests.add_metric([*labels, status_class], float(count))
            cumulative, buckets = 0, []
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), traffic.buckets, strict=True):
                cumulative += count
                buckets.append((_le(bound), float(cumulative)))
            latency.add_metric(labels, buckets, sum_value=traffic.seconds)
            in_progress.add_metric(labels, float(traffic.in_progress))
        yield from (requests, latency, in_progress, info)
        readings = self.sampler.latest if self.sampler is not None else {}
        for key, (name, documentation) in READINGS.items():
            family = GaugeMetricFamily(name, documentation, labels=LABELS)
            for uid, gauges in readings.items():
                if key in gauges and uid in names:
                    family.add_metric(names[uid], gauges[key])
            if family.samples:
                yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_for(controller: Controller, sampler: Sampler | None = None) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) with the revision metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RevisionCollector(controller, sampler))
    return registry
