"""The `edgecls` command line: thin commands that parse options and call library functions.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so that
`edgecls predict` on a device never pays for them, and cheap checks (an existing --out, a bad
choice) fail before them.

Style, so that adding an option is one edit here (plus its field, for train):
- each parameter is `name: Annotated[type, typer.Option(help=...)] = default`; choices are Enums
  made from the library's own tuples by `_choices` (case-insensitive, one-line errors);
- a default that is not a plain value is shown with `show_default="..."` (never "[default: ...]"
  in the help text: Rich markup eats the brackets);
- every command's epilog has at least one example;
- `train`'s parameters mirror `TrainOptions` field for field (tests/test_train.py checks it), and
  `--config FILE.toml` feeds Click's `default_map`, so the TOML keys are the option names for free.

Exit codes: 0 success; 1 the job ran but failed (e.g. some files in a batch could not be
classified, or int8 agreement fell below --min-agreement); 2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecls.entry import fail, guarded, predict_options, prepare_process, run_predict
from edgecls.errors import EdgeclsError
from edgecls.explain import DEFAULT_THRESHOLD_DB, FILLS, METHODS
from edgecls.export.modes import (
    DEFAULT_FALLBACK,
    DEFAULT_MAX_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_QUANT,
    DEFAULT_RUNS,
    MODES_HELP,
    QUANTIZERS,
)
from edgecls.rundir import DEFAULT_CALIB_SAMPLES
from edgecls.runtime.capture import CAPTURE_BACKENDS
from edgecls.runtime.preprocess import DEFAULT_FIT, DEFAULT_RESIZE, FITS, RESIZE_METHODS
from edgecls.runtime.stream import DEFAULT_RECONNECT, DEFAULT_TIMEOUT
from edgecls.train.options import ARCHITECTURES, COLORS, DEFAULTS, HEADS, OPTIMIZERS, STRATEGIES, TrainOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a small image classifier, quantise it to int8 TFLite, and run and benchmark it on Pi-class CPUs.\n\n"
    "Exit codes: 0 ok; 1 the job failed (a batch had bad files, a quality gate failed); 2 bad input; 130 interrupted.",
    epilog="Example: edgecls train && edgecls export runs/digits-seed && edgecls bench runs/digits-seed",
)


def _show_version(value: bool) -> None:
    if value:
        from edgecls import __version__

        typer.echo(f"edgecls {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the edgecls version and exit", metavar="")] = False,
) -> None:
    """Keeps `edgecls` a group of sub-commands."""


INTERRUPTED = 130  # the exit code of a Ctrl-C
_fail = fail  # one line on stderr and the exit code (edgecls.entry: the lean predict path shares it)


def _to_stderr(message: str) -> None:
    typer.echo(message, err=True)


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum of the library's own choice tuple: the one list the CLI, the TOML and validation share."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)  # type: ignore[return-value]


def _choice(kind: type[Enum], what: str) -> dict[str, Any]:
    """typer.Option arguments for an Enum choice: case-insensitive (`--color RGB`), a one-line
    'unknown <what>' error, and the choices as the metavar."""
    names = [member.value for member in kind]

    def parse(value: Any) -> Enum:
        if isinstance(value, kind):
            return value
        for member in kind:
            if member.value.lower() == str(value).strip().lower():
                return member
        raise typer.BadParameter(f"unknown {what} {value!r}: use one of {', '.join(names)}")

    return {"parser": parse, "metavar": "|".join(names)}


def _plain(value: Any) -> Any:
    """What the library takes: Enum members as their strings, paths as strings."""
    if isinstance(value, Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


Arch = _choices("Arch", ARCHITECTURES)
Color = _choices("Color", COLORS)
Optimizer = _choices("Optimizer", OPTIMIZERS)
Strategy = _choices("Strategy", STRATEGIES)
Quantizer = _choices("Quantizer", QUANTIZERS)
Head = _choices("Head", HEADS)
ExplainMethod = _choices("ExplainMethod", METHODS)
Fill = _choices("Fill", FILLS)
Resize = _choices("Resize", RESIZE_METHODS)
Fit = _choices("Fit", FITS)


# ----------------------------------------------------------------------------- train
_D = DEFAULTS
TRAIN_FIELDS = {f.name for f in fields(TrainOptions)}


def _read_config(ctx: typer.Context, path: Optional[Path]) -> Optional[Path]:
    """--config FILE.toml: its keys become the options' defaults (Click's default_map), so options
    given on the command line win and every key is checked like the option it names."""
    if path is not None:
        from edgecls.train.options import read_config

        ctx.default_map = {**(ctx.default_map or {}), **read_config(path)}
    return path


@app.command(epilog="Examples:\n\n"
             "edgecls train --epochs 5\n\n"
             "edgecls train --data ../shared/data/catsdogs --arch mobile --img-size 96 --out runs/catsdogs\n\n"
             "edgecls train --config runs/digits-seed/config.toml --out runs/again\n\n"
             "edgecls train --data ../shared/data/catsdogs --backbone ../shared/data/pretrained/"
             "mobilenet_v1_0.25_128_quant.tflite --out runs/catsdogs-mobilenet\n\n"
             "edgecls train --data photos/ --arch mobilenet_v2 --alpha 0.35 --weights imagenet  # internet once")
def train(
    ctx: typer.Context,
    data: Annotated[
        str,
        typer.Option(
            help="digits | mnist | fashion_mnist | cifar10 | a folder of class sub-folders | a folder of IDX files"
        ),
    ] = _D.data,
    out: Annotated[
        Optional[Path], typer.Option(help="Run directory to create", show_default="runs/<data>-<arch>")
    ] = None,
    arch: Annotated[
        Arch,
        typer.Option(
            help="seed (the classic conv/pool/dense CNN) | mobile (depthwise-separable, for RGB photos) | "
            "mobilenet_v2 | mobilenet_v3_small | efficientnet_b0 (keras.applications backbones, see --weights)",
            **_choice(Arch, "architecture"),
        ),
    ] = _D.arch,
    img_size: Annotated[
        Optional[int],
        typer.Option(help="Square input size in pixels", show_default="the dataset's own, 96 for folders"),
    ] = None,
    color: Annotated[
        Optional[Color],
        typer.Option(
            help="Colour mode", show_default="the dataset's own; rgb for folders", **_choice(Color, "colour mode")
        ),
    ] = None,
    augment: Annotated[
        Optional[str],
        typer.Option(
            help="Comma list of flip,rotate,zoom,translate,contrast, or none",
            show_default="per dataset; no flip for digits",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping restores the best)")] = _D.epochs,
    batch_size: Annotated[int, typer.Option(help="Training batch size")] = _D.batch_size,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer", **_choice(Optimizer, "optimizer"))] = _D.optimizer,
    lr: Annotated[float, typer.Option(help="Learning rate")] = _D.lr,
    kernel_size: Annotated[int, typer.Option(help="Convolution kernel size (seed architecture)")] = _D.kernel_size,
    activation: Annotated[
        str, typer.Option(help="relu | relu6 | elu | gelu | swish | tanh | ... (seed architecture)")
    ] = _D.activation,
    dropout: Annotated[float, typer.Option(help="Dropout before the classifier")] = _D.dropout,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing of the loss")] = _D.label_smoothing,
    patience: Annotated[
        int,
        typer.Option(
            help="Early-stopping patience in epochs, on validation loss; the best epoch's weights are kept "
            "(0 disables)"
        ),
    ] = _D.patience,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the data held out for validation")] = _D.val_fraction,
    test_fraction: Annotated[float, typer.Option(help="Fraction of the data held out for the test")] = _D.test_fraction,
    seed: Annotated[
        int, typer.Option(help="Seed for the split, weights and augmentation (deterministic on CPU)")
    ] = _D.seed,
    strategy: Annotated[
        Strategy, typer.Option(help="tf.distribute strategy", **_choice(Strategy, "strategy"))
    ] = _D.strategy,
    alpha: Annotated[
        Optional[float],
        typer.Option(help="Width multiplier of mobilenet_v2 / mobilenet_v3_small (ImageNet weights exist for "
                     "0.35, 0.5, 0.75, 1.0, 1.3, 1.4 / 0.75, 1.0)", show_default="1.0"),
    ] = _D.alpha,
    weights: Annotated[
        str,
        typer.Option(help="Keras backbones: imagenet (downloaded once to ~/.keras/models) | none (random, trained "
                     "from scratch in one phase) | a weights FILE of the backbone without its top (.h5, .weights.h5)",
                     metavar="imagenet|none|FILE"),
    ] = _D.weights,
    fine_tune_epochs: Annotated[
        int,
        typer.Option(help="Keras backbones: epochs of the second phase, the top blocks unfrozen after --epochs "
                     "with the backbone frozen (0: it stays frozen)"),
    ] = _D.fine_tune_epochs,
    fine_tune_lr: Annotated[
        Optional[float], typer.Option(help="Learning rate of the fine-tuning phase", show_default="--lr / 10")
    ] = _D.fine_tune_lr,
    # --- a pretrained .tflite backbone (edgecls.transfer: numpy and LiteRT, no TensorFlow, works on a device too)
    backbone: Annotated[Optional[Path], typer.Option(
        help="A pretrained NHWC .tflite image classifier or feature extractor (float32, uint8 or int8): cut at its "
             "embedding, a new head fitted with numpy and grafted on as TFLite ops; writes "
             "RUN/export/model_<mode>.tflite, no TensorFlow needed. --epochs, --patience, --lr, --batch-size "
             "then apply to the head, and unset keep the head's own defaults")] = None,
    embedding_tensor: Annotated[Optional[str], typer.Option(
        help="With --backbone: the tensor the head reads",
        show_default="the input of the last FULLY_CONNECTED or 1x1 CONV_2D")] = _D.embedding_tensor,
    head: Annotated[Head, typer.Option(help="With --backbone: linear (softmax regression) | mlp (one hidden ReLU "
                                            "layer)", **_choice(Head, "head"))] = _D.head,
    views: Annotated[int, typer.Option(help="With --backbone: views per training image, the image itself included; "
                                            "the others flipped, turned and cropped")] = _D.views,
    threads: Annotated[Optional[int], typer.Option(min=1, help="With --backbone: interpreter threads",
                                                   show_default="the CPU count")] = _D.threads,
    input_range: Annotated[Optional[str], typer.Option(
        metavar="LO,HI", help="With --backbone: what pixels 0 and 255 become for a float backbone (-1,1 for "
                              "MobileNet style)", show_default="its metadata's range, else 0,255; quantised: its own",
    )] = _D.input_range,
    config: Annotated[
        Optional[Path],
        typer.Option(
            help="TOML file whose keys mirror these options (options given here win)",
            is_eager=True,
            callback=_read_config,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing run directory", metavar="")] = False,
    quiet: Annotated[bool, typer.Option(help="One line per epoch instead of progress bars", metavar="")] = False,
) -> None:
    """Train a classifier and write a run directory (model.keras, labels, split, metrics, plots).

    With --backbone FILE.tflite: a new head on a pretrained .tflite, numpy and LiteRT only (also on a device).
    """
    options = TrainOptions(**{name: _plain(value) for name, value in ctx.params.items() if name in TRAIN_FIELDS})
    if options.backbone is not None:  # before any TensorFlow import: this route never needs it
        from edgecls.transfer.job import train_from_options

        given = {name for name in ctx.params if ctx.get_parameter_source(name).name != "DEFAULT"}
        typer.echo(train_from_options(options, given, force=force, quiet=quiet, log=_to_stderr).summary())
        return
    from edgecls.train.fit import train as run_training
    from edgecls.train.options import validate

    validate(options)
    result = run_training(options, force=force, quiet=quiet, log=_to_stderr)
    m = result.metrics
    typer.echo(
        f"\nTest accuracy {result.test_accuracy:.4f} on {m['counts']['test']} held-out images "
        f"(validation {result.val_accuracy:.4f}; best epoch {m['best_epoch']} of {result.epochs_run}; "
        f"{result.seconds:.0f} s of training). Run directory: {result.run_dir} "
        f"(model.keras, labels.txt, split.json, metrics.json, curves.png). "
        f"Next: edgecls export {result.run_dir}"
    )
    for warning in m.get("warnings", []):
        typer.echo(f"WARNING: {warning}", err=True)
    if m.get("collapsed"):
        typer.echo(f"WARNING: do not ship this model (edgecls export refuses it without --force): "
                   f"{m['quality']['advice']}", err=True)


# ----------------------------------------------------------------------------- export
# `export --target`: search the candidates for one device. One block, so it can move as a whole.
_TARGET = "Which file to ship (--target)"
_TargetSpec = Annotated[Optional[str], typer.Option(
    "--target", metavar="DEVICE", rich_help_panel=_TARGET, show_default="none: export --quant's modes",
    help="Try every candidate (float32, float16, dynamic, int8 by each quantiser, int8 with clipped ranges, int8 "
         "with the worst ops in float), time them on DEVICE and write the fastest within the budget as "
         "OUT/model.tflite: host (this machine), a device profile (rpi5, rpi4, ...: this machine under its "
         "constraints) or user@host (timed on the device over SSH)")]
_MaxDrop = Annotated[float, typer.Option(
    "--max-drop", min=0, metavar="POINTS", rich_help_panel=_TARGET,
    help="Budget: top-1 accuracy points a candidate may lose against the Keras float model on the validation split")]
_BudgetS = Annotated[Optional[float], typer.Option(
    "--budget-s", min=0.001, metavar="SECONDS", rich_help_panel=_TARGET, show_default="no limit",
    help="Stop starting new candidates after this many seconds of the search (the first is always tried; the "
         "rest are listed as skipped for time)")]
_MaxFallback = Annotated[int, typer.Option(
    "--max-fallback", min=0, metavar="K", rich_help_panel=_TARGET,
    help="Also try int8 with the k = 1..K worst ops (the diagnosis ranking) in float")]
_Candidates = Annotated[Optional[str], typer.Option(
    "--candidates", metavar="NAMES", rich_help_panel=_TARGET, show_default="all",
    help="Comma list of the candidates to try: float32, dynamic, int8, float16, int8-litert, int8-pct99.9, "
         "int8-pct99.99, int8-fallback1..K")]
_TimingRuns = Annotated[int, typer.Option(
    "--timing-runs", min=1, metavar="N", rich_help_panel=_TARGET,
    help="Timed images per candidate on the target (interleaved rounds)")]


@app.command("export", epilog="Examples:\n\n"
             "edgecls export runs/digits-seed\n\n"
             "edgecls export runs/digits-seed --quant all --calib-samples 300\n\n"
             "edgecls export runs/digits-seed --auto-fallback 2 --out runs/digits-seed/mixed\n\n"
             "edgecls export runs/digits-seed --target rpi5 --max-drop 0.5 --budget-s 300")
def export_command(
    source: Annotated[Path, typer.Argument(help="A run directory (made by edgecls train) or a bare .keras file")],
    quant: Annotated[str, typer.Option(help=MODES_HELP)] = DEFAULT_QUANT,
    calib_samples: Annotated[int, typer.Option(help="Calibration images from the train split, stratified by class "
                                               "(all of them if the split has fewer)")] = DEFAULT_CALIB_SAMPLES,
    quantizer: Annotated[Quantizer, typer.Option(help="converter (TensorFlow's TFLite converter) | litert "
                                                 "(ai-edge-quantizer, static int8 recipe, on the float32 model)",
                                                 **_choice(Quantizer, "quantizer"))] = "converter",
    out: Annotated[Optional[Path], typer.Option(help="Output folder", show_default="RUN_DIR/export")] = None,
    data: Annotated[Optional[str], typer.Option(help="The images of a bare .keras file (digits, a folder, ...); "
                                                "for a run directory, where its data now is",
                                                show_default="the run's own data")] = None,
    min_agreement: Annotated[float, typer.Option(help="Least top-1 agreement of int8/uint8 with the float model "
                                                 "on the validation split")] = DEFAULT_MIN_AGREEMENT,
    force: Annotated[bool, typer.Option(help="Write the files even when int8 agreement is below "
                                        "--min-agreement, or the model is no better than always answering "
                                        "the majority class", metavar="")] = False,
    keep_float: Annotated[Optional[list[str]], typer.Option(
        "--keep-float", metavar="OP_OR_LAYER", show_default="none", help=(
            "Also write a mixed model_int8_mixed.tflite keeping this Keras layer (conv2), op type (FULLY_CONNECTED) "
            "or node in float; repeat the option or give a comma list"))] = None,
    auto_fallback: Annotated[int, typer.Option("--auto-fallback", metavar="K", min=0, help=(
        "Also write model_int8_mixed.tflite keeping the K ops that int8 hurts most (RMSE/scale, TensorFlow's "
        "QuantizationDebugger) in float"))] = 0,
    target: _TargetSpec = None,
    max_drop: _MaxDrop = DEFAULT_MAX_DROP,
    budget_s: _BudgetS = None,
    max_fallback: _MaxFallback = DEFAULT_FALLBACK,
    candidates: _Candidates = None,
    timing_runs: _TimingRuns = DEFAULT_RUNS,
) -> None:
    """Convert a trained model to .tflite files (float32 and int8 by default) that carry their labels and input spec.

    Each file is scored with the device-side runtime on the validation split before anything is
    written: a table of size, accuracy and top-1 agreement with the Keras float model. Writes
    OUT/model_<mode>.tflite, OUT/labels.txt and OUT/export.json; with --keep-float or
    --auto-fallback also OUT/model_int8_mixed.tflite (int8 input and output, the named ops in float).
    With --target DEVICE: every candidate is made, scored on validation and timed on DEVICE, and the
    fastest within --max-drop / --min-agreement is written as RUN/target-DEVICE/model.tflite (its test
    figures are measured only after the choice).

    Exit codes: 0 ok; 1 conversion failed, or int8 agreement fell below --min-agreement (nothing
    written; --force writes anyway), or no --target candidate is within the budget; 2 bad input.
    """
    if target is not None:
        given = [name for name, used in (("--quant", quant != DEFAULT_QUANT), ("--quantizer", quantizer.value !=
                 "converter"), ("--force", force), ("--keep-float", bool(keep_float)),
                 ("--auto-fallback", bool(auto_fallback))) if used]
        if given:
            _fail(f"--target makes and chooses its own candidates: drop {', '.join(given)}")
        from edgecls.export.target import TargetOptions, export_for_target, parse_candidates
        from edgecls.export.target_report import render_target_table
        from edgecls.rundir import open_source

        options = TargetOptions(target, max_drop, min_agreement, budget_s, calib_samples, max_fallback,
                                parse_candidates(candidates), timing_runs, out)
        shipped = export_for_target(open_source(source, data), options, log=_to_stderr)
        from rich.console import Console

        Console().print(render_target_table(shipped))
        typer.echo(f"Wrote {', '.join(p.name for p in shipped.written)} to {shipped.out_dir}")
        return
    from edgecls.export.job import ExportOptions, export, parse_names
    from edgecls.export.modes import parse_modes
    from edgecls.export.report import render_export_table
    from edgecls.rundir import open_source

    options = ExportOptions(parse_modes(quant, quantizer.value), quantizer.value, calib_samples, out, min_agreement,
                            force, keep_float=parse_names(keep_float), auto_fallback=auto_fallback)
    result = export(open_source(source, data), options, log=_to_stderr)
    from rich.console import Console

    Console().print(render_export_table(result))
    if result.written:
        typer.echo(f"Wrote {', '.join(p.name for p in result.written)} to {result.out_dir}")
        if result.passed:
            from edgecls.rundir import EXPORT_DIR

            # bench RUN_DIR reads RUN_DIR/export; files written elsewhere are benched by name
            default_out = source.is_dir() and Path(result.out_dir).resolve() == (source / EXPORT_DIR).resolve()
            tflites = " ".join(str(p) for p in result.written if p.suffix == ".tflite")
            typer.echo(f"Next: edgecls bench {source if default_out else tflites}")
    if not result.passed:
        if not result.written:
            _fail(result.advice(), 1)
        typer.echo(f"warning: {result.advice()}", err=True)


# ----------------------------------------------------------------------------- device side
# predict / info / doctor import only edgecls.runtime (numpy, Pillow, an interpreter): never TensorFlow.
_BACKEND_HELP = "litert | tflite_runtime | tensorflow"
_BACKEND_DEFAULT = "$EDGECLS_BACKEND, else the first one installed, in that order"
_INPUT_RANGE_HELP = ("LO,HI: the input values pixels 0 and 255 become, for a model that does not scale inside: "
                     "-1,1 (MobileNet style), 0,1, ...; overrides the model's metadata")
_INPUT_RANGE_DEFAULT = ("the metadata's range; else 0,255 for a float input (edgecls models scale inside), the raw "
                        "bytes for a quantised one")
Backend = Annotated[Optional[str], typer.Option(help=_BACKEND_HELP, show_default=_BACKEND_DEFAULT)]
Threads = Annotated[Optional[int], typer.Option(min=1, help="Interpreter threads", show_default="the CPU count")]
InputRange = Annotated[
    Optional[str],
    typer.Option("--input-range", metavar="LO,HI", help=_INPUT_RANGE_HELP, show_default=_INPUT_RANGE_DEFAULT),
]


# `predict --source`: live input (a camera, video file or stream). One block, so it can move as a whole.
Capture = _choices("Capture", CAPTURE_BACKENDS)
_LIVE = "Live input"
_LiveSource = Annotated[Optional[str], typer.Option(
    "--source", metavar="SOURCE", rich_help_panel=_LIVE, show_default="none: classify IMAGES",
    help="Classify live frames instead of IMAGES: camera (camera:0), camera:N, a video file, rtsp://... or "
         "http(s)://.../stream.mjpg; one row per classified frame with its time, frame number and latency; "
         "Ctrl-C ends it with a summary")]
_LiveEvery = Annotated[int, typer.Option("--every", min=1, metavar="N", rich_help_panel=_LIVE,
                                         help="Classify every Nth frame")]
_LiveFps = Annotated[Optional[float], typer.Option(
    "--fps", min=0.001, metavar="F", rich_help_panel=_LIVE, show_default="no limit",
    help="Classify at most F frames a second (of the video's own time for a file)")]
_LiveDuration = Annotated[Optional[float], typer.Option(
    "--duration", min=0.001, metavar="SECONDS", rich_help_panel=_LIVE,
    show_default="until the source ends or Ctrl-C",
    help="Stop after this many seconds of the source (of the video's own time for a file)")]
_LiveTimeout = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS", rich_help_panel=_LIVE,
    help="How long to wait for a stream to connect, or for its next frame")]
_LiveReconnect = Annotated[float, typer.Option(
    "--reconnect", min=0, metavar="SECONDS", rich_help_panel=_LIVE,
    help="After a camera or stream drops, keep reopening it (with back-off) this long; 0: end at once")]
_LiveCapture = Annotated[Optional[Capture], typer.Option(
    "--capture", rich_help_panel=_LIVE, show_default="picamera2 for a camera when installed, else opencv",
    help="The capture backend", **_choice(Capture, "capture backend"))]

_PREPROCESSING_DEFAULT = f"the model's metadata, else {DEFAULT_RESIZE}"
ResizeOption = Annotated[Optional[Resize], typer.Option(
    help="How a picture is resized to the model's input: match what the model was trained or evaluated with "
    "(Google's Coral MobileNets: nearest)", show_default=_PREPROCESSING_DEFAULT, **_choice(Resize, "resize method"))]
FitOption = Annotated[Optional[Fit], typer.Option(
    help="stretch: the whole picture, aspect ratio not kept; crop: its centre at the model's aspect ratio",
    show_default=f"the model's metadata, else {DEFAULT_FIT}", **_choice(Fit, "fit"))]


@app.command(epilog="Examples:\n\n"
             "edgecls predict runs/digits-seed/export/model_int8.tflite photos/ --top-k 3\n\n"
             "edgecls predict mobilenet_v1_0.5_160_quant.tflite cat.bmp --labels imagenet_labels.txt --resize nearest "
             "--json\n\n"
             "edgecls predict model_int8.tflite --source camera:0 --fps 5 --top-k 3\n\n"
             "edgecls predict model_int8.tflite --source clip.avi --every 10 --json > frames.jsonl")
def predict(
    model: Annotated[Path, typer.Argument(help="A .tflite image classifier (edgecls' own, or any NHWC one)")],
    images: Annotated[Optional[list[str]], typer.Argument(
        help="Image files, folders (searched recursively) and glob patterns (or --source for a camera, video or "
             "stream)", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes to show per image")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table", metavar="")
    ] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV (file,rank,index,label,score,error) instead of a table", metavar="")
    ] = False,
    threads: Threads = None,
    labels: Annotated[
        Optional[Path],
        typer.Option(help="Labels file ('0 cat', '0: cat' or one name a line); overrides the model's own labels"),
    ] = None,
    backend: Backend = None,
    input_range: InputRange = None,
    source: _LiveSource = None,
    every: _LiveEvery = 1,
    fps: _LiveFps = None,
    duration: _LiveDuration = None,
    timeout: _LiveTimeout = DEFAULT_TIMEOUT,
    reconnect: _LiveReconnect = DEFAULT_RECONNECT,
    capture: _LiveCapture = None,
    resize: ResizeOption = None,
    fit: FitOption = None,
) -> None:
    """Classify images with a .tflite model, one output row per image, streamed as they are done.

    A file that cannot be read becomes an error row with its reason and the run goes on.

    With --source, frames of a camera, video file or network stream are classified instead (OpenCV: pip install 'edgecls\\[camera]'; picamera2 on Raspberry Pi OS); when the model is slower than a camera or stream, frames are dropped, never queued.

    Exit codes: 0 every image classified, or the video or --duration ended; 1 some images failed (see their error rows), or a live source failed mid-way (its rows are kept); 2 bad model, labels file or arguments (arguments that name no image, a camera or stream that cannot be opened); 130 Ctrl-C (after the summary).
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    if source is not None and images:
        raise EdgeclsError("give IMAGES or --source, not both")
    if source is None and not images:
        raise EdgeclsError("give image files, folders or globs to classify, or --source for a camera, video or stream")
    arguments: dict[str, Any] = dict(top_k=top_k, as_json=as_json, as_csv=as_csv, threads=threads,
                                     labels=str(labels) if labels else None, backend=backend, input_range=input_range,
                                     resize=_plain(resize), fit=_plain(fit))
    if source is not None:
        from edgecls.live import predict_stream

        raise typer.Exit(predict_stream(str(model), source, every=every, fps=fps, duration=duration, timeout=timeout,
                                        reconnect=reconnect, capture=_plain(capture), **predict_options(**arguments)))
    # The body lives in edgecls.entry, which also runs it without Typer (the lean predict path).
    raise typer.Exit(run_predict(model=str(model), images=images, **arguments))


@app.command(epilog="Example: edgecls info runs/digits-seed/export/model_int8.tflite --json")
def info(
    model: Annotated[Path, typer.Argument(help="Any .tflite file")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON", metavar="")] = False,
    backend: Backend = None,
) -> None:
    """Show a .tflite model: tensors, ops, size, quantisation, metadata.

    Inputs and outputs (shape, dtype, scale, zero point, per-channel or not), the op histogram,
    the size, the detected quantisation mode, the embedded edgecls metadata and the interpreter
    backend that read it. Works on third-party models without metadata.

    Exit codes: 0 ok; 2 not a readable .tflite.
    """
    from edgecls.runtime.inspect import inspect_model

    report = inspect_model(model, backend=backend)
    if as_json:
        import json

        from edgecls.console import json_ready

        typer.echo(json.dumps(json_ready(report), indent=2, ensure_ascii=False))
    else:
        from edgecls.console import show_info

        show_info(report)


@app.command(epilog="Example: edgecls doctor --json")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON", metavar="")] = False,
) -> None:
    """Check that this machine can run the device side (predict, info, bench of a .tflite).

    Reports platform, architecture, Python, numpy, Pillow, the interpreter backend found and its
    version, whether TensorFlow is installed, the CPU count, and warnings for known traps.

    Exit codes: 0 an interpreter backend works; 1 none does.
    """
    from edgecls.runtime.doctor import doctor_report

    report = doctor_report()
    if as_json:
        import json

        typer.echo(json.dumps(report, indent=2))
    else:
        from edgecls.console import show_doctor

        show_doctor(report)
    raise typer.Exit(0 if report["ok"] else 1)


# ----------------------------------------------------------------------------- explain
# A .tflite is mapped on the device side (occlusion, RISE: no TensorFlow); a run directory with Grad-CAM.
@app.command(epilog="Examples:\n\n"
             "edgecls explain runs/digits-seed/export/model_int8.tflite seven.png --fill black\n\n"
             "edgecls explain mobilenet_v1_0.25_128_quant.tflite cat.bmp --method rise --labels imagenet_labels.txt\n\n"
             "edgecls explain runs/digits-seed seven.png\n\n"
             "edgecls explain --dataset runs/digits-seed --worst 16")
def explain(
    model: Annotated[
        Optional[Path],
        typer.Argument(help="A .tflite (any NHWC classifier: a device-side occlusion or RISE map, no TensorFlow) "
                       "or a run directory (Grad-CAM)", show_default=False),
    ] = None,
    images: Annotated[
        Optional[list[str]], typer.Argument(help="Image files, folders and glob patterns", show_default=False)
    ] = None,
    dataset: Annotated[
        Optional[Path],
        typer.Option(help="A run directory: map its worst test images (highest loss) with Grad-CAM, on one "
                     "contact sheet (give no MODEL or IMAGES with it)", show_default="none"),
    ] = None,
    method: Annotated[
        Optional[ExplainMethod],
        typer.Option(help="occlusion | rise (a .tflite) | gradcam (a run directory)",
                     show_default="gradcam for a run directory, occlusion for a .tflite",
                     **_choice(ExplainMethod, "method")),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Folder for the PNGs and explain.json", show_default="explain/MODEL_NAME")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON summary instead of a table", metavar="")
    ] = False,
    target: Annotated[
        Optional[int], typer.Option(help="Class index to explain", show_default="each image's top-1")
    ] = None,
    masks: Annotated[int, typer.Option(min=1, help="RISE: random masks per image (the cost, in model runs)")] = 500,
    seed: Annotated[int, typer.Option(help="RISE: mask seed")] = 0,
    fill: Annotated[
        Fill,
        typer.Option(help="Occlusion and RISE: what hidden pixels become: mean (the image's mean colour) | black "
                     "(for dark backgrounds, e.g. digits) | blur", **_choice(Fill, "fill")),
    ] = "mean",
    layer: Annotated[
        Optional[str], typer.Option(help="Grad-CAM: the layer", show_default="the last conv layer")
    ] = None,
    worst: Annotated[int, typer.Option(min=1, help="--dataset: how many test images")] = 16,
    threads: Threads = None,
    labels: Annotated[
        Optional[Path], typer.Option(help="Labels file for a .tflite without its own", show_default="the model's own")
    ] = None,
    backend: Backend = None,
    input_range: InputRange = None,
) -> None:
    """Saliency maps: where a model looks. PNG overlays (image, map with colour bar, top-3) and explain.json.

    edgecls explain MODEL.tflite IMAGES... maps any .tflite on the device side (occlusion or RISE
    through the runtime, no TensorFlow); edgecls explain RUN_DIR IMAGES... uses Grad-CAM on the Keras
    model; edgecls explain --dataset RUN_DIR maps the test images the model gets most wrong.

    Exit codes: 0 ok; 1 some images could not be read (error rows); 2 bad model, option or arguments.
    """
    from edgecls.explain.job import ExplainOptions, run_explain
    from edgecls.parsing import parse_range

    options = ExplainOptions(method=_plain(method), out=out, target=target,
                             masks=masks, seed=seed, fill=_plain(fill), layer=layer, threads=threads, backend=backend,
                             labels=str(labels) if labels else None, input_range=parse_range(input_range))
    raise typer.Exit(run_explain(model, images or [], dataset, options, worst, as_json, log=_to_stderr))


# ----------------------------------------------------------------------------- bench
# `edgecls bench RUN_DIR|MODEL.tflite ...` measures; `edgecls bench compare A.json B.json ...` merges
# reports. The group runs `run` when the first argument is not a sub-command's name.
from typer.core import TyperGroup  # noqa: E402  (kept beside the only code that needs it)


class _BenchGroup(TyperGroup):
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_BenchGroup, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Quantised against float: accuracy, agreement, latency, size and memory on this machine, with reports.\n\n"
    "edgecls bench RUN_DIR|MODEL.tflite ... measures (the `run` command, the default); "
    "edgecls bench compare A.json B.json ... merges reports from several machines or device profiles.",
    epilog="Examples: edgecls bench runs/digits-seed; edgecls bench compare pi4/bench.json pi5/bench.json",
)
app.add_typer(bench_app, name="bench")


@bench_app.command("run", epilog="Examples:\n\n"
                   "edgecls bench runs/digits-seed --threads 1,4\n\n"
                   "edgecls bench model_int8.tflite --data test-images/ --device rpi4\n\n"
                   "edgecls bench runs/digits-seed --diagnose --calib-sweep 25,100,300\n\n"
                   "edgecls bench runs/digits-seed --explain-flips 5\n\n"
                   "edgecls bench runs/digits-seed --remote pi@raspberrypi.local,pi4 --sustain 10m\n\n"

                   "edgecls bench mobilenet_v1_0.5_160_quant.tflite --labels imagenet_labels.txt --data photos/ "
                   "--resize nearest\n\n"
                   "edgecls bench a.tflite b.tflite --latency-only")
def bench_run(
    paths: Annotated[
        list[Path], typer.Argument(help="A run directory (its exports, as export.json lists them) and/or .tflite files")
    ],
    data: Annotated[
        Optional[str],
        typer.Option(
            help=(
                "Test images. A run directory: where its data now is (its saved test split is used). .tflite "
                "files: a folder of class sub-folders, IDX files or digits: its test part if it has one, else all "
                "of it; but when the model's metadata names a run that is here (its model.keras the one the file "
                "was exported from), with this data or no --data, that run's test split"
            )
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(
            help="Device profile (devices/NAME.toml, or a path): its threads and cores are applied and recorded",
            show_default="none: this machine as it is",
        ),
    ] = None,
    threads: Annotated[
        Optional[str],
        typer.Option(
            help="Comma list of interpreter thread counts to sweep, e.g. 1,2,4",
            show_default="the profile's, else 1 and every usable CPU",
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed invokes per model and thread count before timing")] = 10,
    runs: Annotated[
        int, typer.Option(help="Timed images per model and thread count (batch 1), in interleaved rounds")
    ] = 200,
    batch_size: Annotated[int, typer.Option(help="Batch size for the throughput figure")] = 32,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the JSON report here", show_default="none")
    ] = None,
    report: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder for bench.json, bench.md and the plots",
            show_default="RUN_DIR/bench for a run directory, none for .tflite files",
        ),
    ] = None,
    keras: Annotated[
        bool,
        typer.Option(
            "--keras/--no-keras",
            help="Score the run's Keras float model as the "
            "reference (needs TensorFlow; without it the float32 .tflite is the "
            "reference)",
            metavar="",
        ),
    ] = True,
    memory: Annotated[
        bool,
        typer.Option("--memory/--no-memory", help="Measure peak memory of a device-side process per model", metavar=""),
    ] = True,
    save_test_images: Annotated[
        Optional[Path],
        typer.Option(
            help="Also write the test images as PNG files in class sub-folders: --data for a bench on a device",
            show_default="none",
        ),
    ] = None,
    backend: Backend = None,
    input_range: Annotated[
        Optional[str],
        typer.Option(
            "--input-range",
            metavar="LO,HI",
            help=_INPUT_RANGE_HELP + "; applies to every .tflite benched",
            show_default=_INPUT_RANGE_DEFAULT,
        ),
    ] = None,
    labels: Annotated[Optional[Path], typer.Option(
        help="Labels file for every .tflite (third-party models): --data is then a folder of class sub-folders "
        "named by these labels (exactly, case-insensitively, or by a comma part: 'Egyptian cat', 'tabby'); each "
        "model decodes the images at its own size", show_default="none")] = None,
    latency_only: Annotated[bool, typer.Option(
        "--latency-only", help="No accuracy: latency, memory and size only, on the images under --data (any "
        "layout) or, without --data, random images", metavar="")] = False,
    resize: ResizeOption = None,
    fit: FitOption = None,
    diagnose: Annotated[
        bool,
        typer.Option(
            "--diagnose",
            help="Also rank the int8 ops by quantisation error "
            "(TensorFlow's QuantizationDebugger) and name the worst; needs a run "
            "directory",
            metavar="",
        ),
    ] = False,
    calib_sweep: Annotated[
        Optional[str],
        typer.Option(
            help="Also export int8 with each calibration size, e.g. "
            "25,100,300,1000: accuracy and agreement against N; needs a "
            "run directory",
            show_default="none",
        ),
    ] = None,
    explain_flips: Annotated[
        Optional[int],
        typer.Option(
            "--explain-flips",
            metavar="N",
            help="Also explain every image where the int8 and float32 .tflite disagree, plus the N least-confident "
            "agreements (0: flips only): both models' maps and top-3, the per-layer SNR and the first layer below "
            "--explain-threshold; a report section with contact sheets and a flip matrix",
            show_default="none: no explanation",
        ),
    ] = None,
    explain_threshold: Annotated[
        float, typer.Option(help="--explain-flips: SNR (dB) below which a layer counts as diverged")
    ] = DEFAULT_THRESHOLD_DB,
    # --- real devices and sustained runs (edgecls.bench.remote, edgecls.bench.sustain)
    sustain: Annotated[
        Optional[str],
        typer.Option(
            metavar="DURATION",
            help="After the bench, run steady inference this long (10m, 90s, 1h), sampling latency, CPU temperature, "
            "clock and throttling once a second; with --remote, on the devices",
            show_default="none",
        ),
    ] = None,
    remote: Annotated[
        Optional[str],
        typer.Option(
            metavar="[USER@]HOST[:PORT],...|@FILE",
            help="Also bench on these devices over SSH (the machine's OpenSSH client and its ~/.ssh/config; a comma "
            "list, or @FILE with one host a line), in parallel; the reports are merged beside this host's",
            show_default="none",
        ),
    ] = None,
    remote_python: Annotated[str, typer.Option(help="Python (3.10+) on the device that makes its venv")] = "python3",
    remote_dir: Annotated[
        str, typer.Option(help="Folder on the device for edgecls' venvs and runs (rm -rf it to remove everything)")
    ] = "~/.cache/edgecls-remote",
    wheels: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder of wheels for an offline device (pip install --no-index --find-links there)",
            show_default="the device's own package index",
        ),
    ] = None,
    ssh_config: Annotated[
        Optional[Path],
        typer.Option("--ssh-config", "-F", help="ssh config file (ssh -F)", show_default="~/.ssh/config"),
    ] = None,
) -> None:
    """Benchmark .tflite models (and the run's Keras float model) on the same held-out test images.

    Per model: top-1, top-k, macro-F1, per-class accuracy; against the float model: Δ accuracy,
    top-1 agreement, mean |Δ probability| and the images whose top-1 flipped. Latency through the
    device runtime, all models interleaved round by round: p50/p90/p99 of invoke and of file →
    label, throughput, load and first-inference time, for each thread count; size; peak memory of
    a fresh device-side process. Needs no TensorFlow for .tflite files.

    Exit codes: 0 ok; 1 a --remote device failed (unreachable, refused, no wheel, disk full);
    2 bad input (no exports, class count mismatch, bad option or profile, unwritable report).
    """
    from edgecls.bench.remote import RemoteOptions
    from edgecls.bench.run import BenchOptions, bench, default_report_dir, parse_threads
    from edgecls.bench.sustain import parse_duration
    from edgecls.parsing import int_list, parse_range

    report_dir = report if report is not None else default_report_dir(paths)
    sweep_sizes = int_list(calib_sweep, "--calib-sweep", "25,100,300,1000")
    sustain_s = parse_duration(sustain) if sustain else None
    devices = RemoteOptions(remote, remote_python, remote_dir, wheels, ssh_config) if remote else None
    analyses: list = []
    if diagnose or sweep_sizes:  # they need TensorFlow and the workstation side: injected, never imported by bench
        from edgecls.export.analyses import requested_analyses

        analyses = requested_analyses(paths, diagnose, sweep_sizes, data)
    options = BenchOptions(paths=list(paths), data=data, device=device, threads=parse_threads(threads), warmup=warmup,
                           runs=runs, batch_size=batch_size, keras=keras, backend=backend, memory=memory,
                           input_range=parse_range(input_range), labels=str(labels) if labels else None,
                           latency_only=latency_only, resize=_plain(resize), fit=_plain(fit),
                           save_test_images=save_test_images, json_path=json_path, report_dir=report_dir,
                           command=" ".join(["edgecls", *sys.argv[1:]]),
                           sustain=sustain_s, remote=devices)
    if explain_flips is not None:  # device side (two .tflite files through the runtime), injected like the others
        from edgecls.explain.job import flips_analysis

        analyses.append(flips_analysis(options, explain_flips, explain_threshold))
    bench(options, analyses, log=_to_stderr)


@bench_app.command("compare", epilog="Example: edgecls bench compare pi4/bench.json pi5/bench.json --report cmp/")
def bench_compare(
    reports: Annotated[list[Path], typer.Argument(help="Bench reports (bench.json) from several machines or profiles")],
    report: Annotated[
        Optional[Path],
        typer.Option(help="Folder for compare.md, compare.json and compare.png", show_default="none: the table only"),
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write the merged table as JSON here", show_default="none")
    ] = None,
) -> None:
    """Merge bench reports into one table, each row saying where it was measured.

    Where: a device, a host under a device profile's constraints, or emulation.

    Exit codes: 0 ok; 2 a file is missing or is not a bench report, or the report folder cannot be
    written.
    """
    from edgecls.bench.compare import compare, render_compare_table, write_outputs
    from edgecls.bench.report import check_writable, print_tables

    check_writable(json_path, report)
    merged = compare(reports)
    print_tables(render_compare_table(merged))
    written = write_outputs(merged, report, json_path)
    if written:
        typer.echo(f"Wrote {', '.join(str(p) for p in written)}")


# ----------------------------------------------------------------------------- main
def _cli_exceptions() -> tuple[tuple, tuple, tuple]:
    """(exit, usage-error, abort) exception types. Typer 0.29 has its own Exit/Abort and a vendored
    copy of click (typer._click) and does not install click; older Typers use click itself."""
    exits, usage, aborts = [typer.Exit], [], [typer.Abort]
    try:
        from typer._click import (
            exceptions as vendored,  # a private path, hence the fallbacks
        )

        usage.append(vendored.UsageError)
    except ImportError:
        pass
    try:
        import click
    except ImportError:  # the device side: Typer 0.29 alone
        pass
    else:
        exits.append(click.exceptions.Exit)
        usage.append(click.exceptions.UsageError)
        aborts.append(click.exceptions.Abort)
    return tuple(exits), tuple(usage), tuple(aborts)


def main() -> None:
    """The Typer app with edgecls' error handling (the console script, edgecls.entry, comes here
    for everything but its lean `predict`)."""
    prepare_process()
    exits, usage_errors, aborts = _cli_exceptions()

    def run_app() -> int:
        try:
            # Not standalone: click's usage errors come here and become one line like every other error.
            code = app(standalone_mode=False)  # click returns typer.Exit's code here instead of exiting
        except exits as exc:  # --help, typer.Exit(code)
            raise SystemExit(exc.exit_code) from None
        except usage_errors as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `edgecls` or `edgecls bench`: help was asked for
                typer.echo(exc.format_message())  # the help text
                raise SystemExit(0) from None
            path = exc.ctx.command_path.split(" ", 1) if exc.ctx else []
            where = f"edgecls {path[1]}" if len(path) == 2 else "edgecls"
            _fail(f"{exc.format_message()} (see {where} --help)", 2)
        except aborts:
            _fail("interrupted", INTERRUPTED)
        if code == INTERRUPTED:  # Typer turns a KeyboardInterrupt into a silent return of 130 (no command returns it)
            _fail("interrupted", INTERRUPTED)
        return code if isinstance(code, int) else 0  # what click's standalone mode would have done

    guarded(run_app)  # edgecls errors, interrupts, a closed pipe, anything unforeseen: one line each


if __name__ == "__main__":
    main()
