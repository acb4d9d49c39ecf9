"""Figures for the .tflite-backbone route (issue 11 item 1): `edgecls train --backbone` on catsdogs
with both Coral MobileNet V1 models, cold caches, as a user would run it.

    python scripts/bench_transfer.py            # both backbones; views 1 and 4 on the 0.5_160 one
    python scripts/bench_transfer.py --smoke    # 0.25_128 on 16 photos per class: checks the script runs

Per run: the shipped .tflite's test and validation accuracy, its top-1 agreement with the numpy
float head (validation + test), the float head's test accuracy, file size, p50 invoke latency at
1 thread, and the whole command's wall time with the load average before it (the machine is
shared: a high load makes the wall time pessimistic). Every run gets a fresh, empty cache, so
the wall time includes decoding the JPEGs and embedding them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BACKBONES = {"0.5_160": SHARED / "pretrained" / "mobilenet_v1_0.5_160_quant.tflite",
             "0.25_128": SHARED / "pretrained" / "mobilenet_v1_0.25_128_quant.tflite"}
ACCEPTANCE = {"test_accuracy": 0.94, "agreement": 0.99, "seconds": 180}  # for the 0.5_160 backbone


def p50_ms(model: Path, rounds: int = 40) -> float:
    from edgecls.runtime import Classifier

    clf = Classifier(model, num_threads=1)
    batch = np.random.default_rng(0).integers(0, 256, (1, *clf.input_spec.shape), dtype=np.uint8)
    clf.set_input(batch)
    for _ in range(5):
        clf.invoke()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        clf.invoke()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def run(data: Path, backbone: Path, views: int, work: Path, threads: int) -> dict:
    out = work / f"run-{backbone.stem}-v{views}"
    env = {**os.environ, "EDGECLS_CACHE": str(work / f"cache-{backbone.stem}-v{views}")}  # cold: decode + embed
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgecls", "train", "--data", str(data), "--backbone", str(backbone),
                             "--out", str(out), "--views", str(views), "--threads", str(threads), "--quiet"],
                            capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"edgecls train failed:\n{result.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    model = out / metrics["tflite"]["file"]
    return {"backbone": backbone.stem.replace("mobilenet_v1_", "").replace("_quant", ""), "views": views,
            "test": metrics["tflite"]["test_accuracy"], "val": metrics["tflite"]["val_accuracy"],
            "agree": metrics["tflite"]["agreement"], "float_test": metrics["test_accuracy"],
            "size_kib": model.stat().st_size / 1024, "p50_ms": p50_ms(model), "wall_s": seconds,
            "load_before": load, "l2": metrics["l2"], "test_images": metrics["counts"]["test"]}


def smoke_data(folder: Path, per_class: int) -> Path:
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        for path in sorted((SHARED / "catsdogs" / name).iterdir())[:per_class]:
            shutil.copy(path, folder / name / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the 0.25_128 backbone on 16 photos per class")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not all(p.exists() for p in BACKBONES.values()):
        raise SystemExit(f"needs {SHARED} (the Coral models and catsdogs)")
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        work = Path(tmp)
        if args.smoke:
            plan = [(smoke_data(work / "photos", 16), BACKBONES["0.25_128"], 1)]
        else:
            data = SHARED / "catsdogs"
            plan = [(data, BACKBONES["0.5_160"], 1), (data, BACKBONES["0.5_160"], 4), (data, BACKBONES["0.25_128"], 1)]
        rows = [run(data, backbone, views, work, args.threads) for data, backbone, views in plan]
    print(f"\nedgecls train --backbone on {'16 photos per class' if args.smoke else 'catsdogs'}, "
          f"--threads {args.threads}, {os.cpu_count()} CPUs, cold caches; accuracy of the shipped .tflite\n")
    print("| backbone | views | test acc | val acc | agree | float head test | size | p50 1 thread | wall "
          "| load before |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['backbone']} | {r['views']} | {r['test']:.4f} | {r['val']:.4f} | {r['agree']:.4f} | "
              f"{r['float_test']:.4f} | {r['size_kib']:.0f} KiB | {r['p50_ms']:.2f} ms | {r['wall_s']:.0f} s | "
              f"{r['load_before']:.2f} |")
    print(f"\n{rows[0]['test_images']} test images; load average now {os.getloadavg()[0]:.2f}")
    if not args.smoke:
        first = rows[0]
        ok = (first["test"] >= ACCEPTANCE["test_accuracy"] and first["agree"] >= ACCEPTANCE["agreement"]
              and first["wall_s"] < ACCEPTANCE["seconds"])
        print(f"acceptance (0.5_160, views 1: test >= 0.94, agreement >= 0.99, < 180 s): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
