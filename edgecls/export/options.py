"""What `edgecls export` (and the analyses it lends `edgecls bench`) is asked to do: its options records (the
single source of each option: edgecls.options), light enough for the command line to import (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls.bench.options import ANALYSES
from edgecls.export.modes import DEFAULT_FALLBACK, DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, DEFAULT_RUNS
from edgecls.options import option
from edgecls.parsing import int_list
from edgecls.rundir import DEFAULT_CALIB_SAMPLES


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


@dataclass
class ExportOptions:
    modes: list[str]
    quantizer: str = "converter"
    calib_samples: Optional[int] = DEFAULT_CALIB_SAMPLES
    out: Optional[Path] = None  # None: RUN_DIR/export, or MODEL-export beside a bare .keras
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    force: bool = False  # write the files even when the agreement gate fails
    # A mixed int8 variant beside each integer mode: these layers / op types / nodes kept in float,
    # plus the `auto_fallback` worst ops by the quantisation diagnosis (edgecls.export.diagnose).
    keep_float: list[str] = field(default_factory=list)
    auto_fallback: int = 0

    @property
    def mixed(self) -> bool:
        return bool(self.keep_float or self.auto_fallback)


@dataclass
class TargetOptions:
    target: str  # host | a device profile (rpi5, devices/x.toml) | user@host
    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    budget_s: Optional[float] = None  # None: no cap
    calib_samples: Optional[int] = DEFAULT_CALIB_SAMPLES
    fallback: int = DEFAULT_FALLBACK
    only: Optional[list[str]] = None  # candidate names to try (None: all)
    runs: int = DEFAULT_RUNS
    out: Optional[Path] = None  # None: RUN_DIR/target-<target>
    remote: Any = None  # edgecls.transport.RemoteOptions for user@host (ssh config, python, ...); None: defaults
