"""`edgecls train`: a Keras classifier and its run directory, or a new head on a pretrained .tflite (--backbone).

Its parameters mirror `edgecls.train.options.TrainOptions` field for field (tests/test_train.py
checks it), and `--config FILE.toml` feeds Click's `default_map`, so the TOML keys are the option
names for free: adding a train option is a TrainOptions field plus one parameter here.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.cli.common import (
    AcceptOption,
    RuleOption,
    Typer,
    UnknownDataOption,
    choice,
    choices,
    echo_wrapped,
    plain,
)
from edgecls.data import DEDUPE_MODES
from edgecls.reporter import Reporter
from edgecls.train.options import (
    ARCH_DEFAULTS,
    ARCHITECTURES,
    COLORS,
    COMMON_DEFAULTS,
    DEFAULTS,
    HEAD_DEFAULTS,
    HEADS,
    OPTIMIZERS,
    STRATEGIES,
    TrainOptions,
)

app = Typer()

Arch = choices("Arch", ARCHITECTURES)
Color = choices("Color", COLORS)
Optimizer = choices("Optimizer", OPTIMIZERS)
Strategy = choices("Strategy", STRATEGIES)
Head = choices("Head", HEADS)
Dedupe = choices("Dedupe", DEDUPE_MODES)

_D = DEFAULTS


def _arch_default(name: str) -> str:
    """The help's default of an option that depends on the route, e.g.
    "0.003 for --arch mobile, else 0.001; --backbone: 0.001"."""
    special = [f"{value:g} for --arch {arch}" for arch, values in ARCH_DEFAULTS.items()
               if (value := values.get(name)) is not None]
    common = COMMON_DEFAULTS.get(name, getattr(_D, name))
    shown = ", ".join(special + [f"else {common:g}" if special else f"{common:g}"])
    return f"{shown}; --backbone: {HEAD_DEFAULTS[name]:g}"


TRAIN_FIELDS = {f.name for f in fields(TrainOptions)}


def _read_config(ctx: typer.Context, path: Optional[Path]) -> Optional[Path]:
    """--config FILE.toml: its keys become the options' defaults (Click's default_map), so options
    given on the command line win and every key is checked like the option it names."""
    if path is not None:
        from edgecls.train.options import read_config

        _defaults_from(ctx, "--config", read_config(path))
    return path


def _read_run(ctx: typer.Context, path: Optional[Path]) -> Optional[Path]:
    """--from RUN: RUN's config.toml as the defaults, as --config reads a file (but where RUN was written
    and what RUN added: see train.options.run_options)."""
    source = ctx.get_parameter_source("from_run")
    if path is not None and source is not None and source.name != "DEFAULT_MAP":  # not a --config file's from_run
        from edgecls.train.options import run_options

        _defaults_from(ctx, "--from", run_options(path))
    return path


def _defaults_from(ctx: typer.Context, option: str, values: dict) -> None:
    """Options' defaults from one place only: --config FILE or --from RUN, not both."""
    other = ctx.meta.get("edgecls_defaults_from")
    if other is not None and other != option:
        from edgecls.errors import EdgeclsError

        raise EdgeclsError(f"give {other} or {option}, not both: --from RUN takes RUN's config.toml")
    ctx.meta["edgecls_defaults_from"] = option
    ctx.default_map = {**(ctx.default_map or {}), **values}


# The help's panels: a property of each option (rich_help_panel), in the order they are shown.
_DATA, _MODEL, _TRAINING = "Data", "Model", "Training"
_KERAS = "Keras backbones (--arch mobilenet_v2, mobilenet_v3_small, ...)"
_BACKBONE = "Backbone route (--backbone FILE.tflite, no TensorFlow)"
_DISTILL = "Distillation (--teacher MODEL.tflite)"
_RETRAIN = "Retrain with new images (--from RUN --add DIR)"
_OUTPUT = "Output"


@app.command(epilog="Examples:\n\n"
             "edgecls train --epochs 5\n\n"
             "edgecls train --data photos/ --arch mobile --img-size 96 --out runs/photos\n\n"
             "edgecls train --config runs/digits-seed/config.toml --out runs/again\n\n"
             "edgecls train --data photos/ --backbone mobilenet_v1_0.25_128_quant.tflite\n\n"
             "edgecls train --from runs/photos --add inbox/ --out runs/photos-2\n\n"
             "edgecls train --data photos/ --arch mobilenet_v2 --alpha 0.35  # internet once")
def train(
    ctx: typer.Context,
    # --- data
    data: Annotated[str, typer.Option(
        rich_help_panel=_DATA,
        help="digits | mnist | fashion_mnist | cifar10 | a folder of class sub-folders | a folder of IDX files",
    )] = _D.data,
    img_size: Annotated[Optional[int], typer.Option(
        rich_help_panel=_DATA, help="Square input size in pixels", show_default="the dataset's own, 96 for folders",
    )] = None,
    color: Annotated[Optional[Color], typer.Option(
        rich_help_panel=_DATA, help="Colour mode", show_default="the dataset's own; rgb for folders",
        **choice(Color, "colour mode"),
    )] = None,
    augment: Annotated[Optional[str], typer.Option(
        rich_help_panel=_DATA, help="Comma list of flip, rotate, zoom, translate, contrast; or none",
        show_default="per dataset; no flip for digits",
    )] = None,
    val_fraction: Annotated[float, typer.Option(
        rich_help_panel=_DATA, help="Fraction of the data held out for validation")] = _D.val_fraction,
    test_fraction: Annotated[float, typer.Option(
        rich_help_panel=_DATA, help="Fraction of the data held out for the test (a folder with its own test/ "
                                    "keeps it)")] = _D.test_fraction,
    dedupe: Annotated[Optional[Dedupe], typer.Option(
        rich_help_panel=_DATA,
        help="Keep near-duplicate groups on one side of the split: near (hash confirmed by aligned pixels) | exact "
             "(identical pixels) | off; a split the data comes with is never re-cut (groups across it are reported)",
        show_default="near for a folder of images, off for built-in and IDX data", **choice(Dedupe, "dedupe mode"),
    )] = None,
    # --- model
    arch: Annotated[Arch, typer.Option(
        rich_help_panel=_MODEL,
        help="seed (the classic conv/pool/dense CNN) | mobile (depthwise-separable, for RGB photos) | "
        "mobilenet_v2 | mobilenet_v3_small | efficientnet_b0 (keras.applications backbones, see --weights)",
        **choice(Arch, "architecture"),
    )] = _D.arch,
    kernel_size: Annotated[int, typer.Option(
        rich_help_panel=_MODEL, help="Convolution kernel size (seed architecture)")] = _D.kernel_size,
    activation: Annotated[str, typer.Option(
        rich_help_panel=_MODEL, help="relu | relu6 | elu | gelu | swish | tanh | ... (seed architecture)",
    )] = _D.activation,
    dropout: Annotated[float, typer.Option(rich_help_panel=_MODEL, help="Dropout before the classifier")] = _D.dropout,
    # --- training
    epochs: Annotated[int, typer.Option(
        rich_help_panel=_TRAINING, help="Maximum epochs (early stopping restores the best)",
        show_default=_arch_default("epochs"))] = _D.epochs,
    batch_size: Annotated[int, typer.Option(
        rich_help_panel=_TRAINING, help="Training batch size", show_default=_arch_default("batch_size"),
    )] = _D.batch_size,
    optimizer: Annotated[Optimizer, typer.Option(
        rich_help_panel=_TRAINING, help="Optimizer", **choice(Optimizer, "optimizer"))] = _D.optimizer,
    lr: Annotated[Optional[float], typer.Option(
        rich_help_panel=_TRAINING, help="Learning rate", show_default=_arch_default("lr"))] = _D.lr,
    label_smoothing: Annotated[float, typer.Option(
        rich_help_panel=_TRAINING, help="Label smoothing of the loss")] = _D.label_smoothing,
    patience: Annotated[Optional[int], typer.Option(
        rich_help_panel=_TRAINING,
        help="Early-stopping patience in epochs, on validation loss; the best epoch's weights are kept (0 disables)",
        show_default=_arch_default("patience"),
    )] = _D.patience,
    seed: Annotated[int, typer.Option(
        rich_help_panel=_TRAINING, help="Seed for the split, weights and augmentation (deterministic on CPU)",
    )] = _D.seed,
    strategy: Annotated[Strategy, typer.Option(
        rich_help_panel=_TRAINING, help="tf.distribute strategy", **choice(Strategy, "strategy"))] = _D.strategy,
    # --- a Keras application as the backbone
    alpha: Annotated[Optional[float], typer.Option(
        rich_help_panel=_MODEL,
        help="Width multiplier of seed, mobile (filters, multiples of 8), mobilenet_v2 / mobilenet_v3_small "
        "(ImageNet weights: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 / 0.75, 1.0)",
        show_default="1.0",
    )] = _D.alpha,
    weights: Annotated[str, typer.Option(
        rich_help_panel=_KERAS,
        help="imagenet (downloaded once to ~/.keras/models) | none (random, trained from scratch in one phase) | "
        "a weights FILE of the backbone without its top (.h5, .weights.h5)", metavar="imagenet|none|FILE",
    )] = _D.weights,
    fine_tune_epochs: Annotated[int, typer.Option(
        rich_help_panel=_KERAS,
        help="Epochs of the second phase, the top blocks unfrozen after --epochs with the backbone frozen "
        "(0: it stays frozen)",
    )] = _D.fine_tune_epochs,
    fine_tune_lr: Annotated[Optional[float], typer.Option(
        rich_help_panel=_KERAS, help="Learning rate of the fine-tuning phase", show_default="--lr / 10",
    )] = _D.fine_tune_lr,
    # --- a pretrained .tflite backbone (edgecls.transfer: numpy and LiteRT, no TensorFlow, works on a device too)
    backbone: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_BACKBONE, metavar="FILE.tflite",
        help="A pretrained NHWC .tflite image classifier or feature extractor (float32, uint8 or int8): cut at its "
             "embedding, a new head fitted with numpy and grafted on as TFLite ops; writes "
             "RUN/export/model_<mode>.tflite. --epochs, --patience, --lr, --batch-size then apply to the head, "
             "and unset keep the head's own defaults")] = None,
    embedding_tensor: Annotated[Optional[str], typer.Option(
        rich_help_panel=_BACKBONE, help="The tensor the head reads",
        show_default="the input of the last FULLY_CONNECTED or 1x1 CONV_2D")] = _D.embedding_tensor,
    head: Annotated[Head, typer.Option(
        rich_help_panel=_BACKBONE, help="linear (softmax regression) | mlp (one hidden ReLU layer)",
        **choice(Head, "head"))] = _D.head,
    views: Annotated[int, typer.Option(
        rich_help_panel=_BACKBONE,
        help="Views per training image, the image itself included; the others flipped, turned and cropped",
    )] = _D.views,
    threads: Annotated[Optional[int], typer.Option(
        min=1, rich_help_panel=_BACKBONE, help="Interpreter threads", show_default="the CPU count",
    )] = _D.threads,
    input_range: Annotated[Optional[str], typer.Option(
        metavar="LO,HI", rich_help_panel=_BACKBONE,
        help="What pixels 0 and 255 become for a float backbone (-1,1 for MobileNet style)",
        show_default="its metadata's range, else 0,255; quantised: its own",
    )] = _D.input_range,
    accept: AcceptOption = _D.accept,
    unknown_data: UnknownDataOption = None,
    rule: RuleOption = _D.rule,
    # --- distillation: a teacher .tflite labels every training view (edgecls.train.distill)
    teacher: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_DISTILL, metavar="MODEL.tflite",
        help="A classifier .tflite with the data's classes: it labels each training view, on the fly")] = None,
    distill_alpha: Annotated[float, typer.Option(
        rich_help_panel=_DISTILL,
        metavar="W", help="The labels' share of the loss",
    )] = _D.distill_alpha,
    distill_temperature: Annotated[float, typer.Option(
        rich_help_panel=_DISTILL, metavar="T",
        help="Softens both probabilities",
    )] = _D.distill_temperature,
    unlabeled: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_DISTILL, metavar="FOLDER",
        help="Pictures only the teacher labels")] = None,
    mixup: Annotated[float, typer.Option(
        rich_help_panel=_DISTILL, metavar="A",
        help="Mix view pairs, Beta(A, A)")] = _D.mixup,
    # --- retraining (edgecls.retraining)
    from_run: Annotated[Optional[Path], typer.Option(
        "--from", metavar="RUN", rich_help_panel=_RETRAIN, is_eager=True, callback=_read_run,
        help="Train again as RUN was: its options and its validation and test images (by content digest), so "
             "edgecls bench compare RUN NEW compares the two", show_default="none")] = None,
    add: Annotated[Optional[list[Path]], typer.Option(
        "--add", metavar="DIR", rich_help_panel=_RETRAIN,
        help="With --from: class folders (predict --collect's, labelled) joined to train only; unknown/ as "
             "negatives; near-duplicates of RUN's held-out images left out. Repeatable", show_default="none")] = None,
    # --- output
    out: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_OUTPUT, help="Run directory to create",
        show_default="runs/<data>-<arch>, runs/<data>-<backbone>; --from RUN: RUN-2",
    )] = None,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=_OUTPUT,
        help="Replace an existing run directory; with --backbone also write a head no better than always answering "
             "the majority class (there train is the export, which refuses it otherwise)")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", rich_help_panel=_OUTPUT, help="One line per epoch instead of progress bars")] = False,
    config: Annotated[Optional[Path], typer.Option(
        metavar="FILE.toml", help="A TOML file whose keys mirror these options (options given here win), e.g. a "
        "run's config.toml", is_eager=True, callback=_read_config,
    )] = None,
) -> None:
    """Train a classifier and write a run directory (model.keras, labels, split, metrics, plots).

    With --backbone FILE.tflite: a new head on a pretrained .tflite, numpy and LiteRT only (also on a device).
    """
    options = TrainOptions(**{name: plain(value) for name, value in ctx.params.items() if name in TRAIN_FIELDS})
    reporter = Reporter(bars=False) if quiet else Reporter()  # lines on stderr; bars on a terminal
    if options.backbone is not None:  # before any TensorFlow import: this route never needs it
        from edgecls.transfer.job import train_from_options

        sources = {name: ctx.get_parameter_source(name).name for name in ctx.params}
        given = {name for name, source in sources.items() if source != "DEFAULT"}
        from_config = {name for name, source in sources.items() if source == "DEFAULT_MAP"}
        result = train_from_options(options, given, force=force, reporter=reporter,
                                    config=str(config) if config else None, from_config=from_config)
    else:
        from edgecls.train.job import train as run_training
        from edgecls.train.options import validate

        validate(options)
        result = run_training(options, force=force, reporter=reporter)
    echo_wrapped(result.summary())
    for warning in result.warnings():
        echo_wrapped(f"WARNING: {warning}", err=True)
