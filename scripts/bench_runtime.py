#!/usr/bin/env python3
"""The device-side runtime's figures, each paired per round (see benchkit). A benchmark, not a test.

P3  int8 against float32 invoke latency, seed CNN and mobile CNN, 1 thread.
P3 and P4 time each round of --seconds as 5 shorter pairs (PAIRS_PER_ROUND): --rounds 9 records 45.
P4  Classifier.classify() of a decoded uint8 array against a bare set_tensor/invoke/get_tensor loop
    on the same interpreter (targets: <= 1.10x seed int8, <= 1.03x mobile int8), 1 thread; and
    classify() of the same model calibrated by edgecls (its unknown rule) against the bare loop and
    classify() of the plain model: the whole per-call cost of the rule.
P5  `edgecls predict MODEL one-image` as a whole cold process — the console script of a fresh
    `pip install CHECKOUT` venv, as a user runs it — against a 7-line LiteRT script in the same venv,
    both at one thread and both at the CPU count; and a TensorFlow script: wall time and peak RSS
    (targets: <= 1.3x and +8 MiB of LiteRT); and the same model calibrated by edgecls (its unknown
    rule) against the plain one. --smoke runs `python -m edgecls` of the checkout instead.
P6  classify_many over a folder of real JPEG photos against a plain Pillow loop that uses draft(),
    at 1 and 2 threads (targets: >= 1.2x at two, no slower at one); each contender goes over the
    folder for >= 1.5 s a round (one 0.15 s pass swung +-15 %), in fresh processes of two rounds each.

Models are built by the toolkit (benchkit.build_models; needs TensorFlow, once per --work folder);
the measurements run in fresh device-like processes. `--checkout DIR` measures the edgecls of
another checkout (e.g. a worktree of an older commit) with these same scripts.

    python scripts/bench_runtime.py [--rounds 9] [--photos 200] [--checkout DIR] [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402  (scripts/ is not a package)
    CATSDOGS,
    ROOT,
    Record,
    build_models,
    checkout_env,
    common_arguments,
    device_venv,
    difference,
    in_worker,
    median,
    openset_model,
    paired,
    ratio,
    run_process,
)

# P3, P4: each round of --seconds is timed as this many shorter pairs. This shared Xeon's speed drifts within
# a minute (a bare seed-int8 invoke went from 48 to 71 us between two runs 20 s apart), and 0.3 s pairs still
# caught it: one P4 figure of 9 rounds spread 0.69-1.62. Pairs a fifth as long cancel more of the drift.
PAIRS_PER_ROUND = 5
FOLDER_SECONDS = 1.5  # P6: each contender's run in a round goes over the folder for at least this long
TARGETS = {"P4 seed-int8": 1.10, "P4 mobile-int8": 1.03, "P5 wall": 1.3, "P5 peak_mib": 8.0, "P6 2 threads": 1.2,
           "P6 1 thread": 1.0}


# ----------------------------------------------------------------------------- workers (device side)
def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _calls_per_round(fn, seconds: float) -> int:
    return max(20, int(seconds / max(_timed(fn, 20), 1e-7)))


def worker_int8_vs_float(int8: str, float32: str, rounds: int, seconds: float) -> dict:
    """P3: invoke latency of the int8 model against the float32 one, 1 thread."""
    import numpy as np

    from edgecls.runtime import Classifier

    invokes = {}
    for name, path in (("int8", int8), ("float32", float32)):
        clf = Classifier(path, num_threads=1)
        clf.set_input(np.random.default_rng(0).integers(0, 256, (1, *clf.input_spec.shape), dtype=np.uint8))
        invokes[name] = clf.invoke
    n = _calls_per_round(invokes["float32"], seconds)
    runs = paired({name: (lambda f=f: _timed(f, n)) for name, f in invokes.items()}, rounds)
    return {"int8_us": median(runs["int8"]) * 1e6, "float32_us": median(runs["float32"]) * 1e6,
            "ratio": ratio(runs["int8"], runs["float32"]), "calls_per_round": n}


def worker_hot(model: str, rounds: int, seconds: float, plain: str = "") -> dict:
    """P4: classify(array) against a bare loop on the same interpreter (fed pre-quantised input). With
    `plain` (the same model without its unknown rule): classify() of `model` against the bare loop and
    classify() of `plain`, so the ratios carry the whole cost of the rule."""
    import numpy as np

    from edgecls.runtime import Classifier
    from edgecls.runtime.quant import input_converter

    clf = Classifier(model, num_threads=1)
    base = Classifier(plain, num_threads=1) if plain else clf
    pixels = np.random.default_rng(0).integers(0, 256, clf.input_spec.shape, dtype=np.uint8)
    ready = np.ascontiguousarray(input_converter(base.input_spec)(pixels[None]))
    interpreter = base.interpreter
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def bare() -> None:
        interpreter.set_tensor(inp, ready)
        interpreter.invoke()
        interpreter.get_tensor(out)

    n = _calls_per_round(bare, seconds)
    contenders = {"classify": lambda: _timed(lambda: clf.classify(pixels), n), "bare": lambda: _timed(bare, n)}
    if plain:
        contenders["classify plain"] = lambda: _timed(lambda: base.classify(pixels), n)
    runs = paired(contenders, rounds)
    result = {"bare_us": median(runs["bare"]) * 1e6, "classify_us": median(runs["classify"]) * 1e6,
              "ratio": ratio(runs["classify"], runs["bare"]), "calls_per_round": n}
    if plain:
        result["classify_plain_us"] = median(runs["classify plain"]) * 1e6
        result["ratio_to_classify_plain"] = ratio(runs["classify"], runs["classify plain"])
    return result


def worker_folder(model: str, folder: str, threads: int, rounds: int, seconds: float) -> dict:
    """P6: classify_many over the photos against a plain loop: open, draft(), convert, resize, invoke."""
    import numpy as np
    from PIL import Image

    from edgecls.runtime import Classifier
    from edgecls.runtime.quant import input_converter

    paths = sorted(Path(folder).glob("*.jpg"))
    clf = Classifier(model, num_threads=threads)
    plain = clf.backend.interpreter_class(model_path=model, num_threads=threads)
    plain.allocate_tensors()
    inp, out = plain.get_input_details()[0]["index"], plain.get_output_details()[0]["index"]
    to_input = input_converter(clf.input_spec)
    h, w = clf.input_spec.size
    mode, shape = ("L" if clf.input_spec.channels == 1 else "RGB"), (1, *clf.input_spec.shape)

    passes = 1  # the folder this many times a run: a round of one pass (~0.15 s) swung +-15 %

    def draft_loop() -> float:
        start = time.perf_counter()
        for path in paths * passes:
            image = Image.open(path)
            image.draft(mode, (w, h))
            image = image.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
            plain.set_tensor(inp, to_input(np.asarray(image, np.uint8).reshape(shape)))
            plain.invoke()
            plain.get_tensor(out).argmax()
        return len(paths) * passes / (time.perf_counter() - start)

    def ours() -> float:
        start = time.perf_counter()
        failed = sum(not p.ok for p in clf.classify_many(paths * passes, workers=threads))
        assert not failed
        return len(paths) * passes / (time.perf_counter() - start)

    draft_loop(), ours()  # warm the file cache and both interpreters
    passes = max(1, math.ceil(seconds * draft_loop() / len(paths)))  # each run >= `seconds`
    runs = paired({"classify_many": ours, "draft_loop": draft_loop}, rounds)
    return {"images": len(paths), "passes": passes, "threads": threads, "runs": runs}


def folder_figure(model: str, folder: str, threads: int, rounds: int, seconds: float, env: dict) -> dict:
    """P6 over fresh processes of two rounds each (A B, B A): which of two same-work loops wins by 1-2 %
    was decided by the process (where its allocator placed the images), not by the code — ten 3-round
    processes at one thread gave medians 0.96-1.01 — so a figure pools the rounds of several."""
    processes = max(2, math.ceil(rounds / 2))
    found = [in_worker(__file__, "folder", model, folder, str(threads), "2", str(seconds), env=env)
             for _ in range(processes)]
    ours = [x for f in found for x in f["runs"]["classify_many"]]
    loop = [x for f in found for x in f["runs"]["draft_loop"]]
    return {"images": found[0]["images"], "passes": found[0]["passes"], "threads": threads, "processes": processes,
            "draft_loop_images_per_s": median(loop, 2), "classify_many_images_per_s": median(ours, 2),
            "speedup": ratio(ours, loop)}


BARE_SCRIPT = """
import sys, numpy as np
from PIL import Image
{import_line}
it = Interpreter(model_path=sys.argv[1], num_threads={threads}); it.allocate_tensors()
d = it.get_input_details()[0]; h, w, c = (int(v) for v in d["shape"][1:])
x = np.asarray(Image.open(sys.argv[2]).convert("L" if c == 1 else "RGB").resize((w, h)), np.uint8).reshape(1, h, w, c)
x = (x.astype(np.int16) - 128).astype(np.int8) if d["dtype"] == np.int8 else x.astype(d["dtype"])
it.set_tensor(d["index"], x); it.invoke(); print(int(it.get_tensor(it.get_output_details()[0]["index"]).argmax()))
"""


def worker_cold(model: str, image: str, rounds: int, with_tf: bool, checkout: str, threads: int, venv: str = "",
                arm64: str = "") -> dict:
    """P5: whole processes, one image, at `threads`: edgecls predict, a bare LiteRT script, the same through
    TensorFlow. `venv`: the bin folder of a device venv (its console script and its python); else
    `python -m edgecls` of the checkout. With `arm64` (a qemu core): both under scripts/arm64-check's
    emulated Python instead, no TensorFlow."""
    env, python = checkout_env(Path(checkout)), [sys.executable]
    predict = [*python, "-m", "edgecls", "predict"]
    if venv:  # nothing but the venv's own edgecls
        env, python = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}, [str(Path(venv) / "python")]
        predict = [str(Path(venv) / "edgecls"), "predict"]
    if arm64:
        from arm64_check import Cache, emulated_side

        cache = Cache((ROOT / ".cache" / "arm64").resolve())
        side = emulated_side(cache, arm64)
        python, env = side.python, {**side.env, "PYTHONPATH": f"{cache.site}{os.pathsep}{Path(checkout).resolve()}"}
        predict, with_tf = [*python, "-m", "edgecls", "predict"], False
    commands = {
        "edgecls predict": [*predict, model, image, "--threads", str(threads)],
        # the same model calibrated by edgecls (its unknown rule: the IF wrapper, subgraph 1 run directly)
        "edgecls predict, unknown rule": [*predict, str(openset_model(model)), image, "--threads", str(threads)],
        "bare LiteRT": [*python, "-c", BARE_SCRIPT.format(
            import_line="from ai_edge_litert.interpreter import Interpreter", threads=threads), model, image],
    }
    if with_tf:
        commands["TensorFlow"] = [sys.executable, "-c", BARE_SCRIPT.format(
            import_line="import tensorflow as tf; Interpreter = tf.lite.Interpreter", threads=threads), model, image]
    where = Path(checkout)  # `python -m edgecls` imports the edgecls of its working directory first
    for command in commands.values():  # the page cache: "cold" is a new process, not a cold disk
        run_process(command, env, where)
    runs = paired({name: (lambda c=c: run_process(c, env, where)) for name, c in commands.items()}, rounds)
    wall = {name: [r[0] for r in rs] for name, rs in runs.items()}
    peak = {name: [r[1] for r in rs] for name, rs in runs.items()}
    result: dict = {name: {"wall_s": median(wall[name], 4), "peak_rss_mib": median(peak[name], 1)} for name in commands}
    result.update(threads=threads, how="console script of a device venv" if venv else "python -m edgecls",
                  rounds=rounds)
    result["wall_vs_bare"] = ratio(wall["edgecls predict"], wall["bare LiteRT"])
    result["peak_mib_over_bare"] = difference(peak["edgecls predict"], peak["bare LiteRT"], 1)
    result["unknown_rule_wall_vs_plain"] = ratio(wall["edgecls predict, unknown rule"], wall["edgecls predict"])
    result["unknown_rule_peak_mib_over_plain"] = difference(peak["edgecls predict, unknown rule"],
                                                            peak["edgecls predict"], 1)
    if with_tf:
        result["tensorflow_vs_edgecls"] = ratio(wall["TensorFlow"], wall["edgecls predict"])
    return result


# ----------------------------------------------------------------------------- inputs
def make_photos(folder: Path, count: int) -> Path:
    """Real cat/dog JPEGs (../shared/data/catsdogs) as they are; else smooth generated ones."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= count:
        return folder
    sources = sorted(CATSDOGS.rglob("*.jpg"))[:count] if CATSDOGS.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(count):
        if sources:
            image = Image.open(sources[i % len(sources)]).convert("RGB")
        else:  # smooth random colour fields: JPEG-compressible like photos, unlike pure noise
            image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((400, 300))
        image.save(folder / f"photo{i:04d}.jpg", quality=90)
    return folder


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--photos", type=int, default=200, help="real JPEGs for P6 [%(default)s]")
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per contender per round (P3, P4)")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench", help="models and photos [%(default)s]")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the edgecls checkout measured [this one]")
    parser.add_argument("--no-tensorflow", action="store_true", help="leave TensorFlow out of P5")
    parser.add_argument("--arm64", metavar="CORE", default="",
                        help="also P5 under the emulated aarch64 Python of scripts/arm64-check (e.g. cortex-a72)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    common_arguments(parser, "runs/perf/runtime.json")
    args = parser.parse_args()
    if args.worker:
        import json

        kind, *rest = args.worker
        workers = {"p3": lambda: worker_int8_vs_float(rest[0], rest[1], int(rest[2]), float(rest[3])),
                   "hot": lambda: worker_hot(rest[0], int(rest[1]), float(rest[2]), *rest[3:]),
                   "folder": lambda: worker_folder(rest[0], rest[1], int(rest[2]), int(rest[3]), float(rest[4])),
                   "cold": lambda: worker_cold(rest[0], rest[1], int(rest[2]), rest[3] == "tf", rest[4], int(rest[5]),
                                               *rest[6:])}
        print(json.dumps(workers[kind]()))
        return
    if args.smoke:
        args.rounds, args.photos, args.seconds, args.no_tensorflow = 2, 4, 0.01, True
    record = Record(__file__, args, args.checkout)
    figure = record.figure
    env = checkout_env(args.checkout)
    models = build_models(args.work / "models", ("seed",) if args.smoke else ("seed", "mobile"))
    photos = make_photos(args.work / (f"photos-{args.photos}"), args.photos)
    digit = args.work / "digit.png"
    if not digit.exists():
        from PIL import Image

        Image.open(sorted(photos.glob("*.jpg"))[0]).convert("L").resize((28, 28)).save(digit)
    archs = sorted({name.split("-")[0] for name in models}, reverse=True)  # seed, mobile
    rounds, seconds = str(args.rounds * PAIRS_PER_ROUND), str(args.seconds / PAIRS_PER_ROUND)
    for arch in archs:
        print(f"P3 {arch} int8 vs float32 ...", file=sys.stderr)
        figure(f"P3 {arch}", lambda arch=arch: in_worker(__file__, "p3", str(models[f"{arch}-int8"]),
                                                         str(models[f"{arch}-float32"]), rounds, seconds, env=env))
    for arch in archs:
        print(f"P4 {arch}-int8 classify vs bare ...", file=sys.stderr)
        figure(f"P4 {arch}-int8", lambda arch=arch: in_worker(__file__, "hot", str(models[f"{arch}-int8"]), rounds,
                                                              seconds, env=env))
        figure(f"P4 {arch}-int8 unknown rule", lambda arch=arch: in_worker(
            __file__, "hot", str(models[f"{arch}-int8-openset"]), rounds, seconds, str(models[f"{arch}-int8"]),
            env=env))
    venv = "" if args.smoke else str(device_venv(args.checkout, args.work / "device-venv"))
    cold_rounds = str(max(args.rounds, 15) if not args.smoke else args.rounds)  # >= 15 paired runs
    for threads in sorted({1, os.cpu_count() or 1}):
        print(f"P5 cold predict, {threads} thread(s) ...", file=sys.stderr)
        name = "P5 seed-int8" + ("" if threads == 1 else " all CPUs")
        figure(name, lambda threads=threads: in_worker(
            __file__, "cold", str(models["seed-int8"]), str(digit), cold_rounds,
            "no" if args.no_tensorflow or threads == 1 else "tf", str(args.checkout.resolve()), str(threads), venv))
    if args.arm64:
        if not (ROOT / ".cache" / "arm64" / "qemu").exists():
            record.data["skipped"] = {"P5 arm64": "no emulated environment: run scripts/arm64-check setup first"}
        else:
            print(f"P5 cold predict, emulated {args.arm64} ...", file=sys.stderr)
            figure(f"P5 seed-int8 arm64 {args.arm64}", lambda: in_worker(
                __file__, "cold", str(models["seed-int8"]), str(digit), str(max(3, args.rounds // 2)), "no",
                str(args.checkout.resolve()), "1", "", args.arm64))
    folder_model = models["mobile-int8" if "mobile-int8" in models else "seed-int8"]
    for threads in (1, 2):
        print(f"P6 folder, {threads} thread(s) ...", file=sys.stderr)
        figure(f"P6 {threads} thread{'s' if threads > 1 else ''}", lambda threads=threads: folder_figure(
            str(folder_model), str(photos), threads, max(3, args.rounds),
            args.seconds if args.smoke else max(args.seconds, FOLDER_SECONDS), env))
    record.data["targets"] = TARGETS
    record.write(args.json)


if __name__ == "__main__":
    main()
