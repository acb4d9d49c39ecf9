#!/usr/bin/env python3
"""Measure the device-side runtime's three figures (issue 4). A benchmark, not a test.

1. classify() of an already-decoded uint8 array vs a bare set_tensor/invoke/get_tensor loop on
   the same interpreter (target: <= 1.10x).
2. `edgecls predict MODEL one-image` as a whole cold process: wall time and peak RSS, against
   the same model loaded and run through TensorFlow (target: >= 5x faster, <= 90 MB).
3. A folder of large JPEG photos (>= 1000 px side): images/s of classify_many vs a naive loop
   (open, convert, resize, invoke) (target: >= 2x).

Models are made by the toolkit itself (edgecls.train.model + edgecls.export.convert, as `edgecls export`
does) with untrained weights: latency does not depend on what the weights are. Every
measurement runs in a fresh device-like subprocess (no TensorFlow loaded unless it is the
baseline), alternating the two contenders round by round, and reports medians over rounds:
this machine is shared and noisy. Needs the `train` extra (TensorFlow) to build the models.

    python scripts/bench_runtime.py [--rounds 7] [--photos 120] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CATSDOGS = ROOT.parent / "shared" / "data" / "catsdogs"


# ----------------------------------------------------------------------------- models (workstation side)
def build_models(folder: Path) -> dict[str, Path]:
    """seed CNN 28x28x1 (the digits reference architecture) and mobile CNN 96x96x3, float32 and int8."""
    import keras
    import numpy as np

    from edgecls.export.convert import convert, saved_model
    from edgecls.runtime.metadata import METADATA_FORMAT, embed_metadata
    from edgecls.train.model import build_model

    keras.utils.set_random_seed(0)
    made = {}
    for arch, shape, labels in (("seed", (28, 28, 1), [str(i) for i in range(10)]),
                                ("mobile", (96, 96, 3), ["cat", "dog"])):
        model = build_model(arch, shape, len(labels))
        calibration = np.random.default_rng(0).integers(0, 256, (64, *shape), dtype=np.uint8)
        with saved_model(model) as exported:
            for mode in ("float32", "int8"):
                converted = convert(exported, mode, calibration=calibration)
                meta = {"format": METADATA_FORMAT, "labels": labels, "output": "probabilities",
                        "input": {"height": shape[0], "width": shape[1],
                                  "color": "grayscale" if shape[2] == 1 else "rgb", "pixel_range": [0, 255]},
                        "quantization": {"mode": mode}, "source": "scripts/bench_runtime.py (untrained)"}
                path = folder / f"{arch}-{mode}.tflite"
                path.write_bytes(embed_metadata(converted.content, meta))
                made[f"{arch}-{mode}"] = path
    return made


def make_photos(folder: Path, count: int) -> list[Path]:
    """Large JPEGs: catsdogs photos scaled up so the short side is 1000-1200 px, else synthetic."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(CATSDOGS.rglob("*.jpg"))[:count] if CATSDOGS.is_dir() else []
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        if sources:
            image = Image.open(sources[i % len(sources)]).convert("RGB")
        else:  # smooth random colour fields: JPEG-compressible like photos, unlike pure noise
            image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((400, 300), Image.BICUBIC)
        factor = 1000 / min(image.size) * rng.uniform(1.0, 1.2)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)
        path = folder / f"photo{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- workers (device side)
def worker_hot(model: str, threads: int, rounds: int) -> dict:
    """classify(array) vs a bare loop on the same interpreter, alternating each round."""
    import numpy as np

    from edgecls.runtime import Classifier
    from edgecls.runtime.quant import input_converter

    clf = Classifier(model, num_threads=threads)
    spec = clf.input_spec
    pixels = np.random.default_rng(0).integers(0, 256, spec.shape, dtype=np.uint8)
    ready = np.ascontiguousarray(input_converter(spec)(pixels[None]))  # the bare loop gets it pre-quantised
    interpreter = clf.interpreter
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def bare(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            interpreter.set_tensor(inp, ready)
            interpreter.invoke()
            interpreter.get_tensor(out)
        return (time.perf_counter() - start) / n

    to_input = input_converter(spec)

    def bare_quantising(n: int) -> float:
        """The bare loop as a user must write it for an int8 model: it quantises the pixels too."""
        start = time.perf_counter()
        for _ in range(n):
            interpreter.set_tensor(inp, to_input(pixels[None]))
            interpreter.invoke()
            interpreter.get_tensor(out)
        return (time.perf_counter() - start) / n

    def ours(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            clf.classify(pixels)
        return (time.perf_counter() - start) / n

    n = max(50, int(0.25 / max(bare(50), 1e-7)))  # about a quarter second per contender per round
    ours(n)
    bares, bares_q, ourses = [], [], []
    for r in range(rounds):
        order = [(bares, bare), (bares_q, bare_quantising), (ourses, ours)]
        for times, fn in (order if r % 2 else order[::-1]):
            times.append(fn(n))
    return {"bare_us": statistics.median(bares) * 1e6, "bare_quantising_us": statistics.median(bares_q) * 1e6,
            "classify_us": statistics.median(ourses) * 1e6,
            "ratio": statistics.median(o / b for o, b in zip(ourses, bares)),
            "ratio_vs_quantising_loop": statistics.median(o / b for o, b in zip(ourses, bares_q)),
            "calls_per_round": n}


def worker_folder(model: str, folder: str, threads: int, rounds: int) -> dict:
    """classify_many over the photos vs a naive loop (open, convert, resize, invoke)."""
    import numpy as np
    from PIL import Image

    from edgecls.runtime import Classifier
    from edgecls.runtime.quant import input_converter

    paths = sorted(Path(folder).glob("*.jpg"))
    clf = Classifier(model, num_threads=threads)
    naive_interpreter = clf.backend.interpreter_class(model_path=model, num_threads=threads)
    naive_interpreter.allocate_tensors()
    inp = naive_interpreter.get_input_details()[0]["index"]
    out = naive_interpreter.get_output_details()[0]["index"]
    to_input = input_converter(clf.input_spec)
    h, w = clf.input_spec.size

    def naive() -> float:
        start = time.perf_counter()
        for path in paths:
            image = Image.open(path).convert("RGB").resize((w, h))
            naive_interpreter.set_tensor(inp, to_input(np.asarray(image, np.uint8)[None]))
            naive_interpreter.invoke()
            naive_interpreter.get_tensor(out).argmax()
        return len(paths) / (time.perf_counter() - start)

    def ours() -> float:
        start = time.perf_counter()
        failed = sum(not p.ok for p in clf.classify_many(paths))
        assert not failed
        return len(paths) / (time.perf_counter() - start)

    naive(), ours()  # warm the file cache and both interpreters
    naives, ourses = [], []
    for r in range(rounds):
        if r % 2:
            ourses.append(ours())
            naives.append(naive())
        else:
            naives.append(naive())
            ourses.append(ours())
    return {"images": len(paths), "naive_images_per_s": statistics.median(naives),
            "edgecls_images_per_s": statistics.median(ourses),
            "speedup": statistics.median(o / n for o, n in zip(ourses, naives))}


BASELINE = """
import sys, numpy as np
from PIL import Image
{import_line}
it = Interpreter(model_path=sys.argv[1], num_threads={threads}); it.allocate_tensors()
d = it.get_input_details()[0]; h, w, c = (int(v) for v in d["shape"][1:])
x = np.asarray(Image.open(sys.argv[2]).convert("L" if c == 1 else "RGB").resize((w, h)), np.uint8).reshape(1, h, w, c)
x = (x.astype(np.int16) - 128).astype(np.int8) if d["dtype"] == np.int8 else x.astype(d["dtype"])
it.set_tensor(d["index"], x); it.invoke(); print(int(it.get_tensor(it.get_output_details()[0]["index"]).argmax()))
"""


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{stderr}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def cold(model: Path, image: Path, rounds: int) -> dict:
    threads = os.cpu_count() or 1
    contenders = {
        "edgecls predict": [sys.executable, "-m", "edgecls", "predict", str(model), str(image), "--json"],
        "tensorflow (tf.lite.Interpreter)": [
            sys.executable,
            "-c",
            BASELINE.format(import_line="import tensorflow as tf; Interpreter = tf.lite.Interpreter", threads=threads),
            str(model),
            str(image),
        ],
        "bare LiteRT script": [
            sys.executable,
            "-c",
            BASELINE.format(import_line="from ai_edge_litert.interpreter import Interpreter", threads=threads),
            str(model),
            str(image),
        ],
    }
    for command in contenders.values():  # warm the page cache: "cold" is a new process, not a cold disk
        run_measured(command)
    runs = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, command in contenders.items():
            runs[name].append(run_measured(command))
    result = {name: {"wall_s": statistics.median(r[0] for r in rs), "peak_rss_mb": statistics.median(r[1] for r in rs)}
              for name, rs in runs.items()}
    ours, tf = result["edgecls predict"], result["tensorflow (tf.lite.Interpreter)"]
    result["speedup_vs_tensorflow"] = tf["wall_s"] / ours["wall_s"]
    return result


def in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--work", type=Path, help="keep models and photos here [default: a temporary folder]")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        workers = {"hot": lambda: worker_hot(rest[0], int(rest[1]), int(rest[2])),
                   "folder": lambda: worker_folder(rest[0], rest[1], int(rest[2]), int(rest[3])),
                   "cold": lambda: cold(Path(rest[0]), Path(rest[1]), int(rest[2]))}
        result = workers[kind]()
        print(json.dumps(result))
        return

    from edgecls.runtime.doctor import machine_info

    work = args.work or Path(tempfile.mkdtemp(prefix="edgecls-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"building models and {args.photos} large JPEGs in {work} ...", file=sys.stderr)
    models = build_models(work)
    photos = make_photos(work / "photos", args.photos)
    digit = work / "digit.png"
    from PIL import Image

    Image.open(photos[0]).convert("L").resize((28, 28)).save(digit)
    threads_all = os.cpu_count() or 1
    results: dict = {"machine": machine_info(), "rounds": args.rounds, "hot_path": {}, "cold_predict": {}}

    print("1. classify() vs bare loop ...", file=sys.stderr)
    for name, path in models.items():
        for threads in sorted({1, threads_all}):
            results["hot_path"][f"{name} threads={threads}"] = in_subprocess(
                "hot", str(path), str(threads), str(args.rounds)
            )
    print("2. cold predict of one image ...", file=sys.stderr)
    for name, image in (("seed-int8", digit), ("mobile-int8", photos[0])):
        # From a small worker: a child forked from this process (TensorFlow loaded) would report
        # the parent's memory as its own peak RSS.
        results["cold_predict"][name] = in_subprocess(
            "cold", str(models[name]), str(image), str(max(3, args.rounds // 2))
        )
    print("3. folder of large JPEGs ...", file=sys.stderr)
    results["folder"] = in_subprocess("folder", str(models["mobile-int8"]), str(work / "photos"),
                                      str(threads_all), str(max(3, args.rounds // 2)))
    results["folder"]["photo_sizes"] = sorted({Image.open(p).size for p in photos[:5]})
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def report(results: dict) -> None:
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cpu_count']} cores, {m['arch']}, Python {m['python']}; medians of "
          f"{results['rounds']} interleaved rounds")
    print("\n1. classify(uint8 array) vs bare set_tensor/invoke/get_tensor  (target <= 1.10x)")
    for name, r in results["hot_path"].items():
        print(
            f"   {name:28s} bare {r['bare_us']:8.1f} us   classify {r['classify_us']:8.1f} us   ratio {r['ratio']:.3f}"
            f"   (vs a bare loop that quantises its input, {r['bare_quantising_us']:.1f} us: "
            f"{r['ratio_vs_quantising_loop']:.3f})"
        )
    print("\n2. one image, whole cold process  (target: >= 5x faster than TensorFlow, <= 90 MB)")
    for model, r in results["cold_predict"].items():
        for name, v in r.items():
            if isinstance(v, dict):
                print(f"   {model:12s} {name:34s} {v['wall_s']:6.2f} s  {v['peak_rss_mb']:7.1f} MB")
        print(f"   {model:12s} edgecls predict is {r['speedup_vs_tensorflow']:.1f}x faster than TensorFlow")
    f = results["folder"]
    print(f"\n3. {f['images']} JPEGs of {f['photo_sizes'][0][0]}x{f['photo_sizes'][0][1]} px and similar, "
          f"mobile-int8 96x96  (target >= 2x)")
    print(
        f"   naive loop {f['naive_images_per_s']:.1f} images/s   classify_many {f['edgecls_images_per_s']:.1f} images/s"
        f"   speedup {f['speedup']:.2f}x"
    )


if __name__ == "__main__":
    main()
