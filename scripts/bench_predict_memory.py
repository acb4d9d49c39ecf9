#!/usr/bin/env python3
"""Long run: `edgecls predict` over many generated images keeps its memory flat.

Generates N PNG images (default 10,000; cached in --folder), runs `edgecls predict --json` on
the folder as a separate process, counts result rows as they stream, and samples the process's
resident memory (VmRSS from /proc) as it goes. Reports RSS after the first 1,000 images, at the
end, and the peak; the goal is growth under 10 MB between the first 1,000 and the end.

    python scripts/bench_predict_memory.py [--images 10000] [--model models/digits-seed/model_int8.tflite]
        [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ROOT, Record, common_arguments  # noqa: E402


def make_images(folder: Path, count: int, size: int = 28) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*.png")))
    rng = np.random.default_rng(0)
    for i in range(existing, count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"img{i:05d}.png")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "digits-seed" / "model_int8.tflite")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/edgecls-longrun"))
    common_arguments(parser, "runs/perf/predict_memory.json")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.folder = 60, args.folder.with_name(args.folder.name + "-smoke")
    record = Record(__file__, args)

    make_images(args.folder, args.images)

    def long_run() -> dict:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgecls", "predict", "--json", str(args.model), str(args.folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        rows = 0
        samples: list[tuple[int, float]] = []  # (rows done, RSS MB)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                value = rss_mb(process.pid)
                if value is not None:
                    samples.append((rows, value))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        start = time.perf_counter()
        sampler.start()
        for line in process.stdout:
            rows += 1
            if rows == 1:
                json.loads(line)
        process.wait()
        done.set()
        sampler.join()
        seconds = time.perf_counter() - start
        after_1000 = next((mb for n, mb in samples if n >= min(1000, rows // 2)), None)
        # the last sample taken (a fast run may end between two samples of its last 50 rows)
        at_end = samples[-1][1] if samples else None
        report = {
            "images": args.images, "rows": rows, "exit_code": process.returncode, "seconds": round(seconds, 2),
            "rss_mb_after_1000": round(after_1000, 1) if after_1000 else None,
            "rss_mb_at_end": round(at_end, 1) if at_end else None,
            "rss_mb_peak": round(max(mb for _, mb in samples), 1) if samples else None,
            "growth_mb": round(at_end - after_1000, 1) if after_1000 and at_end else None,
            "samples": len(samples),
        }
        return report

    record.figure("long_run", long_run)
    record.write(args.json)


if __name__ == "__main__":
    main()
