"""`edgecls export`: a trained model to checked .tflite files, or (--target DEVICE) the one file to ship."""

from __future__ import annotations

from typing import Optional

import typer

from edgecls.cli.common import Typer, echo_wrapped, fail
from edgecls.cli.records import takes
from edgecls.export.options import PANELS, ExportOptions, TargetOptions
from edgecls.reporter import Reporter

app = Typer()


@app.command("export", epilog="Examples:\n\n"
             "edgecls export runs/digits-seed\n\n"
             "edgecls export runs/digits-seed --quant all --calib-samples 300\n\n"
             "edgecls export runs/digits-seed --auto-fallback 2 --out runs/digits-seed/mixed\n\n"
             "edgecls export runs/digits-seed --target rpi5 --max-drop 0.5 --budget-s 300")
@takes(ExportOptions, TargetOptions, optional=(TargetOptions,), panels=PANELS)
def export_command(options: ExportOptions, target: Optional[TargetOptions]) -> None:
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
        from edgecls.export.options import refuse_with_target
        from edgecls.export.target import CHOSEN_FILE, export_for_target
        from edgecls.export.target_report import render_target_table

        refuse_with_target(options)
        shipped = export_for_target(open_source(options.source, options.data), target, Reporter())
        print_tables(render_target_table(shipped))
        echo_wrapped(f"Wrote {', '.join(p.name for p in shipped.written)} to {shipped.out_dir}\n"
                     f"Next: edgecls predict {shipped.out_dir / CHOSEN_FILE} IMAGES...")
        return
    from edgecls.export.job import export
    from edgecls.export.report import render_export_table

    source = open_source(options.source, options.data)
    result = export(source, options, Reporter())
    print_tables(render_export_table(result))
    if result.written:
        echo_wrapped(f"Wrote {', '.join(p.name for p in result.written)} to {result.out_dir}")
        if result.passed:
            echo_wrapped(f"Next: {result.next_command(options.source, options.data)}")
            origin = source.training_metrics().get("from")
            if origin:  # a retrained run: what the field loop asks of it is whether it beats its run
                echo_wrapped(f"Then: edgecls bench compare {origin['run']} {options.source}")
    if not result.passed:
        if not result.written:
            fail(result.advice(), 1)
        typer.echo(f"warning: {result.advice()}", err=True)
