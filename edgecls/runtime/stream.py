"""Classify a live source frame by frame: sampling, a one-frame slot between capture and model,
reconnection after a drop, and per-frame timing.

    with classifier.classify_stream("camera:0", top_k=3, fps=5) as stream:
        for result in stream:
            print(result.frame, result.timestamp, result.classes, result.latency_ms)
    print(stream.summary())

A capture thread reads the source as fast as it delivers (so a camera's or FFmpeg's own buffers
never fill with stale frames) and leaves each sampled frame in a one-frame slot; the classifier
takes the newest. When the model is slower than a camera or stream, the frames it had no time for
are dropped and counted, never queued: memory holds one frame whatever the rates. A video file (or
the caller's own iterable) is read at the model's pace instead, so every sampled frame of it is
classified and the results do not depend on the machine's speed.

Reconnect policy: when a camera or stream stops delivering (read fails, the server closes the
connection, nothing arrives for `timeout` seconds), it is reopened with back-off (0.25 s, doubling
to 4 s) for up to `reconnect` seconds; frame numbers go on counting. If it does not come back,
iteration ends with a SourceError (exit code 1) after the frames already yielded. A file that
ends before the frame count in its header is reported as truncated (exit 1); one that ends where
its header says is a normal end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecls.errors import EdgeclsError, first_line
from edgecls.runtime.capture import Capture, SourceError, SourceSpec, open_capture, parse_source
from edgecls.runtime.preprocess import ImageError

if TYPE_CHECKING:
    from edgecls.runtime.classify import Class, Classifier

DEFAULT_TIMEOUT = 10.0  # seconds to connect to a stream, and the longest wait for one of its frames
DEFAULT_RECONNECT = 10.0  # seconds to keep reopening a camera or stream after it drops
RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY = 0.25, 4.0
STALL_GRACE = 5.0  # beyond `timeout`: a capture call that ignores its timeout still ends the stream
_POLL = 0.1  # the classifier's longest wait on the slot, so that Ctrl-C and stalls are seen at once


@dataclass(frozen=True)
class FramePrediction:
    """The top-k classes of one frame of a live source (and, with a model's open-set rule, whether the
    frame is unknown and how typical: see edgecls.runtime.openset.Answer)."""

    frame: int  # the frame's index in the source, from 0, counting every frame it delivered
    timestamp: float  # when it was captured: seconds since the epoch (time.time())
    classes: tuple[Class, ...]
    latency: float  # seconds to preprocess, invoke and take the top k of this frame
    position: float | None = None  # a video file's frame: seconds into the video (its own clock); else None
    unknown: bool = False
    typicality: float | None = None

    @property
    def latency_ms(self) -> float:
        return self.latency * 1000.0


@dataclass(frozen=True)
class Sampling:
    """Which frames to classify: every Nth, or at most `fps` a second (of the video's own time for a
    file, of the wall clock for a camera or stream), for at most `duration` seconds of that clock."""

    every: int = 1
    fps: float | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        from edgecls.bounds import check_bound

        for option, value in (("--every", self.every), ("--fps", self.fps), ("--duration", self.duration)):
            if value is not None:  # None: no limit
                check_bound(option, value)
        if self.every > 1 and self.fps is not None:
            raise EdgeclsError("choose one of --every and --fps")


class _Sampler:
    def __init__(self, sampling: Sampling):
        self.every = sampling.every
        self.period = 1.0 / sampling.fps if sampling.fps else None
        self.next_due = 0.0

    def wants(self, number: int, clock: float) -> bool:
        if self.period is None:
            return number % self.every == 0
        if clock + 1e-6 < self.next_due:  # (float frame times: 2/10 must count as due at 0.2)
            return False
        self.next_due += self.period
        if self.next_due <= clock:  # after a gap, restart the schedule instead of bursting to catch up
            self.next_due = clock + self.period
        return True


@dataclass(frozen=True)
class _Frame:
    number: int
    timestamp: float
    pixels: Any
    position: float | None = None  # seconds into a video file


@dataclass(frozen=True)
class _End:
    reason: str  # why the source ended normally ("the video ended"), or "" with an error
    error: SourceError | None = None


class FrameSlot:
    """The one frame between the capture thread and the classifier.

    With `drop` (a camera or stream) a new frame replaces one not yet taken, which is counted in
    `dropped`: a slow model always gets the newest frame and memory holds one. Without it (a file)
    the capture thread waits until the frame is taken, so none is lost.
    """

    def __init__(self, drop: bool):
        self.drop = drop
        self.dropped = 0
        self._frame: _Frame | None = None
        self._end: _End | None = None
        self._changed = threading.Condition()

    def put(self, frame: _Frame, stop: threading.Event) -> bool:
        """Leave a frame; False when `stop` was set while waiting for room."""
        with self._changed:
            if self.drop:
                self.dropped += self._frame is not None
            else:
                while self._frame is not None and not stop.is_set():
                    self._changed.wait(_POLL)
                if stop.is_set():
                    return False
            self._frame = frame
            self._changed.notify_all()
        return True

    def finish(self, end: _End) -> None:
        with self._changed:
            self._end = end
            self._changed.notify_all()

    def take(self, timeout: float) -> _Frame | _End | None:
        """The waiting frame, else the end once the source has ended, else None after `timeout`."""
        with self._changed:
            if self._frame is None and self._end is None:
                self._changed.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._changed.notify_all()
                return frame
            return self._end


class _Reader(threading.Thread):
    """The capture thread: open, read, sample, hand frames to the slot, reopen after a drop."""

    def __init__(self, spec: SourceSpec, slot: FrameSlot, sampling: Sampling, capture: str | None, timeout: float,
                 reconnect: float, log: Callable[[str], None], paced: bool = False):
        super().__init__(name="edgecls-capture", daemon=True)  # daemon: a capture call stuck in C cannot hold exit
        self.spec, self.slot, self.sampler, self.duration = spec, slot, _Sampler(sampling), sampling.duration
        self.backend, self.timeout, self.reconnect, self.log = capture, timeout, reconnect, log
        self.paced = paced
        self.stop = threading.Event()
        self.last_activity = time.monotonic()  # for the stall guard
        self.skipped = self.reconnects = 0
        self.capture_backend: str | None = None
        self.capture: Capture | None = None  # the open capture (a reconnect replaces it)

    def run(self) -> None:
        try:
            self.capture = self._open(self.timeout)
        except SourceError as exc:
            self.slot.finish(_End("", exc))
            return
        except Exception as exc:  # a backend's own failure: one line, never a traceback from a thread
            self.slot.finish(_End("", SourceError(f"cannot open {self.spec.display}: {first_line(exc)}")))
            return
        try:
            self.slot.finish(self._read_all())
        except Exception as exc:
            self.slot.finish(_End("", SourceError(f"reading {self.spec.display} failed: {first_line(exc)}", 1)))
        finally:
            self.capture.close()

    def _open(self, timeout: float) -> Capture:
        self.last_activity = time.monotonic()
        capture = open_capture(self.spec, self.backend, timeout)
        self.capture_backend = capture.backend
        return capture

    def _read_all(self) -> _End:
        started = time.monotonic()
        number = 0
        while not self.stop.is_set():
            capture = self.capture
            pixels = capture.read()
            now, self.last_activity = time.time(), time.monotonic()
            if pixels is None:
                if not self.spec.live:
                    return self._file_end(capture, number)
                capture.close()
                replacement = self._reopen(number)
                if replacement is None:
                    return self._dropped(number)
                self.capture = replacement
                continue
            position = None
            if self.spec.kind == "file" and capture.fps:
                clock = position = number / capture.fps  # the video's own time: results do not depend on our speed
                if self.paced:
                    started = self._pace(started, clock, 1.0 / capture.fps)
            else:
                clock = self.last_activity - started
            if self.duration is not None and clock >= self.duration:
                return _End(f"--duration {self.duration:g} s reached")
            if self.sampler.wants(number, clock):
                if not self.slot.put(_Frame(number, now, pixels, position), self.stop):
                    break
            else:
                self.skipped += 1
            number += 1
        return _End("stopped")

    def _pace(self, started: float, clock: float, period: float) -> float:
        """Wait until the frame at `clock` seconds of the video is due on the wall clock (a file played as a
        camera delivers it); returns the start of the schedule, moved on when the reader fell behind by
        more than a frame (no burst to catch up)."""
        late = time.monotonic() - (started + clock)
        if late > period:
            return started + late
        if late < 0:
            self.stop.wait(-late)
        return started

    def _file_end(self, capture: Capture, number: int) -> _End:
        expected = capture.frame_count
        if number == 0:
            return _End("", SourceError(f"{self.spec.display}: no frame could be decoded"))
        # Some containers only estimate their count from the duration: a frame or 1% short is no truncation.
        if expected and number < expected - max(2, expected // 100):
            return _End("", SourceError(f"{self.spec.display} ends after {number} of its {expected} frames: "
                                        "truncated or corrupt", 1))
        return _End("the video ended" if self.spec.kind == "file" else "the source ended")

    def _reopen(self, number: int) -> Capture | None:
        """Reopen a dropped camera or stream with back-off for up to `reconnect` seconds; None if it stays down."""
        if self.reconnect <= 0:
            return None
        self.log(f"{self.spec.display} stopped after {number} frames: reconnecting for up to {self.reconnect:g} s")
        deadline = time.monotonic() + self.reconnect
        delay = RECONNECT_FIRST_DELAY
        while not self.stop.is_set():
            if self.stop.wait(max(0.0, min(delay, deadline - time.monotonic()))):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                capture = self._open(min(self.timeout, remaining))
            except SourceError:
                delay = min(2 * delay, RECONNECT_MAX_DELAY)
                continue
            self.reconnects += 1
            self.log(f"{self.spec.display}: reconnected")
            return capture
        return None

    def _dropped(self, number: int) -> _End:
        after = f"after {number} frames" if number else "before its first frame"
        policy = (f"and did not come back within {self.reconnect:g} s (--reconnect)" if self.reconnect > 0
                  else "(--reconnect 0: no reconnection)")
        return _End("", SourceError(f"{self.spec.display} stopped {after} {policy}", 1 if number else 2))


class LatencyHistogram:
    """Percentiles of per-frame latencies in constant memory (a camera may run for days): counts in
    logarithmic bins 1% wide from 1 microsecond to 1000 s, so a percentile is within 1% of the exact one."""

    LOW, HIGH, RATIO = 1e-6, 1e3, 1.01

    def __init__(self) -> None:
        self._bins = int(math.ceil(math.log(self.HIGH / self.LOW) / math.log(self.RATIO))) + 1
        self.counts = np.zeros(self._bins, np.int64)
        self.n = 0

    def add(self, seconds: float) -> None:
        clipped = min(max(seconds, self.LOW), self.HIGH)
        self.counts[int(math.log(clipped / self.LOW) / math.log(self.RATIO))] += 1
        self.n += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile in seconds (the geometric middle of its bin), or None before any sample."""
        if self.n == 0:
            return None
        index = int(np.searchsorted(np.cumsum(self.counts), max(1, math.ceil(q / 100 * self.n))))
        return self.LOW * self.RATIO ** (index + 0.5)


class LiveStream:
    """An iterable of FramePrediction from a camera, video file, network stream or an iterable of frames.

    Iterate it once; `summary()` (frames, achieved FPS, latency p50/p90, dropped and skipped frames,
    how it ended) is ready at any time. Closing it (leaving a `with` block, breaking out of the loop,
    or Ctrl-C) stops the capture thread and releases the camera or connection.
    """

    def __init__(
        self,
        classifier: Classifier,
        source: str | SourceSpec | Iterable[Any],
        top_k: int = 1,
        every: int = 1,
        fps: float | None = None,
        duration: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect: float = DEFAULT_RECONNECT,
        capture: str | None = None,
        live: bool | None = None,
        log: Callable[[str], None] | None = None,
        observe: Callable[[FramePrediction, Any], None] | None = None,
        paced: bool = False,
    ):
        """`source`: "camera[:N]", a video file, an rtsp:// or http(s):// URL, or an iterable of RGB or
        grayscale arrays (or PIL images). `capture`: "picamera2" or "opencv" (default: picamera2 for a
        camera when installed). `live`: drop frames when the model is slower (default: True for cameras
        and streams, False for files and iterables). `log`: called with a line when a stream drops
        and reconnects. `observe(result, frame)`: called with each result and the frame as captured
        (before it is yielded; predict --collect keeps frames with it). `paced`: read a video file at its own
        frame rate, as a camera would deliver it (edgecls serve), instead of as fast as the model takes it."""
        from edgecls.bounds import check_bound

        check_bound("--timeout", timeout)
        check_bound("--reconnect", reconnect)
        if isinstance(source, SourceSpec):
            self.spec = source
        elif isinstance(source, str):
            self.spec = parse_source(source)
        else:
            self.spec = SourceSpec("frames", "frames", source)
        self.classifier, self.top_k = classifier, top_k
        self.observe = observe
        self.sampling = Sampling(every, fps, duration)
        self.timeout = timeout
        self.slot = FrameSlot(drop=self.spec.live if live is None else live)
        self._reader = _Reader(self.spec, self.slot, self.sampling, capture, timeout, reconnect,
                               log or (lambda _: None), paced)
        self.latency = LatencyHistogram()
        self.frames = 0
        self.unknown = 0  # frames the model's open-set rule called unknown
        self.end_reason: str | None = None  # how it ended; None while it runs
        self.error: SourceError | None = None
        self._first: float | None = None  # monotonic time of the first classified frame
        self._last: float | None = None
        self._started = False

    @property
    def source(self) -> str:
        return self.spec.display

    def __iter__(self) -> Iterator[FramePrediction]:
        if self._started:
            raise EdgeclsError("a live stream can be iterated once: call classify_stream again")
        self._started = True
        self._reader.start()
        try:
            while True:
                item = self.slot.take(_POLL)
                if item is None:
                    self._check_stalled()
                elif isinstance(item, _End):
                    self.end_reason, self.error = (item.reason or "error"), item.error
                    if item.error is not None:
                        raise item.error
                    return
                else:
                    yield self._classify(item)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP under edgecls.entry (Terminated)
            self.end_reason = f"stopped by {getattr(exc, 'name', 'Ctrl-C')}"
            raise
        finally:
            # Not close(): when a caller's loop ends by an exception, this runs first, and the
            # caller's own close("stopped by Ctrl-C") must still name the end.
            self._stop_reader()

    def _classify(self, frame: _Frame) -> FramePrediction:
        started = time.perf_counter()
        try:
            classes = self.classifier.classify(frame.pixels, self.top_k)  # load_image: the files' preprocessing
        except ImageError as exc:
            raise SourceError(f"{self.source} frame {frame.number}: {exc}", 1) from None
        latency = time.perf_counter() - started
        self.latency.add(latency)
        self.frames += 1
        self.unknown += classes.unknown
        self._last = time.monotonic()
        if self._first is None:
            self._first = self._last - latency
        result = FramePrediction(frame.number, frame.timestamp, tuple(classes), latency, frame.position,
                                 classes.unknown, classes.typicality)
        if self.observe is not None:
            self.observe(result, frame.pixels)
        return result

    def _check_stalled(self) -> None:
        idle = time.monotonic() - self._reader.last_activity
        limit = self.timeout + STALL_GRACE
        if idle > limit and self._reader.is_alive():
            self.error = SourceError(f"no frame from {self.source} for {idle:.0f} s: the capture is stuck",
                                     1 if self.frames else 2)
            self.end_reason = "error"
            raise self.error

    def close(self, reason: str = "stopped") -> None:
        """Stop the capture thread (it releases the camera or connection); `reason` is the summary's
        end when the stream had not ended by itself."""
        if self._started and self.end_reason is None:
            self.end_reason = reason
        self._stop_reader()

    def _stop_reader(self) -> None:
        self._reader.stop.set()
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)  # a capture stuck in C is left to the daemon thread

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        """Frames classified, achieved FPS, latency p50/p90 (ms), dropped and skipped frames, reconnects, end;
        frames answered unknown (None for a model without an open-set rule)."""
        seconds = (self._last - self._first) if self._first is not None and self._last is not None else 0.0
        p50, p90 = self.latency.percentile(50), self.latency.percentile(90)
        return {
            "source": self.source,
            "capture": self._reader.capture_backend,
            "frames": self.frames,
            "seconds": round(seconds, 3),
            "fps": round(self.frames / seconds, 2) if seconds > 0 else None,
            "latency_ms": {"p50": None if p50 is None else round(p50 * 1000, 3),
                           "p90": None if p90 is None else round(p90 * 1000, 3)},
            "dropped": self.slot.dropped,
            "skipped": self._reader.skipped,
            "reconnects": self._reader.reconnects,
            "unknown": self.unknown if self.classifier.open_set_rule is not None else None,
            "end": self.end_reason or ("stopped" if self._reader.stop.is_set() else None),
            "error": str(self.error) if self.error else None,
        }
