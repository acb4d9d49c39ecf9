#!/usr/bin/env python3
"""From scratch against pretrained, side by side in one run: accuracy, int8 size, p50 latency at 1 thread.

Routes, each through the real commands (`edgecls train`, `edgecls export --quant int8`,
`edgecls bench run --threads 1`) on the same data and split seed, quick ones first:
  tflite:<backbone>                 `edgecls train --backbone FILE.tflite` for each Coral model in
                                    ../shared/data/pretrained (when this edgecls has that route)
  seed, mobile                      from scratch (the README's photo command for mobile)
  mobilenet_v2 (--weights none)     a Keras backbone, random start (this machine has no internet)
  mobilenet_v2 (--weights imagenet) tried; offline it stops with its one-line error, recorded
A model that export refuses as useless is exported with --force and flagged "collapsed".
The load average is printed before and after: the machine may be shared.

    python scripts/bench_backbones.py [--data ../shared/data/catsdogs] [--out bench-backbones] [--json FILE]
    python scripts/bench_backbones.py --smoke     # tiny generated folder, 1 epoch, 32 px, the seed route and the
                                                  # offline ImageNet one: checks the plumbing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PRETRAINED = SHARED / "pretrained"


def routes(smoke: bool) -> list[tuple[str, list[str]]]:
    """(name, extra `edgecls train` arguments) of every route, in table order."""
    keras_size = ["--alpha", "0.35"]  # the edge-sized MobileNetV2 (ImageNet weights exist for it)
    out = []
    if supports_tflite_backbone():  # first: the quick routes (a numpy head on cached embeddings)
        for model in sorted(PRETRAINED.glob("*.tflite")) if not smoke else []:
            out.append((f"tflite:{model.stem}", ["--backbone", str(model)]))
    out.append(("seed", ["--arch", "seed"]))
    if not smoke:  # the smoke: one CNN route and the offline ImageNet one (tests/test_backbones trains the others)
        out.append(("mobile", ["--arch", "mobile"]))
        out.append(("mobilenet_v2 (--weights none)", ["--arch", "mobilenet_v2", "--weights", "none", *keras_size]))
    out.append(("mobilenet_v2 (--weights imagenet)", ["--arch", "mobilenet_v2", "--weights", "imagenet",
                                                      *keras_size]))
    return out


def supports_tflite_backbone() -> bool:
    done = _edgecls("train", "--help")
    return "--backbone" in done.stdout


def _edgecls(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecls", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def _error_line(done: subprocess.CompletedProcess) -> str:
    prefix = "edgecls: error: "
    lines = [line[len(prefix):] for line in done.stderr.splitlines() if line.startswith(prefix)]
    tail = lines or done.stderr.strip().splitlines() or ["?"]
    return tail[-1]


def run_route(name: str, extra: list[str], data: str, common: list[str], folder: Path) -> dict:
    """Train, export int8 and bench one route; a row of the table (or the reason it has none)."""
    run = folder / name.split(" ")[0].replace(":", "-") / ("imagenet" if "imagenet" in name else "run")
    row: dict = {"route": name, "command": f"edgecls train --data {data} {' '.join(common + extra)}"}
    start = time.perf_counter()
    if "--backbone" in extra:  # the backbone fixes size and colour; the head keeps its own epochs
        common = ["--seed", "0"]
    trained = _edgecls("train", "--data", data, *common, *extra, "--out", run, "--quiet")
    row["train_export_seconds"] = round(time.perf_counter() - start, 1)
    if trained.returncode != 0:
        row["note"] = _error_line(trained)
        return row
    metrics = json.loads((run / "metrics.json").read_text())
    row.update(keras_test_accuracy=metrics.get("test_accuracy"), collapsed=bool(metrics.get("collapsed")),
               epochs_run=metrics.get("epochs_run"), test_images=metrics.get("counts", {}).get("test"))
    report_file = run / "export" / "export.json"
    if not report_file.exists():  # the .tflite-backbone route may write its model itself
        exported = _edgecls("export", run, "--quant", "int8", *(["--force"] if row["collapsed"] else []))
        if exported.returncode != 0:
            row["note"] = f"export: {_error_line(exported)}"
            return row
    row["train_export_seconds"] = round(time.perf_counter() - start, 1)
    bench_json = run / "bench-1thread.json"
    benched = _edgecls("bench", "run", run, "--threads", "1", "--no-memory", "--no-keras", "--runs", "100",
                       "--json", bench_json, "--report", run / "bench")
    if benched.returncode != 0:
        row["note"] = f"bench: {_error_line(benched)}"
        return row
    report = json.loads(bench_json.read_text())
    # The integer model: int8 from export; uint8 from a uint8 .tflite backbone (quantised like it).
    int8 = [m for m in report["models"] if m.get("kind") == "tflite" and m.get("mode") in ("int8", "uint8")]
    if int8:
        m = int8[0]
        one = next((lat for lat in m.get("latency", []) if lat["threads"] == 1), None)
        row.update(int8_file=f"{m['name']} ({m['mode']})", int8_test_accuracy=m["accuracy"]["top1"],
                   int8_bytes=m["size_bytes"], p50_ms_1thread=one["invoke_ms"]["p50"] if one else None)
    return row


def render(rows: list[dict], load: tuple[list[float], list[float]], data: str) -> str:
    lines = [f"data: {data}; load average (1, 5, 15 min) before {load[0]}, after {load[1]}", "",
             "| route | int8 test acc | keras test acc | int8 size | p50 ms (1 thread) | epochs | train+export s "
             "| note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        acc = f"{r['int8_test_accuracy']:.4f}" if r.get("int8_test_accuracy") is not None else "—"
        keras_acc = f"{r['keras_test_accuracy']:.4f}" if r.get("keras_test_accuracy") is not None else "—"
        size = f"{r['int8_bytes'] / 1024:.0f}K" if r.get("int8_bytes") else "—"
        p50 = f"{r['p50_ms_1thread']:.3f}" if r.get("p50_ms_1thread") is not None else "—"
        note = ("COLLAPSED (exported with --force); " if r.get("collapsed") else "") + r.get("note", "")
        lines.append(f"| {r['route']} | {acc} | {keras_acc} | {size} | {p50} | {r.get('epochs_run', '—')} | "
                     f"{r.get('train_export_seconds', '—')} | {note.strip('; ')} |")
    return "\n".join(lines)


def smoke_folder(root: Path) -> Path:
    """Two classes of 12 generated 40x40 photos-like images each (a colour per class)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("reds", "greens")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(12):
            pixels = rng.integers(0, 80, (40, 40, 3), dtype=np.uint8)
            pixels[..., c] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "catsdogs"))
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--out", type=Path, help="Folder for the runs (default: a temporary one, kept)")
    parser.add_argument("--json", type=Path, help="Also write the rows here")
    parser.add_argument("--epochs", type=int, help="Cap the CNN routes' epochs (default: edgecls' own, 30)")
    parser.add_argument("--smoke", action="store_true",
                        help="Tiny generated data, 1 epoch, 32 px; the seed route and the offline ImageNet one")
    args = parser.parse_args(argv)

    folder = args.out or Path(tempfile.mkdtemp(prefix="bench-backbones-"))
    folder.mkdir(parents=True, exist_ok=True)
    data, common = args.data, ["--img-size", str(args.img_size), "--color", "rgb", "--seed", "0"]
    if args.smoke:
        data = str(smoke_folder(folder / "data"))
        common = ["--img-size", "32", "--color", "rgb", "--seed", "0", "--epochs", "1", "--fine-tune-epochs", "0",
                  "--augment", "none", "--batch-size", "8"]
    if args.epochs and not args.smoke:
        common += ["--epochs", str(args.epochs)]
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for name, extra in routes(args.smoke):
        print(f"... {name}", file=sys.stderr, flush=True)
        rows.append(run_route(name, extra, data, common, folder))
    table = render(rows, (load_before, [round(v, 2) for v in os.getloadavg()]), data)
    print(table)
    print(f"\nruns in {folder}")
    if args.json:
        args.json.write_text(json.dumps({"data": data, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
