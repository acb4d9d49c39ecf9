"""`edgecls explain`: saliency maps of a .tflite (occlusion, RISE; device side) or a run directory (Grad-CAM)."""

from __future__ import annotations

import typer

from edgecls.cli.common import Typer
from edgecls.cli.records import takes
from edgecls.explain.options import ExplainOptions
from edgecls.reporter import Reporter

app = Typer()


# A .tflite is mapped on the device side (occlusion, RISE: no TensorFlow); a run directory with Grad-CAM.
@app.command(epilog="Examples:\n\n"
             "edgecls explain runs/digits-seed/export/model_int8.tflite seven.png --fill black\n\n"
             "edgecls explain mobilenet.tflite cat.jpg --method rise --labels labels.txt\n\n"
             "edgecls explain runs/digits-seed seven.png\n\n"
             "edgecls explain --dataset runs/digits-seed --worst 16")
@takes(ExplainOptions)
def explain(options: ExplainOptions) -> None:
    """Saliency maps: where a model looks. PNG overlays (image, map with colour bar, top-3) and explain.json.

    edgecls explain MODEL.tflite IMAGES... maps any .tflite on the device side (occlusion or RISE
    through the runtime, no TensorFlow); edgecls explain RUN_DIR IMAGES... uses Grad-CAM on the Keras
    model; edgecls explain --dataset RUN_DIR maps the test images the model gets most wrong.

    Exit codes: 0 ok; 1 some images could not be read (error rows); 2 bad model, option or arguments.
    """
    from edgecls.explain.job import run_explain

    raise typer.Exit(run_explain(options, Reporter()))
