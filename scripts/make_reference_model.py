#!/usr/bin/env python3
"""Make models/digits-seed/: the reference model, made by the toolkit itself.

Runs the README's main job (its first command: `edgecls train --out runs/digits --force`, then
export float32 and full int8, then bench; the digits dataset, the seed CNN and seed 0 are the
defaults) through the edgecls commands, in the same run directory, so the reference is what that
command makes (tests/test_reference.py holds the two together). Then it copies the device-side
artifacts into models/digits-seed/: the .tflite files (labels and input spec embedded),
labels.txt, export.json, the bench report (JSON, Markdown, plots), the held-out test images
(test-images/, for a bench on a device) and the training metrics.

    python scripts/make_reference_model.py [--work runs/digits] [--no-bench]
    python scripts/make_reference_model.py --smoke    # 1 epoch, no bench, into a temporary folder
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "models" / "digits-seed"
README_RUN = Path("runs") / "digits"
KEEP_FROM_RUN = ("metrics.json", "config.toml", "curves.png", "labels.txt")
KEEP_FROM_EXPORT = ("model_float32.tflite", "model_int8.tflite", "export.json")


def edgecls(*args: str) -> None:
    print("$ edgecls", " ".join(args), flush=True)
    # Run from the repository root with relative paths, so no machine's paths end up in the files.
    subprocess.run([sys.executable, "-m", "edgecls", *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The README's run directory: the run's config.toml, which records it, is then the one a user's run writes.
    parser.add_argument("--work", type=Path, default=README_RUN,
                        help=f"run directory, relative to the repository root [{README_RUN}]")
    parser.add_argument("--no-bench", action="store_true", help="train and export only")
    parser.add_argument("--target", type=Path, default=TARGET, help="where the artifacts go [models/digits-seed]")
    parser.add_argument("--smoke", action="store_true",
                        help="1 epoch, no bench, into a temporary folder: checks the script still runs")
    args = parser.parse_args()
    epochs: tuple[str, ...] = ()
    if args.smoke:
        smoke = Path(tempfile.mkdtemp(prefix="edgecls-reference-smoke-"))
        args.work, args.target, args.no_bench, epochs = smoke / "run", smoke / "digits-seed", True, ("--epochs", "1")

    run = args.work
    local = ROOT / run
    target = args.target.resolve()
    edgecls("train", "--data", "digits", "--arch", "seed", "--seed", "0", "--out", str(run), "--force", "--quiet",
            *epochs)
    edgecls("export", str(run), "--quant", "float32,int8")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in KEEP_FROM_RUN:
        shutil.copy2(local / name, staging / name)
    for name in KEEP_FROM_EXPORT:
        shutil.copy2(local / "export" / name, staging / name)
    if not args.no_bench:
        # test-images/: the run's held-out test split as PNG class folders, so a device with no
        # training data and no scikit-learn benches on exactly these images (--data test-images).
        here = staging.relative_to(ROOT)
        edgecls("bench", str(run), "--threads", "1,2", "--report", str(here / "report"),
                "--save-test-images", str(here / "test-images"))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
