"""Training options: defaults, a TOML file whose keys mirror the CLI options, validation.

No TensorFlow here: the CLI reads defaults from this module to build its help text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from edgecls.data import DEDUPE_MODES
from edgecls.errors import EdgeclsError
from edgecls.parsing import split_list
from edgecls.tomlio import read_toml

# keras.applications backbones (ImageNet weights for users with internet; see edgecls.train.backbones).
KERAS_BACKBONES = ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0")
ARCHITECTURES = ("seed", "mobile", *KERAS_BACKBONES)
WIDTH_ARCHS = ("seed", "mobile", "mobilenet_v2", "mobilenet_v3_small")  # the ones --alpha scales
WEIGHTS_CHOICES = ("imagenet", "none")  # or a weights FILE
AUGMENTATIONS = ("flip", "rotate", "zoom", "translate", "contrast")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
STRATEGIES = ("default", "mirrored", "multi-worker")
COLORS = ("grayscale", "rgb")
HEADS = ("linear", "mlp")  # the heads edgecls.transfer fits on a .tflite backbone
MAX_IMG_SIZE = 512


@dataclass
class TrainOptions:
    data: str = "digits"
    out: Optional[str] = None
    arch: str = "seed"
    img_size: Optional[int] = None  # None: the dataset's own size (96 for folders)
    color: Optional[str] = None  # None: the dataset's own colour mode (rgb for folders)
    augment: Optional[str] = None  # None: the dataset's default list
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"
    lr: Optional[float] = None  # None: the architecture's own (ARCH_DEFAULTS)
    kernel_size: int = 3
    activation: str = "relu"
    dropout: float = 0.0
    label_smoothing: float = 0.0
    patience: Optional[int] = None  # None: the architecture's own (ARCH_DEFAULTS)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    strategy: str = "default"
    # Near-duplicates kept on one side of the split (edgecls.audit.duplicates): near | exact | off;
    # None: near for a folder of image files, off for built-in and IDX data (their split as published).
    dedupe: Optional[str] = None
    # Keras backbones only (--arch mobilenet_v2 | mobilenet_v3_small | efficientnet_b0):
    alpha: Optional[float] = None  # width multiplier of the MobileNets; None: 1.0
    weights: str = "imagenet"  # imagenet | none | a weights FILE (.h5 / .weights.h5 of the backbone)
    fine_tune_epochs: int = 10  # second phase: the top blocks unfrozen (0: the backbone stays frozen)
    fine_tune_lr: Optional[float] = None  # None: lr / 10
    # A pretrained .tflite backbone instead of a CNN: edgecls.transfer.job trains, with numpy and
    # LiteRT only. Without `backbone` the other five must keep their defaults (validate refuses).
    backbone: Optional[str] = None
    embedding_tensor: Optional[str] = None  # None: the input of the last FULLY_CONNECTED or 1x1 CONV_2D
    head: str = "linear"
    views: int = 1  # views per training image; measured on catsdogs (scripts/bench_transfer.py): more gained nothing
    threads: Optional[int] = None  # interpreter threads; None: the CPU count
    input_range: Optional[str] = None  # "LO,HI": what pixels 0 and 255 become for a float backbone
    # Distillation (edgecls.train.distill): a teacher .tflite labels each augmented view the student sees.
    teacher: Optional[str] = None  # a classifier .tflite with the data's classes (e.g. a --backbone run's model)
    distill_alpha: float = 0.0  # weight of the labels' loss; the teacher's gets 1 - alpha
    distill_temperature: float = 1.0  # both sides' probabilities softened by this temperature
    unlabeled: Optional[str] = None  # a folder of images only the teacher labels (train only)
    mixup: float = 0.0  # Beta(mixup, mixup) mixing of pairs of training views; 0: off

    @property
    def is_backbone(self) -> bool:
        return self.arch in KERAS_BACKBONES

    def augment_list(self) -> list[str]:
        if not self.augment or self.augment == "none":
            return []
        return split_list(self.augment)


# What the options left unset (None) become, per architecture. The mobile CNN (batch norm after
# every convolution) takes larger steps well and needs them, and its validation loss on a small
# folder is noisy. Measured on catsdogs (1,428 train photos, 96 px, seed 0): lr 0.001, patience 6
# stopped at epoch 12 with test 0.640; lr 0.001, patience 12, 40 epochs: 0.742; lr 0.003, patience
# 6: 0.753 (stopped at 20); lr 0.003, patience 12 (these defaults): 0.787 (seeds 1-3: 0.685, 0.697, 0.826).
COMMON_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "patience": 6}
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {"mobile": {"lr": 3e-3, "patience": 12}}


# A .tflite --backbone's numpy head (edgecls.transfer) keeps its own defaults for these, unless given.
HEAD_DEFAULTS: dict[str, Any] = {"epochs": 200, "patience": 20, "lr": 1e-3, "batch_size": 64}


def with_arch_defaults(o: TrainOptions) -> TrainOptions:
    """`o` with its unset lr and patience filled in for its architecture."""
    values = {**COMMON_DEFAULTS, **ARCH_DEFAULTS.get(o.arch, {})}
    return dataclasses.replace(o, **{k: v for k, v in values.items() if getattr(o, k) is None})


DEFAULTS = TrainOptions()
BACKBONE_ONLY = ("embedding_tensor", "head", "views", "threads", "input_range")
TEACHER_ONLY = ("distill_alpha", "distill_temperature", "unlabeled")
_TYPES = {f.name: f.type for f in fields(TrainOptions)}


def resolve_options(given: dict[str, Any], config_path: Path | None = None) -> TrainOptions:
    """Defaults, then the TOML file, then options given on the command line; validated."""
    values: dict[str, Any] = {}
    if config_path is not None:
        values.update(read_config(config_path))
    values.update({k: v for k, v in given.items() if k in _TYPES})
    options = TrainOptions(**values)
    validate(options)
    return options


# A .tflite backbone run's config.toml once named its backbone in a [transfer] table: these of its keys
# are train options. (The backbone fixes the input size and colour: a backbone run records them for its
# run directory, and they are no options of that route.)
TRANSFER_TABLE_OPTIONS = ("backbone", "embedding_tensor", "head", "views")
SET_BY_BACKBONE = ("img_size", "color")


def read_config(path: Path) -> dict[str, Any]:
    """The option values of a config file: a [train] table (or top-level keys), as a run's config.toml
    has them, so `train --config RUN/config.toml` reproduces that run, whichever route made it."""
    document = read_toml(path, "config file")
    raw = document.get("train", document)  # accept a [train] table or top-level keys
    if not isinstance(raw, dict):
        raise EdgeclsError(f"config file {path}: train must be a table ([train]), got {type(raw).__name__}")
    older = document.get("transfer") if raw is not document else None
    if isinstance(older, dict) and "backbone" not in raw:
        raw = {**raw, **{key: older[key] for key in TRANSFER_TABLE_OPTIONS if key in older}}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _TYPES:
            if isinstance(value, dict):  # other tables (e.g. [versions] written back by a run)
                continue
            raise EdgeclsError(f"config file {path}: unknown key {shown(key)} (known: {', '.join(sorted(_TYPES))})")
        values[name] = _coerce(name, value, path)
    if values.get("backbone") is not None:
        values = {name: value for name, value in values.items() if name not in SET_BY_BACKBONE}
    return values


def _coerce(name: str, value: Any, path: Path) -> Any:
    kind = _TYPES[name]
    wants = kind.replace("Optional[", "").rstrip("]") if isinstance(kind, str) else kind.__name__
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(wants, False)
    if name == "augment" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value) if value else "none"
    if not ok:
        raise EdgeclsError(f"config file {path}: {name} must be {wants}, got {type(value).__name__} {shown(value)}")
    if wants == "float" and not math.isfinite(float(value)):
        raise EdgeclsError(f"config file {path}: {name} must be a finite number, got {value!r}")
    return float(value) if wants == "float" else value


MAX_SHOWN = 80  # characters of a bad value quoted back in an error (a 10 MB string is not echoed)


def shown(value: Any) -> str:
    """repr(value), cut to MAX_SHOWN characters, for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def validate(o: TrainOptions) -> None:
    def bad(message: str) -> None:
        raise EdgeclsError(message)

    stray = [name for name in BACKBONE_ONLY if o.backbone is None and getattr(o, name) != getattr(DEFAULTS, name)]
    if stray:
        bad(f"--{stray[0].replace('_', '-')} needs --backbone FILE.tflite")
    stray = [name for name in TEACHER_ONLY if o.teacher is None and getattr(o, name) != getattr(DEFAULTS, name)]
    if stray:
        bad(f"--{stray[0].replace('_', '-')} needs --teacher MODEL.tflite")
    if o.arch not in ARCHITECTURES:
        bad(f"unknown architecture {o.arch!r}: use one of {', '.join(ARCHITECTURES)}")
    unknown = [a for a in o.augment_list() if a not in AUGMENTATIONS]
    if unknown:
        bad(f"unknown augmentation {unknown[0]!r}: use a comma list of {', '.join(AUGMENTATIONS)}, or none")
    if o.optimizer not in OPTIMIZERS:
        bad(f"unknown optimizer {o.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if o.strategy not in STRATEGIES:
        bad(f"unknown strategy {o.strategy!r}: use one of {', '.join(STRATEGIES)}")
    if o.dedupe is not None and o.dedupe not in DEDUPE_MODES:
        bad(f"unknown --dedupe {o.dedupe!r}: use one of {', '.join(DEDUPE_MODES)}")
    if o.color is not None and o.color not in COLORS:
        bad(f"unknown colour mode {o.color!r}: use grayscale or rgb")
    if o.epochs < 1:
        bad(f"--epochs must be at least 1 (got {o.epochs})")
    if o.img_size is not None and not 8 <= o.img_size <= MAX_IMG_SIZE:
        bad(f"--img-size must be between 8 and {MAX_IMG_SIZE} pixels (got {o.img_size})")
    if o.batch_size < 1:
        bad(f"--batch-size must be at least 1 (got {o.batch_size})")
    if o.lr is not None and not (math.isfinite(o.lr) and o.lr > 0):
        bad(f"--lr must be a positive finite number (got {o.lr})")
    if not 0 <= o.seed < 2**32:  # numpy's and Keras' seeds are unsigned 32-bit
        bad(f"--seed must be between 0 and {2**32 - 1} (got {o.seed})")
    if o.kernel_size < 1 or o.kernel_size > 11:
        bad(f"--kernel-size must be between 1 and 11 (got {o.kernel_size})")
    if not 0 <= o.dropout < 1:
        bad(f"--dropout must be in [0, 1) (got {o.dropout})")
    if not 0 <= o.label_smoothing < 1:
        bad(f"--label-smoothing must be in [0, 1) (got {o.label_smoothing})")
    if o.patience is not None and o.patience < 0:
        bad(f"--patience must be 0 or more (got {o.patience})")
    for name in ("val_fraction", "test_fraction"):
        value = getattr(o, name)
        if not 0 < value < 0.5:
            bad(f"--{name.replace('_', '-')} must be between 0 and 0.5 (got {value})")
    _validate_backbone(o)
    _validate_distillation(o)
    if o.activation not in ("relu", "relu6", "elu", "selu", "tanh", "sigmoid", "gelu", "swish", "leaky_relu"):
        bad(f"unknown activation {o.activation!r}")


def _validate_backbone(o: TrainOptions) -> None:
    if o.alpha is not None:
        if o.arch not in WIDTH_ARCHS:
            raise EdgeclsError(f"--alpha is the width of {', '.join(WIDTH_ARCHS)}, not of {o.arch}")
        if not 0 < o.alpha <= 2:
            raise EdgeclsError(f"--alpha must be in (0, 2] (got {o.alpha})")
    if o.weights not in WEIGHTS_CHOICES:
        if not o.is_backbone:
            raise EdgeclsError(f"--weights applies to the Keras backbones ({', '.join(KERAS_BACKBONES)}), "
                               f"not to {o.arch}")
        if not Path(o.weights).expanduser().is_file():
            raise EdgeclsError(f"--weights {o.weights!r}: use imagenet, none, or an existing weights file")
    if o.fine_tune_epochs < 0:
        raise EdgeclsError(f"--fine-tune-epochs must be 0 or more (got {o.fine_tune_epochs})")
    if o.fine_tune_lr is not None and not o.fine_tune_lr > 0:
        raise EdgeclsError(f"--fine-tune-lr must be positive (got {o.fine_tune_lr})")


def _validate_distillation(o: TrainOptions) -> None:
    """The checks that need no file opened (the teacher's classes are checked against the data when it loads)."""
    if o.teacher is not None:
        if o.backbone is not None:
            raise EdgeclsError("--teacher trains a Keras model: it does not apply with --backbone (a head fitted with "
                               "numpy)")
        path = Path(o.teacher).expanduser()
        if path.suffix.lower() != ".tflite" or not path.is_file():
            raise EdgeclsError(f"--teacher {o.teacher!r}: give an existing classifier .tflite (e.g. "
                               "RUN/export/model_uint8.tflite of a --backbone run)")
    if not 0 <= o.distill_alpha <= 1:
        raise EdgeclsError(f"--distill-alpha must be between 0 (the teacher only) and 1 (the labels only) "
                           f"(got {o.distill_alpha})")
    if not (math.isfinite(o.distill_temperature) and 0.1 <= o.distill_temperature <= 100):
        raise EdgeclsError(f"--distill-temperature must be between 0.1 and 100 (got {o.distill_temperature})")
    if o.unlabeled is not None and not Path(o.unlabeled).expanduser().is_dir():
        raise EdgeclsError(f"--unlabeled {o.unlabeled!r} is not a folder of images")
    if not (math.isfinite(o.mixup) and 0 <= o.mixup <= 10):
        raise EdgeclsError(f"--mixup must be between 0 (off) and 10 (got {o.mixup})")
    if o.mixup and o.backbone is not None:
        raise EdgeclsError("--mixup mixes the training views of a Keras model: it does not apply with --backbone")


def options_table(o: TrainOptions) -> dict[str, Any]:
    return dataclasses.asdict(o)
