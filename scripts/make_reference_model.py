#!/usr/bin/env python3
"""Make models/digits-seed/: the reference model, made by the toolkit itself.

Runs the README's main job on the embedded digits dataset with a fixed seed — train, export
(float32 and full int8), bench — through the edgecls commands, then copies the device-side
artifacts into models/digits-seed/: the .tflite files (labels and input spec embedded),
labels.txt, export.json, the bench report (JSON, Markdown, plots), the held-out test images
(test-images/, for a bench on a device) and the training metrics.

    python scripts/make_reference_model.py [--work runs/reference] [--no-bench]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "models" / "digits-seed"
KEEP_FROM_RUN = ("metrics.json", "config.toml", "curves.png", "labels.txt")
KEEP_FROM_EXPORT = ("model_float32.tflite", "model_int8.tflite", "export.json")


def edgecls(*args: str) -> None:
    print("$ edgecls", " ".join(args), flush=True)
    # Run from the repository root with relative paths, so no machine's paths end up in the files.
    subprocess.run([sys.executable, "-m", "edgecls", *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs") / "reference-digits-seed",
                        help="run directory, relative to the repository root")
    parser.add_argument("--no-bench", action="store_true", help="train and export only")
    args = parser.parse_args()

    run = args.work
    local = ROOT / run
    edgecls("train", "--data", "digits", "--arch", "seed", "--seed", "0", "--out", str(run), "--force", "--quiet")
    edgecls("export", str(run), "--quant", "float32,int8")
    staging = TARGET.with_name(TARGET.name + ".partial")
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
    shutil.rmtree(TARGET, ignore_errors=True)
    staging.rename(TARGET)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
