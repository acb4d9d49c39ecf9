#!/usr/bin/env python3
"""Figures for third-party models: the score of pycoral's check image under every resize and fit.

pycoral's own test expects cat.bmp to be 286 "Egyptian cat" with score > 0.67 on
mobilenet_v1_0.5_160_quant; whether that holds depends on how the picture is resized. Prints one
row per model, resize method and fit: the top class and its score (device side only: no TensorFlow).

    python scripts/resize_figures.py [--pretrained ../shared/data/pretrained] [--smoke]

--smoke: the 0.5_160 model only, stretch only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecls.runtime import Classifier
from edgecls.runtime.preprocess import FITS, RESIZE_METHODS

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("mobilenet_v1_0.5_160_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, default=ROOT.parent / "shared" / "data" / "pretrained")
    parser.add_argument("--smoke", action="store_true", help="one model, stretch only")
    args = parser.parse_args()
    labels, image = args.pretrained / "imagenet_labels.txt", args.pretrained / "cat.bmp"
    models = MODELS[:1] if args.smoke else MODELS
    fits = FITS[:1] if args.smoke else FITS
    print(f"{'model':<36} {'resize':<9} {'fit':<8} {'top-1':<22} score  Egyptian cat (286)")
    for name in models:
        for fit in fits:
            for resize in RESIZE_METHODS:
                clf = Classifier(args.pretrained / name, labels=labels, num_threads=1, resize=resize, fit=fit)
                top = clf.classify(image, top_k=1)[0]
                egyptian = float(clf.probabilities(clf.preprocess(image)[None])[0, 286])
                print(f"{name:<36} {resize:<9} {fit:<8} {f'{top.index} {top.label}'[:22]:<22} {top.score:.3f}  "
                      f"{egyptian:.3f}")


if __name__ == "__main__":
    main()
