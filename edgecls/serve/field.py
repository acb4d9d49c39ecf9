"""The field loop inside `edgecls serve`: every answer the service makes (POST /v1/classify, a live
frame of --source) is offered here once, by `FieldWatch.observe`, from the thread that made it.

- **Collect** (`--collect DIR`, `--collect-when`, ...): the answers a rule picks are kept for the next
  training exactly as `predict --collect` keeps them (edgecls.runtime.collect: the same rules,
  near-identical consecutive pictures once, the quota and free-space reserve, atomic files with a
  JSON sidecar naming the model that answered). An upload is kept as the bytes the client sent.
  The rules are checked against the first model (a rule it cannot follow stops the start, exit 2).
  Writing happens on one thread of its own behind a small queue, so an answer never waits for the
  disk; when the disk is slower than the answers, the queue's overflow is counted, not kept.
- **Drift**: each answer joins the served model's rolling window (edgecls.runtime.drift: the class
  mix against the training split's, the mean calibrated confidence, the unknown rate); a swap
  starts a new window, against the new model's training split.

Both are read as Prometheus metrics from the service's one registry when /metrics is scraped, and
as a JSON document (`document()`) in the live summary, GET /v1/live.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as MetricsCollector

from edgecls.errors import EdgeclsError, first_line
from edgecls.runtime.collect import CollectOptions, Collector, Counts, collector_for
from edgecls.runtime.drift import DIVERGENCE, Drift, training_distribution

QUEUE_SIZE = 32  # answers waiting for the collect thread; more are counted as "busy" and not kept
STOP_JOIN_S = 5.0
MAX_CLASS_SERIES = 100  # a model with more classes gets no per-class share series (1000 ImageNet classes x 2)


@dataclass(frozen=True)
class Offered:
    """One answer offered to the collect thread."""

    model: Any  # serve.models.LoadedModel
    classes: Any  # top-k, best first
    unknown: bool
    typicality: Optional[float]
    source: str
    pixels: Optional[np.ndarray]  # the picture as decoded for the model (for the hash), or a frame
    content: Optional[bytes]  # an upload's bytes, kept as they came
    frame: Optional[int]
    timestamp: float


class FieldWatch:
    """Collect and drift for one server (see the module doc)."""

    def __init__(self, collect: Optional[CollectOptions], window: int, registry: Any, log: Callable[[str], None]):
        self.options, self.window, self.log = collect, window, log
        self._collector: Optional[Collector] = None
        self._collector_labels: Optional[list[str]] = None
        self._earlier = Counts()  # counts of the collectors a model with other labels replaced
        self._busy = 0  # answers the queue had no room for
        self._refused: Optional[str] = None  # why the current model's answers are not collected
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._thread: Optional[threading.Thread] = None
        self._drift: Optional[Drift] = None
        self._drift_model: Optional[tuple[str, list[str]]] = None  # (sha256, labels) of the window's model
        self._lock = threading.Lock()
        registry.register(_FieldMetrics(self))

    @property
    def collecting(self) -> bool:
        return self.options is not None

    @property
    def wants_two(self) -> bool:
        """Whether the collect rules read the second class (margin): the caller asks for two."""
        return self._collector is not None and self._collector.needs_two

    # ---------------------------------------------------------------- life
    def start(self, model: Any) -> None:
        """With the first model: the collector, its rules checked against it (EdgeclsError: the
        server cannot start), and its thread."""
        self._watch(model)
        if self.options is None:
            return
        self._collector = collector_for(model.classifiers[0], self.options, lambda line: self.log(line))
        self._collector_labels = list(model.classifiers[0].labels)
        self._thread = threading.Thread(target=self._work, name="edgecls-collect", daemon=True)
        self._thread.start()
        c = self._collector
        self.log(f"collect: keeping answers that match {', '.join(rule.text for rule in c.rules)} in {c.folder}")

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        """Write what is queued, then stop the collect thread (blocking), and say what was kept."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._collector is not None:
            self.log(self._collector.summary() + (f", {self._busy} not kept: the disk was busy" if self._busy else ""))

    # ---------------------------------------------------------------- each answer
    def observe(self, model: Any, classes: Any, source: str, pixels: Optional[np.ndarray] = None,
                content: Optional[bytes] = None, frame: Optional[int] = None,
                timestamp: Optional[float] = None, unknown: Optional[bool] = None,
                typicality: Optional[float] = None) -> None:
        """One answer of `model` (a LoadedModel): counted into its window, offered to the collector.
        `classes`: top-k, best first (an Answer carries unknown and typicality; a live frame's classes
        come with them given). Cheap (a lock and a queue): called on the thread that made the answer."""
        if unknown is None:
            unknown, typicality = bool(getattr(classes, "unknown", False)), getattr(classes, "typicality", None)
        self._watch(model).add(classes[0].index, classes[0].score, unknown)
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(Offered(model, classes, unknown, typicality, source, pixels, content, frame,
                                           time.time() if timestamp is None else timestamp))
        except queue.Full:
            with self._lock:
                self._busy += 1

    def _watch(self, model: Any) -> Drift:
        """The window of `model`'s answers: a new one when the served model changed."""
        labels = list(model.classifiers[0].labels)
        with self._lock:
            if self._drift is None or self._drift_model != (model.sha256, labels):
                clf = model.classifiers[0]
                self._drift = Drift(clf.num_classes, training_distribution(clf.metadata, clf.num_classes),
                                    self.window, has_unknown=clf.open_set_rule is not None)
                self._drift_model = (model.sha256, labels)
            return self._drift

    def _work(self) -> None:
        errors: set[str] = set()
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                collector = self._collector_of(item.model)
                if collector is not None:
                    collector.consider(item.classes, item.unknown, item.typicality, item.source, pixels=item.pixels,
                                       content=item.content, frame=item.frame, timestamp=item.timestamp,
                                       model={"file": item.model.name, "sha256": item.model.sha256})
            except Exception as exc:  # a full disk, a folder made read-only: said once a kind, the server goes on
                reason = (first_line(exc) if isinstance(exc, EdgeclsError)
                          else f"{type(exc).__name__}: {first_line(exc)}")
                if reason not in errors:
                    errors.add(reason)
                    self.log(f"collect: {reason}")

    def _collector_of(self, model: Any) -> Optional[Collector]:
        """The collector for a model's answers: a model whose labels differ from the collector's gets one
        of its own (its rules checked against it: one it cannot follow is said once, and nothing of that
        model is kept)."""
        labels = list(model.classifiers[0].labels)
        if labels == self._collector_labels:
            return self._collector
        self._collector_labels = labels
        old = self._collector
        if old is not None:
            self._earlier = _sum(self._earlier, old.counts)
        try:
            self._collector, self._refused = collector_for(model.classifiers[0], self.options, self.log), None
        except EdgeclsError as exc:
            self._collector, self._refused = None, str(exc)
            self.log(f"collect: nothing of {model.name} (sha256 {model.sha256[:12]}) is kept: {exc}")
        return self._collector

    # ---------------------------------------------------------------- what is read
    def counts(self) -> Counts:
        current = self._collector.counts if self._collector is not None else Counts()
        return _sum(self._earlier, current)

    def document(self) -> dict[str, Any]:
        """The drift figures of the served model's window and what was collected, as JSON."""
        with self._lock:
            drift, model = self._drift, self._drift_model
        doc: dict[str, Any] = {"drift": None if drift is None else drift.figures().to_json(model[1] if model else [])}
        if self.options is not None:
            c = self.counts()
            doc["collect"] = {"folder": self.options.folder, "kept": c.kept, "bytes": c.bytes, "by_rule": c.by_rule,
                              "similar": c.similar, "already": c.already, "over_quota": c.over_quota,
                              "busy": self._busy, "refused": self._refused}
        return doc

    def figures(self) -> tuple[Optional[Any], list[str]]:
        with self._lock:
            drift, model = self._drift, self._drift_model
        return (None if drift is None else drift.figures()), (model[1] if model else [])


def _sum(a: Counts, b: Counts) -> Counts:
    rules = dict(a.by_rule)
    for rule, n in b.by_rule.items():
        rules[rule] = rules.get(rule, 0) + n
    return Counts(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Counts) if f.name != "by_rule"},
                  by_rule=rules)


class _FieldMetrics(MetricsCollector):
    """FieldWatch's figures as Prometheus metrics, read when /metrics is scraped."""

    def __init__(self, watch: FieldWatch):
        self.watch = watch

    def collect(self) -> Iterator[Any]:
        figures, labels = self.watch.figures()
        nan = math.nan

        def value(x: Optional[float]) -> float:
            return nan if x is None else x

        yield GaugeMetricFamily("edgecls_drift_divergence", f"Divergence ({DIVERGENCE}, 0..1) of the class mix of "
                                "the last answers (unknown ones left out) from the training split's; NaN until "
                                "there are enough answers, or for a model without its training class counts",
                                value=value(figures and figures.divergence))
        yield GaugeMetricFamily("edgecls_drift_noise", "What sampling alone makes the divergence for this many "
                                "answers (alarm at a few times this)", value=value(figures and figures.noise))
        yield GaugeMetricFamily("edgecls_drift_window_answers", "Answers in the rolling window (uploads and live "
                                "frames)", value=figures.answers if figures else 0)
        yield GaugeMetricFamily("edgecls_drift_window_size", "Answers the rolling window holds at most (--drift-"
                                "window)", value=self.watch.window)
        yield GaugeMetricFamily("edgecls_mean_confidence", "Mean calibrated top probability of the answers in the "
                                "window", value=value(figures and figures.mean_confidence))
        yield GaugeMetricFamily("edgecls_unknown_rate", "Share of the answers in the window that are unknown "
                                "(NaN for a model without an unknown rule)",
                                value=value(figures and figures.unknown_rate))
        if figures is not None and len(labels) <= MAX_CLASS_SERIES:
            shares = GaugeMetricFamily("edgecls_class_share", "Share of each class among the known answers in the "
                                       "window, and in the training split", labels=("class", "of"))
            for i, label in enumerate(labels):
                shares.add_metric((label, "window"), figures.shares[i])
                if figures.training is not None:
                    shares.add_metric((label, "training"), figures.training[i])
            yield shares
        if self.watch.collecting:
            counts = self.watch.counts()
            kept = CounterMetricFamily("edgecls_collect_kept", "Pictures kept by --collect, by the rule that fired",
                                       labels=("rule",))
            for rule, n in counts.by_rule.items():
                kept.add_metric((rule,), n)
            yield kept
            skipped = CounterMetricFamily("edgecls_collect_skipped", "Pictures a rule picked but --collect did not "
                                          "keep: near-identical to the one before, in the folder already, the folder "
                                          "full, the disk busy", labels=("reason",))
            for reason, n in (("similar", counts.similar), ("already", counts.already), ("full", counts.over_quota),
                              ("busy", self.watch._busy)):
                skipped.add_metric((reason,), n)
            yield skipped
            yield GaugeMetricFamily("edgecls_collect_bytes", "Bytes --collect wrote since the server started",
                                    value=counts.bytes)
