"""What `edgecls explain` and `edgecls bench --explain-flips` are asked to do: their options records (the
single source of each option: edgecls.options), light enough for the command line to import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecls.bench.options import ANALYSES
from edgecls.explain.divergence import DEFAULT_THRESHOLD_DB
from edgecls.options import option


@dataclass
class FlipsOptions:
    """`bench --explain-flips N`: maps of the images a quantised model and the float one disagree on."""

    explain_flips: Optional[int] = option(
        None, flags=("--explain-flips",), metavar="N", panel=ANALYSES, low=0, what="--explain-flips",
        show_default="none: no explanation",
        help="Also explain every image where a quantised .tflite and the float32 one disagree, plus the N "
        "least-confident agreements (0: flips only): both models' maps and top-3, the per-layer SNR and the first "
        "layer that diverges; a report section with contact sheets and a flip matrix")
    explain_threshold: float = option(DEFAULT_THRESHOLD_DB, panel=ANALYSES,
                                      help="--explain-flips: SNR (dB) below which a layer counts as diverged")


@dataclass
class ExplainOptions:
    method: Optional[str] = None  # None: gradcam for a run directory, occlusion for a .tflite
    out: Optional[Path] = None  # folder for the PNGs and explain.json
    target: Optional[int] = None  # the class to explain; None: each image's top-1
    masks: int = 500  # RISE
    fill: str = "mean"  # occlusion and RISE: what hidden pixels become
    seed: int = 0
    layer: Optional[str] = None  # Grad-CAM's layer; None: the last conv layer
    threads: Optional[int] = None
    backend: Optional[str] = None
    labels: Optional[str] = None
    input_range: Optional[tuple[float, float]] = None
    force: bool = False  # write into a folder that holds an earlier result (replacing its explain.json)
