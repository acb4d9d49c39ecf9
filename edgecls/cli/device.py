"""The device-side commands, `edgecls predict`, `info` and `doctor`: they import only edgecls.runtime
(numpy, Pillow, an interpreter), never TensorFlow.

`edgecls predict MODEL IMAGES...` usually never gets here: edgecls.entry runs it without Typer (the
lean path) and hands over only what it is not sure of; its option table mirrors `predict` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgecls import jsonio
from edgecls.cli.common import (
    LIVE_PANEL,
    OUTPUT,
    Backend,
    CollectDir,
    CollectMaxMb,
    CollectReserveMb,
    CollectWhen,
    FitOption,
    InputRange,
    Labels,
    LiveCapture,
    LiveEvery,
    LiveFps,
    LiveReconnect,
    LiveTimeout,
    ResizeOption,
    Shadow,
    ShadowEvery,
    Threads,
    Typer,
    plain,
)
from edgecls.console import predict_options, run_predict
from edgecls.errors import EdgeclsError
from edgecls.runtime.stream import DEFAULT_RECONNECT, DEFAULT_TIMEOUT

app = Typer()

# `predict --source`: live input (a camera, video file or stream); the options serve shares are in common.
_LiveSource = Annotated[Optional[str], typer.Option(
    "--source", metavar="SOURCE", rich_help_panel=LIVE_PANEL, show_default="none: classify IMAGES",
    help="Classify live frames instead of IMAGES: camera (camera:0), camera:N, a video file, rtsp://... or "
         "http(s)://.../stream.mjpg; one row per classified frame with its time, frame number and latency; "
         "Ctrl-C ends it with a summary")]
_LiveDuration = Annotated[Optional[float], typer.Option(
    "--duration", min=0.001, metavar="SECONDS", rich_help_panel=LIVE_PANEL,
    show_default="until the source ends or Ctrl-C",
    help="Stop after this many seconds of the source (of the video's own time for a file)")]


@app.command(epilog="Examples:\n\n"
             "edgecls predict runs/digits-seed/export/model_int8.tflite photos/ --top-k 3\n\n"
             "edgecls predict mobilenet.tflite cat.jpg --labels labels.txt --resize nearest --json\n\n"
             "edgecls predict model_int8.tflite --source camera:0 --fps 5 --top-k 3\n\n"
             "edgecls predict model_int8.tflite --source clip.avi --every 10 --json > frames.jsonl\n\n"
             "edgecls predict model_int8.tflite --source camera:0 --fps 2 --collect inbox/ --collect-when "
             "'unknown,uncertain<0.6' --collect-max-mb 500")
def predict(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="A .tflite image classifier (edgecls' own, or any NHWC one)")],
    images: Annotated[Optional[list[str]], typer.Argument(
        help="Image files, folders (searched recursively) and glob patterns (or --source for a camera, video or "
             "stream)", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, rich_help_panel=OUTPUT,
                                       help="Classes to show per image")] = 1,
    as_json: Annotated[bool, typer.Option(
        "--json", rich_help_panel=OUTPUT, help="One JSON object per line instead of a table")] = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", rich_help_panel=OUTPUT, help="CSV (file,rank,index,label,score,error; then "
        "unknown,typicality for a model with an unknown rule) instead of a table")] = False,
    threads: Threads = None,
    labels: Labels = None,
    backend: Backend = None,
    input_range: InputRange = None,
    source: _LiveSource = None,
    every: LiveEvery = 1,
    fps: LiveFps = None,
    duration: _LiveDuration = None,
    timeout: LiveTimeout = DEFAULT_TIMEOUT,
    reconnect: LiveReconnect = DEFAULT_RECONNECT,
    capture: LiveCapture = None,
    resize: ResizeOption = None,
    fit: FitOption = None,
    unknown: Annotated[bool, typer.Option(
        "--unknown/--no-unknown", metavar="",
        help="Answer 'unknown' (with the best guess and its typicality) when the model's open-set rule says an "
             "image is none of its classes; --no-unknown shows the raw answer")] = True,
    collect: CollectDir = None,
    collect_when: CollectWhen = None,
    collect_max_mb: CollectMaxMb = None,
    collect_reserve_mb: CollectReserveMb = None,
    shadow: Shadow = None,
    shadow_every: ShadowEvery = None,
) -> None:
    """Classify images with a .tflite model, one output row per image, streamed as they are done.

    A file that cannot be read becomes an error row with its reason and the run goes on.

    A model calibrated by edgecls (export, train --backbone, edgecls calibrate) answers 'unknown' for an image its open-set rule rejects: the row shows the answer, the typicality (the share of validation images of known classes that looked less typical) and the best guess.

    With --collect DIR, the images or frames a --collect-when rule picks are kept in DIR/<answer>/ with a JSON sidecar, for the next training (near-identical consecutive ones once, within --collect-max-mb).

    With --source, frames of a camera, video file or network stream are classified instead (OpenCV: pip install 'edgecls\\[camera]'; picamera2 on Raspberry Pi OS); when the model is slower than a camera or stream, frames are dropped, never queued.

    Exit codes: 0 every image classified, or the video or --duration ended; 1 some images failed (see their error rows), or a live source failed mid-way (its rows are kept); 2 bad model, labels file or arguments (arguments that name no image, a camera or stream that cannot be opened); 130 Ctrl-C (after the summary).
    """  # noqa: E501  (one line a paragraph: Typer keeps a docstring's line breaks in --help)
    if source is not None and images:
        raise EdgeclsError("give IMAGES or --source, not both")
    if source is None and not images:
        raise EdgeclsError("give image files, folders or globs to classify, or --source for a camera, video or stream")
    if source is None:
        live_only = [f"--{name}" for name in ("every", "fps", "duration", "timeout", "reconnect", "capture")
                     if _given(ctx, name)]
        if live_only:
            raise EdgeclsError(f"{', '.join(live_only)}: for --source (a camera, video or stream), not image files")
    arguments: dict[str, Any] = dict(top_k=top_k, as_json=as_json, as_csv=as_csv, threads=threads,
                                     labels=str(labels) if labels else None, backend=backend, input_range=input_range,
                                     resize=plain(resize), fit=plain(fit), unknown=unknown,
                                     collect=str(collect) if collect else None, collect_when=collect_when,
                                     collect_max_mb=collect_max_mb, collect_reserve_mb=collect_reserve_mb,
                                     shadow=str(shadow) if shadow else None, shadow_every=shadow_every)
    if source is not None:
        from edgecls.live import predict_stream

        raise typer.Exit(predict_stream(str(model), source, every=every, fps=fps, duration=duration, timeout=timeout,
                                        reconnect=reconnect, capture=plain(capture), **predict_options(**arguments)))
    # The body lives in edgecls.entry, which also runs it without Typer (the lean predict path).
    raise typer.Exit(run_predict(model=str(model), images=images, **arguments))


def _given(ctx: typer.Context, name: str) -> bool:
    """Option `name` is on the command line (not its default). By the source's name: Typer carries its own click."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


@app.command(epilog="Examples:\n\n"
             "edgecls info runs/digits-seed/export/model_int8.tflite --json\n\n"
             "edgecls info mobilenet_v1_0.25_128_quant.tflite --labels imagenet_labels.txt")
def info(
    model: Annotated[Path, typer.Argument(help="Any .tflite file")],
    labels: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, show_default="the model's own, else labels.txt beside it, else the class indices",
        help="Labels file ('0 cat', '0: cat' or one name a line), as predict and bench would use it")] = None,
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT, help="Print the report as JSON")] = False,
    backend: Backend = None,
) -> None:
    """Show a .tflite model: tensors, ops, size, quantisation, metadata.

    Inputs and outputs (shape, dtype, scale, zero point, per-channel or not), the op histogram,
    the size, the detected quantisation mode, the embedded edgecls metadata and the interpreter
    backend that read it. Works on third-party models without metadata.

    Exit codes: 0 ok; 2 not a readable .tflite.
    """
    from edgecls.runtime.inspect import inspect_model

    report = inspect_model(model, backend=backend, labels=labels)
    if as_json:

        from edgecls.console import json_ready

        typer.echo(jsonio.dumps(json_ready(report), indent=2, ensure_ascii=False))
    else:
        from edgecls.console import show_info

        show_info(report)


@app.command(epilog="Example:\n\nedgecls doctor --json")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Check that this machine can run the device side (predict, info, bench of a .tflite).

    Reports platform, architecture, Python, numpy, Pillow, the interpreter backend found and its
    version, whether TensorFlow is installed, the CPU count, and warnings for known traps.

    Exit codes: 0 an interpreter backend works; 1 none does.
    """
    from edgecls.runtime.doctor import doctor_report

    report = doctor_report()
    if as_json:

        typer.echo(jsonio.dumps(report, indent=2))
    else:
        from edgecls.console import show_doctor

        show_doctor(report)
    raise typer.Exit(0 if report["ok"] else 1)
