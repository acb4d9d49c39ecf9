"""What `edgecls export` (and the analyses it lends `edgecls bench`) is asked to do: its options records (the
single source of each option: edgecls.options), light enough for the command line to import (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgecls.bench.options import ANALYSES
from edgecls.options import option
from edgecls.parsing import int_list


def parse_sizes(text: str) -> list[int]:
    return int_list(text, "--calib-sweep", "25,100,300,1000")


@dataclass
class QuantAnalyses:
    """`bench --diagnose`, `--calib-sweep`: quantisation analyses of a run directory (TensorFlow)."""

    diagnose: bool = option(
        False, panel=ANALYSES,
        help="Also rank the int8 ops by quantisation error (TensorFlow's QuantizationDebugger) and name the worst; "
        "needs a run directory")
    calib_sweep: Optional[list[int]] = option(
        None, panel=ANALYSES, parse=parse_sizes, low=1, show_default="none",
        help="Also export int8 with each calibration size, e.g. 25,100,300,1000: accuracy and agreement against "
        "N; needs a run directory")
