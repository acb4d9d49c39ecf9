"""`edgecls bench`: the whole command — measure (bench.measure), let each analysis add its section,
end with the advice, write the reports and print the tables; with --remote, the same on a fleet of
devices too (reports.fleet).

TensorFlow is imported only for the Keras reference of a run directory (bench.measure), and by the
analyses the caller injects (--diagnose, --calib-sweep: edgecls.export.analyses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from edgecls.bench import advice
from edgecls.bench.inputs import Inputs, open_inputs
from edgecls.bench.measure import Where, measure_inputs
from edgecls.bench.options import BenchOptions, validate
from edgecls.bench.results import BenchReport
from edgecls.bench.testset import save_test_images
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.reports.report import check_writable, print_tables, render_bench_table, render_sections, write_reports

# (report, the inputs it measured, report_dir, reporter): adds its sections to the report
Analysis = Callable[[BenchReport, Inputs, Optional[Path], Reporter], None]


def bench(
    options: BenchOptions, analyses: Sequence[Analysis] = (), reporter: Reporter = SILENT
) -> BenchReport:
    """The whole `edgecls bench` job: measure, let each analysis add its section, end with the
    advice, write the reports and print the tables; returns this host's report.

    Analyses that need TensorFlow (edgecls.export.analyses) are injected by the caller, so this
    package never imports the workstation side. With `options.remote` the same bench also runs on
    those devices over SSH (reports.fleet), and the reports are merged."""
    if options.remote is not None and analyses:
        raise EdgeclsError("--diagnose and --calib-sweep run on the workstation (TensorFlow): "
                           "run them without --remote")
    validate(options)
    where = Where.of(options)  # a wrong profile is said before any image is read
    check_writable(options.json_path, options.report_dir)
    inputs = open_inputs(options)
    if options.save_test_images is not None:
        save_test_images(inputs.test, options.save_test_images)
        reporter(f"Wrote the {len(inputs.test.labels)} test images to {options.save_test_images} (bench on a device "
            f"with --data {options.save_test_images})")
    if options.remote is not None:
        from edgecls.reports.fleet import bench_fleet

        return bench_fleet(options, inputs, reporter)
    result = measure_inputs(inputs, options, where, reporter)
    for analysis in analyses:
        analysis(result, inputs, options.report_dir, reporter)
    if analyses:
        advice.add_advice(result)  # again, so that the advice stays the last section
    write_reports(result, options.report_dir, options.json_path, reporter=reporter)
    print_tables(render_bench_table(result), *render_sections(result))
    if options.report_dir is not None:
        print(f"Reports in {options.report_dir}: {', '.join(result.report_files or [])}")
    if options.json_path is not None:
        print(f"JSON report: {options.json_path}")
    print(next_command(result, options))
    return result


def next_command(result: BenchReport, options: BenchOptions) -> str:
    """The command a user runs next, as train and export end with theirs: predict with the quantised
    model; with a saved report, how to set it beside another machine's."""
    saved = options.json_path or (options.report_dir / "bench.json" if options.report_dir is not None else None)
    quantised = next((m.path for m in result.tflite_models() if m.mode != "float32"), result.models[-1].path)
    line = f"Next: edgecls predict {quantised} IMAGES..."
    if saved:
        line += f"; with another machine's report: edgecls bench compare {saved} OTHER/bench.json"
    return line
