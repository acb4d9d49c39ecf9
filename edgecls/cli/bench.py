"""`edgecls bench`: `run` (the default) measures quantised against float; `compare` merges reports.

The device side (edgecls.bench) never imports the workstation side: the analyses that need
TensorFlow (--diagnose, --calib-sweep) and explain's --explain-flips are made here and injected
into `edgecls.reports.job.bench(options, analyses, reporter)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.bench.options import ANALYSES, MEASUREMENT, TEST_IMAGES, BenchOptions
from edgecls.cli.common import Group, Typer
from edgecls.cli.records import takes
from edgecls.explain.options import FlipsOptions
from edgecls.export.options import QuantAnalyses
from edgecls.options import OUTPUT
from edgecls.reporter import Reporter
from edgecls.runtime.settings import INTERPRETER, PREPROCESSING
from edgecls.transport.device import REMOTE


class _BenchGroup(Group):
    """`edgecls bench ARGS...` runs `run` when the first argument is not a sub-command's name, or is
    one but also an existing path given no arguments of its own (a run directory named `run`)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in ctx.help_option_names and (
                args[0] not in self.commands or self._a_path_not_a_command(ctx, args)):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def _a_path_not_a_command(self, ctx: typer.Context, args: list[str]) -> bool:
        if not Path(args[0]).exists():
            return False
        command = self.commands[args[0]]
        positional = next((p for p in command.params if p.param_type_name == "argument"), None)
        if positional is None:
            return False
        try:
            parsed = command.make_context(args[0], list(args[1:]), parent=ctx, resilient_parsing=True)
        except Exception:  # a usage error: let the sub-command report it as it always has
            return False
        return not parsed.params.get(positional.name)


app = Typer(
    cls=_BenchGroup, no_args_is_help=True,
    help="Quantised against float: accuracy, agreement, latency, size and memory on this machine, with reports.\n\n"
    "`bench RUN_DIR|MODEL.tflite ...` measures (the `run` command, the default); "
    "`bench compare A.json B.json ...` merges reports from several machines or device profiles.",
    epilog="Examples:\n\nedgecls bench runs/digits-seed\n\nedgecls bench compare pi4/bench.json pi5/bench.json",
)


@app.command("run", epilog="Examples:\n\n"
                   "edgecls bench runs/digits-seed --threads 1,4\n\n"
                   "edgecls bench model_int8.tflite --data test-images/ --device rpi4\n\n"
                   "edgecls bench runs/digits-seed --diagnose --calib-sweep 25,100,300\n\n"
                   "edgecls bench runs/digits-seed --explain-flips 5\n\n"
                   "edgecls bench runs/digits-seed --remote pi@raspberrypi.local --sustain 10m\n\n"
                   "edgecls bench mobilenet.tflite --labels labels.txt --data photos/ --resize nearest\n\n"
                   "edgecls bench a.tflite b.tflite --latency-only")
@takes(BenchOptions, QuantAnalyses, FlipsOptions,
       panels=(TEST_IMAGES, PREPROCESSING, MEASUREMENT, INTERPRETER, ANALYSES, REMOTE, OUTPUT))
def bench_run(options: BenchOptions, quant: QuantAnalyses, flips: FlipsOptions) -> None:
    """Benchmark .tflite models (and the run's Keras float model) on the same held-out test images.

    Per model: top-1, top-k, macro-F1, per-class accuracy; against the float model: Δ accuracy,
    top-1 agreement, mean |Δ probability| and the images whose top-1 flipped. Latency through the
    device runtime, all models interleaved round by round: p50/p90/p99 of invoke and of file →
    label, throughput, load and first-inference time, for each thread count; size; peak memory of
    a fresh device-side process. Needs no TensorFlow for .tflite files.

    Exit codes: 0 ok; 1 a --remote device failed (unreachable, refused, no wheel, disk full);
    2 bad input (no exports, class count mismatch, bad option or profile, unwritable report).
    """
    from edgecls.bench.options import default_report_dir
    from edgecls.reports.job import bench

    if options.report_dir is None:
        options.report_dir = default_report_dir(options.paths)
    options.command = " ".join(["edgecls", *sys.argv[1:]])
    analyses: list = []
    if quant.diagnose or quant.calib_sweep:  # TensorFlow and the workstation side: injected, never imported by bench
        from edgecls.export.analyses import requested_analyses

        analyses = requested_analyses(options.paths, quant.diagnose, quant.calib_sweep)
    if flips.explain_flips is not None:  # device side (two .tflite files through the runtime), injected likewise
        from edgecls.explain.job import flips_analysis

        analyses.append(flips_analysis(options, flips.explain_flips, flips.explain_threshold))
    bench(options, analyses, Reporter())


@app.command("compare", epilog="Examples:\n\nedgecls bench compare pi4/bench.json pi5/bench.json --report cmp/\n\n"
                              "edgecls bench compare runs/photos runs/photos-2")
def bench_compare(
    reports: Annotated[list[Path], typer.Argument(
        help="Bench reports (bench.json) from several machines or profiles; or run directories RUN RUN2 ...: "
             "their exported models side by side on RUN's test split")],
    unknown_data: Annotated[Optional[Path], typer.Option(
        "--unknown-data", metavar="FOLDER", show_default="none",
        help="Run directories: images of none of the classes, the share each model's unknown rule rejects")] = None,
    threads: Annotated[Optional[int], typer.Option(
        min=1, help="Run directories: interpreter threads", show_default="the CPU count")] = None,
    data: Annotated[Optional[str], typer.Option(
        metavar="FOLDER", show_default="the first run's test split",
        help="Run directories: score them on these labelled images instead (class sub-folders; a test/ part if it "
             "has one, else all)")] = None,
    report: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="Folder for compare.md, compare.json (and compare.png of reports)",
        show_default="none: the table only")] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", rich_help_panel=OUTPUT, help="Write the merged table as JSON here", show_default="none")] = None,
) -> None:
    """Merge bench reports into one table, each row saying where it was measured; or put runs side by side.

    Reports: where each was measured: a device, a host under a device profile's constraints, or emulation.

    Run directories (e.g. a run and the one train --from it made): each exported .tflite scored on the first run's held-out test images, with its accuracy and interval, the change against the first run's file of the same name and its McNemar p-value, calibration and the unknown rule; a run that trained on some of those images is named.

    Exit codes: 0 ok; 2 a file is missing or is not a bench report, a run has no exports or other classes, or the report folder cannot be written.
    """  # noqa: E501
    from edgecls.errors import EdgeclsError
    from edgecls.reports.report import check_writable, print_tables

    check_writable(json_path, report)
    missing = next((path for path in reports if not path.exists()), None)
    if missing is not None:  # before the mix of kinds: a typo must not read as a report among run directories
        raise EdgeclsError(f"{missing} does not exist: give bench reports (JSON files) or run directories")
    if reports and all(path.is_dir() for path in reports):
        from edgecls.reports.runs import compare_runs, render
        from edgecls.reports.runs import write_outputs as write_runs

        doc = compare_runs(reports, str(unknown_data) if unknown_data else None, threads, data, Reporter())
        print_tables(render(doc))
        written = write_runs(doc, report, json_path)
        if written:
            typer.echo(f"Wrote {', '.join(str(p) for p in written)}")
        return
    if any(path.is_dir() for path in reports):
        raise EdgeclsError("give bench reports (JSON files) or run directories to compare, not both")
    if unknown_data is not None or threads is not None or data is not None:
        raise EdgeclsError("--unknown-data, --threads and --data are for run directories (bench reports are measured "
                           "already)")
    from edgecls.reports.compare import compare, render_compare_table, write_outputs

    merged = compare(reports)
    print_tables(render_compare_table(merged))
    written = write_outputs(merged, report, json_path)
    if written:
        typer.echo(f"Wrote {', '.join(str(p) for p in written)}")
