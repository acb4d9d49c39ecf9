"""The service's Prometheus metrics: one registry (not prometheus_client's global one), named as
Prometheus expects (`*_total` counters, `*_seconds` histograms), exposed at GET /metrics.

A live loop (frames classified, dropped, ...) adds its instruments to the same registry.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# No `*_created` series beside every counter and histogram: they double the page and no dashboard reads them.
disable_created_metrics()

# From a tiny model's decode (~0.1 ms) to a large one's classification on a Pi Zero (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The instruments; `registry` is where further ones are added."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgecls_http_requests", "HTTP requests answered, by route, method and status",
                                ("route", "method", "status"), registry=registry)
        self.decode = Histogram("edgecls_decode_seconds", "Decoding and resizing one image",
                                buckets=LATENCY_BUCKETS, registry=registry)
        self.invoke = Histogram("edgecls_invoke_seconds", "One interpreter invoke (quantise, run, top-k)",
                                buckets=LATENCY_BUCKETS, registry=registry)
        self.queued = Histogram("edgecls_queue_wait_seconds", "Time a classification waited for an interpreter",
                                buckets=LATENCY_BUCKETS, registry=registry)
        self.total = Histogram("edgecls_classify_seconds",
                               "A POST /v1/classify from its complete head to its answer (the body upload included)",
                               buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_depth = Gauge("edgecls_queue_depth", "Classifications waiting for an interpreter", registry=registry)
        self.in_flight = Gauge("edgecls_in_flight", "Classifications running on an interpreter", registry=registry)
        self.queue_capacity = Gauge("edgecls_queue_capacity", "Waiting classifications accepted before a 503",
                                    registry=registry)
        self.interpreters = Gauge("edgecls_interpreters", "Interpreter threads", registry=registry)
        self.model = Info("edgecls_model", "The model being served", registry=registry)
        self.model_loaded = Gauge("edgecls_model_loaded_timestamp_seconds", "When the served model was loaded",
                                  registry=registry)
        self.ready = Gauge("edgecls_ready", "1 while a checked model is being served", registry=registry)
        self.reloads = Counter("edgecls_model_reloads", "Model loads after the first, by trigger and outcome",
                               ("trigger", "outcome"), registry=registry)
        self.last_reload_ok = Gauge("edgecls_model_last_reload_success",
                                    "1 if the last load (the first, or a reload) was accepted, 0 if refused",
                                    registry=registry)
        self.last_reload_time = Gauge("edgecls_model_last_reload_timestamp_seconds", "When the last load ended",
                                      registry=registry)

    def watch_pool(self, waiting: Callable[[], float], running: Callable[[], float], capacity: int,
                   interpreters: int) -> None:
        """The pool's gauges, read when /metrics is scraped (nothing to update per request)."""
        self.queue_depth.set_function(waiting)
        self.in_flight.set_function(running)
        self.queue_capacity.set(capacity)
        self.interpreters.set(interpreters)

    def text(self) -> bytes:
        """The Prometheus text exposition of every instrument."""
        return generate_latest(self.registry)
