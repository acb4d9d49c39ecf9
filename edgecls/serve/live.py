"""Live mode of `edgecls serve --source`: a camera, video file or stream classified around the clock.

The frames come from the stream machinery `predict --source` uses (edgecls.runtime.stream: a
capture thread, a one-frame slot, frames dropped when the model is slower, reconnection with
back-off), and each is classified on the service's interpreter pool with the model being served at
that moment: the same Classifier and preprocessing as predict and POST /v1/classify, a hot swap
applies to the next frame, and every prediction names the SHA-256 of the model that made it.

Around the clock: when a camera or stream stays down beyond --reconnect, it is reopened again and
again (RESTART_FIRST_S doubling to RESTART_MAX_S) while the server goes on answering; a video file
plays at its own frame rate, every sampled frame classified, and ends (or starts over with --loop).

Each prediction goes to GET /v1/latest, to GET /v1/events (edgecls.serve.events) and to MQTT
(edgecls.serve.mqtt); with --on-change, events and MQTT get only changes of the stable class.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from PIL import Image
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edgecls.errors import EdgeclsError, first_line
from edgecls.provenance import iso_time
from edgecls.runtime.capture import SourceError, SourceSpec, open_capture, parse_source
from edgecls.runtime.stream import FramePrediction, LiveStream
from edgecls.serve.events import EVENT_BUFFER, ChangeDetector, Event, Hub, prediction_document, to_json, verdict
from edgecls.serve.limits import ApiError
from edgecls.serve.metrics import LATENCY_BUCKETS
from edgecls.serve.models import LoadedModel
from edgecls.serve.mqtt import MqttPublisher
from edgecls.serve.options import LiveOptions, ServeOptions
from edgecls.serve.pool import QueueFull
from edgecls.serve.service import Service

RESTART_FIRST_S, RESTART_MAX_S = 1.0, 30.0  # reopening a source that stayed down beyond --reconnect
POOL_RETRY_S = 0.005  # the interpreters are all busy with requests: try again this soon (the slot keeps the newest)
FPS_WINDOW_S = 5.0  # achieved FPS: frames classified over the last this many seconds
JPEG_QUALITY = 80
STOP_JOIN_S = 3.0
NOT_LIVE = "no live source: start edgecls serve with --source camera:0, a video file or a stream URL"


class PoolClassifier:
    """What LiveStream calls its classifier: `classify(pixels, top_k)` run on the service's interpreter
    pool with the model served at that moment. `last` is (model, pixels) of the latest call (the live
    loop is one thread: it reads it right after the stream yields that frame's prediction)."""

    def __init__(self, service: Service, stopped: threading.Event):
        self.service = service
        self.stopped = stopped
        self.last: tuple[LoadedModel, Any] | None = None

    @property
    def open_set_rule(self) -> Any:
        """The served model's unknown rule (None without one), as a Classifier has it."""
        return self.service.models.current.classifiers[0].open_set_rule

    def classify(self, pixels: Any, top_k: int = 1) -> Any:
        def task(slot: int) -> tuple[LoadedModel, Any]:
            model = self.service.models.current  # a swap applies from the next frame on
            clf = model.classifiers[slot]
            return model, clf.classify(pixels, min(top_k, clf.num_classes))

        while True:
            try:
                future = self.service.pool.submit(task)
                break
            except QueueFull:
                if self.stopped.wait(POOL_RETRY_S):
                    raise CancelledError from None
        model, classes = future.result()
        self.last = (model, pixels)
        return classes


@dataclass(frozen=True)
class Latest:
    """The newest live prediction: its sequence number, document (and JSON text) and frame pixels."""

    seq: int
    document: dict[str, Any]
    text: str
    pixels: Any


class LiveMetrics(Collector):
    """The live loop's figures, read when /metrics is scraped: frames classified, dropped, skipped,
    reconnects (counted over every stream the loop opened), achieved FPS and whether the source is up."""

    def __init__(self, loop: LiveLoop):
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        totals, fps, up = self.loop.figures()
        for name, key, text in (
                ("edgecls_live_frames", "frames", "Live frames classified"),
                ("edgecls_live_dropped_frames", "dropped", "Live frames dropped: the model was slower than the source"),
                ("edgecls_live_skipped_frames", "skipped", "Live frames skipped by --every or --fps"),
                ("edgecls_live_reconnects", "reconnects", "Times the live source was reopened after it dropped")):
            yield CounterMetricFamily(name, text, value=totals[key])
        yield GaugeMetricFamily("edgecls_live_fps", f"Live frames classified a second (over the last "
                                f"{FPS_WINDOW_S:g} s)", value=fps)
        yield GaugeMetricFamily("edgecls_live_up", "1 while the live source delivers frames", value=up)


class LiveLoop:
    """Classifies `options.source` in a thread of its own and hands each prediction to the sinks."""

    def __init__(self, service: Service, options: LiveOptions, hub: Hub, mqtt: MqttPublisher | None = None):
        self.service, self.options, self.hub, self.mqtt = service, options, hub, mqtt
        self.spec: SourceSpec = parse_source(options.source)  # a one-line SourceError now, not in the thread
        if options.loop and self.spec.live:
            raise EdgeclsError(f"--loop plays a video file again; {self.spec.display} is a live source")
        if self.spec.kind == "file":  # a file that is no video is a mistake to say now (a camera may come later)
            open_capture(self.spec, options.capture, options.timeout).close()
        self.source = self.spec.display
        self.log = service.log
        self.latest: Latest | None = None
        self.state, self.reason = "starting", ""
        self._stopped = threading.Event()
        self._classifier = PoolClassifier(service, self._stopped)
        self._detector = ChangeDetector(options.min_stable)
        self._seq = 0
        self._lock = threading.Lock()  # the stream being read and the totals of those done
        self._stream: LiveStream | None = None
        self._done = dict.fromkeys(("frames", "dropped", "skipped", "reconnects"), 0)
        self._times: deque[float] = deque(maxlen=4096)  # when frames were classified (the achieved FPS)
        self._jpeg: tuple[int, bytes] | None = None  # the newest frame's JPEG, encoded once for every client
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="edgecls-live", daemon=True)
        self._started_at = time.monotonic()
        registry = service.metrics.registry
        registry.register(LiveMetrics(self))
        self.latency = Histogram("edgecls_live_frame_seconds", "A live frame: preprocessing and invoke on an "
                                 "interpreter (and any wait for one)", buckets=LATENCY_BUCKETS, registry=registry)

    # ---------------------------------------------------------------- life
    def start(self, event_loop: asyncio.AbstractEventLoop) -> None:
        self._event_loop = event_loop
        self._started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop reading the source (blocking: call it from a worker thread)."""
        self._stopped.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread.is_alive():
            self._thread.join(STOP_JOIN_S)

    def _run(self) -> None:
        """The thread: the loop, started again should it ever fail (around the clock, and one line, not a
        traceback, says why)."""
        while not self._stopped.is_set():
            try:
                self._loop()
                return
            except Exception as exc:
                self.log(f"live: the loop failed ({type(exc).__name__}: {first_line(exc)}); starting it again in "
                         f"{RESTART_MAX_S:g} s")
                self._set_state("down", f"{type(exc).__name__}: {first_line(exc)}")
                self._stopped.wait(RESTART_MAX_S)

    def _loop(self) -> None:
        delay, offset = RESTART_FIRST_S, 0
        while not self._stopped.is_set():
            if self.spec.live or self.latest is None:
                self._set_state("connecting")
            asked = max(self.options.top_k, 2) if self.service.field.wants_two else self.options.top_k  # margin<x
            stream = LiveStream(self._classifier, self.spec, top_k=asked, every=self.options.every,
                                fps=self.options.fps, timeout=self.options.timeout,
                                reconnect=self.options.reconnect, capture=self.options.capture,
                                log=lambda message: self.log(f"live: {message}"), paced=True)
            with self._lock:
                self._stream = stream
            error = None
            try:
                for prediction in stream:
                    if self.state != "running":
                        self._set_state("running")
                    self._take(dataclasses.replace(prediction, frame=prediction.frame + offset)
                               if offset else prediction)
                    delay = RESTART_FIRST_S
            except CancelledError:  # the pool stopped under us: the server is stopping
                break
            except SourceError as exc:
                error = str(exc)
            except Exception as exc:  # never a traceback from the loop: the reason, and a retry
                error = f"{type(exc).__name__}: {first_line(exc)}"
            finally:
                stream.close()
                with self._lock:
                    self._stream = None
                    summary = stream.summary()
                    for key in self._done:
                        self._done[key] += summary[key]
            if self._stopped.is_set():
                break
            if self.spec.live:  # frame numbers go on counting every frame delivered, as across a reconnect
                offset += summary["frames"] + summary["dropped"] + summary["skipped"]
            if error is None and not self.spec.live:
                if self.options.loop:
                    continue
                self._set_state("ended", stream.end_reason or "the video ended")
                self.log(f"live: {self.source}: {stream.end_reason or 'ended'}; still serving")
                return
            reason = error or f"{self.source} ended"
            self._set_state("down", reason)
            self.log(f"live: {reason}; opening it again in {delay:g} s")
            if self._stopped.wait(delay):
                break
            with self._lock:
                self._done["reconnects"] += 1
            delay = min(2 * delay, RESTART_MAX_S)
        self._set_state("stopped")

    # ---------------------------------------------------------------- each prediction
    def _take(self, prediction: FramePrediction) -> None:
        model, pixels = self._classifier.last  # the frame's own: set by the classify call that made `prediction`
        self.service.field.observe(model, prediction.classes, self.source, pixels=pixels, frame=prediction.frame,
                                   timestamp=prediction.timestamp, unknown=prediction.unknown,
                                   typicality=prediction.typicality)  # --collect and the drift window
        if len(prediction.classes) > self.options.top_k:  # a second class asked for --collect-when margin<x only
            prediction = dataclasses.replace(prediction, classes=prediction.classes[:self.options.top_k])
        change = self._detector.observe(verdict(prediction))
        document = prediction_document(prediction, change, self.source, model.sha256, model.name)
        text = to_json(document)
        self._seq += 1
        self.latest = Latest(self._seq, document, text, pixels)
        self._times.append(time.monotonic())
        self.latency.observe(prediction.latency)
        if change.changed or not self.options.on_change:
            self._hand_over(Event(self._seq, "prediction", text))
            if self.mqtt is not None:
                self.mqtt.publish(text)

    def _set_state(self, state: str, reason: str = "") -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        self._seq += 1
        self._hand_over(Event(self._seq, "status", to_json(self.state_document())))

    def _hand_over(self, event: Event) -> None:
        loop = self._event_loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.hub.publish, event)
            except RuntimeError:  # the loop closed in between: the server is stopping
                pass

    # ---------------------------------------------------------------- what the routes read
    def state_document(self) -> dict[str, Any]:
        """A status event: the source's state (starting, connecting, running, down, ended, stopped) and why."""
        return {"source": self.source, "state": self.state, "reason": self.reason or None, "at": iso_time(time.time())}

    def status(self) -> dict[str, Any]:
        """GET /v1/live: the state, the options that shape the events, the newest frame and the counts; the
        drift of the last answers from the training mix, and what --collect kept (edgecls.serve.field)."""
        latest = self.latest
        totals, fps, up = self.figures()
        return {**self.state_document(), "on_change": self.options.on_change, "min_stable": self.options.min_stable,
                "top_k": self.options.top_k, "stable": self._detector.stable,
                "frame": None if latest is None else latest.document["frame"],
                "time": None if latest is None else latest.document["time"], **totals, "fps": round(fps, 2),
                "mqtt": None if self.mqtt is None else self.mqtt.state(), **self.service.field.document()}

    def figures(self) -> tuple[dict[str, int], float, int]:
        """(totals of frames, dropped, skipped, reconnects; achieved FPS; 1 if the source is up)."""
        with self._lock:
            totals = dict(self._done)
            if self._stream is not None:
                summary = self._stream.summary()
                for key in totals:
                    totals[key] += summary[key]
        now = time.monotonic()
        window = min(FPS_WINDOW_S, max(now - self._started_at, 1e-3))
        recent = sum(1 for t in list(self._times) if t > now - window)
        return totals, recent / window, int(self.state == "running" and recent > 0)

    def jpeg(self) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame, its longest side at most --frame-max-side."""
        latest = self.latest
        if latest is None or latest.pixels is None:
            return None
        cached = self._jpeg
        if cached is not None and cached[0] == latest.seq:
            return cached
        self._jpeg = (latest.seq, encode_jpeg(latest.pixels, self.options.frame_max_side))
        return self._jpeg


def encode_jpeg(pixels: Any, max_side: int) -> bytes:
    """A frame (RGB or grayscale uint8) as JPEG, scaled down so its longest side is at most `max_side`."""
    image = Image.fromarray(pixels)
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class LiveMode:
    """Everything --source adds to the server: the loop, the events hub, MQTT, their routes and metrics."""

    def __init__(self, service: Service, options: ServeOptions):
        assert options.live is not None
        registry = service.metrics.registry
        clients = Gauge("edgecls_events_clients", "Clients of GET /v1/events", registry=registry)
        dropped = Counter("edgecls_events_dropped_clients", f"Clients of GET /v1/events dropped for falling "
                          f"{EVENT_BUFFER} events behind", registry=registry)
        self.hub = Hub(clients.set, dropped.inc, log=service.log)
        self.mqtt = None if options.mqtt is None else MqttPublisher(options.mqtt, registry, service.log)
        self.loop = LiveLoop(service, options.live, self.hub, self.mqtt)
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def routes(self) -> list[BaseRoute]:
        return live_routes(self.loop, self.hub)

    def start(self, event_loop: asyncio.AbstractEventLoop) -> None:
        """Start publishing and classifying (once the first model is ready)."""
        self._event_loop = event_loop
        if self.mqtt is not None:
            self.mqtt.start()
        self.loop.start(event_loop)
        o = self.loop.options
        sampling = f"every {o.every} frames" if o.every > 1 else f"at most {o.fps:g} FPS" if o.fps else "every frame"
        events = f"changes after {o.min_stable} stable frames" if o.on_change else "every prediction"
        self.loop.log(f"live: classifying {self.loop.source} ({sampling}, top {o.top_k}); events: {events}")

    def closing(self) -> None:
        """The server is about to stop (SIGTERM, Ctrl-C): end the event streams so the drain need not wait."""
        if self._event_loop is not None and not self._event_loop.is_closed():
            self._event_loop.call_soon_threadsafe(self.hub.close)

    def stop(self) -> None:
        """Stop the loop and MQTT (blocking: from a worker thread)."""
        self.loop.stop()
        if self.mqtt is not None:
            self.mqtt.stop()


def live_routes(live: LiveLoop | None, hub: Hub | None) -> list[BaseRoute]:
    """GET /v1/live, /v1/latest, /v1/events and /v1/frame.jpg (each a 404 naming --source without a live source)."""

    def require_live() -> LiveLoop:
        if live is None:
            raise ApiError(404, NOT_LIVE)
        return live

    def require_latest() -> Latest:
        latest = require_live().latest
        if latest is None:
            raise ApiError(503, "no frame classified yet: the live source is starting", {"Retry-After": "1"})
        return latest

    async def status(request: Request) -> Response:
        return JSONResponse(require_live().status())

    async def latest(request: Request) -> Response:
        return Response(require_latest().text, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def frame(request: Request) -> Response:
        require_latest()
        found = await run_in_threadpool(require_live().jpeg)
        if found is None:
            raise ApiError(503, "no frame yet", {"Retry-After": "1"})
        seq, data = found
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store", "ETag": f'"{seq}"'})

    async def events(request: Request) -> Response:
        require_live()
        assert hub is not None
        if hub.closed:
            raise ApiError(503, "the server is stopping", {"Retry-After": "1"})
        if request.method == "HEAD":  # the headers of a stream, not a stream that never ends
            return Response(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store"})
        first = [event for event in (hub.status, hub.latest) if event is not None]
        return _Stream(hub, first)

    return [Route("/v1/live", status, methods=["GET"]), Route("/v1/latest", latest, methods=["GET"]),
            Route("/v1/events", events, methods=["GET"]), Route("/v1/frame.jpg", frame, methods=["GET"])]


class _Stream(Response):
    """The SSE response: Hub.stream does the work (headers, events, the end)."""

    def __init__(self, hub: Hub, first: list[Event]):
        self.hub, self.first = hub, first
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.hub.stream(scope, receive, send, self.first)
