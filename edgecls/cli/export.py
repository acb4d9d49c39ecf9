"""`edgecls export`: a trained model to checked .tflite files, or (--target DEVICE) the one file to ship."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.cli.common import (
    OUTPUT,
    AcceptOption,
    RuleOption,
    Typer,
    UnknownDataOption,
    choice,
    choices,
    echo_wrapped,
    fail,
    plain,
)
from edgecls.export.modes import (
    DEFAULT_FALLBACK,
    DEFAULT_MAX_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_QUANT,
    DEFAULT_RUNS,
    MODES_HELP,
    QUANTIZERS,
)
from edgecls.reporter import Reporter
from edgecls.rundir import DEFAULT_CALIB_SAMPLES
from edgecls.runtime.openset import DEFAULT_ACCEPT

app = Typer()

Quantizer = choices("Quantizer", QUANTIZERS)

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


_QUANT = "Quantisation"


@app.command("export", epilog="Examples:\n\n"
             "edgecls export runs/digits-seed\n\n"
             "edgecls export runs/digits-seed --quant all --calib-samples 300\n\n"
             "edgecls export runs/digits-seed --auto-fallback 2 --out runs/digits-seed/mixed\n\n"
             "edgecls export runs/digits-seed --target rpi5 --max-drop 0.5 --budget-s 300")
def export_command(
    source: Annotated[Path, typer.Argument(help="A run directory (made by edgecls train) or a bare .keras file")],
    quant: Annotated[str, typer.Option(rich_help_panel=_QUANT, help=MODES_HELP)] = DEFAULT_QUANT,
    calib_samples: Annotated[int, typer.Option(
        rich_help_panel=_QUANT, help="Calibration images from the train split, stratified by class (all of them "
        "if the split has fewer)")] = DEFAULT_CALIB_SAMPLES,
    quantizer: Annotated[Quantizer, typer.Option(
        rich_help_panel=_QUANT, help="converter (TensorFlow's TFLite converter) | litert (ai-edge-quantizer, "
        "static int8 recipe, on the float32 model)", **choice(Quantizer, "quantizer"))] = "converter",
    min_agreement: Annotated[float, typer.Option(
        rich_help_panel=_QUANT,
        help="Least top-1 agreement of int8/uint8 with the float model on the validation split")
    ] = DEFAULT_MIN_AGREEMENT,
    keep_float: Annotated[Optional[list[str]], typer.Option(
        "--keep-float", metavar="OP_OR_LAYER", show_default="none", rich_help_panel=_QUANT, help=(
            "Also write a mixed model_int8_mixed.tflite keeping this Keras layer (conv2), op type (FULLY_CONNECTED) "
            "or node in float; repeat the option or give a comma list"))] = None,
    auto_fallback: Annotated[int, typer.Option("--auto-fallback", metavar="K", min=0, rich_help_panel=_QUANT, help=(
        "Also write model_int8_mixed.tflite keeping the K ops that int8 hurts most (RMSE/scale, TensorFlow's "
        "QuantizationDebugger) in float"))] = 0,
    data: Annotated[Optional[str], typer.Option(
        rich_help_panel="Data", help="The images of a bare .keras file (digits, a folder, ...); for a run "
        "directory, where its data now is", show_default="the run's own data")] = None,
    out: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="Output folder", show_default="RUN_DIR/export")] = None,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=OUTPUT, help="Write the files even when int8 agreement is below "
        "--min-agreement, or the model is no better than always answering the majority class")] = False,
    target: _TargetSpec = None,
    max_drop: _MaxDrop = DEFAULT_MAX_DROP,
    budget_s: _BudgetS = None,
    max_fallback: _MaxFallback = DEFAULT_FALLBACK,
    candidates: _Candidates = None,
    timing_runs: _TimingRuns = DEFAULT_RUNS,
    accept: AcceptOption = DEFAULT_ACCEPT,
    unknown_data: UnknownDataOption = None,
    rule: RuleOption = "auto",
) -> None:
    """Convert a trained model to .tflite files (float32 and int8 by default) that carry their labels and input spec.

    Each file is calibrated (a temperature folded into its SOFTMAX, an open-set rule that answers
    'unknown': prototypes from the train split, thresholds at --accept of the validation split) and
    scored with the device-side runtime on the validation split before anything is
    written: a table of size, accuracy and top-1 agreement with the Keras float model. Writes
    OUT/model_<mode>.tflite, OUT/labels.txt and OUT/export.json; with --keep-float or
    --auto-fallback also OUT/model_int8_mixed.tflite (int8 input and output, the named ops in float).
    With --target DEVICE: every candidate is made, scored on validation and timed on DEVICE, and the
    fastest within --max-drop / --min-agreement is written as RUN/target-DEVICE/model.tflite (its test
    figures are measured only after the choice).

    Exit codes: 0 ok; 1 conversion failed, or int8 agreement fell below --min-agreement (nothing
    written; --force writes anyway), or no --target candidate is within the budget; 2 bad input.
    """
    from edgecls.reports.report import print_tables
    from edgecls.rundir import open_source

    if target is not None:
        from edgecls.export.target import (
            CHOSEN_FILE,
            TargetOptions,
            export_for_target,
            parse_candidates,
            refuse_export_options,
        )
        from edgecls.export.target_report import render_target_table

        refuse_export_options(quant, quantizer.value, force, keep_float, auto_fallback)
        from edgecls.calibrate.job import OpenSetOptions

        options = TargetOptions(target, max_drop, min_agreement, budget_s, calib_samples, max_fallback,
                                parse_candidates(candidates), timing_runs, out,
                                open_set=OpenSetOptions(accept=accept, rule=plain(rule)),
                                unknown_data=str(unknown_data) if unknown_data else None)
        shipped = export_for_target(open_source(source, data), options, Reporter())
        print_tables(render_target_table(shipped))
        echo_wrapped(f"Wrote {', '.join(p.name for p in shipped.written)} to {shipped.out_dir}\n"
                     f"Next: edgecls predict {shipped.out_dir / CHOSEN_FILE} IMAGES...")
        return
    from edgecls.calibrate.job import OpenSetOptions
    from edgecls.export.job import ExportOptions, export, parse_names
    from edgecls.export.modes import parse_modes
    from edgecls.export.report import render_export_table

    options = ExportOptions(parse_modes(quant, quantizer.value), quantizer.value, calib_samples, out, min_agreement,
                            force, keep_float=parse_names(keep_float), auto_fallback=auto_fallback,
                            open_set=OpenSetOptions(accept=accept, rule=plain(rule)),
                            unknown_data=str(unknown_data) if unknown_data else None)
    result = export(open_source(source, data), options, Reporter())
    print_tables(render_export_table(result))
    if result.written:
        echo_wrapped(f"Wrote {', '.join(p.name for p in result.written)} to {result.out_dir}")
        if result.passed:
            echo_wrapped(f"Next: {result.next_command(source)}")
    if not result.passed:
        if not result.written:
            fail(result.advice(), 1)
        typer.echo(f"warning: {result.advice()}", err=True)
