#!/usr/bin/env python3
"""Long run: a live source faster than the model keeps memory flat (frames are dropped, not queued),
in the stream API and in the live service.

stream   A synthetic camera delivers fresh 640x480 RGB frames (two digit pictures, alternating) at 30 FPS
         to `Classifier.classify_stream` as a live source; the model is the reference digits model
         slowed to --delay-ms per frame (default 50 ms: at most 20 FPS, so about a third of the frames
         must be dropped). This process samples its own resident memory (VmRSS) every second.
service  `edgecls serve --source` of a synthetic 30 FPS camera (a real HTTP MJPEG stream of the same
         640x480 pictures, tests/livekit.py) with the same slowed model, --mqtt to a real mosquitto
         (tests/mqttkit.py; left out, and said so, where mosquitto is not installed), an SSE client
         reading GET /v1/events and an MQTT subscriber attached. The server's VmRSS is sampled every
         second; at the end, the frames the camera sent are accounted for: classified, dropped or
         skipped, the rest (queued anywhere: the slot, the TCP buffers) must be a handful.

Each part reports RSS after the first --warmup seconds and at the end, the peak, the frames classified
and dropped. The goal: RSS grows by less than 5 MB from the warm-up mark to the end (exit 1 otherwise).

    python scripts/live_memory_check.py                 # 10 minutes each part
    python scripts/live_memory_check.py --smoke         # 8 seconds each part
    python scripts/live_memory_check.py --only service --minutes 60
    python scripts/live_memory_check.py --only stream --source rtsp://camera/stream --minutes 60   # a real source
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the real components the tests use: an MJPEG server, mosquitto

from edgecls.runtime import Classifier  # noqa: E402

REFERENCE = ROOT / "models" / "digits-seed"
MODEL = REFERENCE / "model_int8.tflite"
GROWTH_LIMIT_MB = 5.0
QUEUED_LIMIT = 8  # frames unaccounted for at the end of the service part: in the slot, in flight, in TCP buffers
SIZE = (480, 640)
# The served model, slowed as SlowClassifier below: the code of the server's process (edgecls serve ...).
SLOW_SERVER = """
import os, sys, time
from edgecls.runtime.classify import Classifier
delay, classify = float(os.environ["EDGECLS_SLOW_MS"]) / 1000, Classifier.classify
def slow(self, image, top_k=1):
    time.sleep(delay)
    return classify(self, image, top_k)
Classifier.classify = slow
sys.argv = ["edgecls", *sys.argv[1:]]
from edgecls.entry import main
main()
"""


class SlowClassifier(Classifier):
    """The reference model with a fixed extra delay per frame: a model slower than the camera."""

    delay = 0.05

    def classify(self, image, top_k=1):
        time.sleep(self.delay)
        return super().classify(image, top_k)


def pictures() -> list[np.ndarray]:
    """The two camera pictures: a 3 and a 7 of the reference test images, 640x480 RGB."""
    found = []
    for digit in "37":
        path = sorted((REFERENCE / "test-images" / digit).glob("*.png"))[0]
        found.append(np.asarray(Image.open(path).convert("RGB").resize(SIZE[::-1], Image.Resampling.BILINEAR)))
    return found


def synthetic_camera(fps: float, seconds: float):
    """Fresh RGB frames (as a camera delivers them: a new buffer each time) at `fps`, for `seconds`."""
    frames = pictures()
    period, start = 1.0 / fps, time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * period
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        yield frames[n % 2].copy()
        n += 1


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


class Sampler:
    """A process's RSS every second, in a thread: (seconds since start, MB)."""

    def __init__(self, pid: int | str = "self"):
        self.pid, self.samples, self.start = pid, [], time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.samples.append((time.monotonic() - self.start, rss_mb(self.pid)))
            self._done.wait(1.0)

    def stop(self, warmup: float) -> dict:
        self._done.set()
        self._thread.join()
        at_warmup = next((mb for t, mb in self.samples if t >= warmup), self.samples[0][1])
        at_end = self.samples[-1][1]
        return {"rss_mb": {"start": round(self.samples[0][1], 1), f"after_{warmup:g}s": round(at_warmup, 1),
                           "end": round(at_end, 1), "peak": round(max(mb for _, mb in self.samples), 1)},
                "growth_mb": round(at_end - at_warmup, 1)}


def check_stream(args: argparse.Namespace, seconds: float, warmup: float) -> dict:
    SlowClassifier.delay = args.delay_ms / 1000
    classifier = SlowClassifier(MODEL, num_threads=1)
    source = args.source or synthetic_camera(args.fps, seconds)
    stream = classifier.classify_stream(source, live=True, duration=seconds if args.source else None)
    sampler = Sampler()
    last_print = sampler.start
    for _ in stream:
        if time.monotonic() - last_print >= 60:
            last_print = time.monotonic()
            s = stream.summary()
            print(f"  stream {last_print - sampler.start:5.0f} s  RSS {rss_mb():6.1f} MB  frames {s['frames']}  "
                  f"dropped {s['dropped']}", flush=True)
    memory = sampler.stop(warmup)
    summary = stream.summary()
    report = {
        "seconds": round(time.monotonic() - sampler.start, 1),
        "source": "synthetic 640x480 RGB" if not args.source else summary["source"],
        "source_fps": None if args.source else args.fps,
        "model_delay_ms": args.delay_ms,
        "frames": summary["frames"],
        "dropped": summary["dropped"],
        "achieved_fps": summary["fps"],
        "latency_ms": summary["latency_ms"],
        **memory,
        "end": summary["end"],
    }
    report["flat"] = report["growth_mb"] < GROWTH_LIMIT_MB
    return report


def check_service(args: argparse.Namespace, seconds: float, warmup: float) -> dict:
    import httpx
    from livekit import MjpegServer
    from prometheus_client.parser import text_string_to_metric_families
    from serving import ServeProcess

    work = Path(tempfile.mkdtemp(prefix="edgecls-live-memory-"))
    model = work / "model.tflite"
    shutil.copy(MODEL, model)
    camera = MjpegServer(pictures(), [None], interval=1.0 / args.fps)
    broker = subscriber = None
    mqtt_args: list[str] = []
    mqtt_note = None
    if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        from mqttkit import Mosquitto, Subscriber

        broker = Mosquitto(work)
        subscriber = Subscriber(broker.port, "edgecls/memory")
        mqtt_args = ["--mqtt", f"mqtt://127.0.0.1:{broker.port}/edgecls/memory"]
    else:
        mqtt_note = "mosquitto is not installed here: the service ran without --mqtt"
    server = ServeProcess(model, "--source", camera.url, "--threads", 1, *mqtt_args, log=work / "serve.log",
                          launch=("-c", SLOW_SERVER), env={"EDGECLS_SLOW_MS": str(args.delay_ms)})
    events = {"count": 0, "error": None}
    stop_reading = threading.Event()

    def read_events() -> None:  # an SSE client that keeps up
        try:
            with httpx.stream("GET", f"{server.url}/v1/events", timeout=30) as response:
                for chunk in response.iter_text():
                    events["count"] += chunk.count("event: prediction")
                    if stop_reading.is_set():
                        return
        except httpx.HTTPError as exc:
            events["error"] = str(exc)

    def figures() -> dict[str, float]:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}

    reader = threading.Thread(target=read_events, daemon=True)
    reader.start()
    sampler = Sampler(server.process.pid)
    deepest, last_print = 0.0, sampler.start
    try:
        while time.monotonic() - sampler.start < seconds:
            time.sleep(1.0)
            now = figures()
            deepest = max(deepest, now["edgecls_queue_depth"])
            if time.monotonic() - last_print >= 60:
                last_print = time.monotonic()
                print(f"  service {last_print - sampler.start:5.0f} s  RSS {rss_mb(server.process.pid):6.1f} MB  "
                      f"frames {now['edgecls_live_frames_total']:.0f}  dropped "
                      f"{now['edgecls_live_dropped_frames_total']:.0f}  SSE events {events['count']}", flush=True)
        memory = sampler.stop(warmup)
        camera.closed.set()  # the camera stops; what it sent is counted once the server has taken it all
        time.sleep(2.0)
        end = figures()
    finally:
        stop_reading.set()
        server.stop()
        camera.close()
        if subscriber is not None:
            subscriber.close()
        if broker is not None:
            broker.stop()
    classified, dropped = int(end["edgecls_live_frames_total"]), int(end["edgecls_live_dropped_frames_total"])
    skipped = int(end["edgecls_live_skipped_frames_total"])
    report = {
        "seconds": round(seconds, 1),
        "source": f"synthetic 640x480 MJPEG over HTTP at {args.fps:g} FPS",
        "model_delay_ms": args.delay_ms,
        "sent": camera.sent,
        "frames": classified,
        "dropped": dropped,
        "skipped": skipped,
        "queued_at_end": camera.sent - classified - dropped - skipped,
        "deepest_pool_queue": deepest,
        "achieved_fps": round(classified / seconds, 2),
        "sse_events": events["count"],
        "sse_error": events["error"],
        "sse_clients_dropped": int(end["edgecls_events_dropped_clients_total"]),
        "mqtt_messages": None if subscriber is None else len(subscriber.on("edgecls/memory")),
        "mqtt_note": mqtt_note,
        **memory,
    }
    shutil.rmtree(work, ignore_errors=True)
    report["flat"] = report["growth_mb"] < GROWTH_LIMIT_MB and report["queued_at_end"] <= QUEUED_LIMIT and \
        report["sse_clients_dropped"] == 0 and report["sse_events"] > 0
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="of each part")
    parser.add_argument("--fps", type=float, default=30.0, help="the synthetic source's frame rate")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="extra time the model takes per frame")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the reference RSS is taken")
    parser.add_argument("--source", help="the stream part: a real source (camera:0, a URL), not the synthetic one")
    parser.add_argument("--only", choices=("stream", "service"), help="run one part")
    parser.add_argument("--smoke", action="store_true", help="8 seconds each part, 4 s warm-up")
    args = parser.parse_args()
    seconds = 8.0 if args.smoke else args.minutes * 60
    warmup = 4.0 if args.smoke else args.warmup
    report = {"load_average_start": list(os.getloadavg())}
    if args.only in (None, "stream"):
        report["stream"] = check_stream(args, seconds, warmup)
    if args.only in (None, "service"):
        report["service"] = check_service(args, seconds, warmup)
    report["load_average_end"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(part["flat"] for key, part in report.items() if key in ("stream", "service")) else 1)


if __name__ == "__main__":
    main()
