#!/usr/bin/env python3
"""Training overhead: edgecls's input pipeline and callbacks versus a plain Keras `fit` on arrays.

Both sides train the same seed CNN on the same uint8 images with the same batch size and
optimizer, no augmentation (a plain fit has none). Measured interleaved (edgecls, plain,
edgecls, plain, ...) in one process, since this machine is shared and noisy; each round
builds fresh models and fits a few epochs, timing every epoch with a callback. Reported:
median first epoch (includes tracing) and median steady-state epoch, and their ratios.

    python scripts/bench_train.py [--data ../shared/data/mnist] [--rounds 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgecls.data import load_dataset, make_split
from edgecls.errors import require_tensorflow
from edgecls.train.fit import input_pipeline
from edgecls.train.model import build_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "digits")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    tf = require_tensorflow("this benchmark")
    import keras

    dataset = load_dataset(args.data, progress=False)
    split = make_split(dataset, 0.1, 0.1, seed=0)
    n_classes = len(dataset.class_names)
    x_train = dataset.images[split.train].astype(np.float32)  # what a plain Keras user holds
    y_train = keras.utils.to_categorical(dataset.labels[split.train], n_classes)
    x_val = dataset.images[split.val].astype(np.float32)
    y_val = keras.utils.to_categorical(dataset.labels[split.val], n_classes)
    shape = dataset.images.shape[1:]

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    def compiled_model(seed: int):
        keras.utils.set_random_seed(seed)
        model = build_model("seed", shape, n_classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(),
                      metrics=["accuracy"])
        return model

    def run_edgecls(seed: int) -> list[float]:
        model = compiled_model(seed)
        timer = EpochTimer()
        timer.times = []
        callbacks = [timer, keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True),
                     keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3)]
        model.fit(input_pipeline(tf, dataset, split.train, args.batch_size, n_classes, shuffle_seed=seed),
                  validation_data=input_pipeline(tf, dataset, split.val, args.batch_size, n_classes),
                  epochs=args.epochs, verbose=0, callbacks=callbacks, shuffle=False)
        return timer.times

    def run_plain(seed: int) -> list[float]:
        model = compiled_model(seed)
        timer = EpochTimer()
        timer.times = []
        model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=args.batch_size,
                  epochs=args.epochs, verbose=0, callbacks=[timer])
        return timer.times

    results = {"edgecls": [], "plain": []}
    for r in range(args.rounds):
        for name, fn in (("edgecls", run_edgecls), ("plain", run_plain)) if r % 2 == 0 else \
                (("plain", run_plain), ("edgecls", run_edgecls)):
            results[name].append(fn(r))
            print(f"round {r + 1} {name:8s} epochs: {', '.join(f'{t:.2f}s' for t in results[name][-1])}", flush=True)

    summary = {}
    for name, runs in results.items():
        summary[name] = {"first_epoch_s": float(np.median([t[0] for t in runs])),
                         "steady_epoch_s": float(np.median([x for t in runs for x in t[1:]]))}
    ratio_first = summary["edgecls"]["first_epoch_s"] / summary["plain"]["first_epoch_s"]
    ratio_steady = summary["edgecls"]["steady_epoch_s"] / summary["plain"]["steady_epoch_s"]
    report = {
        "data": args.data, "train_images": int(len(split.train)), "batch_size": args.batch_size,
        "rounds": args.rounds, "epochs": args.epochs, "summary": summary,
        "ratio_first_epoch": round(ratio_first, 3), "ratio_steady_epoch": round(ratio_steady, 3),
        "machine": {"cpu": _cpu_model(), "cores": __import__("os").cpu_count(), "python": platform.python_version(),
                    "tensorflow": tf.__version__},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
