"""Knowledge distillation for `edgecls train --teacher MODEL.tflite`: the student learns from the labels
and from a teacher's probabilities on the very picture it is shown.

"A good teacher is patient and consistent" (Beyer et al., CVPR 2022): distillation helps when the
teacher labels exactly the view the student trains on (the same crop, flip, rotation — and, with mixup,
the same mixed image: "function matching") over a long schedule; teacher probabilities computed once on
the un-augmented images did not help here (issue 30: +0.9 points over three seeds, noise). So the
teacher runs on the fly, in the tf.data pipeline, through the LiteRT interpreter (tf.numpy_function):

    train indices (+ --unlabeled images) -> shuffled batches -> uint8 pixels -> augmentation (the Keras
      layers of the plain route, moved from the model into the pipeline) -> rounded to whole pixel values
      -> --mixup: pairs mixed, labels too -> the teacher on the view (resized to its input) -> the student

A fresh view every step, never a cached one: a fixed set of views cannot be mixed, and the teacher
is cheap next to a training step (metrics.json records its images/s and its share of the time).
The teacher sees the student's own view resized to its input: on catsdogs the 0.5_160 backbone model
scores 0.941 on 96 px pictures resized to 160 against 0.947 on 160 px ones (val+test, seed 0).

The loss per image: alpha * cross-entropy(labels) + (1 - alpha) * T² * KL(teacher_T || student_T),
where _T means probabilities softened by the temperature T (a softmax output's log is its logits up to
a constant). An --unlabeled image has no label: its loss is the teacher's term alone. Validation has no
teacher: its loss is the plain cross-entropy, so early stopping watches what it always did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.classify import Classifier

PROBABILITY_FLOOR = 1e-4  # below a uint8 output's step (1/256): log(0) of a quantised teacher is not a logit
STUDENT_FLOOR = 1e-7


@dataclass
class Teacher:
    """A classifier .tflite whose outputs are put in the student's class order; counts its own time."""

    classifier: Classifier
    order: np.ndarray  # the teacher's output column of each of the student's classes
    path: Path
    labels_source: str  # metadata | labels.txt beside it | index (no names: the data's order assumed)
    seconds: float = 0.0
    images: int = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.classifier.input_spec.size  # (height, width)

    @property
    def color(self) -> str:
        return self.classifier.input_spec.color

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (B, N) in the student's class order of uint8 pictures at the teacher's input size."""
        started = time.perf_counter()
        probabilities = self.classifier.probabilities(np.ascontiguousarray(pixels))[:, self.order]
        self.seconds += time.perf_counter() - started
        self.images += len(pixels)
        return probabilities.astype(np.float32)

    @property
    def images_per_second(self) -> Optional[float]:
        return self.images / self.seconds if self.seconds else None


def open_teacher(path: str | Path, class_names: list[str], threads: Optional[int] = None) -> Teacher:
    """The teacher, checked: it must answer the data's classes (by name, in any order; a model that
    names none must have as many outputs). One-line errors."""
    path = Path(path).expanduser()
    classifier = Classifier(path, num_threads=threads)
    names, source = classifier.labels, classifier.labels_source
    wanted = list(class_names)
    if source == "index":
        if classifier.num_classes != len(wanted):
            raise EdgeclsError(f"--teacher {path.name} answers {classifier.num_classes} classes but the data has "
                               f"{len(wanted)} ({_listed(wanted)}): a teacher must know the same classes")
        return Teacher(classifier, np.arange(len(wanted)), path, source)
    if sorted(names) != sorted(wanted):
        raise EdgeclsError(f"--teacher {path.name} answers {len(names)} classes ({_listed(names)}) but the data has "
                           f"{len(wanted)} ({_listed(wanted)}): a teacher must know the same classes")
    return Teacher(classifier, np.array([names.index(name) for name in wanted]), path, source)


def _listed(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


# ---------------------------------------------------------------------- unlabeled images
@dataclass
class Unlabeled:
    """--unlabeled: pictures only the teacher labels, decoded at the student's size."""

    images: np.ndarray  # uint8 (U, H, W, C)
    files: list[str]
    found: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    copies_of_held_out: list[str] = field(default_factory=list)  # left out: (near-)copies of val/test pictures

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "used": len(self.files), "unreadable": len(self.unreadable),
                "copies_of_held_out_left_out": len(self.copies_of_held_out),
                "copies": self.copies_of_held_out[:50]}


def load_unlabeled(folder: str | Path, size: tuple[int, int], color: str, held_out: np.ndarray,
                   reporter: Reporter = SILENT) -> Unlabeled:
    """Every picture under `folder` (recursively), decoded by the runtime's own function at `size`;
    unreadable files are skipped and counted, and pictures that are copies or near-copies of a held-out
    (validation or test) picture — `held_out`, at the duplicate check's size — are left out: the
    student would otherwise learn the teacher's answer on a picture it is then scored on."""
    from edgecls.duplicates import HASH_IMAGE_SIZE, find_duplicates
    from edgecls.runtime.preprocess import ImageError, load_image
    from edgecls.runtime.sources import folder_error, walk_images

    root = Path(folder).expanduser()
    problems: list[OSError] = []
    paths = list(walk_images(root, problems))
    unreadable = [(str(exc.filename), folder_error(exc)) for exc in problems]
    pixels, small, files = [], [], []
    for path in reporter.track(paths, f"Decoding {root.name} (unlabeled)"):
        try:
            pixels.append(load_image(path, size, color))
            small.append(load_image(path, (HASH_IMAGE_SIZE, HASH_IMAGE_SIZE), color))
            files.append(str(path.relative_to(root)))
        except (ImageError, OSError) as exc:
            unreadable.append((str(path), str(exc)))
    if not files:
        raise EdgeclsError(f"--unlabeled {root}: no readable pictures in it (.jpg, .png, .bmp, .gif, .webp)")
    held = np.asarray(held_out)
    groups = find_duplicates(np.concatenate([held, np.stack(small)])).groups if len(held) else []
    copies = sorted({i - len(held) for g in groups if min(g.members) < len(held)
                     for i in g.members if i >= len(held)})
    keep = [i for i in range(len(files)) if i not in set(copies)]
    if not keep:
        raise EdgeclsError(f"--unlabeled {root}: every picture in it is a copy of a validation or test picture")
    return Unlabeled(np.stack([pixels[i] for i in keep]), [files[i] for i in keep], len(paths), unreadable,
                     [files[i] for i in copies])


# ---------------------------------------------------------------------- the pipeline
def targets_width(n_classes: int) -> int:
    """A target row: the label (one-hot; zeros for an unlabeled image), the teacher's probabilities, and
    whether the teacher labelled it (0 on validation: plain cross-entropy there)."""
    return 2 * n_classes + 1


def training_pipeline(tf, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int,
                      n_classes: int, seed: int, augmentation: Any, teacher: Optional[Teacher], mixup: float,
                      extra: Optional[np.ndarray] = None):
    """The endless, shuffled (seeded) training stream of (views, targets): `indices` into `images`, then
    the `extra` (unlabeled) pictures; augmented, mixed with --mixup, labelled by the teacher if any."""
    n = len(labels)
    extra = extra if extra is not None else np.zeros((0, *images.shape[1:]), np.uint8)
    h, w, c = images.shape[1:]
    order = np.concatenate([np.asarray(indices, np.int64), n + np.arange(len(extra), dtype=np.int64)])
    data = tf.data.Dataset.from_tensor_slices(order).shuffle(len(order), seed=seed, reshuffle_each_iteration=True)

    def gather(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = batch < n
        pixels = np.empty((len(batch), h, w, c), np.uint8)
        pixels[inside] = images[batch[inside]]
        pixels[~inside] = extra[batch[~inside] - n]
        found = np.full(len(batch), -1, np.int64)  # -1: no label (tf.one_hot makes it a row of zeros)
        found[inside] = labels[batch[inside]]
        return pixels, found

    def views(step, batch):
        x, y = tf.numpy_function(gather, [batch], (tf.uint8, tf.int64), stateful=False)
        x.set_shape((None, h, w, c))
        x = tf.cast(x, tf.float32)
        if augmentation is not None:
            x = augmentation(x, training=True)
        onehot = tf.one_hot(y, n_classes)
        if mixup:
            x, onehot = _mix(tf, x, onehot, mixup, seed, step)
        # whole pixel values: the teacher takes uint8, and the student sees exactly what the teacher saw
        return tf.round(tf.clip_by_value(x, 0.0, 255.0)), onehot

    data = data.repeat().batch(batch_size).enumerate().map(views)
    if teacher is not None:
        label = teacher_op(tf, teacher, n_classes, c)
        data = data.map(lambda x, y: (x, tf.concat([y, label(x), tf.ones_like(y[:, :1])], axis=1)))
    else:
        data = data.map(lambda x, y: (x, tf.concat([y, tf.zeros_like(y), tf.zeros_like(y[:, :1])], axis=1)))
    return data.prefetch(tf.data.AUTOTUNE)


def _mix(tf, x, onehot, strength: float, seed: int, step):
    """Mixup: each view mixed with the batch's view in the mirrored position, with a weight drawn from
    Beta(strength, strength) (two gamma draws, seeded by the step: the same run gives the same mixes)."""
    size = tf.shape(x)[0:1]
    step = tf.cast(step, tf.int32)
    a = tf.random.stateless_gamma(size, seed=tf.stack([seed % 2**31, step]), alpha=strength)
    b = tf.random.stateless_gamma(size, seed=tf.stack([(seed + 1) % 2**31, step]), alpha=strength)
    weight = a / (a + b + 1e-12)
    mixed = weight[:, None, None, None] * x + (1 - weight[:, None, None, None]) * tf.reverse(x, [0])
    labels = weight[:, None] * onehot + (1 - weight[:, None]) * tf.reverse(onehot, [0])
    return mixed, labels


def teacher_op(tf, teacher: Teacher, n_classes: int, channels: int):
    """A graph function: float views (B, H, W, C) of whole pixel values -> the teacher's probabilities."""
    th, tw = teacher.size

    def label(x):
        t = x
        if (tuple(x.shape[1:3]) != (th, tw)):  # the student's view at the teacher's input size
            t = tf.round(tf.clip_by_value(tf.image.resize(t, (th, tw), "bilinear", antialias=True), 0.0, 255.0))
        if teacher.color == "rgb" and channels == 1:
            t = tf.image.grayscale_to_rgb(t)
        elif teacher.color == "grayscale" and channels == 3:
            t = tf.round(tf.image.rgb_to_grayscale(t))
        probabilities = tf.numpy_function(teacher, [tf.cast(t, tf.uint8)], tf.float32, stateful=False)
        probabilities.set_shape((None, n_classes))
        return probabilities

    return label


def validation_targets(tf, data):
    """Validation batches (x, one-hot) -> (x, targets with no teacher): plain cross-entropy."""
    return data.map(lambda x, y: (x, tf.concat([y, tf.zeros_like(y), tf.zeros_like(y[:, :1])], axis=1)))


# ---------------------------------------------------------------------- the loss
def distillation_loss(n_classes: int, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """The loss on (targets, student probabilities); see the module doc."""
    from keras import ops

    n, t = n_classes, float(temperature)

    def loss(y_true, y_pred):
        labels, soft, taught = y_true[:, :n], y_true[:, n:2 * n], y_true[:, 2 * n]
        if label_smoothing:
            mass = ops.sum(labels, axis=-1, keepdims=True)  # 0 for an unlabeled image: it stays 0
            labels = labels * (1 - label_smoothing) + mass * label_smoothing / n
        log_p = ops.log(ops.clip(y_pred, STUDENT_FLOOR, 1.0))
        cross_entropy = -ops.sum(labels * log_p, axis=-1)
        log_student = ops.log_softmax(log_p / t, axis=-1)
        log_teacher = ops.log_softmax(ops.log(ops.clip(soft, PROBABILITY_FLOOR, 1.0)) / t, axis=-1)
        kl = t * t * ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        return ops.where(taught > 0, alpha * cross_entropy + (1 - alpha) * kl, cross_entropy)

    loss.__name__ = "distillation_loss"
    return loss


def label_accuracy(n_classes: int):
    """Top-1 accuracy against the label part of the targets (Keras' own metric would read the whole row)."""
    from keras import ops

    def accuracy(y_true, y_pred):
        return ops.cast(ops.equal(ops.argmax(y_true[:, :n_classes], axis=-1), ops.argmax(y_pred, axis=-1)), "float32")

    return accuracy
