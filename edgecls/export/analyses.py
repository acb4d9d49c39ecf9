"""Quantisation analyses a bench can add to its report (they need TensorFlow and a run directory).

`--diagnose`: TensorFlow's QuantizationDebugger ranks the int8 ops by error (edgecls.export.diagnose);
the worst are named, with the `edgecls export --keep-float` / `--auto-fallback` command that
keeps them in float. `--calib-sweep 25,100,300,1000`: int8 exported with each calibration size,
accuracy and agreement against N (edgecls.export.sweep), as a table and a plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from edgecls.bench.results import BenchReport, add_section
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter

if TYPE_CHECKING:
    from edgecls.bench.inputs import Inputs
    from edgecls.rundir import RunDir

TOP_LAYERS = 10


def requested_analyses(paths: Sequence[Path], diagnose: bool, sweep: Optional[Sequence[int]]
                       ) -> list[Callable[..., None]]:
    """The analyses asked for, as callables for `edgecls.reports.job.bench(..., analyses=...)`.

    Fails before anything is measured when one was asked for but cannot run (no run directory,
    no TensorFlow)."""
    if not (diagnose or sweep):
        return []
    from edgecls.bench.plan import split_paths
    from edgecls.bounds import check_bound

    for size in sweep or ():
        check_bound("--calib-sweep", size)

    run_dir = split_paths(paths)[0]
    wanted = "--diagnose" if diagnose else "--calib-sweep"
    if run_dir is None:
        raise EdgeclsError(f"{wanted} needs a run directory (its Keras model and train images), not only .tflite files")
    from edgecls.errors import require_tensorflow

    require_tensorflow(f"edgecls bench {wanted}")

    def analyse(report: BenchReport, inputs: Inputs, report_dir: Optional[Path], reporter: Reporter) -> None:
        add_analyses(report, inputs.run, diagnose, sweep, report_dir, reporter=reporter)

    return [analyse]


def add_analyses(report: BenchReport, run: RunDir, diagnose: bool, sweep: Optional[Sequence[int]],
                 report_dir: Optional[Path], reporter: Reporter = SILENT) -> None:
    """Run the requested analyses on the run the bench opened and add each as a section of `report`."""
    run_dir = run.run_dir
    if diagnose:
        from edgecls.export.diagnose import COLUMNS, diagnosis_notes, diagnosis_rows, fix_advice
        from edgecls.export.diagnose import diagnose as run_diagnosis

        reporter("Diagnosing int8 quantisation (TensorFlow's QuantizationDebugger) ...")
        found = run_diagnosis(run)
        notes = diagnosis_notes(found) + [fix_advice(found, run_dir)]
        add_section(report, "diagnosis", "Quantisation diagnosis: int8 ops ranked by RMSE/scale", COLUMNS,
                    diagnosis_rows(found, top=TOP_LAYERS), notes, data=found.to_json())
    if sweep:
        from edgecls.export.sweep import (
            COLUMNS,
            calib_sweep,
            plot_sweep,
            sweep_json,
            sweep_notes,
            sweep_rows,
        )

        reporter(f"Calibration sweep over {', '.join(map(str, sweep))} images ...")
        points = calib_sweep(run, list(sweep), reporter=reporter)
        plots = []
        if report_dir is not None:
            try:
                Path(report_dir).mkdir(parents=True, exist_ok=True)
                plot_sweep(points, Path(report_dir) / "calib-sweep.png")
                plots.append("calib-sweep.png")
            except ImportError:
                pass  # no matplotlib: the table carries the figures
        add_section(report, "calib-sweep", "Calibration sweep: int8 accuracy and agreement against N", COLUMNS,
                    sweep_rows(points), sweep_notes(points), plots=plots, data=sweep_json(points))
