"""Figures for `edgecls export --target` (issue 15): the decision table of each run under the rpi4
and rpi5 profiles on this host (this host's CPUs under the profiles' constraints, not a Pi).

    python scripts/export_target.py                 # digits, MNIST and catsdogs; trains the runs that are missing
    python scripts/export_target.py --smoke         # a 1-epoch digits run, two candidates, rpi5: checks the script runs
    python scripts/export_target.py --runs /tmp/digits /tmp/mnist --targets rpi5

Runs are trained (when RUN/model.keras is missing) with the issue's commands:
    edgecls train --out /tmp/digits
    edgecls train --data ../shared/data/mnist --epochs 8 --out /tmp/mnist
    edgecls train --data ../shared/data/catsdogs --arch seed --color rgb --img-size 64 --epochs 10 --out /tmp/cd
Each search writes RUN/target-<profile>/ (model.tflite, export.json, target.png); the printed
table is export.json's, one line per candidate, with the chosen file's test figures under it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {
    "/tmp/digits": [],
    "/tmp/mnist": ["--data", "../shared/data/mnist", "--epochs", "8"],
    "/tmp/cd": ["--data", "../shared/data/catsdogs", "--arch", "seed", "--color", "rgb", "--img-size", "64",
                "--epochs", "10"],
}


def edgecls(*args: str) -> None:
    # A private TMPDIR: on a shared machine, others' clean-ups of /tmp must not reach our SavedModels.
    private = Path(tempfile.mkdtemp(prefix="export-target-tmp-"))
    try:
        result = subprocess.run([sys.executable, "-m", "edgecls", *args], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "TMPDIR": str(private)})
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if result.returncode != 0:
        sys.exit(f"edgecls {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def table(doc: dict) -> str:
    decision = doc["decision"]
    lines = [f"{'candidate':<16} {'status':<9} {'val acc':>7} {'Δ pt':>6} {'agree':>6} {'p50 ms':>8} {'size':>8}  why"]
    for c in doc["candidates"]:
        if "val" in c:
            v = c["val"]
            p50 = c.get("latency", {}).get("invoke_ms", {}).get("p50")
            lines.append(f"{c['name']:<16} {c['status']:<9} {v['accuracy']:7.4f} {-v['drop_points']:+6.2f} "
                         f"{v['agreement']:6.4f} {p50 if p50 is None else f'{p50:8.3f}':>8} "
                         f"{c['size_bytes'] / 1024:7.1f}K  {'; '.join(c['reasons'])}")
        else:
            lines.append(f"{c['name']:<16} {c['status']:<9} {'':>42}  {'; '.join(c['reasons'])}")
    test = decision["test"]
    lines.append(f"chosen {decision['chosen']['name']}; Keras float val {doc['check']['keras_accuracy']:.4f} "
                 f"({doc['check']['images']} images). TEST split, after the choice ({test['images']} images): "
                 f"{test['accuracy']:.4f} vs Keras float {test['keras_accuracy']:.4f} "
                 f"({-test['drop_points']:+.2f} pt), "
                 f"agreement {test['agreement']:.4f}. Search {doc['seconds']:.0f} s.")
    lines.append(decision["measured"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a 1-epoch digits run, two candidates, rpi5")
    parser.add_argument("--runs", nargs="*", default=list(TRAIN), help="run directories (trained when missing)")
    parser.add_argument("--targets", nargs="*", default=["rpi4", "rpi5"])
    parser.add_argument("--max-drop", default="0.5")
    parser.add_argument("--timing-runs", default="200")
    args = parser.parse_args()
    extra: list[str] = []
    if args.smoke:
        args.runs, args.targets, args.timing_runs = ["/tmp/edgecls-target-smoke"], ["rpi5"], "10"
        extra = ["--candidates", "float32,int8"]
    for run in map(Path, args.runs):
        if not (run / "model.keras").is_file():
            options = ["--epochs", "1"] if args.smoke else TRAIN.get(str(run), [])
            print(f"training {run} ...", flush=True)
            edgecls("train", "--out", str(run), "--quiet", *options)
        for target in args.targets:
            out = run / f"target-{target}"
            edgecls("export", str(run), "--target", target, "--max-drop", args.max_drop, "--timing-runs",
                     args.timing_runs, "--out", str(out), *extra)
            doc = json.loads((out / "export.json").read_text(encoding="utf-8"))
            print(f"\n== {run} --target {target} --max-drop {args.max_drop} ==\n{table(doc)}\n"
                  f"  plot: {out / 'target.png'}", flush=True)


if __name__ == "__main__":
    main()
