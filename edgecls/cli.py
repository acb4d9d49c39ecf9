"""The `edgecls` command line: thin commands that parse options and call library functions.

Heavy imports (TensorFlow above all) happen inside the command that needs them, so that
`edgecls predict` on a device never pays for them.

Exit codes: 0 success; 1 the job ran but failed (e.g. some files in a batch could not be
classified, or int8 agreement fell below --min-agreement); 2 bad input or usage; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edgecls.config import DEFAULT_CALIB_SAMPLES, DEFAULT_MIN_AGREEMENT, DEFAULT_QUANT, DEFAULTS
from edgecls.errors import EdgeclsError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train a small image classifier, quantise it to int8 TFLite, and run and benchmark it on Pi-class CPUs.\n\n"
    "Exit codes: 0 ok; 1 the job failed (a batch had bad files, a quality gate failed); 2 bad input; 130 interrupted.",
)


def _show_version(value: bool) -> None:
    if value:
        from edgecls import __version__

        typer.echo(f"edgecls {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the edgecls version and exit"),
) -> None:
    """Keeps `edgecls` a group of sub-commands."""


def _fail(message: str, code: int = 2) -> None:
    from edgecls.runtime.labels import clean_text

    # One line, whatever the message carries (file names with newlines or terminal escapes).
    text = " ".join(clean_text(part) for part in str(message).splitlines())
    typer.echo(f"edgecls: error: {text}", err=True)
    raise SystemExit(code)


# ----------------------------------------------------------------------------- train
_D = DEFAULTS


@app.command()
def train(
    ctx: typer.Context,
    data: str = typer.Option(_D.data, help="digits | mnist | fashion_mnist | cifar10 | a folder of class sub-folders | a folder of IDX files"),
    out: Optional[Path] = typer.Option(None, help="Run directory to create [default: runs/<data>-<arch>]"),
    arch: str = typer.Option(_D.arch, help="seed (the classic conv/pool/dense CNN) | mobile (depthwise-separable, for RGB photos)"),
    img_size: Optional[int] = typer.Option(None, help="Square input size in pixels [default: the dataset's own, 96 for folders]"),
    color: Optional[str] = typer.Option(None, help="grayscale | rgb [default: the dataset's own; rgb for folders]"),
    augment: Optional[str] = typer.Option(None, help="Comma list of flip,rotate,zoom,translate,contrast, or none [default: per dataset; no flip for digits]"),
    epochs: int = typer.Option(_D.epochs, help="Maximum epochs (early stopping restores the best)"),
    batch_size: int = typer.Option(_D.batch_size),
    optimizer: str = typer.Option(_D.optimizer, help="adam | sgd | rmsprop"),
    lr: float = typer.Option(_D.lr, help="Learning rate"),
    kernel_size: int = typer.Option(_D.kernel_size, help="Convolution kernel size (seed architecture)"),
    activation: str = typer.Option(_D.activation, help="relu | relu6 | elu | gelu | swish | tanh | ... (seed architecture)"),
    dropout: float = typer.Option(_D.dropout, help="Dropout before the classifier"),
    label_smoothing: float = typer.Option(_D.label_smoothing),
    patience: int = typer.Option(_D.patience, help="Early-stopping patience in epochs, on validation loss; the best epoch's weights are kept (0 disables)"),
    val_fraction: float = typer.Option(_D.val_fraction),
    test_fraction: float = typer.Option(_D.test_fraction),
    seed: int = typer.Option(_D.seed, help="Seed for the split, weights and augmentation (deterministic on CPU)"),
    strategy: str = typer.Option(_D.strategy, help="default | mirrored | multi-worker (tf.distribute)"),
    config: Optional[Path] = typer.Option(None, help="TOML file whose keys mirror these options (options given here win)"),
    force: bool = typer.Option(False, help="Replace an existing run directory"),
    quiet: bool = typer.Option(False, help="One line per epoch instead of progress bars"),
) -> None:
    """Train a classifier and write a run directory (model.keras, labels, split, metrics, plots)."""
    from edgecls.config import resolve_options

    given = {k: v for k, v in ctx.params.items() if ctx.get_parameter_source(k).name != "DEFAULT"}
    if out is not None:  # a Path on the command line; the TOML's `out` otherwise
        given["out"] = str(out)
    options = resolve_options(given, config_path=config)
    from edgecls.train import train as run_training

    result = run_training(options, force=force, quiet=quiet, log=lambda m: typer.echo(m, err=True))
    m = result.metrics
    typer.echo(
        f"\nTest accuracy {result.test_accuracy:.4f} on {m['counts']['test']} held-out images "
        f"(validation {result.val_accuracy:.4f}; best epoch {m['best_epoch']} of {result.epochs_run}; "
        f"{result.seconds:.0f} s of training). Run directory: {result.run_dir} "
        f"(model.keras, labels.txt, split.json, metrics.json, curves.png). "
        f"Next: edgecls export {result.run_dir}"
    )


# ----------------------------------------------------------------------------- export
@app.command("export")
def export_command(
    source: Path = typer.Argument(..., help="A run directory (made by edgecls train) or a bare .keras file"),
    quant: str = typer.Option(DEFAULT_QUANT, help="Comma list of float32, float16, dynamic, int8 (int8 I/O), "
                              "uint8 (uint8 I/O), or all"),
    calib_samples: int = typer.Option(DEFAULT_CALIB_SAMPLES, help="Calibration images from the train split, stratified by class "
                                      "(all of them if the split has fewer)"),
    quantizer: str = typer.Option("converter", help="converter (TensorFlow's TFLite converter) | litert "
                                  "(ai-edge-quantizer, static int8 recipe, on the float32 model)"),
    out: Optional[Path] = typer.Option(None, help="Output folder  \\[default: RUN_DIR/export]"),
    data: Optional[str] = typer.Option(None, help="The images of a bare .keras file (digits, a folder, ...); "
                                       "for a run directory, where its data now is"),
    min_agreement: float = typer.Option(DEFAULT_MIN_AGREEMENT, help="Least top-1 agreement of int8/uint8 with the float model "
                                        "on the validation split"),
    force: bool = typer.Option(False, help="Write the files even when int8 agreement is below --min-agreement"),
    keep_float: Optional[List[str]] = typer.Option(None, "--keep-float", metavar="OP_OR_LAYER", help=(
        "Also write a mixed model_int8_mixed.tflite keeping this Keras layer (conv2), op type (FULLY_CONNECTED) or "
        "node in float; repeat the option or give a comma list")),
    auto_fallback: int = typer.Option(0, "--auto-fallback", metavar="K", min=0, help=(
        "Also write model_int8_mixed.tflite keeping the K ops that int8 hurts most (RMSE/scale, TensorFlow's "
        "QuantizationDebugger) in float")),
) -> None:
    """Convert a trained model to .tflite files (float32 and int8 by default) that carry their labels and input spec.

    Each file is scored with the device-side runtime on the validation split before anything is written: a table of size, accuracy and top-1 agreement with the Keras float model. Writes OUT/model_<mode>.tflite, OUT/labels.txt and OUT/export.json; with --keep-float or --auto-fallback also OUT/model_int8_mixed.tflite (int8 input and output, the named ops in float).

    Exit codes: 0 ok; 1 conversion failed, or int8 agreement fell below --min-agreement (nothing written; --force writes anyway); 2 bad input.
    """
    from edgecls.export import ExportOptions, export, parse_modes, parse_names, render_table
    from edgecls.rundir import open_source

    options = ExportOptions(parse_modes(quant, quantizer), quantizer, calib_samples, out, min_agreement, force,
                            keep_float=parse_names(keep_float), auto_fallback=auto_fallback)
    result = export(open_source(source, data), options, log=lambda m: typer.echo(m, err=True))
    from rich.console import Console

    Console().print(render_table(result))
    if result.written:
        typer.echo(f"Wrote {', '.join(p.name for p in result.written)} to {result.out_dir}")
    if not result.passed:
        if not result.written:
            _fail(result.advice(), 1)
        typer.echo(f"warning: {result.advice()}", err=True)


# ----------------------------------------------------------------------------- device side
# predict / info / doctor import only edgecls.runtime (numpy, Pillow, an interpreter): never TensorFlow.
_BACKEND_HELP = "litert | tflite_runtime | tensorflow  \\[default: $EDGECLS_BACKEND, else the first one installed, in that order]"
_INPUT_RANGE_HELP = ("LO,HI: the input values pixels 0 and 255 become, for a model that does not scale inside: "
                     "-1,1 (MobileNet style), 0,1, ...; overrides the model's metadata  \\[default: the metadata's "
                     "range; else 0,255 for a float input (edgecls models scale inside), the raw bytes for a "
                     "quantised one]")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="A .tflite image classifier (edgecls' own, or any NHWC one)"),
    images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) and glob patterns"),
    top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Classes to show per image"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table"),
    as_csv: bool = typer.Option(False, "--csv", help="CSV (file,rank,index,label,score,error) instead of a table"),
    threads: Optional[int] = typer.Option(None, min=1, help="Interpreter threads  \\[default: the CPU count]"),
    labels: Optional[Path] = typer.Option(None, help="Labels file ('0 cat', '0: cat' or one name a line); "
                                          "overrides the model's own labels"),
    backend: Optional[str] = typer.Option(None, help=_BACKEND_HELP),
    input_range: Optional[str] = typer.Option(None, "--input-range", metavar="LO,HI", help=_INPUT_RANGE_HELP),
) -> None:
    """Classify images with a .tflite model, one output row per image, streamed as they are done.

    A file that cannot be read becomes an error row with its reason and the run goes on.

    Exit codes: 0 every image classified; 1 some images failed (see their error rows); 2 bad model, labels file or arguments (including arguments that name no image).
    """
    if as_json and as_csv:
        raise EdgeclsError("choose one of --json and --csv")
    from edgecls.device import predict as run_predict
    from edgecls.runtime.classify import parse_input_range

    code = run_predict(str(model), images, top_k=top_k, fmt="json" if as_json else "csv" if as_csv else "table",
                       threads=threads, labels=str(labels) if labels else None, backend=backend,
                       input_range=parse_input_range(input_range))
    raise typer.Exit(code)


@app.command()
def info(
    model: Path = typer.Argument(..., help="Any .tflite file"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON"),
    backend: Optional[str] = typer.Option(None, help=_BACKEND_HELP),
) -> None:
    """Show a .tflite model: tensors, ops, size, quantisation, metadata.

    Inputs and outputs (shape, dtype, scale, zero point, per-channel or not), the op histogram, the size, the detected quantisation mode, the embedded edgecls metadata and the interpreter backend that read it. Works on third-party models without metadata.

    Exit codes: 0 ok; 2 not a readable .tflite.
    """
    from edgecls.runtime.inspect import inspect_model

    report = inspect_model(model, backend=backend)
    if as_json:
        import json

        from edgecls.device import json_ready

        typer.echo(json.dumps(json_ready(report), indent=2, ensure_ascii=False))
    else:
        from edgecls.device import show_info

        show_info(report)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON")) -> None:
    """Check that this machine can run the device side (predict, info, bench of a .tflite).

    Reports platform, architecture, Python, numpy, Pillow, the interpreter backend found and its version, whether TensorFlow is installed, the CPU count, and warnings for known traps.

    Exit codes: 0 an interpreter backend works; 1 none does.
    """
    from edgecls.runtime.doctor import doctor_report

    report = doctor_report()
    if as_json:
        import json

        typer.echo(json.dumps(report, indent=2))
    else:
        from edgecls.device import show_doctor

        show_doctor(report)
    raise typer.Exit(0 if report["ok"] else 1)


# ----------------------------------------------------------------------------- bench
# `edgecls bench RUN_DIR|MODEL.tflite ...` measures; `edgecls bench compare A.json B.json ...` merges
# reports. The group runs `run` when the first argument is not a sub-command's name.
from typer.core import TyperGroup  # noqa: E402  (kept beside the only code that needs it)


class _BenchGroup(TyperGroup):
    def parse_args(self, ctx: typer.Context, args: List[str]) -> List[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_BenchGroup, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Quantised against float: accuracy, agreement, latency, size and memory on this machine, with reports.\n\n"
    "edgecls bench RUN_DIR|MODEL.tflite ... measures (the `run` command, the default); "
    "edgecls bench compare A.json B.json ... merges reports from several machines or device profiles.",
)
app.add_typer(bench_app, name="bench")


def _to_stderr(message: str) -> None:
    typer.echo(message, err=True)


@bench_app.command("run")
def bench_run(
    paths: List[Path] = typer.Argument(..., help="A run directory (its exports, as export.json lists them) and/or .tflite files"),
    data: Optional[str] = typer.Option(None, help="Test images. A run directory: where its data now is (its saved "
                                       "test split is used). .tflite files: a folder of class sub-folders, IDX files "
                                       "or digits: its test part if it has one, else all of it; but when the model's "
                                       "metadata names a run that is here (its model.keras the one the file was exported "
                                       "from), with this data or no --data, that run's test split"),
    device: Optional[str] = typer.Option(None, help="Device profile (devices/NAME.toml, or a path): its threads and "
                                         "cores are applied and recorded"),
    threads: Optional[str] = typer.Option(None, help="Comma list of interpreter thread counts to sweep, e.g. 1,2,4  "
                                          "\\[default: the profile's, else 1 and every usable CPU]"),
    warmup: int = typer.Option(10, help="Untimed invokes per model and thread count before timing"),
    runs: int = typer.Option(200, help="Timed images per model and thread count (batch 1), in interleaved rounds"),
    batch_size: int = typer.Option(32, help="Batch size for the throughput figure"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report here"),
    report: Optional[Path] = typer.Option(None, help="Folder for bench.json, bench.md and the plots  "
                                          "\\[default: RUN_DIR/bench for a run directory, none for .tflite files]"),
    keras: bool = typer.Option(True, "--keras/--no-keras", help="Score the run's Keras float model as the reference "
                               "(needs TensorFlow; without it the float32 .tflite is the reference)"),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory of a device-side process per model"),
    save_test_images: Optional[Path] = typer.Option(None, help="Also write the test images as PNG files in class "
                                                    "sub-folders: --data for a bench on a device"),
    backend: Optional[str] = typer.Option(None, help=_BACKEND_HELP),
    input_range: Optional[str] = typer.Option(None, "--input-range", metavar="LO,HI",
                                              help=_INPUT_RANGE_HELP + "; applies to every .tflite benched"),
    diagnose: bool = typer.Option(False, "--diagnose", help="Also rank the int8 ops by quantisation error "
                                  "(TensorFlow's QuantizationDebugger) and name the worst; needs a run directory"),
    calib_sweep: Optional[str] = typer.Option(None, help="Also export int8 with each calibration size, e.g. "
                                              "25,100,300,1000: accuracy and agreement against N; needs a run directory"),
    # --- real devices and sustained runs (edgecls.bench.remote, edgecls.bench.sustain)
    sustain: Annotated[Optional[str], typer.Option(
        metavar="DURATION", help="After the bench, run steady inference this long (10m, 90s, 1h), sampling latency, "
        "CPU temperature, clock and throttling once a second; with --remote, on the devices")] = None,
    remote: Annotated[Optional[str], typer.Option(
        metavar="[USER@]HOST[:PORT],...|@FILE", help="Also bench on these devices over SSH (the machine's OpenSSH "
        "client and its ~/.ssh/config; a comma list, or @FILE with one host a line), in parallel; the reports are "
        "merged beside this host's")] = None,
    remote_python: Annotated[str, typer.Option(help="Python (3.10+) on the device that makes its venv")] = "python3",
    remote_dir: Annotated[str, typer.Option(help="Folder on the device for edgecls' venvs and runs "
                                                 "(rm -rf it to remove everything)")] = "~/.cache/edgecls-remote",
    wheels: Annotated[Optional[Path], typer.Option(help="Folder of wheels for an offline device (pip install "
                                                        "--no-index --find-links there)  \\[default: the device's own "
                                                        "package index]")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option("--ssh-config", "-F", help="ssh config file (ssh -F)  "
                                                        "\\[default: ~/.ssh/config]")] = None,
) -> None:
    """Benchmark .tflite models (and the run's Keras float model) on the same held-out test images.

    Per model: top-1, top-k, macro-F1, per-class accuracy; against the float model: Δ accuracy, top-1 agreement, mean |Δ probability| and the images whose top-1 flipped. Latency through the device runtime, all models interleaved round by round: p50/p90/p99 of invoke and of file → label, throughput, load and first-inference time, for each thread count; size; peak memory of a fresh device-side process. Needs no TensorFlow for .tflite files.

    Exit codes: 0 ok; 2 bad input (no exports, class count mismatch, bad option or profile, unwritable report).
    """
    from edgecls.bench.report import print_tables, render_sections, render_table, write_reports
    from edgecls.bench.run import BenchOptions, default_report_dir, parse_threads, run_bench

    from edgecls.bench.analyses import add_analyses, check_analyses_possible, parse_sizes
    from edgecls.bench.inputs import split_paths
    from edgecls.runtime.classify import parse_input_range

    from edgecls.bench.sustain import parse_duration

    report_dir = report if report is not None else default_report_dir(paths)
    sweep_sizes = parse_sizes(calib_sweep)
    run_dir = split_paths(paths)[0]
    check_analyses_possible(run_dir, diagnose, sweep_sizes)
    options = BenchOptions(paths=list(paths), data=data, device=device, threads=parse_threads(threads), warmup=warmup,
                           runs=runs, batch_size=batch_size, keras=keras, backend=backend, memory=memory,
                           input_range=parse_input_range(input_range),
                           save_test_images=save_test_images, json_path=json_path, report_dir=report_dir,
                           command=" ".join(["edgecls", *sys.argv[1:]]),
                           sustain=parse_duration(sustain) if sustain and not remote else None)
    if remote:
        if diagnose or sweep_sizes:
            raise EdgeclsError("--diagnose and --calib-sweep run on the workstation (TensorFlow): run them without --remote")
        from edgecls.bench.remote import RemoteOptions, bench_remote

        raise typer.Exit(bench_remote(options, RemoteOptions(remote, remote_python, remote_dir, wheels, ssh_config,
                                                             parse_duration(sustain) if sustain else None),
                                      log=_to_stderr))
    result = run_bench(options, log=_to_stderr)
    if diagnose or sweep_sizes:
        add_analyses(result, run_dir, diagnose, sweep_sizes, report_dir, data, log=_to_stderr)
        from edgecls.bench.advice import add_advice

        add_advice(result)  # again, so that the advice stays the last section
    write_reports(result, report_dir, json_path, log=_to_stderr)
    print_tables(render_table(result), *render_sections(result))
    if report_dir is not None:
        typer.echo(f"Reports in {report_dir}: {', '.join(result['report_files'])}")
    if json_path is not None:
        typer.echo(f"JSON report: {json_path}")


@bench_app.command("compare")
def bench_compare(
    reports: List[Path] = typer.Argument(..., help="Bench reports (bench.json) from several machines or profiles"),
    report: Optional[Path] = typer.Option(None, help="Folder for compare.md, compare.json and compare.png"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the merged table as JSON here"),
) -> None:
    """Merge bench reports into one table, each row saying where it was measured (a device, or a host under a device profile's constraints, or emulation).

    Exit codes: 0 ok; 2 a file is missing or is not a bench report, or the report folder cannot be written.
    """
    from edgecls.bench.compare import compare, render_table, write_outputs
    from edgecls.bench.report import check_writable, print_tables

    check_writable(json_path, report)
    merged = compare(reports)
    print_tables(render_table(merged))
    written = write_outputs(merged, report, json_path)
    if written:
        typer.echo(f"Wrote {', '.join(str(p) for p in written)}")


# ----------------------------------------------------------------------------- main
def _cli_exceptions() -> tuple[tuple, tuple, tuple]:
    """(exit, usage-error, abort) exception types. Typer 0.29 has its own Exit/Abort and a vendored
    copy of click (typer._click) and does not install click; older Typers use click itself."""
    exits, usage, aborts = [typer.Exit], [], [typer.Abort]
    try:
        from typer._click import exceptions as vendored  # a private path, hence the fallbacks

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
    # Pillow warns (once, multi-line) between 1x and 2x its pixel limit; preprocess refuses such
    # images itself with a one-line reason.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    exits, usage_errors, aborts = _cli_exceptions()
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
        _fail("interrupted", 130)
    except EdgeclsError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:  # `edgecls info ... | head`: the reader has what it wanted
        try:  # and Python's flush at exit must not complain either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise SystemExit(0)
    except MemoryError:
        _fail("out of memory", 1)
    except Exception as exc:  # anything unforeseen: one line, traceback only on request
        if os.environ.get("EDGECLS_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(set EDGECLS_DEBUG=1 for the traceback; please report it)", 1)
    raise SystemExit(code if isinstance(code, int) else 0)  # what click's standalone mode would have done


if __name__ == "__main__":
    main()
