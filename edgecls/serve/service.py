"""What the routes share, and a live loop can share: the options, the model store, the interpreter
pool, the metrics and the token check. `Service.classify` is one image from bytes to an answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgecls.console import class_rows, verdict_fields
from edgecls.errors import EdgeclsError, first_line
from edgecls.runtime.preprocess import ImageError, PixelLimitError
from edgecls.serve.auth import Auth
from edgecls.serve.field import FieldWatch
from edgecls.serve.limits import ApiError
from edgecls.serve.metrics import Metrics
from edgecls.serve.models import ModelStore
from edgecls.serve.options import ServeOptions
from edgecls.serve.pool import ClassifierPool, QueueFull, Reservation

NOT_READY_RETRY_S = 1


@dataclass(frozen=True)
class Answer:
    """One classification: the top-k classes, the model that gave them, and where the time went."""

    classes: list[dict[str, Any]]
    sha256: str
    name: str
    queue_s: float
    decode_s: float
    invoke_s: float
    verdict: dict[str, Any] = field(default_factory=dict)  # unknown and typicality, for a model with a rule

    def document(self, total_s: float) -> dict[str, Any]:
        return {"classes": self.classes, **self.verdict, "model": {"sha256": self.sha256, "name": self.name},
                "timings_ms": {"queue": _ms(self.queue_s), "decode": _ms(self.decode_s),
                               "invoke": _ms(self.invoke_s), "total": _ms(total_s)}}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Service:
    def __init__(self, options: ServeOptions, token: str | None, log: Callable[[str], None]):
        self.options = options
        self.log = log
        self.auth = Auth(token)
        self.metrics = Metrics()
        self.pool = ClassifierPool(options.interpreters, options.queue_size)
        self.metrics.watch_pool(lambda: self.pool.waiting, lambda: self.pool.running, options.queue_size,
                                options.interpreters)
        self.models = ModelStore(options.model, options.previous_model, options.settings, options.interpreters,
                                 options.max_model_bytes, options.allow_input_change, self.metrics, log)
        # every answer is offered here once: --collect and the drift figures (edgecls.serve.field)
        self.field = FieldWatch(options.collect, options.drift_window, self.metrics.registry, log)
        self.started_at = time.time()
        self.load_error: str | None = None  # why the first model could not be served (the server then stops)
        self._ready = threading.Event()

    # ---------------------------------------------------------------- life
    def start(self) -> None:
        """Start the interpreter threads (the model is loaded by load_first_model)."""
        self.pool.start()

    def load_first_model(self) -> bool:
        """Load and check MODEL (blocking); False, with load_error set, when it fails its check."""
        try:
            self.field.start(self.models.load_initial())
        except EdgeclsError as exc:
            self.load_error = str(exc)
            return False
        self._ready.set()
        return True

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.models.current is not None

    def stop(self, timeout: float) -> int:
        """Stop the interpreter threads, then write what --collect still has queued; returns how many
        queued classifications were cancelled."""
        cancelled = self.pool.stop(timeout)
        self.field.stop()
        return cancelled

    def require_ready(self) -> None:
        if not self.ready:
            raise ApiError(503, "no model is ready yet: the server is loading and checking it",
                           {"Retry-After": str(NOT_READY_RETRY_S)})

    # ---------------------------------------------------------------- one classification
    def check_capacity(self, reservation: Reservation | None = None) -> None:
        """503 before reading a body the queue has no room for (none while `reservation` holds a place)."""
        if (reservation is None or not reservation.held) and self.pool.full():
            raise self.busy()

    def busy(self, retry_after: int | None = None) -> ApiError:
        """The 503 of a full queue, with its Retry-After."""
        seconds = self.pool.retry_after() if retry_after is None else retry_after
        return ApiError(503, f"busy: all {self.options.interpreters} interpreter"
                        f"{'s are' if self.options.interpreters != 1 else ' is'} working and the queue of "
                        f"{self.options.queue_size} is full; retry after {seconds} s", {"Retry-After": str(seconds)})

    async def classify(self, data: bytes, top_k: int, source: str = "upload",
                       reservation: Reservation | None = None) -> Answer:
        """Classify encoded image bytes on the next free interpreter (in the place `reservation` holds, if
        it still does): ApiError 503 at once when the queue is full, 400 for a broken image or a non-image,
        413 for one over the pixel cap. The answer is offered to --collect and the drift window (`source`:
        who sent it, for a kept picture's sidecar)."""
        submitted = time.perf_counter()

        def task(slot: int) -> Answer:
            started = time.perf_counter()
            model = self.models.current  # the model when this request starts: it finishes on it
            clf = model.classifiers[slot]
            pixels = decode(clf, data)
            decoded = time.perf_counter()
            asked = min(max(top_k, 2), clf.num_classes) if self.field.wants_two else top_k  # margin<x reads two
            classes = clf.classify(pixels, asked)
            done = time.perf_counter()
            self.field.observe(model, classes, source, pixels=pixels, content=data)
            return Answer(class_rows(classes[:top_k]), model.sha256, model.name, started - submitted,
                          decoded - started, done - decoded, verdict_fields(classes))

        try:
            future = self.pool.submit(task, reservation)
        except QueueFull as exc:
            raise self.busy(exc.retry_after) from None
        answer = await asyncio.wrap_future(future)
        self.metrics.queued.observe(answer.queue_s)
        self.metrics.decode.observe(answer.decode_s)
        self.metrics.invoke.observe(answer.invoke_s)
        return answer


def decode(clf: Any, data: bytes) -> Any:
    """The pixels of an upload, by the Classifier's own preprocessing (as `edgecls predict` decodes a
    file), or ApiError: 413 over the pixel cap, 400 for anything that is not a readable image."""
    try:
        return clf.preprocess(data)
    except PixelLimitError as exc:
        raise ApiError(413, exc.set_by("--max-megapixels")) from None
    except ImageError as exc:
        raise ApiError(400, str(exc)) from None
    except Exception as exc:  # a Pillow plugin choking on a hostile file is a bad image, not a server error
        raise ApiError(400, f"cannot decode: {type(exc).__name__}: {first_line(exc)}") from None
