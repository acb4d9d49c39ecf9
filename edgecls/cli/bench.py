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

from edgecls.cli.common import (
    INPUT_RANGE_DEFAULT,
    INPUT_RANGE_HELP,
    OUTPUT,
    PREPROCESSING,
    Backend,
    FitOption,
    Group,
    ResizeOption,
    Typer,
    plain,
)
from edgecls.explain import DEFAULT_THRESHOLD_DB
from edgecls.reporter import Reporter
from edgecls.transport import DEFAULT_PARALLEL, RemoteOptions


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


# The help's panels (a property of each option, see edgecls.cli.helpview), in the order they are shown.
_DATA = "Test images"
_MEASURE = "Measurement"
_ANALYSES = "Analyses (workstation)"
_REMOTE = "Devices over SSH (--remote)"


@app.command("run", epilog="Examples:\n\n"
                   "edgecls bench runs/digits-seed --threads 1,4\n\n"
                   "edgecls bench model_int8.tflite --data test-images/ --device rpi4\n\n"
                   "edgecls bench runs/digits-seed --diagnose --calib-sweep 25,100,300\n\n"
                   "edgecls bench runs/digits-seed --explain-flips 5\n\n"
                   "edgecls bench runs/digits-seed --remote pi@raspberrypi.local --sustain 10m\n\n"
                   "edgecls bench mobilenet.tflite --labels labels.txt --data photos/ --resize nearest\n\n"
                   "edgecls bench a.tflite b.tflite --latency-only")
def bench_run(
    paths: Annotated[
        list[Path], typer.Argument(help="A run directory (its exports, as export.json lists them) and/or .tflite files")
    ],
    # --- the test images
    data: Annotated[Optional[str], typer.Option(
        rich_help_panel=_DATA,
        help="A run directory: where its data now is (its saved test split is used). .tflite files: a folder of "
        "class sub-folders, IDX files or digits: its test part if it has one, else all of it; but when the model's "
        "metadata names a run that is here (its model.keras the one the file was exported from), with this data "
        "or no --data, that run's test split")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_DATA,
        help="Labels file for every .tflite (third-party models): --data is then a folder of class sub-folders "
        "named by these labels (exactly, case-insensitively, or by a comma part: 'Egyptian cat', 'tabby'); each "
        "model decodes the images at its own size", show_default="none")] = None,
    latency_only: Annotated[bool, typer.Option(
        "--latency-only", rich_help_panel=_DATA,
        help="No accuracy: latency, memory and size only, on the images under --data (any layout) or, without "
        "--data, random images")] = False,
    save_test_images: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_DATA,
        help="Also write the test images as PNG files in class sub-folders: --data for a bench on a device",
        show_default="none")] = None,
    unknown_data: Annotated[Optional[Path], typer.Option(
        "--unknown-data", metavar="FOLDER", rich_help_panel=_DATA, show_default="none",
        help="Images of none of the classes (any layout): the share each model's unknown rule rejects, in the "
             "Calibration and unknown section")] = None,
    input_range: Annotated[Optional[str], typer.Option(
        "--input-range", metavar="LO,HI", rich_help_panel=PREPROCESSING,
        help=INPUT_RANGE_HELP + "; applies to every .tflite benched", show_default=INPUT_RANGE_DEFAULT)] = None,
    resize: ResizeOption = None,
    fit: FitOption = None,
    # --- how it measures
    device: Annotated[Optional[str], typer.Option(
        rich_help_panel=_MEASURE,
        help="Device profile (devices/NAME.toml, or a path): its threads and cores are applied and recorded",
        show_default="none: this machine as it is")] = None,
    threads: Annotated[Optional[str], typer.Option(
        rich_help_panel=_MEASURE, help="Comma list of interpreter thread counts to sweep, e.g. 1,2,4",
        show_default="the profile's, else 1 and every usable CPU")] = None,
    warmup: Annotated[int, typer.Option(
        rich_help_panel=_MEASURE, help="Untimed invokes per model and thread count before timing")] = 10,
    runs: Annotated[int, typer.Option(
        rich_help_panel=_MEASURE,
        help="Timed images per model and thread count (batch 1), in interleaved rounds")] = 200,
    batch_size: Annotated[int, typer.Option(
        rich_help_panel=_MEASURE, help="Batch size for the throughput figure")] = 32,
    keras: Annotated[bool, typer.Option(
        "--keras/--no-keras", rich_help_panel=_MEASURE,
        help="Score the run's Keras float model as the reference (needs TensorFlow; without it the float32 "
        ".tflite is the reference)")] = True,
    memory: Annotated[bool, typer.Option(
        "--memory/--no-memory", rich_help_panel=_MEASURE,
        help="Measure peak memory of a device-side process per model")] = True,
    sustain: Annotated[Optional[str], typer.Option(
        metavar="DURATION", rich_help_panel=_MEASURE,
        help="After the bench, run steady inference this long (10m, 90s, 1h), sampling latency, CPU temperature, "
        "clock and throttling once a second; with --remote, on the devices", show_default="none")] = None,
    backend: Backend = None,
    # --- analyses that need the workstation side (TensorFlow) or explain's maps
    diagnose: Annotated[bool, typer.Option(
        "--diagnose", rich_help_panel=_ANALYSES,
        help="Also rank the int8 ops by quantisation error (TensorFlow's QuantizationDebugger) and name the worst; "
        "needs a run directory")] = False,
    calib_sweep: Annotated[Optional[str], typer.Option(
        rich_help_panel=_ANALYSES,
        help="Also export int8 with each calibration size, e.g. 25,100,300,1000: accuracy and agreement against "
        "N; needs a run directory", show_default="none")] = None,
    explain_flips: Annotated[Optional[int], typer.Option(
        "--explain-flips", metavar="N", rich_help_panel=_ANALYSES,
        help="Also explain every image where a quantised .tflite and the float32 one disagree, plus the N "
        "least-confident agreements (0: flips only): both models' maps and top-3, the per-layer SNR and the first "
        "layer that diverges; a report section with contact sheets and a flip matrix",
        show_default="none: no explanation")] = None,
    explain_threshold: Annotated[float, typer.Option(
        rich_help_panel=_ANALYSES,
        help="--explain-flips: SNR (dB) below which a layer counts as diverged")] = DEFAULT_THRESHOLD_DB,
    # --- real devices (edgecls.bench.remote)
    remote: Annotated[Optional[str], typer.Option(
        metavar="[USER@]HOST[:PORT],...|@FILE", rich_help_panel=_REMOTE,
        help="Also bench on these devices over SSH (the machine's OpenSSH client and its ~/.ssh/config; a comma "
        "list, or @FILE with one host a line), in parallel; the reports are merged beside this host's",
        show_default="none")] = None,
    remote_python: Annotated[str, typer.Option(
        rich_help_panel=_REMOTE, help="Python (3.10+) on the device that makes its venv")] = "python3",
    remote_dir: Annotated[str, typer.Option(
        rich_help_panel=_REMOTE,
        help="Folder on the device for edgecls' venvs and runs (rm -rf it to remove everything)",
    )] = "~/.cache/edgecls-remote",
    wheels: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_REMOTE,
        help="Folder of wheels for an offline device (pip install --no-index --find-links there)",
        show_default="the device's own package index")] = None,
    ssh_config: Annotated[Optional[Path], typer.Option(
        "--ssh-config", "-F", rich_help_panel=_REMOTE, help="ssh config file (ssh -F)",
        show_default="~/.ssh/config")] = None,
    parallel: Annotated[int, typer.Option(
        min=1, rich_help_panel=_REMOTE, help="--remote: devices reached at once")] = DEFAULT_PARALLEL,
    # --- where the reports go
    report: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="Folder for bench.json, bench.md and the plots",
        show_default="RUN_DIR/bench for a run directory, none for .tflite files")] = None,
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", rich_help_panel=OUTPUT, help="Also write the JSON report here", show_default="none")] = None,
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
    from edgecls.bench.options import BenchOptions, default_report_dir, parse_threads
    from edgecls.bench.sustain import parse_duration
    from edgecls.parsing import int_list, parse_range
    from edgecls.reports.job import bench

    report_dir = report if report is not None else default_report_dir(paths)
    sweep_sizes = int_list(calib_sweep, "--calib-sweep", "25,100,300,1000")
    sustain_s = parse_duration(sustain) if sustain else None
    devices = RemoteOptions(remote, remote_python, remote_dir, wheels, ssh_config, parallel) if remote else None
    analyses: list = []
    if diagnose or sweep_sizes:  # they need TensorFlow and the workstation side: injected, never imported by bench
        from edgecls.export.analyses import requested_analyses

        analyses = requested_analyses(paths, diagnose, sweep_sizes)
    options = BenchOptions(paths=list(paths), data=data, device=device, threads=parse_threads(threads), warmup=warmup,
                           runs=runs, batch_size=batch_size, keras=keras, backend=backend, memory=memory,
                           input_range=parse_range(input_range), labels=str(labels) if labels else None,
                           latency_only=latency_only, resize=plain(resize), fit=plain(fit),
                           save_test_images=save_test_images, json_path=json_path, report_dir=report_dir,
                           command=" ".join(["edgecls", *sys.argv[1:]]),
                           sustain=sustain_s, remote=devices, unknown_data=str(unknown_data) if unknown_data else None)
    if explain_flips is not None:  # device side (two .tflite files through the runtime), injected like the others
        from edgecls.explain.job import flips_analysis

        analyses.append(flips_analysis(options, explain_flips, explain_threshold))
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
    from edgecls.reports.report import check_writable, print_tables

    check_writable(json_path, report)
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
        from edgecls.errors import EdgeclsError

        raise EdgeclsError("give bench reports (JSON files) or run directories to compare, not both")
    if unknown_data is not None or threads is not None or data is not None:
        from edgecls.errors import EdgeclsError

        raise EdgeclsError("--unknown-data, --threads and --data are for run directories (bench reports are measured "
                           "already)")
    from edgecls.reports.compare import compare, render_compare_table, write_outputs

    merged = compare(reports)
    print_tables(render_compare_table(merged))
    written = write_outputs(merged, report, json_path)
    if written:
        typer.echo(f"Wrote {', '.join(str(p) for p in written)}")
