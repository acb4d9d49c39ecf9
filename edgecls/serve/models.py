"""The served model: loaded, checked, swapped atomically, the one it replaced kept for rollback.

Every model the server takes — the first, an upload (PUT /v1/model), a reload from disk (SIGHUP,
--watch), a rollback — goes through one check before it answers a request: it loads (one
Classifier per interpreter, with `edgecls predict`'s model options), one inference on a generated
image gives a valid score vector (finite, a probability distribution of the model's class count),
its labels match its output, and its input (height, width, colour) is the served model's unless
--allow-input-change. A model that fails is refused with that reason and the old one keeps serving.

The swap is one reference assignment: a request that started on the old model finishes on it (its
interpreters live as long as a task holds them) and every answer names the SHA-256 of the model that
gave it. Accepted models are written to the model's path (a temporary name, then a rename), and the
one replaced to NAME.previous.tflite beside it, so a restart serves the newest and rollback survives it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.atomic import write_bytes_atomic
from edgecls.errors import EdgeclsError, first_line
from edgecls.files import FileTooLargeError, read_capped
from edgecls.provenance import sha256_bytes
from edgecls.runtime.classify import Classifier
from edgecls.runtime.metadata import check_tflite_bytes
from edgecls.runtime.model import read_model_bytes
from edgecls.runtime.quant import DISTRIBUTION_TOLERANCE, is_distribution, quant_tolerance
from edgecls.serve.metrics import Metrics
from edgecls.serve.options import ModelSettings

PROBE_SEED = 0  # the generated image of the check: seeded noise, the same for every model


class ModelRefused(EdgeclsError):
    """A model that failed the check (or could not be read): the reason, one line."""


class InputChanged(ModelRefused):
    """A model refused only for an input unlike the served one's (a restart would serve it)."""


class ModelUnavailable(EdgeclsError):
    """There is nothing to roll back to, or the model could not be written: not the model's fault."""


@dataclass
class LoadedModel:
    """A checked model and its interpreters (one Classifier per pool slot)."""

    name: str
    sha256: str
    content: bytes
    classifiers: list[Classifier]
    loaded_at: float  # time.time()
    trigger: str  # start, upload, sighup, watch, rollback
    check_ms: float

    @property
    def input_key(self) -> tuple[int, int, int]:
        spec = self.classifiers[0].input_spec
        return (spec.height, spec.width, spec.channels)

    def describe(self) -> dict[str, Any]:
        """GET /v1/model's document: what the model takes, how pixels are prepared, what it answers."""
        clf = self.classifiers[0]
        spec = clf.input_spec
        source = clf.labels_source
        return {
            "name": self.name, "sha256": self.sha256, "size_bytes": len(self.content),
            "loaded_at": iso_time(self.loaded_at), "trigger": self.trigger, "check_ms": round(self.check_ms, 3),
            "num_classes": clf.num_classes, "labels": clf.labels,
            "labels_source": source if source in ("metadata", "index", "argument") else Path(source).name,
            "input": {"height": spec.height, "width": spec.width, "channels": spec.channels, "color": spec.color,
                      "dtype": np.dtype(spec.dtype).name, "scale": spec.scale, "zero_point": spec.zero_point},
            "preprocessing": {"resize": spec.resize, "fit": spec.fit, "pixel_range": list(spec.pixel_range)},
            "output": clf.output_kind,
            "metadata": clf.metadata,
            "backend": {"name": clf.backend.name, "version": clf.backend.version},
            "threads": clf.num_threads, "interpreters": len(self.classifiers),
        }


@dataclass(frozen=True)
class Outcome:
    """What a model load did: accepted (now serving), unchanged (it already was), refused (the model's
    fault: the old one keeps serving) or failed (the server's: e.g. the model folder is read-only)."""

    trigger: str
    outcome: str
    sha256: str | None
    reason: str = ""
    at: float = 0.0
    previous_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("accepted", "unchanged")

    def describe(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "outcome": self.outcome, "sha256": self.sha256, "reason": self.reason or None,
                "at": iso_time(self.at), "previous_sha256": self.previous_sha256}


def iso_time(timestamp: float) -> str:
    from edgecls.live import iso_time as iso

    return iso(timestamp)


class ModelStore:
    """The current model, the previous one, and the last reload's outcome; one load at a time."""

    def __init__(self, path: Path, previous_path: Path, settings: ModelSettings, interpreters: int,
                 max_model_bytes: int, allow_input_change: bool = False, metrics: Metrics | None = None,
                 log: Callable[[str], None] = lambda message: None):
        self.path = path
        self.previous_path = previous_path
        self.settings = settings
        self.interpreters = interpreters
        self.max_model_bytes = max_model_bytes
        self.allow_input_change = allow_input_change
        self.metrics = metrics
        self.log = log
        self.current: LoadedModel | None = None  # read without the lock: one reference, swapped whole
        self.last_reload: Outcome | None = None
        self._previous: bytes | None = None  # the replaced model's bytes (else the .previous file's)
        self._previous_sha: str | None = None  # of _previous, else of the .previous file (hashed once)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the four ways a model comes in
    def load_initial(self) -> LoadedModel:
        """The model at `path`, checked (no input comparison: there is nothing to compare with).
        Raises ModelRefused with the reason."""
        with self._lock:
            loaded = self._checked(self._read(self.path), "start", compare=False)
            self._serve(loaded)
            self.log(f"serving {loaded.name} (sha256 {loaded.sha256[:12]}, {len(loaded.classifiers)} interpreter"
                     f"{'s' if len(loaded.classifiers) != 1 else ''}, checked in {loaded.check_ms:.1f} ms)")
            return loaded

    def replace(self, content: bytes, trigger: str = "upload") -> Outcome:
        """An uploaded model: checked, written over the model file, then swapped in."""
        with self._lock:
            return self._take(lambda: content, trigger, write=True)

    def reload(self, trigger: str) -> Outcome:
        """The model file as it is now on disk (SIGHUP, --watch): checked, then swapped in."""
        with self._lock:
            return self._take(lambda: self._read(self.path), trigger, write=False)

    def rollback(self) -> Outcome:
        """The model the last swap replaced, checked like any other, swapped back in (the current one
        becomes the previous: a second rollback undoes the first)."""
        with self._lock:
            if self._previous is None and not self.previous_path.is_file():
                raise ModelUnavailable("no previous model to roll back to: none was replaced since "
                                       f"{self.path.name} was first served")
            return self._take(lambda: self._previous if self._previous is not None else self._read(
                self.previous_path), "rollback", write=True)

    @property
    def previous_sha256(self) -> str | None:
        """The SHA-256 of the model a rollback would bring back, or None."""
        if self._previous_sha is None and self._previous is None:  # a .previous file from an earlier run
            try:
                self._previous_sha = sha256_bytes(read_capped(self.previous_path, self.max_model_bytes))
            except OSError:
                return None
        return self._previous_sha

    # ---------------------------------------------------------------- the mechanics
    def _take(self, content: Callable[[], bytes], trigger: str, write: bool) -> Outcome:
        old = self.current
        assert old is not None, "load_initial first"
        try:
            data = content()
            sha = sha256_bytes(data)
            if sha == old.sha256:
                same = Outcome(trigger, "unchanged", sha, "already serving this model", time.time(),
                               self.previous_sha256)
                # --watch sees every write of the server's own (an upload, a rollback): not news
                return same if trigger == "watch" else self._record(same)
            loaded = self._checked(data, trigger, compare=True)
        except ModelRefused as exc:
            on_disk = "" if write or isinstance(exc, InputChanged) else (
                f"; a restart would refuse {self.path} too: fix it, or copy the served model back there")
            self.log(f"{trigger}: model refused, still serving {old.name} (sha256 {old.sha256[:12]}): {exc}{on_disk}")
            return self._record(Outcome(trigger, "refused", _sha_or_none(content), str(exc), time.time(),
                                        self.previous_sha256))
        try:
            if write:
                write_bytes_atomic(self.path, loaded.content)
        except EdgeclsError as exc:
            self.log(f"{trigger}: {exc}; still serving {old.name} (sha256 {old.sha256[:12]})")
            return self._record(Outcome(trigger, "failed", loaded.sha256, str(exc), time.time(), self.previous_sha256))
        try:  # best effort: the old bytes stay in memory for rollback anyway
            write_bytes_atomic(self.previous_path, old.content)
        except EdgeclsError as exc:
            self.log(f"warning: {exc}: rollback will not survive a restart")
        self._previous, self._previous_sha = old.content, old.sha256
        self._serve(loaded)
        self.log(f"{trigger}: now serving sha256 {loaded.sha256[:12]} (checked in {loaded.check_ms:.1f} ms; "
                 f"previous sha256 {old.sha256[:12]} kept for rollback)")
        return self._record(Outcome(trigger, "accepted", loaded.sha256, "", time.time(), old.sha256))

    def _read(self, path: Path) -> bytes:
        try:
            data = read_capped(path, self.max_model_bytes)
        except FileTooLargeError:
            raise ModelRefused(f"{path.name} is over the {self.max_model_bytes / (1 << 20):g} MB cap "
                               "(--max-model-mb)") from None
        except OSError:
            data = None
        if data is None:  # the runtime's own reader names the problem (no such file, a folder, ...)
            try:
                return read_model_bytes(path)
            except EdgeclsError as exc:
                raise ModelRefused(str(exc)) from None
        return data

    def _checked(self, content: bytes, trigger: str, compare: bool) -> LoadedModel:
        """A LoadedModel of `content`, or ModelRefused with the first reason it fails the check."""
        started = time.perf_counter()
        name, s = self.path.name, self.settings
        what = {"upload": "the uploaded model", "rollback": self.previous_path.name}.get(trigger, name)  # in reasons
        try:
            check_tflite_bytes(content, what)
            classifiers = self._built(content)
        except ModelRefused:
            raise
        except EdgeclsError as exc:  # the server's own paths stay on the server: a client sees file names
            reason = str(exc)
            if s.labels is not None:
                reason = reason.replace(str(s.labels), s.labels.name)
            if what != name and reason.startswith(f"{name}: "):  # the runtime names the file it was opened as
                reason = f"{what}: {reason.removeprefix(f'{name}: ')}"
            raise ModelRefused(reason) from None
        except Exception as exc:  # an interpreter failing in a way the runtime does not foresee
            raise ModelRefused(f"{what}: {type(exc).__name__}: {first_line(exc)}") from None
        loaded = LoadedModel(name, sha256_bytes(content), content, classifiers, time.time(), trigger,
                             (time.perf_counter() - started) * 1000)
        current = self.current
        if compare and current is not None and loaded.input_key != current.input_key and not self.allow_input_change:
            raise InputChanged(f"its input is {_shape(loaded.input_key)}, the served model's is "
                               f"{_shape(current.input_key)}: clients may send images prepared for it (restart "
                               "the server with --allow-input-change to accept a new input)")
        return loaded

    def _built(self, content: bytes) -> list[Classifier]:
        """One Classifier a pool thread, each run once on a generated image (probe)."""
        classifiers = [self.settings.open(self.path, content=content) for _ in range(self.interpreters)]
        for clf in classifiers:
            probe(clf)
        return classifiers

    def _serve(self, loaded: LoadedModel) -> None:
        self.current = loaded  # the swap: new tasks take this one, running tasks keep theirs
        if self.metrics is not None:
            clf = loaded.classifiers[0]
            self.metrics.model.info({"sha256": loaded.sha256, "name": loaded.name, "classes": str(clf.num_classes),
                                     "input": _shape(loaded.input_key), "backend": clf.backend.name})
            self.metrics.model_loaded.set(loaded.loaded_at)
            self.metrics.ready.set(1)
            if self.last_reload is None:  # the first load passed its check: an alert on "== 0" must not fire at start
                self.metrics.last_reload_ok.set(1)
                self.metrics.last_reload_time.set(loaded.loaded_at)

    def _record(self, outcome: Outcome) -> Outcome:
        self.last_reload = outcome
        if self.metrics is not None:
            self.metrics.reloads.labels(outcome.trigger, outcome.outcome).inc()
            self.metrics.last_reload_ok.set(1 if outcome.ok else 0)
            self.metrics.last_reload_time.set(outcome.at)
        return outcome


def probe(clf: Classifier) -> None:
    """One inference on a generated image: ModelRefused unless it gives the model's number of finite
    scores that form a probability distribution (within the output's quantisation step)."""
    pixels = np.random.default_rng(PROBE_SEED).integers(0, 256, (1, *clf.input_spec.shape), dtype=np.uint8)
    scores = clf.probabilities(pixels)
    name = clf.path.name
    if scores.shape != (1, clf.num_classes):
        raise ModelRefused(f"{name}: the test inference gave scores of shape {scores.shape}, expected "
                           f"(1, {clf.num_classes})")
    if not np.isfinite(scores).all():
        raise ModelRefused(f"{name}: the test inference gave non-finite scores (NaN or inf)")
    scale = float(clf.interpreter.get_output_details()[0]["quantization"][0])
    tolerance = quant_tolerance(clf.num_classes, scale) if scale > 0 else DISTRIBUTION_TOLERANCE
    if scores.max() > 1 + tolerance or not is_distribution(scores, tolerance):
        raise ModelRefused(f"{name}: the test inference's scores are not a probability distribution "
                           f"(sum {float(scores.sum()):.4f}, min {float(scores.min()):.4f})")


def _shape(key: tuple[int, int, int]) -> str:
    height, width, channels = key
    return f"{height}x{width}x{channels}"


def _sha_or_none(content: Callable[[], bytes]) -> str | None:
    try:
        return sha256_bytes(content())
    except EdgeclsError:
        return None
