"""Training options: defaults, a TOML file whose keys mirror the CLI options, validation.

No TensorFlow here: the CLI reads defaults from this module to build its help text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from edgecls.bounds import check_bound
from edgecls.data import DEDUPE_MODES
from edgecls.errors import EdgeclsError
from edgecls.parsing import split_list
from edgecls.runtime.openset import DEFAULT_ACCEPT, RULE_CHOICES
from edgecls.tomlio import path_from, read_toml

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
    # The unknown answer (edgecls.calibrate), fitted where the .tflite is written: here for --backbone;
    # a Keras run gets it from `edgecls export`, which takes the same options.
    accept: float = DEFAULT_ACCEPT  # the share of validation images of known classes the rule accepts
    unknown_data: Optional[str] = None  # a folder of images of none of the classes: they choose the rule
    rule: str = "auto"  # auto | top | embedding | both
    # Distillation (edgecls.train.distill): a teacher .tflite labels each augmented view the student sees.
    teacher: Optional[str] = None  # a classifier .tflite with the data's classes (e.g. a --backbone run's model)
    distill_alpha: float = 0.0  # weight of the labels' loss; the teacher's gets 1 - alpha
    distill_temperature: float = 1.0  # both sides' probabilities softened by this temperature
    unlabeled: Optional[str] = None  # a folder of images only the teacher labels (train only)
    mixup: float = 0.0  # Beta(mixup, mixup) mixing of pairs of training views; 0: off
    # Retraining (edgecls.retraining): RUN's options as defaults, its validation and test images kept, the
    # images of the `add` folders joined to the train split only. A run's config.toml lists in `add` every
    # folder added since the original data.
    from_run: Optional[str] = None
    add: Optional[list[str]] = None

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
BACKBONE_ONLY = ("embedding_tensor", "head", "views", "threads", "input_range", "accept", "unknown_data", "rule")
EXPORT_TOO = ("accept", "unknown_data", "rule")  # a Keras run takes these at export
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
        value = path_from(value)  # a path that is not UTF-8, as config.toml writes it
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
    if name == "add":  # a list of folders (or one)
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return [value] if isinstance(value, str) else list(value)
        raise EdgeclsError(f"config file {path}: add must be a list of folders, got {shown(value)}")
    if not ok:
        raise EdgeclsError(f"config file {path}: {name} must be {wants}, got {type(value).__name__} {shown(value)}")
    if wants == "float" and not math.isfinite(float(value)):
        raise EdgeclsError(f"config file {path}: {name} must be a finite number, got {value!r}")
    return float(value) if wants == "float" else value


MAX_SHOWN = 80  # characters of a bad value quoted back in an error (a 10 MB string is not echoed)


# What `--from RUN` does not take from RUN's config.toml: where RUN was written, and what RUN itself was
# retrained from and with (retraining.retraining_data adds RUN's own folders before the new ones).
NOT_FROM_RUN = ("out", "from_run", "add")


def run_options(run: Path) -> dict[str, Any]:
    """RUN's options (its config.toml), as `train --from RUN` takes them: the defaults of the new run."""
    from edgecls.artifacts import CONFIG_FILE

    if not (Path(run) / CONFIG_FILE).is_file():
        raise EdgeclsError(f"--from {run}: not a run directory (no {CONFIG_FILE}; make one with edgecls train)")
    return {name: value for name, value in read_config(Path(run) / CONFIG_FILE).items() if name not in NOT_FROM_RUN}


def shown(value: Any) -> str:
    """repr(value), cut to MAX_SHOWN characters, for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


def validate(o: TrainOptions) -> None:
    def bad(message: str) -> None:
        raise EdgeclsError(message)

    stray = [name for name in BACKBONE_ONLY if o.backbone is None and getattr(o, name) != getattr(DEFAULTS, name)]
    if stray:
        where = " (a Keras run takes it at export: edgecls export RUN ...)" if stray[0] in EXPORT_TOO else ""
        bad(f"--{stray[0].replace('_', '-')} needs --backbone FILE.tflite{where}")
    if o.add and o.from_run is None:
        bad("--add needs --from RUN: the run whose options, validation and test images the new run keeps")
    if o.from_run is not None and o.out is not None and Path(o.out).resolve() == Path(o.from_run).resolve():
        bad(f"--out {o.out} is the run given to --from: write the new run elsewhere")
    if o.rule not in RULE_CHOICES:
        bad(f"unknown rule {o.rule!r}: use one of {', '.join(RULE_CHOICES)}")
    if not 0.5 <= o.accept < 1.0:
        bad(f"--accept must be at least 0.5 and below 1 (got {o.accept})")
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
    for option, value in (("--epochs", o.epochs), ("--batch-size", o.batch_size), ("--seed", o.seed),
                          ("--kernel-size", o.kernel_size), ("--dropout", o.dropout),
                          ("--label-smoothing", o.label_smoothing), ("--val-fraction", o.val_fraction),
                          ("--test-fraction", o.test_fraction), ("--img-size", o.img_size), ("--lr", o.lr),
                          ("--patience", o.patience), ("--views", o.views)):
        if value is not None:  # None: the dataset's or the architecture's own
            check_bound(option, value)
    _validate_backbone(o)
    _validate_distillation(o)
    if o.activation not in ("relu", "relu6", "elu", "selu", "tanh", "sigmoid", "gelu", "swish", "leaky_relu"):
        bad(f"unknown activation {o.activation!r}")


def _validate_backbone(o: TrainOptions) -> None:
    if o.alpha is not None:
        if o.arch not in WIDTH_ARCHS:
            raise EdgeclsError(f"--alpha is the width of {', '.join(WIDTH_ARCHS)}, not of {o.arch}")
        check_bound("--alpha", o.alpha)
    if o.weights not in WEIGHTS_CHOICES:
        if not o.is_backbone:
            raise EdgeclsError(f"--weights applies to the Keras backbones ({', '.join(KERAS_BACKBONES)}), "
                               f"not to {o.arch}")
        if not Path(o.weights).expanduser().is_file():
            raise EdgeclsError(f"--weights {o.weights!r}: use imagenet, none, or an existing weights file")
    check_bound("--fine-tune-epochs", o.fine_tune_epochs)
    if o.fine_tune_lr is not None:
        check_bound("--fine-tune-lr", o.fine_tune_lr)


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
    check_bound("--distill-alpha", o.distill_alpha)
    check_bound("--distill-temperature", o.distill_temperature)
    if o.unlabeled is not None and not Path(o.unlabeled).expanduser().is_dir():
        raise EdgeclsError(f"--unlabeled {o.unlabeled!r} is not a folder of images")
    check_bound("--mixup", o.mixup)
    if o.mixup and o.backbone is not None:
        raise EdgeclsError("--mixup mixes the training views of a Keras model: it does not apply with --backbone")


def options_table(o: TrainOptions) -> dict[str, Any]:
    """The options as config.toml records them; a Keras run leaves out the unknown answer's (its export
    fits that, with its own options)."""
    table = dataclasses.asdict(o)
    if o.backbone is None:
        for key in EXPORT_TOO:
            table.pop(key)
    return table
