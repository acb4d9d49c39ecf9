"""`edgecls explain`: saliency maps of a .tflite (occlusion, RISE; device side) or a run directory (Grad-CAM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgecls.cli.common import OUTPUT, Backend, InputRange, Threads, Typer, choice, choices, plain
from edgecls.explain import FILLS, METHODS
from edgecls.reporter import Reporter

app = Typer()

ExplainMethod = choices("ExplainMethod", METHODS)
Fill = choices("Fill", FILLS)

_METHOD = "Method"


# A .tflite is mapped on the device side (occlusion, RISE: no TensorFlow); a run directory with Grad-CAM.
@app.command(epilog="Examples:\n\n"
             "edgecls explain runs/digits-seed/export/model_int8.tflite seven.png --fill black\n\n"
             "edgecls explain mobilenet.tflite cat.jpg --method rise --labels labels.txt\n\n"
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
    dataset: Annotated[Optional[Path], typer.Option(
        rich_help_panel=_METHOD, help="A run directory: map its worst test images (highest loss) with Grad-CAM, on "
        "one contact sheet (give no MODEL or IMAGES with it)", show_default="none")] = None,
    method: Annotated[Optional[ExplainMethod], typer.Option(
        rich_help_panel=_METHOD, help="occlusion | rise (a .tflite) | gradcam (a run directory)",
        show_default="gradcam for a run directory, occlusion for a .tflite", **choice(ExplainMethod, "method"))
    ] = None,
    target: Annotated[Optional[int], typer.Option(
        rich_help_panel=_METHOD, help="Class index to explain", show_default="each image's top-1")] = None,
    masks: Annotated[int, typer.Option(
        min=1, rich_help_panel=_METHOD, help="RISE: random masks per image (the cost, in model runs)")] = 500,
    seed: Annotated[int, typer.Option(rich_help_panel=_METHOD, help="RISE: mask seed")] = 0,
    fill: Annotated[Fill, typer.Option(
        rich_help_panel=_METHOD, help="Occlusion and RISE: what hidden pixels become: mean (the image's mean "
        "colour) | black (for dark backgrounds, e.g. digits) | blur", **choice(Fill, "fill"))] = "mean",
    layer: Annotated[Optional[str], typer.Option(
        rich_help_panel=_METHOD, help="Grad-CAM: the layer", show_default="the last conv layer")] = None,
    worst: Annotated[int, typer.Option(min=1, rich_help_panel=_METHOD, help="--dataset: how many test images")] = 16,
    threads: Threads = None,
    backend: Backend = None,
    input_range: InputRange = None,
    labels: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="Labels file for a .tflite without its own", show_default="the model's own")
    ] = None,
    out: Annotated[Optional[Path], typer.Option(
        rich_help_panel=OUTPUT, help="Folder for the PNGs and explain.json",
        show_default="beside what is explained: RUN_DIR/explain, or MODEL-explain/ beside a .tflite")] = None,
    force: Annotated[bool, typer.Option(
        "--force", rich_help_panel=OUTPUT, help="Replace an earlier explain.json and PNGs of the same names in the "
        "folder (without it, a folder that holds them gets the next free name: explain-2, ...)")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", rich_help_panel=OUTPUT, help="Print the JSON summary instead of a table")] = False,
) -> None:
    """Saliency maps: where a model looks. PNG overlays (image, map with colour bar, top-3) and explain.json.

    edgecls explain MODEL.tflite IMAGES... maps any .tflite on the device side (occlusion or RISE
    through the runtime, no TensorFlow); edgecls explain RUN_DIR IMAGES... uses Grad-CAM on the Keras
    model; edgecls explain --dataset RUN_DIR maps the test images the model gets most wrong.

    Exit codes: 0 ok; 1 some images could not be read (error rows); 2 bad model, option or arguments.
    """
    from edgecls.explain.job import ExplainOptions, run_explain
    from edgecls.parsing import parse_range

    options = ExplainOptions(method=plain(method), out=out, target=target,
                             masks=masks, seed=seed, fill=plain(fill), layer=layer, threads=threads, backend=backend,
                             labels=str(labels) if labels else None, input_range=parse_range(input_range), force=force)
    raise typer.Exit(run_explain(model, images or [], dataset, options, worst, as_json, Reporter()))
