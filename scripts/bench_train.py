#!/usr/bin/env python3
"""P7, training overhead: edgecls's fit (its tf.data input pipeline and callbacks) against a plain
Keras `fit` on float32 arrays, one epoch against one epoch.

Both sides train the same seed CNN on the same uint8 images, with the same batch size, optimizer,
augmentation layers in front of the model (edgecls' defaults for the data) and determinism
(seeded, tf.config.experimental.enable_op_determinism). Paired per round (see benchkit): each round
builds fresh models and fits a few epochs on each side, in turn; the figure is the median of the
per-round ratios of the steady epochs (the first epoch, with tracing, is reported apart).

    python scripts/bench_train.py [--data ../shared/data/mnist] [--rounds 3] [--epochs 3] [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import SHARED_DATA, Record, common_arguments, median, paired, ratio  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a dataset edgecls train takes [%(default)s]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    common_arguments(parser, "runs/perf/train.json")
    args = parser.parse_args()
    if args.smoke:
        args.data, args.rounds, args.epochs = "digits", 1, 2
    from edgecls.data import BUILTIN_DATASETS

    if args.data not in BUILTIN_DATASETS and not Path(args.data).exists():
        raise SystemExit(f"no such data: {args.data} (give --data, e.g. digits)")  # never a silent fallback

    from edgecls.data import load_dataset, make_split
    from edgecls.errors import require_tensorflow
    from edgecls.train.job import _fill_mode, input_pipeline
    from edgecls.train.model import build_augmentation, build_model, default_augmentations
    from edgecls.train.options import TrainOptions, with_arch_defaults

    record = Record(__file__, args)
    tf = require_tensorflow("this benchmark")
    import keras

    dataset = load_dataset(args.data)
    split = make_split(dataset, 0.1, 0.1, seed=0)
    n_classes = len(dataset.class_names)
    x_train = dataset.images[split.train].astype(np.float32)  # what a plain Keras user holds
    y_train = keras.utils.to_categorical(dataset.labels[split.train], n_classes)
    x_val = dataset.images[split.val].astype(np.float32)
    y_val = keras.utils.to_categorical(dataset.labels[split.val], n_classes)
    shape = dataset.images.shape[1:]
    augment = default_augmentations(args.data)
    tf.config.experimental.enable_op_determinism()

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    seed_defaults = with_arch_defaults(TrainOptions(arch="seed"))  # what edgecls train uses for it

    def compiled(seed: int):
        keras.utils.set_random_seed(seed)
        model = build_model("seed", shape, n_classes)
        augmentation = build_augmentation(augment, seed, fill_mode=_fill_mode(dataset.color))
        trainer = keras.Sequential([augmentation, model]) if augmentation else model
        trainer.compile(optimizer=keras.optimizers.Adam(seed_defaults.lr), loss=keras.losses.CategoricalCrossentropy(),
                        metrics=["accuracy"])
        return trainer

    def edgecls_fit(seed: int) -> list[float]:
        timer = EpochTimer()
        callbacks = [timer, keras.callbacks.EarlyStopping(monitor="val_loss", patience=seed_defaults.patience,
                                                          restore_best_weights=True),
                     keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                       patience=max(1, seed_defaults.patience // 2))]
        compiled(seed).fit(input_pipeline(tf, dataset, split.train, args.batch_size, n_classes, shuffle_seed=seed),
                           validation_data=input_pipeline(tf, dataset, split.val, args.batch_size, n_classes),
                           epochs=args.epochs, verbose=0, callbacks=callbacks, shuffle=False)
        return timer.times

    def plain_fit(seed: int) -> list[float]:
        timer = EpochTimer()
        compiled(seed).fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=args.batch_size,
                           epochs=args.epochs, verbose=0, callbacks=[timer])
        return timer.times

    def p7() -> dict:
        seeds = iter(range(10_000))
        runs = paired({"edgecls": lambda: edgecls_fit(next(seeds)), "plain": lambda: plain_fit(next(seeds))},
                      args.rounds)
        steady = {name: [statistics.median(t[1:]) if len(t) > 1 else t[0] for t in rs] for name, rs in runs.items()}
        first = {name: [t[0] for t in rs] for name, rs in runs.items()}
        return {
            "data": args.data, "train_images": int(len(split.train)), "augment": augment,
            "batch_size": args.batch_size, "epochs": args.epochs,
            "edgecls_steady_epoch_s": median(steady["edgecls"], 3),
            "plain_steady_epoch_s": median(steady["plain"], 3),
            "steady_ratio": ratio(steady["edgecls"], steady["plain"]),
            "first_epoch_ratio": ratio(first["edgecls"], first["plain"]), "epoch_times": runs,
        }

    record.figure("P7", p7)
    record.write(args.json)


if __name__ == "__main__":
    main()
