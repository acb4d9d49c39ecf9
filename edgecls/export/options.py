"""What `edgecls export` (and the analyses it lends `edgecls bench`) is asked to do: its options records (the
single source of each option: edgecls.options), light enough for the command line to import (no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgecls.bench.options import ANALYSES
from edgecls.errors import EdgeclsError
from edgecls.export.modes import (
    DEFAULT_FALLBACK,
    DEFAULT_MAX_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_QUANT,
    DEFAULT_RUNS,
    MODES_HELP,
    QUANTIZERS,
    parse_modes,
)
from edgecls.options import OUTPUT, argument, given, option, options_of
from edgecls.parsing import int_list, split_list
from edgecls.rundir import DEFAULT_CALIB_SAMPLES
from edgecls.runtime.settings import UNKNOWN, accept_option, rule_option, unknown_data_option

if TYPE_CHECKING:
    from edgecls.calibrate.job import OpenSetOptions


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
        None, panel=ANALYSES, parse=parse_sizes, show_default="none",
        help="Also export int8 with each calibration size, e.g. 25,100,300,1000: accuracy and agreement against "
        "N; needs a run directory")


# The help's panels, in the order `edgecls export --help` shows them.
QUANT, DATA, TARGET = "Quantisation", "Data", "Which file to ship (--target)"
PANELS = (QUANT, DATA, OUTPUT, TARGET, UNKNOWN)


def parse_names(values: Optional[list[str]]) -> list[str]:
    """--keep-float values, each a name or a comma list -> names, in order, without repeats."""
    return split_list(values, unique=True)


def parse_candidates(text: Optional[str]) -> Optional[list[str]]:
    return split_list(text, unique=True) if text is not None else None


def parse_quant(text: str) -> list[str]:
    """--quant 'int8,float32' -> ['float32', 'int8'] (the table's order); 'all' is kept for the quantizer to
    say what it means (ExportOptions). One-line errors."""
    names = [name.lower() for name in split_list(text)]
    return ["all"] if "all" in names else parse_modes(",".join(names))


# Options of both jobs (export, export --target): one field each, declared once.
def calib_samples_option() -> Any:
    return option(DEFAULT_CALIB_SAMPLES, panel=QUANT,
                  help="Calibration images from the train split, stratified by class (all of them if the split has "
                  "fewer)")


def min_agreement_option() -> Any:
    return option(DEFAULT_MIN_AGREEMENT, panel=QUANT,
                  help="Least top-1 agreement of int8/uint8 with the float model on the validation split")


def out_option(**changes: Any) -> Any:
    return option(None, **{"panel": OUTPUT, "help": "Output folder", "show_default": "RUN_DIR/export", **changes})


@dataclass
class ExportOptions:
    """Every option of `edgecls export` (with TargetOptions, those of `export --target`)."""

    modes: list[str] = option(
        default_factory=lambda: parse_quant(DEFAULT_QUANT), flags=("--quant",), panel=QUANT, parse=parse_quant,
        help=MODES_HELP)
    calib_samples: Optional[int] = calib_samples_option()
    quantizer: str = option(QUANTIZERS[0], choices=QUANTIZERS, what="quantizer", panel=QUANT,
                            help="converter (TensorFlow's TFLite converter) | litert (ai-edge-quantizer, static int8 "
                            "recipe, on the float32 model)")
    min_agreement: float = min_agreement_option()
    # A mixed int8 variant beside each integer mode: these layers / op types / nodes kept in float,
    # plus the `auto_fallback` worst ops by the quantisation diagnosis (edgecls.export.diagnose).
    keep_float: list[str] = option(
        default_factory=list, multiple=True, parse=parse_names, metavar="OP_OR_LAYER", show_default="none",
        panel=QUANT, help="Also write a mixed model_int8_mixed.tflite keeping this Keras layer (conv2), op type "
        "(FULLY_CONNECTED) or node in float; repeat the option or give a comma list")
    auto_fallback: int = option(
        0, low=0, range_in_help=True, metavar="K", panel=QUANT,
        help="Also write model_int8_mixed.tflite keeping the K ops that int8 hurts most (RMSE/scale, TensorFlow's "
        "QuantizationDebugger) in float")
    # what is exported (the command line's; a library caller hands export() an opened RunDir)
    source: Optional[Path] = argument(None, required=True, toml=False,
                                      help="A run directory (made by edgecls train) or a bare .keras file")
    data: Optional[str] = option(None, panel=DATA, show_default="the run's own data",
                                 help="The images of a bare .keras file (digits, a folder, ...); for a run directory, "
                                 "where its data now is")
    out: Optional[Path] = out_option()  # None: RUN_DIR/export, or MODEL-export beside a bare .keras
    force: bool = option(  # write the files even when the agreement gate fails
        False, panel=OUTPUT, help="Write the files even when int8 agreement is below --min-agreement, or the model "
        "is no better than always answering the majority class")
    # The unknown answer (edgecls.calibrate): every file is calibrated on the run's validation split.
    accept: float = accept_option()
    unknown_data: Optional[str] = unknown_data_option()  # a folder of images of none of the classes
    rule: str = rule_option()

    @property
    def open_set(self) -> OpenSetOptions:
        return open_set_of(self)

    def __post_init__(self) -> None:
        if "all" in self.modes:  # every mode the quantizer can make
            self.modes = parse_modes("all", self.quantizer)

    @property
    def mixed(self) -> bool:
        return bool(self.keep_float or self.auto_fallback)


@dataclass
class TargetOptions:
    """`edgecls export --target DEVICE`: which candidates, the budget, the timing."""

    target: str = option(  # host | a device profile (rpi5, devices/x.toml) | user@host
        flags=("--target",), metavar="DEVICE", panel=TARGET, show_default="none: export --quant's modes",
        help="Try every candidate (float32, float16, dynamic, int8 by each quantiser, int8 with clipped ranges, int8 "
        "with the worst ops in float), time them on DEVICE and write the fastest within the budget as "
        "OUT/model.tflite: host (this machine), a device profile (rpi5, rpi4, ...: this machine under its "
        "constraints) or user@host (timed on the device over SSH)")
    max_drop: float = option(
        DEFAULT_MAX_DROP, low=0, range_in_help=True, metavar="POINTS", panel=TARGET,
        help="Budget: top-1 accuracy points a candidate may lose against the Keras float model on the validation "
        "split")
    min_agreement: float = min_agreement_option()
    budget_s: Optional[float] = option(  # None: no cap
        None, low=0.001, range_in_help=True, metavar="SECONDS", panel=TARGET, show_default="no limit",
        help="Stop starting new candidates after this many seconds of the search (the first is always tried; the "
        "rest are listed as skipped for time)")
    calib_samples: Optional[int] = calib_samples_option()
    fallback: int = option(DEFAULT_FALLBACK, flags=("--max-fallback",), low=0, range_in_help=True, metavar="K",
                           panel=TARGET, help="Also try int8 with the k = 1..K worst ops (the diagnosis ranking) in "
                           "float")
    only: Optional[list[str]] = option(  # candidate names to try (None: all)
        None, flags=("--candidates",), metavar="NAMES", parse=parse_candidates, panel=TARGET, show_default="all",
        help="Comma list of the candidates to try: float32, dynamic, int8, float16, int8-litert, int8-pct99.9, "
        "int8-pct99.99, int8-fallback1..K")
    runs: int = option(DEFAULT_RUNS, flags=("--timing-runs",), low=1, range_in_help=True, metavar="N", panel=TARGET,
                       help="Timed images per candidate on the target (interleaved rounds)")
    out: Optional[Path] = out_option()  # None: RUN_DIR/target-<target>
    # the unknown answer of the chosen file (edgecls.calibrate), fitted after the choice as export does
    accept: float = accept_option()
    unknown_data: Optional[str] = unknown_data_option()
    rule: str = rule_option()
    remote: Any = None  # edgecls.transport.RemoteOptions for user@host (ssh config, python, ...); None: defaults

    @property
    def open_set(self) -> OpenSetOptions:
        return open_set_of(self)


def open_set_of(options: ExportOptions | TargetOptions) -> OpenSetOptions:
    """How the written file's unknown answer is fitted (edgecls.calibrate, imported only when asked)."""
    from edgecls.calibrate.job import OpenSetOptions

    return OpenSetOptions(accept=options.accept, rule=options.rule)


def refuse_with_target(options: ExportOptions) -> None:
    """`export --target` makes and chooses its own candidates: export's own mode options beside it (any not at
    its default) are an error, named, before any work."""
    shared = {f.name for f in fields(TargetOptions)} | {"source", "data"}
    wrong = [spec.flag(f.name) for f, spec in options_of(ExportOptions) if f.name in given(options)
             and f.name not in shared]
    if wrong:
        raise EdgeclsError(f"--target makes and chooses its own candidates: drop {', '.join(wrong)}")
