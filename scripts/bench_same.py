#!/usr/bin/env python3
"""Does a change keep `edgecls bench`'s report the same? Run the same benches with two checkouts and
compare their bench.json outside the timings (latencies, peak memory sizes, the advice that follows from
them, the sustained run's samples, the date): any other difference is a change of behaviour.

    python scripts/bench_same.py --before 6d9a5c2            # a commit of this repository (git archive)
    python scripts/bench_same.py --before /tmp/old-checkout  # or a folder holding an edgecls/ package
    python scripts/bench_same.py --before HEAD --run runs/digits   # also a run directory's bench (Keras)
    python scripts/bench_same.py --before HEAD --smoke       # two cases, the fewest runs

The cases bench the reference models (models/digits-seed: an edgecls float32 and int8 .tflite and the
test images `bench --save-test-images` wrote): edgecls' own route, model settings (--input-range,
--resize, --fit), a third-party route (--labels), --latency-only, --unknown-data, a device profile
and --sustain; with --run, a run directory (its test split, the Keras reference). Each runs as
`python -m edgecls bench ...` from a scratch folder, the package of each checkout first on the path.
Prints one line a case (same / DIFFERENT, with the differing fields) and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ROOT, checkout_env  # noqa: E402

SEED = ROOT / "models" / "digits-seed"
FAST = ["--threads", "1", "--warmup", "1", "--runs", "4", "--batch-size", "4"]


def cases(run: Path | None, smoke: bool) -> dict[str, list[str]]:
    """Case name -> `edgecls bench` arguments (before --json)."""
    models = [str(SEED / "model_float32.tflite"), str(SEED / "model_int8.tflite")]
    data = ["--data", str(SEED / "test-images")]
    found = {
        "edgecls models, saved test images": [*models, *data, *FAST],
        "--labels (third-party route)": [*models, *data, "--labels", str(SEED / "labels.txt"), *FAST, "--no-memory"],
    }
    if smoke:
        return found
    found.update({
        "--input-range, --resize nearest, --fit crop": [*models, *data, "--input-range", "0,255", "--resize",
                                                        "nearest", "--fit", "crop", *FAST],
        "--latency-only, random images": [*models, "--latency-only", *FAST, "--no-memory"],
        "--latency-only, a folder": [*models, "--latency-only", *data, *FAST, "--no-memory"],
        "--unknown-data": [*models, *data, "--unknown-data", str(SEED / "test-images" / "7"), *FAST, "--no-memory"],
        "--device rpi5, --sustain 2s": [*models, *data, "--device", str(ROOT / "devices" / "rpi5.toml"),
                                       "--sustain", "2s", *FAST[2:], "--no-memory"],
    })
    if run is not None:
        found["a run directory (Keras reference)"] = [str(run.resolve()), *FAST, "--no-memory"]
    return found


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The report without what is measured anew each run: timings, memory sizes, the date, and the
    advice and sustained figures that follow from timings."""
    doc = json.loads(json.dumps(doc))
    for key in ("created", "command", "report_files"):
        doc.pop(key, None)
    for model in doc.get("models", []):
        model.pop("latency", None)
        if model.get("memory"):
            model["memory"].pop("peak_rss_mb", None)
    if doc.get("memory_baseline"):
        doc["memory_baseline"].pop("peak_rss_mb", None)
    for section in doc.get("sections", []):
        if section.get("key") == "advice":  # which file is fastest, by how much: timings, all of it
            section["rows"] = section["notes"] = section["data"] = "timings"
        elif section.get("key") == "sustained":  # the models run and the keys recorded; the samples are timings
            data = section.get("data") or {}
            section["rows"] = [row[0] for row in section.get("rows") or []]
            section["notes"] = "timings"
            section["data"] = {"keys": sorted(data), "models": data.get("models")}
    return doc


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in (differences(a.get(key), b.get(key), f"{where}.{key}") if key in a and key in b
                          else [f"{where}.{key}: only in {'before' if key in a else 'after'}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where or '.'}: {json.dumps(a)[:160]} -> {json.dumps(b)[:160]}"]


def package_of(before: str, scratch: Path) -> Path:
    """A folder whose edgecls/ is the `before` checkout's package: the folder itself, or REF's tree."""
    folder = Path(before)
    if (folder / "edgecls" / "__init__.py").is_file():
        return folder.resolve()
    target = scratch / "before"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", before, "edgecls"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def bench(package: Path, args: list[str], out: Path, scratch: Path) -> dict[str, Any]:
    env = {**os.environ, **checkout_env(package), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "edgecls", "bench", *args, "--json", str(out)], cwd=scratch,
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1], "exit": done.returncode}
    return json.loads(out.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a commit (git archive of its edgecls/) or a checkout folder")
    parser.add_argument("--run", type=Path, help="also bench this run directory (needs TensorFlow)")
    parser.add_argument("--keep", type=Path, help="keep every bench.json in this folder")
    parser.add_argument("--smoke", action="store_true", help="two cases only")
    args = parser.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="bench-same-") as tmp:
        scratch = Path(tmp)
        before = package_of(args.before, scratch)
        for i, (name, bench_args) in enumerate(cases(args.run, args.smoke).items()):
            docs = [bench(package, bench_args, scratch / f"{i}-{side}.json", scratch)
                    for side, package in (("before", before), ("after", ROOT))]
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for side, doc in zip(("before", "after"), docs):
                    (args.keep / f"{i}-{side}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
            found = differences(*map(comparable, docs))
            failed += bool(found)
            print(f"{'same' if not found else 'DIFFERENT'}: {name}")
            for line in found[:20]:
                print(f"    {line}")
    print(f"{failed} of {i + 1} case(s) differ outside the timings" if failed else
          f"all {i + 1} case(s) the same outside the timings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
