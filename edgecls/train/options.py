"""What `edgecls train` is asked to do, both routes: TrainOptions (the single source of each option:
edgecls.options), config.toml read and written from its fields, validation.

No TensorFlow here: the CLI imports it to build its help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from edgecls.data import DEDUPE_MODES
from edgecls.errors import EdgeclsError
from edgecls.options import OUTPUT, check, from_table, option, to_table, with_spec
from edgecls.parsing import split_list
from edgecls.runtime.settings import UNKNOWN, accept_option, rule_option, threads_option, unknown_data_option
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


# What the options left unset (None) become, per architecture. The mobile CNN (batch norm after
# every convolution) takes larger steps well and needs them, and its validation loss on a small
# folder is noisy. Measured on catsdogs (1,428 train photos, 96 px, seed 0): lr 0.001, patience 6
# stopped at epoch 12 with test 0.640; lr 0.001, patience 12, 40 epochs: 0.742; lr 0.003, patience
# 6: 0.753 (stopped at 20); lr 0.003, patience 12 (these defaults): 0.787 (seeds 1-3: 0.685, 0.697, 0.826).
COMMON_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "patience": 6}
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {"mobile": {"lr": 3e-3, "patience": 12}}


# A .tflite --backbone's numpy head (edgecls.transfer) keeps its own defaults for these, unless given.
HEAD_DEFAULTS: dict[str, Any] = {"epochs": 200, "patience": 20, "lr": 1e-3, "batch_size": 64}
# The CNN's own defaults of those, which TrainOptions' fields hold.
_CNN_DEFAULTS: dict[str, Any] = {"epochs": 30, "batch_size": 32}


def _route_default(name: str) -> str:
    """The help's default of an option that depends on the route, e.g.
    "0.003 for --arch mobile, else 0.001; --backbone: 0.001"."""
    special = [f"{value:g} for --arch {arch}" for arch, values in ARCH_DEFAULTS.items()
               if (value := values.get(name)) is not None]
    common = COMMON_DEFAULTS.get(name, _CNN_DEFAULTS.get(name))
    shown = ", ".join(special + [f"else {common:g}" if special else f"{common:g}"])
    return f"{shown}; --backbone: {HEAD_DEFAULTS[name]:g}"


# The help's panels, in the order `edgecls train --help` shows them.
DATA, MODEL, TRAINING = "Data", "Model", "Training"
KERAS = "Keras backbones (--arch mobilenet_v2, mobilenet_v3_small, ...)"
BACKBONE = "Backbone route (--backbone FILE.tflite, no TensorFlow)"
DISTILL = "Distillation (--teacher MODEL.tflite)"
RETRAIN = "Retrain with new images (--from RUN --add DIR)"
PANELS = (DATA, MODEL, TRAINING, KERAS, BACKBONE, UNKNOWN, DISTILL, RETRAIN, OUTPUT)


# Which route an option belongs to: the Keras CNN's only (refused with --backbone; a teacher's too), the
# backbone route's only (refused without it), or both (the unmarked ones). A backbone run's config.toml
# records the options of its route (and the input size and colour its backbone fixed).
def cnn_route(base: Any) -> Any:
    return with_spec(base, marks={"route": "cnn"})


def backbone_route(base: Any) -> Any:
    return with_spec(base, marks={"route": "backbone"})


@dataclass
class TrainOptions:
    """Every option of `edgecls train`, both routes (edgecls.options: the single source of each); config.toml
    is its table."""

    data: str = option("digits", panel=DATA, help="digits | mnist | fashion_mnist | cifar10 | a folder of class "
                       "sub-folders | a folder of IDX files")
    out: Optional[str] = option(None, panel=OUTPUT, kind=Path, help="Run directory to create",
                                show_default="runs/<data>-<arch>, runs/<data>-<backbone>; --from RUN: RUN-2")
    arch: str = cnn_route(option(
        "seed", panel=MODEL, choices=ARCHITECTURES, what="architecture",
        help="seed (the classic conv/pool/dense CNN) | mobile (depthwise-separable, for RGB photos) | mobilenet_v2 | "
        "mobilenet_v3_small | efficientnet_b0 (keras.applications backbones, see --weights)"))
    img_size: Optional[int] = cnn_route(option(  # None: the dataset's own size (96 for folders)
        None, panel=DATA, help="Square input size in pixels",
        show_default="the dataset's own, 96 for folders"))
    color: Optional[str] = cnn_route(option(  # None: the dataset's own colour mode (rgb for folders)
        None, panel=DATA, choices=COLORS, what="colour mode", help="Colour mode",
        show_default="the dataset's own; rgb for folders"))
    augment: Optional[str] = cnn_route(option(  # None: the dataset's default list
        None, panel=DATA, help="Comma list of flip, rotate, zoom, translate, contrast; or none",
        show_default="per dataset; no flip for digits"))
    epochs: int = option(_CNN_DEFAULTS["epochs"], panel=TRAINING, show_default=_route_default("epochs"),
                         help="Maximum epochs (early stopping restores the best)")
    batch_size: int = option(_CNN_DEFAULTS["batch_size"], panel=TRAINING, help="Training batch size",
                             show_default=_route_default("batch_size"))
    optimizer: str = cnn_route(option("adam", panel=TRAINING, choices=OPTIMIZERS, what="optimizer", help="Optimizer"))
    lr: Optional[float] = option(  # None: the architecture's own (ARCH_DEFAULTS)
        None, panel=TRAINING, help="Learning rate", show_default=_route_default("lr"))
    kernel_size: int = cnn_route(option(3, panel=MODEL,
                                        help="Convolution kernel size (seed architecture)"))
    activation: str = cnn_route(option("relu", panel=MODEL,
                                 help="relu | relu6 | elu | gelu | swish | tanh | ... (seed architecture)"))
    dropout: float = cnn_route(option(0.0, panel=MODEL,
                                      help="Dropout before the classifier"))
    label_smoothing: float = cnn_route(option(0.0, panel=TRAINING,
                                        help="Label smoothing of the loss"))
    patience: Optional[int] = option(  # None: the architecture's own (ARCH_DEFAULTS)
        None, panel=TRAINING, show_default=_route_default("patience"),
        help="Early-stopping patience in epochs, on validation loss; the best epoch's weights are kept (0 disables)")
    val_fraction: float = option(0.1, panel=DATA, help="Fraction of the data held out for validation")
    test_fraction: float = option(0.1, panel=DATA,
                                  help="Fraction of the data held out for the test (a folder with its own test/ keeps "
                                  "it)")
    seed: int = option(0, panel=TRAINING,  # edgecls.bounds: numpy's and Keras' seeds are unsigned 32-bit
                       help="Seed for the split, weights and augmentation (deterministic on CPU)")
    strategy: str = cnn_route(option("default", panel=TRAINING, choices=STRATEGIES, what="strategy",
                               help="tf.distribute strategy"))
    # Near-duplicates kept on one side of the split (edgecls.duplicates): near | exact | off;
    # None: near for a folder of image files, off for built-in and IDX data (their split as published).
    dedupe: Optional[str] = option(
        None, panel=DATA, choices=DEDUPE_MODES, what="--dedupe",
        help="Keep near-duplicate groups on one side of the split: near (hash confirmed by aligned pixels) | exact "
        "(identical pixels) | off; a split the data comes with is never re-cut (groups across it are reported)",
        show_default="near for a folder of images, off for built-in and IDX data")
    alpha: Optional[float] = cnn_route(option(  # width multiplier (WIDTH_ARCHS); None: 1.0
        None, panel=MODEL, show_default="1.0",
        help="Width multiplier of seed, mobile (filters, multiples of 8), mobilenet_v2 / mobilenet_v3_small "
        "(ImageNet weights: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 / 0.75, 1.0)"))
    # Keras backbones only (--arch mobilenet_v2 | mobilenet_v3_small | efficientnet_b0):
    weights: str = cnn_route(option(  # imagenet | none | a weights FILE (.h5 / .weights.h5 of the backbone)
        "imagenet", panel=KERAS, metavar="imagenet|none|FILE",
        help="imagenet (downloaded once to ~/.keras/models) | none (random, trained from scratch in one phase) | a "
        "weights FILE of the backbone without its top (.h5, .weights.h5)"))
    fine_tune_epochs: int = cnn_route(option(  # second phase: the top blocks unfrozen (0: the backbone stays frozen)
        10, panel=KERAS,
        help="Epochs of the second phase, the top blocks unfrozen after --epochs with the backbone frozen (0: it "
        "stays frozen)"))
    fine_tune_lr: Optional[float] = cnn_route(option(  # None: lr / 10
        None, panel=KERAS, help="Learning rate of the fine-tuning phase",
        show_default="--lr / 10"))
    # A pretrained .tflite backbone instead of a CNN: edgecls.transfer.job trains, with numpy and
    # LiteRT only. Without `backbone` the other five must keep their defaults (validate refuses).
    backbone: Optional[str] = backbone_route(option(
        None, panel=BACKBONE, kind=Path, metavar="FILE.tflite",
        help="A pretrained NHWC .tflite image classifier or feature extractor (float32, uint8 or int8): cut at its "
        "embedding, a new head fitted with numpy and grafted on as TFLite ops; writes RUN/export/model_<mode>.tflite. "
        "--epochs, --patience, --lr, --batch-size then apply to the head, and unset keep the head's own defaults"))
    # None: the input of the last FULLY_CONNECTED or 1x1 CONV_2D
    embedding_tensor: Optional[str] = backbone_route(option(
        None, panel=BACKBONE, help="The tensor the head reads",
        show_default="the input of the last FULLY_CONNECTED or 1x1 CONV_2D"))
    head: str = backbone_route(option("linear", panel=BACKBONE, choices=HEADS, what="--head",
                                help="linear (softmax regression) | mlp (one hidden ReLU layer)"))
    # views per training image; measured on catsdogs (scripts/bench_transfer.py): more gained nothing
    views: int = backbone_route(option(
        1, panel=BACKBONE,
        help="Views per training image, the image itself included; the others flipped, turned and cropped"))
    threads: Optional[int] = backbone_route(threads_option(panel=BACKBONE))  # interpreter threads; None: the CPU count
    input_range: Optional[str] = backbone_route(option(  # "LO,HI": what pixels 0 and 255 become for a float backbone
        None, metavar="LO,HI", panel=BACKBONE,
        help="What pixels 0 and 255 become for a float backbone (-1,1 for MobileNet style)",
        show_default="its metadata's range, else 0,255; quantised: its own"))
    # The unknown answer (edgecls.calibrate), fitted where the .tflite is written: here for --backbone;
    # a Keras run gets it from `edgecls export`, which takes the same options.
    accept: float = backbone_route(accept_option())  # the share of validation images of known classes accepted
    unknown_data: Optional[str] = backbone_route(unknown_data_option())  # images of none of the classes
    rule: str = backbone_route(rule_option())  # auto | top | embedding | both
    # Distillation (edgecls.train.distill): a teacher .tflite labels each augmented view the Keras student sees.
    teacher: Optional[str] = cnn_route(option(  # e.g. a --backbone run's model
        None, panel=DISTILL, kind=Path, metavar="MODEL.tflite",
        help="A classifier .tflite with the data's classes: it labels each training view, on the fly"))
    distill_alpha: float = cnn_route(option(  # the teacher's share of the loss is 1 - alpha
        0.0, panel=DISTILL, metavar="W", help="The labels' share of the loss"))
    distill_temperature: float = cnn_route(option(
        1.0, panel=DISTILL, metavar="T", help="Softens both probabilities"))
    unlabeled: Optional[str] = cnn_route(option(  # train only
        None, panel=DISTILL, kind=Path, metavar="FOLDER", help="Pictures only the teacher labels"))
    mixup: float = cnn_route(option(  # 0: off
        0.0, panel=DISTILL, metavar="A", help="Mix view pairs, Beta(A, A)"))
    # Retraining (edgecls.retraining): RUN's options as defaults, its validation and test images kept, the
    # images of the `add` folders joined to the train split only. A run's config.toml lists in `add` every
    # folder added since the original data.
    from_run: Optional[str] = option(
        None, flags=("--from",), kind=Path, metavar="RUN", panel=RETRAIN, show_default="none",
        help="Train again as RUN was: its options and its validation and test images (by content digest), so "
        "edgecls bench compare RUN NEW compares the two")
    add: Optional[list[str]] = option(
        None, multiple=True, metavar="DIR", panel=RETRAIN, show_default="none",
        help="With --from: class folders (predict --collect's, labelled) joined to train only; unknown/ as "
        "negatives; near-duplicates of RUN's held-out images left out. Repeatable")
    # how this run is made, not what it is: not in config.toml
    force: bool = option(
        False, panel=OUTPUT, toml=False,
        help="Replace an existing run directory; with --backbone also write a head no better than always answering "
        "the majority class (there train is the export, which refuses it otherwise)")
    quiet: bool = option(False, panel=OUTPUT, toml=False, help="One line per epoch instead of progress bars")
    config: Optional[Path] = option(
        None, toml=False, metavar="FILE.toml",
        help="A TOML file whose keys mirror these options (options given here win), e.g. a run's config.toml")

    @property
    def is_backbone(self) -> bool:
        return self.arch in KERAS_BACKBONES

    def augment_list(self) -> list[str]:
        if not self.augment or self.augment == "none":
            return []
        return split_list(self.augment)


def with_arch_defaults(o: TrainOptions) -> TrainOptions:
    """`o` with its unset lr and patience filled in for its architecture."""
    values = {**COMMON_DEFAULTS, **ARCH_DEFAULTS.get(o.arch, {})}
    return dataclasses.replace(o, **{k: v for k, v in values.items() if getattr(o, k) is None})


DEFAULTS = TrainOptions()


def route_of(name: str) -> str:
    """cnn | backbone | both: which route the option `name` belongs to."""
    return _FIELDS[name].metadata.get("route", "both")


_FIELDS = {f.name: f for f in fields(TrainOptions)}
BACKBONE_ONLY = tuple(name for name in _FIELDS if route_of(name) == "backbone" and name != "backbone")
EXPORT_TOO = ("accept", "unknown_data", "rule")  # a Keras run takes these at export
# The options that mean nothing for a head on a .tflite backbone: refused, not ignored.
NOT_WITH_BACKBONE = tuple(name for name in _FIELDS if route_of(name) == "cnn")
TEACHER_ONLY = ("distill_alpha", "distill_temperature", "unlabeled")  # refused without --teacher


def resolve_options(given: dict[str, Any], config_path: Path | None = None) -> TrainOptions:
    """Defaults, then the TOML file, then options given on the command line; validated."""
    values: dict[str, Any] = {}
    if config_path is not None:
        values.update(read_config(config_path))
    values.update({k: v for k, v in given.items() if k in _FIELDS})
    options = TrainOptions(**values)
    validate(options)
    return options


def with_config(options: TrainOptions, given: set[str]) -> tuple[TrainOptions, set[str]]:
    """`train --config FILE.toml` or `--from RUN` (RUN's config.toml, run_options): its values for the options
    the command line left out (`given` names those it gave: they win), and the names of the options it set.
    (A --config file's own from_run is a retrained run's record: not read again as RUN's options.)"""
    if options.config is not None and "from_run" in given:
        raise EdgeclsError("give --config or --from, not both: --from RUN takes RUN's config.toml")
    if options.config is not None:
        defaults = read_config(options.config)
    elif options.from_run is not None:
        defaults = run_options(Path(options.from_run))
    else:
        return options, set()
    values = {name: value for name, value in defaults.items() if name not in given}
    return dataclasses.replace(options, **values), set(values)


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
    # a path that is not UTF-8, as config.toml writes it
    values = from_table(TrainOptions, {key: path_from(value) for key, value in raw.items()}, f"config file {path}")
    if values.get("backbone") is not None:
        values = {name: value for name, value in values.items() if name not in SET_BY_BACKBONE}
    return values


def config_table(o: TrainOptions) -> dict[str, Any]:
    """What config.toml's [train] table records of a run: its options (those of its route, for a backbone run,
    with the input size and colour the backbone fixed)."""
    table = options_table(o)
    if o.backbone is None:
        return table
    return {name: value for name, value in table.items() if route_of(name) != "cnn" or name in SET_BY_BACKBONE}


# What `--from RUN` does not take from RUN's config.toml: where RUN was written, and what RUN itself was
# retrained from and with (retraining.retraining_data adds RUN's own folders before the new ones).
NOT_FROM_RUN = ("out", "from_run", "add")


def run_options(run: Path) -> dict[str, Any]:
    """RUN's options (its config.toml), as `train --from RUN` takes them: the defaults of the new run."""
    from edgecls.artifacts import CONFIG_FILE

    if not (Path(run) / CONFIG_FILE).is_file():
        raise EdgeclsError(f"--from {run}: not a run directory (no {CONFIG_FILE}; make one with edgecls train)")
    return {name: value for name, value in read_config(Path(run) / CONFIG_FILE).items() if name not in NOT_FROM_RUN}


def validate(o: TrainOptions) -> None:
    """The CNN route's options: none of the backbone route's, each option's bounds and choices
    (edgecls.options.check), then the rules between them."""
    stray = [name for name in BACKBONE_ONLY if o.backbone is None and getattr(o, name) != getattr(DEFAULTS, name)]
    if stray:
        where = " (a Keras run takes it at export: edgecls export RUN ...)" if stray[0] in EXPORT_TOO else ""
        raise EdgeclsError(f"--{stray[0].replace('_', '-')} needs --backbone FILE.tflite{where}")
    if o.add and o.from_run is None:
        raise EdgeclsError("--add needs --from RUN: the run whose options, validation and test images the new run "
                           "keeps")
    if o.from_run is not None and o.out is not None and Path(o.out).resolve() == Path(o.from_run).resolve():
        raise EdgeclsError(f"--out {o.out} is the run given to --from: write the new run elsewhere")
    stray = [name for name in TEACHER_ONLY if o.teacher is None and getattr(o, name) != getattr(DEFAULTS, name)]
    if stray:
        raise EdgeclsError(f"--{stray[0].replace('_', '-')} needs --teacher MODEL.tflite")
    check(o)
    unknown = [a for a in o.augment_list() if a not in AUGMENTATIONS]
    if unknown:
        raise EdgeclsError(f"unknown augmentation {unknown[0]!r}: use a comma list of {', '.join(AUGMENTATIONS)}, "
                           "or none")
    _validate_backbone(o)
    _validate_distillation(o)
    if o.activation not in ("relu", "relu6", "elu", "selu", "tanh", "sigmoid", "gelu", "swish", "leaky_relu"):
        raise EdgeclsError(f"unknown activation {o.activation!r}")


def _validate_backbone(o: TrainOptions) -> None:
    if o.alpha is not None and o.arch not in WIDTH_ARCHS:
        raise EdgeclsError(f"--alpha is the width of {', '.join(WIDTH_ARCHS)}, not of {o.arch}")
    if o.weights not in WEIGHTS_CHOICES:
        if not o.is_backbone:
            raise EdgeclsError(f"--weights applies to the Keras backbones ({', '.join(KERAS_BACKBONES)}), "
                               f"not to {o.arch}")
        if not Path(o.weights).expanduser().is_file():
            raise EdgeclsError(f"--weights {o.weights!r}: use imagenet, none, or an existing weights file")


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
    if o.unlabeled is not None and not Path(o.unlabeled).expanduser().is_dir():
        raise EdgeclsError(f"--unlabeled {o.unlabeled!r} is not a folder of images")
    if o.mixup and o.backbone is not None:
        raise EdgeclsError("--mixup mixes the training views of a Keras model: it does not apply with --backbone")


def options_table(o: TrainOptions) -> dict[str, Any]:
    """The options as config.toml's [train] table keeps them (edgecls.options.to_table); a Keras run leaves out
    the unknown answer's (its export fits that, with its own options)."""
    table = to_table(o)
    if o.backbone is None:
        for key in EXPORT_TOO:
            table.pop(key)
    return table
