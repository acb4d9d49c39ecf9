#!/usr/bin/env python3
"""Long run: a live source faster than the model keeps memory flat (frames are dropped, not queued).

A synthetic camera delivers fresh 640x480 RGB frames (two digit pictures, alternating) at 30 FPS
to `Classifier.classify_stream` as a live source; the model is the reference digits model slowed
to --delay-ms per frame (default 50 ms: at most 20 FPS, so about a third of the frames must be
dropped). The process samples its own resident memory (VmRSS) every second and reports it after
the first --warmup seconds and at the end, the peak, the frames classified and dropped. The goal:
RSS grows by less than 5 MB from the warm-up mark to the end.

    python scripts/live_memory_check.py                 # 10 minutes
    python scripts/live_memory_check.py --smoke         # 15 seconds
    python scripts/live_memory_check.py --source rtsp://camera/stream --minutes 60   # a real source
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecls.runtime import Classifier  # noqa: E402

REFERENCE = ROOT / "models" / "digits-seed"
GROWTH_LIMIT_MB = 5.0


class SlowClassifier(Classifier):
    """The reference model with a fixed extra delay per frame: a model slower than the camera."""

    delay = 0.05

    def classify(self, image, top_k=1):
        time.sleep(self.delay)
        return super().classify(image, top_k)


def synthetic_camera(fps: float, seconds: float, size=(480, 640)):
    """Fresh RGB frames (as a camera delivers them: a new buffer each time) at `fps`, for `seconds`."""
    pictures = []
    for digit in "37":
        path = sorted((REFERENCE / "test-images" / digit).glob("*.png"))[0]
        pictures.append(np.asarray(Image.open(path).convert("RGB").resize(size[::-1], Image.Resampling.BILINEAR)))
    period, start = 1.0 / fps, time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * period
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        yield pictures[n % 2].copy()
        n += 1


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0, help="the synthetic source's frame rate")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="extra time the model takes per frame")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the reference RSS is taken")
    parser.add_argument("--source", help="a real source (camera:0, a URL) instead of the synthetic one")
    parser.add_argument("--smoke", action="store_true", help="15 seconds, 5 s warm-up")
    args = parser.parse_args()
    seconds = 15.0 if args.smoke else args.minutes * 60
    warmup = 5.0 if args.smoke else args.warmup

    SlowClassifier.delay = args.delay_ms / 1000
    classifier = SlowClassifier(REFERENCE / "model_int8.tflite", num_threads=1)
    source = args.source or synthetic_camera(args.fps, seconds)
    stream = classifier.classify_stream(source, live=True, duration=seconds if args.source else None)

    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
    done = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic() - start, rss_mb()))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    last_print = start
    for _ in stream:
        if time.monotonic() - last_print >= 60:
            last_print = time.monotonic()
            s = stream.summary()
            print(f"  {last_print - start:5.0f} s  RSS {rss_mb():6.1f} MB  frames {s['frames']}  "
                  f"dropped {s['dropped']}", flush=True)
    done.set()
    sampler.join()
    summary = stream.summary()
    at_warmup = next((mb for t, mb in samples if t >= warmup), samples[0][1])
    at_end = samples[-1][1]
    report = {
        "seconds": round(time.monotonic() - start, 1),
        "source": "synthetic 640x480 RGB" if not args.source else summary["source"],
        "source_fps": None if args.source else args.fps,
        "model_delay_ms": args.delay_ms,
        "frames": summary["frames"],
        "dropped": summary["dropped"],
        "achieved_fps": summary["fps"],
        "latency_ms": summary["latency_ms"],
        "rss_mb": {"start": round(samples[0][1], 1), f"after_{warmup:g}s": round(at_warmup, 1),
                   "end": round(at_end, 1), "peak": round(max(mb for _, mb in samples), 1)},
        "growth_mb": round(at_end - at_warmup, 1),
        "end": summary["end"],
    }
    report["flat"] = report["growth_mb"] < GROWTH_LIMIT_MB
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["flat"] else 1)


if __name__ == "__main__":
    main()
