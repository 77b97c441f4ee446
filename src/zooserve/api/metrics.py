"""Prometheus metrics (`GET /metrics`): requests, model loads/unloads, memory, evictions, jobs.

One registry per app (no process-global state): counters and histograms are fed by the request
middleware and the manager's events; gauges are read from the manager at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zooserve.core.events import Event
from zooserve.manager import ModelManager, Status

LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: (metric, key of `manager.scheduler_status()`, help): the admission queue and the ledger.
SCHEDULER_GAUGES = (
    ("zooserve_pending_requests", "pending", "Requests waiting for memory"),
    ("zooserve_max_pending_requests", "max_pending", "Requests that may wait; more get 429"),
    ("zooserve_memory_peak_used_bytes", "peak_used_bytes", "Most bytes held or claimed at once"),
)


class _ManagerGauges(Collector):
    """Gauges computed on scrape, so they can never drift from the manager's state."""

    def __init__(self, manager: ModelManager, extra: Callable[[], dict[str, float]]) -> None:
        self.manager = manager
        self.extra = extra

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.manager
        yield GaugeMetricFamily("zooserve_memory_budget_bytes", "Memory budget", m.budget_bytes)
        yield GaugeMetricFamily(
            "zooserve_memory_used_bytes", "Bytes held or claimed", m.used_bytes()
        )
        yield GaugeMetricFamily(
            "zooserve_models_loaded", "Models loaded now", len(m.loaded_models())
        )
        scheduler = m.scheduler_status()
        for name, key, text in SCHEDULER_GAUGES:
            value = scheduler.get(key)
            if isinstance(value, int | float):
                yield GaugeMetricFamily(name, text, value)
        per_model = GaugeMetricFamily(
            "zooserve_model_memory_bytes", "Measured bytes of each loaded model", labels=["model"]
        )
        for name, state in m.states.items():
            if state.status is Status.LOADED and state.footprint:
                per_model.add_metric([name], state.footprint.bytes)
        yield per_model
        for name, value in self.extra().items():
            yield GaugeMetricFamily(f"zooserve_{name}", name.replace("_", " "), value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "zooserve_requests",
            "HTTP requests",
            ["route", "method", "status", "model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zooserve_request_seconds",
            "HTTP request latency",
            ["route", "model"],
            registry=self.registry,
        )
        self.loads = Histogram(
            "zooserve_model_load_seconds",
            "Model load duration",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.unloads = Histogram(
            "zooserve_model_unload_seconds",
            "Model unload duration",
            ["model", "kind"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.evictions = Counter(
            "zooserve_evictions", "Models evicted", ["model", "reason"], registry=self.registry
        )
        self.load_failures = Counter(
            "zooserve_model_load_failures", "Failed loads", ["model"], registry=self.registry
        )

    def watch(self, manager: ModelManager, extra: Callable[[], dict[str, float]]) -> None:
        self.registry.register(_ManagerGauges(manager, extra))
        manager.events.subscribe(self.on_event)

    def on_event(self, event: Event) -> None:
        if event.kind == "load" and event.seconds is not None:
            self.loads.labels(event.model).observe(event.seconds)
        elif event.kind in ("unload", "evict") and event.seconds is not None:
            self.unloads.labels(event.model, event.kind).observe(event.seconds)
            if event.kind == "evict":
                reason = "oom" if event.reason.startswith("OOM") else "make_room"
                self.evictions.labels(event.model, reason).inc()
        elif event.kind == "load_failed":
            self.load_failures.labels(event.model).inc()
