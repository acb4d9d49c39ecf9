"""What `edgecls explain` and `edgecls bench --explain-flips` are asked to do: their options records (the
single source of each option: edgecls.options), light enough for the command line to import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecls.bench.options import ANALYSES
from edgecls.explain import FILLS, METHODS
from edgecls.explain.divergence import DEFAULT_THRESHOLD_DB
from edgecls.options import OUTPUT, argument, option
from edgecls.runtime.settings import backend_option, input_range_option, labels_option, threads_option


@dataclass
class FlipsOptions:
    """`bench --explain-flips N`: maps of the images a quantised model and the float one disagree on."""

    explain_flips: Optional[int] = option(
        None, flags=("--explain-flips",), metavar="N", panel=ANALYSES, what="--explain-flips",
        show_default="none: no explanation",
        help="Also explain every image where a quantised .tflite and the float32 one disagree, plus the N "
        "least-confident agreements (0: flips only): both models' maps and top-3, the per-layer SNR and the first "
        "layer that diverges; a report section with contact sheets and a flip matrix")
    explain_threshold: float = option(DEFAULT_THRESHOLD_DB, panel=ANALYSES,
                                      help="--explain-flips: SNR (dB) below which a layer counts as diverged")


METHOD = "Method"  # a panel of `edgecls explain --help`
DEFAULT_WORST = 16  # --dataset: images on the contact sheet


@dataclass
class ExplainOptions:
    """Every option of `edgecls explain`."""

    model: Optional[Path] = argument(
        None, show_default=False,
        help="A .tflite (any NHWC classifier: a device-side occlusion or RISE map, no TensorFlow) or a run directory "
        "(Grad-CAM)")
    images: Optional[list[str]] = argument(None, show_default=False, help="Image files, folders and glob patterns")
    dataset: Optional[Path] = option(
        None, panel=METHOD, show_default="none",
        help="A run directory: map its worst test images (highest loss) with Grad-CAM, on one contact sheet (give no "
        "MODEL or IMAGES with it)")
    method: Optional[str] = option(  # None: gradcam for a run directory, occlusion for a .tflite
        None, panel=METHOD, choices=METHODS, what="method", help="occlusion | rise (a .tflite) | gradcam (a run "
        "directory)", show_default="gradcam for a run directory, occlusion for a .tflite")
    target: Optional[int] = option(None, panel=METHOD, help="Class index to explain",  # None: each image's top-1
                                   show_default="each image's top-1")
    masks: int = option(500, low=1, range_in_help=True, panel=METHOD,
                        help="RISE: random masks per image (the cost, in model runs)")
    seed: int = option(0, panel=METHOD, help="RISE: mask seed")
    fill: str = option("mean", panel=METHOD, choices=FILLS, what="fill",
                       help="Occlusion and RISE: what hidden pixels become: mean (the image's mean colour) | black "
                       "(for dark backgrounds, e.g. digits) | blur")
    layer: Optional[str] = option(None, panel=METHOD, help="Grad-CAM: the layer", show_default="the last conv layer")
    worst: int = option(DEFAULT_WORST, low=1, range_in_help=True, panel=METHOD, help="--dataset: how many test images")
    threads: Optional[int] = threads_option()
    backend: Optional[str] = backend_option()
    input_range: Optional[tuple[float, float]] = input_range_option()
    labels: Optional[str] = labels_option(kind=Path, help="Labels file for a .tflite without its own",
                                          show_default="the model's own")
    out: Optional[Path] = option(  # folder for the PNGs and explain.json
        None, panel=OUTPUT, help="Folder for the PNGs and explain.json",
        show_default="beside what is explained: RUN_DIR/explain, or MODEL-explain/ beside a .tflite")
    force: bool = option(  # write into a folder that holds an earlier result (replacing its explain.json)
        False, panel=OUTPUT, help="Replace an earlier explain.json and PNGs of the same names in the folder (without "
        "it, a folder that holds them gets the next free name: explain-2, ...)")
    as_json: bool = option(False, flags=("--json",), panel=OUTPUT, toml=False,
                           help="Print the JSON summary instead of a table")
