"""`edgecls train`: fit a model on a dataset and write a complete run directory.

The run directory holds everything export and bench need: model.keras (the inference
model, without augmentation), labels.txt, config.toml, split.json, history.csv,
curves.png and metrics.json. It is written to a temporary folder and renamed at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.artifacts import (
    CURVES_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    RunConfig,
    RunRecord,
)
from edgecls.atomic import check_new_dir, staged_dir
from edgecls.data import BUILTIN_DATASETS, Dataset, Split, check_source, load_dataset, reuse_split
from edgecls.duplicates import check_hint, dedupe_metrics, grouped_split
from edgecls.errors import EdgeclsError, require_tensorflow
from edgecls.provenance import run_versions, sha256_file
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.metrics import accuracy_text, correct_count
from edgecls.train.options import TrainOptions, options_table, with_arch_defaults
from edgecls.train.quality import assess, backbone_hint, quality_warnings


@dataclass
class Phase:
    """One call of fit: its epochs and learning rate, and what of a Keras backbone trains."""

    name: str
    epochs: int
    lr: float
    freeze: Optional[str] = None  # None: everything trains; "all": the backbone frozen; "top": its top blocks train


def training_phases(options: TrainOptions) -> list[Phase]:
    """One phase from scratch; a pretrained backbone gets a frozen phase (the new head learns), then
    fine-tuning of its top blocks at a lower learning rate (so the head's start is not wrecked)."""
    options = with_arch_defaults(options)
    lr = options.lr
    if not options.is_backbone or options.weights == "none":
        return [Phase("train", options.epochs, lr)]
    phases = [Phase("frozen", options.epochs, lr, "all")]
    if options.fine_tune_epochs:
        phases.append(Phase("fine-tune", options.fine_tune_epochs, options.fine_tune_lr or lr / 10, "top"))
    return phases


@dataclass
class TrainResult:
    run_dir: Path
    test_accuracy: Optional[float]  # None: the test split was held back (score_test=False)
    val_accuracy: float
    epochs_run: int
    seconds: float
    metrics: dict
    data: str = ""  # the data as given (for the summary's data-check hint)
    options: Optional[TrainOptions] = None  # as given (with the architecture's defaults): for the advice

    def summary(self) -> str:
        """The closing lines `edgecls train` prints: the figures with their weight (count, 95 % interval),
        what was written, what to run next (and, after a weak from-scratch photo run, a pretrained backbone)."""
        m = self.metrics
        n_test, n_val = m["counts"]["test"], m["counts"]["val"]
        written = ", ".join((MODEL_FILE, LABELS_FILE, SPLIT_FILE, METRICS_FILE, CURVES_FILE))
        tested = (f"Test accuracy {accuracy_text(correct_count(self.test_accuracy, n_test), n_test)}"
                  if self.test_accuracy is not None else "Test split not scored (held back for a later choice)")
        lines = [
            "",
            f"{tested}. Test images: {m.get('test_source') or 'the held-out test split'}.",
            f"Validation {accuracy_text(correct_count(self.val_accuracy, n_val), n_val)}; best epoch "
            f"{m['best_epoch']} of {self.epochs_run}; {self.seconds:.0f} s of training.",
            f"Run directory: {self.run_dir} ({written}).",
            f"Next: edgecls export {self.run_dir}",
        ]
        origin = m.get("from")
        if origin:  # a retrained run: its figures are comparable with RUN's, on the same test images
            run = self.options.from_run if self.options is not None and self.options.from_run else origin["run"]
            lines.append(f"Then: edgecls bench compare {run} {self.run_dir}")
        check = check_hint(m.get("dedupe"), self.data).strip()  # groups kept together, duplicates dropped
        if check:
            lines.append(check)
        o = self.options
        hint = o and backbone_hint(self.val_accuracy, o.arch, o.color or "", o.data,
                                   not o.is_backbone or o.weights == "none")
        if hint:
            lines.append(f"Or: {hint}")
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """What the quality check found (train.quality), the refusal to ship a collapsed model last."""
        return quality_warnings(self.metrics, "edgecls export refuses it without --force")


def default_run_dir(options: TrainOptions) -> Path:
    if options.from_run is not None:  # beside RUN: RUN-2, RUN-3, ...
        from edgecls.retraining import next_run_dir

        return next_run_dir(options.from_run)
    name = Path(options.data.rstrip("/")).name  # "digits" for digits, the folder's name for a path
    return Path("runs") / f"{name}-{options.arch}"


def train(options: TrainOptions, force: bool = False, reporter: Reporter = SILENT, *, split: Optional[dict] = None,
          score_test: bool = True, time_limit_s: Optional[float] = None) -> TrainResult:
    """Train per `options` and write the run directory; returns its figures. `reporter` says what it does
    (with bars, Keras' epoch bars too; else one line per epoch).

    For a caller that compares runs (edgecls.search): `split` is a split.json document to train on instead
    of making one (checked against the data), `score_test=False` leaves the test split unread (its figures
    come after the caller's choice), and `time_limit_s` stops fitting before an epoch that would pass it
    (the best epoch's weights are kept)."""
    if options.backbone is not None:  # that run is edgecls.transfer.job's (no Keras model to fit)
        raise EdgeclsError("a .tflite --backbone is trained by edgecls.transfer.job.train_from_options, "
                           "not the CNN route")
    out = check_new_dir(Path(options.out) if options.out else default_run_dir(options), force)  # before TensorFlow
    check_source(options.data)  # so is a --data that names nothing
    if options.from_run is not None:  # read RUN's records now: a run that is none is refused before TensorFlow
        RunRecord.read(Path(options.from_run))
    options = with_arch_defaults(options)
    tf = require_tensorflow("edgecls train")
    configure_cpu_devices(tf)
    import keras

    from edgecls.train.batchnorm import REFRESH_IMAGES
    from edgecls.train.model import (
        build_augmentation,
        build_model,
        default_augmentations,
    )

    with staged_dir(out, force=force) as tmp:
        retrain = None
        if options.from_run is not None:  # RUN's data and split, grown by the --add folders' images
            from edgecls.retraining import retraining_data

            retrain = retraining_data(options.from_run, options.add or [], options.data, options.img_size,
                                      options.color, options.dedupe, (options.val_fraction, options.test_fraction),
                                      reporter)
            dataset, split = retrain.dataset, retrain.split
        else:
            dataset = load_dataset(options.data, options.img_size, options.color, reporter=reporter)
            _report_skipped(dataset, reporter)
            split = (reuse_split(split, dataset) if split is not None else
                     grouped_split(dataset, options.dedupe, options.val_fraction, options.test_fraction,
                                   options.seed, reporter))
        h, w = dataset.image_size
        augment = options.augment_list() if options.augment is not None else default_augmentations(options.data)
        data = options.data if options.data in BUILTIN_DATASETS else str(Path(options.data).expanduser().resolve())
        resolved = TrainOptions(**{**options_table(options), "data": data, "out": str(out), "img_size": h,
                                   "color": dataset.color,
                                   "augment": ",".join(augment) or "none",
                                   **(retrain.options() if retrain is not None else {})})

        keras.utils.set_random_seed(options.seed)
        tf.config.experimental.enable_op_determinism()
        strategy = make_strategy(tf, options.strategy)
        n_classes = len(dataset.class_names)
        with strategy.scope():
            model = build_model(options.arch, (h, w, dataset.images.shape[3]), n_classes,
                                kernel_size=options.kernel_size, activation=options.activation, dropout=options.dropout,
                                alpha=options.alpha, weights=options.weights)
            augmentation = build_augmentation(augment, options.seed, fill_mode=_fill_mode(dataset.color))
            # Augmentation sits in front of the model only while fitting; the saved model is `model`. A teacher
            # must see the student's view, so distillation (and mixup) augment in the input pipeline instead.
            trainer = keras.Sequential([augmentation, model]) if augmentation and not distilling(options) else model
        taught = Taught.prepare(options, dataset, split, reporter) if distilling(options) else None
        pictures = len(split.train) + (taught.unlabeled_count if taught else 0)
        steps = train_steps(pictures, options.batch_size)
        repeated = steps > -(-pictures // options.batch_size)  # a short split is repeated to `steps`
        if taught is not None:
            train_data = taught.pipeline(tf, dataset, split.train, options, augmentation)
            val_data = taught.validation(tf, input_pipeline(tf, dataset, split.val, options.batch_size, n_classes))
        else:
            train_data = input_pipeline(tf, dataset, split.train, options.batch_size, n_classes,
                                        shuffle_seed=options.seed, repeat=repeated)
            val_data = input_pipeline(tf, dataset, split.val, options.batch_size, n_classes)
        reporter(
            f"Training {options.arch} on {dataset.source}: {len(split.train)} train / {len(split.val)} val / "
            f"{len(split.test)} test images, {h}x{w} {dataset.color}, {n_classes} classes, "
            f"augment: {','.join(augment) or 'none'}"
        )
        reporter(f"Test images: {split.test_source}")
        if repeated:
            reporter(f"Small train split: an epoch is {steps} batches ({steps * options.batch_size} augmented images, "
                f"the {len(split.train)} train images repeated), so early stopping sees real progress")
        # Un-augmented train images for the batch-norm statistics (edgecls.train.batchnorm), seeded.
        bn_images = np.asarray(dataset.images[np.sort(np.random.default_rng(options.seed).permutation(split.train)
                                                      [:REFRESH_IMAGES])])
        start = time.perf_counter()
        history: dict[str, list] = {}
        phases = training_phases(options)
        stopped_for_time = False
        for phase in phases:
            if phase.freeze is not None:
                from edgecls.train.backbones import set_frozen

                unfrozen = set_frozen(model, options.arch, fine_tune=phase.freeze == "top")
                reporter(f"Phase {phase.name}: {phase.epochs} epochs at lr {phase.lr:g}"
                    + (f", the top {unfrozen} backbone layers trainable (batch norm frozen)" if unfrozen
                       else ", the backbone frozen"))
            limit = None if time_limit_s is None else time_limit_s - (time.perf_counter() - start)
            stopped_for_time = _fit_phase(
                keras, strategy, trainer, model, phase, options, train_data, val_data, steps, bn_images, tmp, history,
                reporter, loss=taught.loss(options, n_classes) if taught else None,
                metrics=[taught.accuracy(n_classes)] if taught else None, time_limit_s=limit)
            if stopped_for_time:
                break  # no time for a later phase either
        seconds = time.perf_counter() - start

        val_probs = predict_probabilities(model, tf, dataset, split.val, options.batch_size)
        if score_test:
            test_probs = predict_probabilities(model, tf, dataset, split.test, options.batch_size)
            metrics = classification_metrics(test_probs, dataset.labels[split.test], dataset.class_names)
        else:  # the caller chooses among runs on validation first: the test split is not read here
            metrics = {"test_accuracy": None, "test_scored": False}
        metrics["val_accuracy"] = float(np.mean(val_probs.argmax(1) == dataset.labels[split.val]))
        if taught is not None:
            metrics["distillation"] = taught.record(tf, dataset, split.val, val_probs, seconds)
        if stopped_for_time:
            metrics["stopped_for_time"] = {"limit_s": round(time_limit_s, 1)}
        quality = assess(val_probs.argmax(1), dataset.labels[split.val], dataset.class_names)
        watched = history.get("val_loss", [])
        metrics.update(
            epochs_run=len(history.get("loss", [])),
            # Early stopping restores the lowest validation loss; without it the last epoch is kept.
            best_epoch=(int(np.argmin(watched)) + 1 if options.patience else len(watched)),
            phases=[{"name": p.name, "epochs_run": history["phase"].count(p.name), "lr": p.lr} for p in phases],
            train_seconds=round(seconds, 2),
            counts={"train": len(split.train), "val": len(split.val), "test": len(split.test)},
            test_source=split.test_source,
            skipped_files=len(dataset.skipped),
            dedupe=dedupe_metrics(split.dedupe),
            collapsed=quality["collapsed"],
            warnings=quality["warnings"],
            quality=quality,
        )
        if retrain is not None:
            metrics["from"] = retrain.metrics()

        model.save(tmp / MODEL_FILE)
        RunRecord(labels=list(dataset.class_names), config=RunConfig(options_table(resolved), run_versions()),
                  split=split.to_json(dataset, options.seed, (options.val_fraction, options.test_fraction)),
                  metrics=metrics, history=history).write(tmp)
    return TrainResult(out, metrics["test_accuracy"], metrics["val_accuracy"], metrics["epochs_run"], seconds, metrics,
                       options.data, replace(options, color=dataset.color))


def distilling(options: TrainOptions) -> bool:
    """Whether the views are made in the input pipeline (a teacher labels them, or mixup mixes them)."""
    return options.teacher is not None or options.mixup > 0


@dataclass
class Taught:
    """What distillation (edgecls.train.distill) adds to a run: the teacher, the unlabeled pictures."""

    teacher: Any = None
    unlabeled: Any = None

    @classmethod
    def prepare(cls, options: TrainOptions, dataset: Dataset, split: Split, reporter: Reporter) -> Taught:
        from edgecls.train.distill import load_unlabeled, open_teacher

        teacher = None
        if options.teacher is not None:
            teacher = open_teacher(options.teacher, list(dataset.class_names), TEACHER_THREADS)
            reporter(f"Teacher {teacher.path.name}: {teacher.size[0]}x{teacher.size[1]} {teacher.color}, classes from "
                     f"{teacher.labels_source}; it labels every training view as the student sees it (alpha "
                     f"{options.distill_alpha:g}, temperature {options.distill_temperature:g}"
                     f"{f', mixup {options.mixup:g}' if options.mixup else ''})")
        unlabeled = None
        if options.unlabeled is not None:
            from edgecls.duplicates import hash_images

            held_out = hash_images(dataset)[np.concatenate([split.val, split.test])]
            unlabeled = load_unlabeled(options.unlabeled, dataset.image_size, dataset.color, held_out, reporter)
            reporter(f"Unlabeled: {len(unlabeled.files)} of {unlabeled.found} pictures in {options.unlabeled} join the "
                     f"training stream, labelled by the teacher only ({len(unlabeled.copies_of_held_out)} copies of "
                     f"validation or test pictures left out, {len(unlabeled.unreadable)} unreadable)")
        return cls(teacher, unlabeled)

    @property
    def unlabeled_count(self) -> int:
        return len(self.unlabeled.files) if self.unlabeled is not None else 0

    def pipeline(self, tf, dataset: Dataset, train: np.ndarray, options: TrainOptions, augmentation: Any):
        from edgecls.train.distill import training_pipeline

        return training_pipeline(tf, dataset.images, dataset.labels, train, options.batch_size,
                                 len(dataset.class_names), options.seed, augmentation, self.teacher, options.mixup,
                                 self.unlabeled.images if self.unlabeled is not None else None)

    def validation(self, tf, data):
        from edgecls.train.distill import validation_targets

        return validation_targets(tf, data)

    def loss(self, options: TrainOptions, n_classes: int):
        from edgecls.train.distill import distillation_loss

        alpha = options.distill_alpha if self.teacher is not None else 1.0  # mixup alone: the labels only
        return distillation_loss(n_classes, alpha, options.distill_temperature, options.label_smoothing)

    def accuracy(self, n_classes: int):
        from edgecls.train.distill import label_accuracy

        return label_accuracy(n_classes)

    def record(self, tf, dataset: Dataset, val: np.ndarray, val_probs: np.ndarray, train_seconds: float) -> dict:
        """metrics.json's distillation entry: the teacher, on validation too (the student's agreement with it),
        what it cost, the unlabeled pictures."""
        doc: dict[str, Any] = {"mode": "on the fly (tf.data + LiteRT)", "unlabeled": None}
        if self.teacher is not None:
            from edgecls.train.distill import open_teacher, teacher_op

            t = self.teacher
            images, labels = np.asarray(dataset.images[val]), dataset.labels[val]
            # a second interpreter: the training pipeline's may still be prefetching in its own thread
            scorer = open_teacher(t.path, list(dataset.class_names))
            label = teacher_op(tf, scorer, len(dataset.class_names), images.shape[3])
            teacher_val = np.asarray(label(tf.constant(images, tf.float32))).argmax(1)
            doc.update(teacher=str(t.path), teacher_sha256=sha256_file(t.path), classes_from=t.labels_source,
                       teacher_val_accuracy=float(np.mean(teacher_val == labels)),
                       val_agreement_with_teacher=float(np.mean(val_probs.argmax(1) == teacher_val)),
                       teacher_images=t.images, teacher_seconds=round(t.seconds, 2),
                       teacher_images_per_s=round(t.images_per_second or 0.0, 1),
                       teacher_share_of_training=round(t.seconds / train_seconds, 3) if train_seconds else None,
                       teacher_threads=t.classifier.num_threads)
        if self.unlabeled is not None:
            doc["unlabeled"] = self.unlabeled.to_json()
        return doc


# The teacher's interpreter threads: it runs in the input pipeline beside the training step, which
# keeps the CPUs busy; one thread overlaps with it instead of contending.
TEACHER_THREADS = 1


# An epoch of fewer optimizer steps than this is too short to judge by: on a small folder (100
# photos a class, 7 batches) the network from scratch has barely moved after the 6 epochs of
# patience, early stopping restores epoch 1 and the model answers one class. A short train split
# is repeated (freshly augmented) to this many batches an epoch.
MIN_STEPS_PER_EPOCH = 40


def train_steps(train_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: one pass over the train split, or MIN_STEPS_PER_EPOCH if more."""
    return max(-(-train_images // batch_size), MIN_STEPS_PER_EPOCH)


def _fit_phase(keras, strategy, trainer, model, phase: Phase, options: TrainOptions, train_data, val_data,
               steps: int, bn_images: np.ndarray, tmp: Path, history: dict[str, list], reporter: Reporter,
               loss: Any = None, metrics: Optional[list] = None, time_limit_s: Optional[float] = None) -> bool:
    """Fit one phase, appending its epochs to `history` (and history.csv as it goes). True when
    `time_limit_s` stopped it.

    A later phase that never beats the earlier best validation loss is undone: its start
    weights (the earlier best) are put back.
    """
    from edgecls.train.batchnorm import RefreshBatchNorm, trainable_batch_norms
    from edgecls.train.progress import epoch_progress

    with strategy.scope():  # compile again: what is trainable changed between phases
        trainer.compile(
            optimizer=_optimizer(keras, options.optimizer, phase.lr),
            loss=loss or keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
            metrics=metrics or ["accuracy"],
        )
    done = len(history.get("loss", []))
    before = model.get_weights() if done else None
    callbacks = [keras.callbacks.CSVLogger(str(tmp / HISTORY_FILE), append=True)]
    if trainable_batch_norms(model):  # before EarlyStopping: it keeps the weights with the fresh statistics
        callbacks.append(RefreshBatchNorm(model, bn_images, steps, options.batch_size))
    if options.patience:
        callbacks += [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", mode="min", patience=options.patience, restore_best_weights=True
            ),
            # Halve the learning rate when validation loss stalls: small data sets converge further.
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.5,
                patience=max(1, options.patience // 2),
                min_lr=phase.lr / 64,
                verbose=0,
            ),
        ]
    clock = _TimeLimit(keras, time_limit_s) if time_limit_s is not None else None
    if clock is not None:
        callbacks.append(clock)
    # our own line per epoch (and a bar on a terminal), after ReduceLROnPlateau: Keras's own is off (verbose=0)
    with epoch_progress(keras, reporter, done + phase.epochs, steps) as progress:
        fitted = trainer.fit(train_data, validation_data=val_data, epochs=done + phase.epochs, initial_epoch=done,
                             steps_per_epoch=steps, verbose=0, callbacks=[*callbacks, progress],
                             shuffle=False)  # the pipeline shuffles, seeded
    earlier_best = min(history.get("val_loss") or [np.inf])
    for key, values in fitted.history.items():
        history.setdefault(key, []).extend(float(v) for v in values)
    history.setdefault("phase", []).extend([phase.name] * len(fitted.history.get("loss", [])))
    if before is not None and options.patience and min(fitted.history.get("val_loss") or [np.inf]) >= earlier_best:
        model.set_weights(before)
        reporter(f"Phase {phase.name} did not lower the validation loss: kept the weights of the phase before")
    return clock is not None and clock.stopped


def _TimeLimit(keras, seconds: float):
    """A callback that stops fitting before an epoch that would end past `seconds` from now (the epoch
    just run is the estimate of the next; the first epoch always runs)."""
    class TimeLimit(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.until = time.perf_counter() + seconds
            self.started = time.perf_counter()
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if now + (now - self.started) > self.until:
                self.model.stop_training = self.stopped = True

    return TimeLimit()


def input_pipeline(tf, dataset: Dataset, indices: np.ndarray, batch_size: int, n_classes: int,
                   shuffle_seed: Optional[int] = None, repeat: bool = False):
    """A tf.data pipeline that gathers uint8 batches from the (possibly memory-mapped) arrays.

    Only one batch at a time is materialised as float32: a large cached folder is never
    copied whole into memory.
    """
    images, labels = dataset.images, dataset.labels
    h, w, c = images.shape[1:]
    data = tf.data.Dataset.from_tensor_slices(np.asarray(indices, dtype=np.int64))
    if shuffle_seed is not None:
        data = data.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:  # endless: fit's steps_per_epoch cuts it into epochs
        data = data.repeat()

    def gather(batch_indices: np.ndarray):
        return np.asarray(images[batch_indices]), labels[batch_indices]

    def load(batch_indices):
        x, y = tf.numpy_function(gather, [batch_indices], (tf.uint8, tf.int64), stateful=False)
        x.set_shape((None, h, w, c))
        y.set_shape((None,))
        return tf.cast(x, tf.float32), tf.one_hot(y, n_classes)

    return data.batch(batch_size).map(load).prefetch(tf.data.AUTOTUNE)


def predict_probabilities(model, tf, dataset: Dataset, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    pipeline = input_pipeline(tf, dataset, indices, max(batch_size, 256), len(dataset.class_names))
    return np.asarray(model.predict(pipeline.map(lambda x, y: x), verbose=0))


# Lives in edgecls.runtime.metrics (numpy only): a device-side bench must not import this module.
from edgecls.runtime.metrics import classification_metrics  # noqa: E402


def configure_cpu_devices(tf) -> None:
    """Split the CPU into N logical devices when EDGECLS_CPU_DEVICES=N (to exercise mirrored training)."""
    count = int(os.environ.get("EDGECLS_CPU_DEVICES", "0") or 0)
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # already initialised in this process
            pass


def make_strategy(tf, name: str):
    """TensorFlow's own distribution strategies; edgecls adds no scheduler of its own."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise EdgeclsError("--strategy multi-worker needs the TF_CONFIG environment variable on every worker "
                               "(cluster and task; see tf.distribute.MultiWorkerMirroredStrategy)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise EdgeclsError(f"unknown strategy {name!r}: use default, mirrored or multi-worker")


def _optimizer(keras, name: str, lr: float):
    return {
        "adam": keras.optimizers.Adam,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
        "rmsprop": keras.optimizers.RMSprop,
    }[name](learning_rate=lr)


def _fill_mode(color: str) -> str:
    """Black fill for grayscale (digits and characters on a black ground), reflection for photos."""
    return "constant" if color == "grayscale" else "reflect"


def _report_skipped(dataset: Dataset, reporter: Reporter) -> None:
    for line in dataset.skipped_warnings():
        reporter(f"warning: {line}")
