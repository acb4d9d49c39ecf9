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
from edgecls.bench.measure import measure_inputs
from edgecls.bench.options import BenchOptions
from edgecls.bench.plan import resolve_plan
from edgecls.bench.results import BenchReport
from edgecls.bench.testset import save_test_images
from edgecls.console import print_wrapped
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.reports.report import (
    check_writable,
    json_is_the_reports,
    print_tables,
    render_bench_table,
    render_sections,
    write_reports,
)

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
    plan = resolve_plan(options)  # a wrong option or profile is said before any image is read
    check_writable(options.json_path, options.report_dir)
    inputs = open_inputs(plan.sources, plan.settings)
    if options.save_test_images is not None:
        save_test_images(inputs.test, options.save_test_images)
        reporter(f"Wrote the {len(inputs.test.labels)} test images to {options.save_test_images} (bench on a device "
            f"with --data {options.save_test_images})")
    if options.remote is not None:
        from edgecls.reports.fleet import bench_fleet

        return bench_fleet(plan, inputs, reporter)
    result = measure_inputs(inputs, plan, reporter)
    for analysis in analyses:
        analysis(result, inputs, options.report_dir, reporter)
    if analyses:
        advice.add_advice(result)  # again, so that the advice stays the last section
    write_reports(result, options.report_dir, options.json_path, reporter=reporter)
    print_tables(render_bench_table(result), *render_sections(result))
    if options.report_dir is not None:
        print_wrapped(f"Reports in {options.report_dir}: {', '.join(result.report_files or [])}")
    if options.json_path is not None and not json_is_the_reports(options.report_dir, options.json_path):
        print_wrapped(f"JSON report: {options.json_path}")
    print_wrapped(next_command(result, options))
    return result


def next_command(result: BenchReport, options: BenchOptions) -> str:
    """The commands a user runs next, as train and export end with theirs: predict with the file the
    advice chose, with the options that decide what it answers (--labels, --resize, --fit,
    --input-range: without them a third-party model gives class indices or a skewed resize); with a
    saved report, how to set it beside another machine's."""
    import shlex

    chosen = advice.choice(result)
    model = chosen.path if chosen is not None else result.models[-1].path
    flags = [("--labels", options.labels), ("--resize", options.resize), ("--fit", options.fit),
             ("--input-range", ",".join(f"{v:g}" for v in options.input_range) if options.input_range else None)]
    words = ["edgecls", "predict", str(model), "IMAGES..."] + [w for flag, value in flags if value is not None
                                                              for w in (flag, str(value))]
    lines = ["Next: " + " ".join(shlex.quote(w) if w != "IMAGES..." else w for w in words)
             + ("  # the file the advice takes" if chosen is not None else "")]
    saved = options.json_path or (options.report_dir / "bench.json" if options.report_dir is not None else None)
    if saved:
        lines.append(f"Next: edgecls bench compare {shlex.quote(str(saved))} OTHER/bench.json  # beside another "
                     "machine's report")
    return "\n".join(lines)
