"""The quantisation modes: one table of what each mode is, what it needs and who can make it.

Validation (`edgecls export` options, the calibration sweep), `--help` and the converter's
dispatch all read this table; adding a mode is one row here plus its converter settings.
No TensorFlow here: the CLI imports it to build its help text.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edgecls.errors import EdgeclsError
from edgecls.parsing import split_list
from edgecls.train import quality


@dataclass(frozen=True)
class Mode:
    name: str
    help: str  # what --help says about it
    integer: bool = False  # full integer: integer-only ops and I/O; needs calibration images; agreement-gated
    exact_input: tuple[float, int] | None = None  # the input (scale, zero point) that keeps pixels 0..255 exact
    litert: bool = False  # ai-edge-quantizer can make it (from the float32 model); else always the TF converter
    in_all_for_litert: bool = True  # part of `--quant all` with --quantizer litert


TABLE: tuple[Mode, ...] = (
    Mode("float32", "float32"),
    Mode("float16", "float16"),
    Mode("dynamic", "dynamic", litert=True),
    Mode("int8", "int8 (int8 I/O)", integer=True, exact_input=(1.0, -128), litert=True),
    Mode("uint8", "uint8 (uint8 I/O)", integer=True, exact_input=(1.0, 0), in_all_for_litert=False),
)
BY_NAME = {m.name: m for m in TABLE}
MODES = tuple(BY_NAME)
INTEGER_MODES = tuple(m.name for m in TABLE if m.integer)
LITERT_MODES = tuple(m.name for m in TABLE if m.litert)
EXACT_INPUT = {m.name: m.exact_input for m in TABLE if m.exact_input}
QUANTIZERS = ("converter", "litert")
LITERT_INSTALL = "pip install 'edgecls[train]'"

# Export defaults, here so the CLI's help can show them without importing the export machinery.
DEFAULT_QUANT = "float32,int8"
DEFAULT_MIN_AGREEMENT = quality.DEFAULT_MIN_AGREEMENT  # the gate, declared with the quality checks (train.quality)
# export --target (edgecls.export.target)
DEFAULT_MAX_DROP = 0.5  # points of top-1 accuracy below the Keras float model, on the validation split
DEFAULT_FALLBACK = 3  # int8 with the k = 1..3 worst ops in float
DEFAULT_RUNS = 100  # timed images per candidate
MODES_HELP = f"Comma list of {', '.join(m.help for m in TABLE)}, or all"


def is_integer(mode: str) -> bool:
    return BY_NAME[mode].integer


def made_by_litert(mode: str, quantizer: str) -> bool:
    """Whether ai-edge-quantizer (rather than TensorFlow's converter) makes `mode`."""
    return quantizer == "litert" and BY_NAME[mode].litert


def parse_modes(text: str, quantizer: str = "converter") -> list[str]:
    """'int8,float32' | 'all' | ... -> modes in a fixed order (float32 first). One-line errors.

    `all` means every mode the quantizer can make (ai-edge-quantizer has no uint8 I/O).
    """
    names = [name.lower() for name in split_list(text)]
    if not names:
        raise EdgeclsError(f"--quant is empty: use a comma list of {', '.join(MODES)}, or all")
    chosen: set[str] = set()
    for name in names:
        if name == "all":
            chosen.update(m.name for m in TABLE if quantizer != "litert" or m.in_all_for_litert)
        elif name in BY_NAME:
            chosen.add(name)
        else:
            raise EdgeclsError(f"unknown quantisation mode {name!r}: use a comma list of {', '.join(MODES)}, or all")
    return [m for m in MODES if m in chosen]


def check_modes(modes: list[str], quantizer: str, mixed: bool = False) -> None:
    """The rules between modes, quantizer and a mixed model, as one-line errors."""
    if not modes:
        raise EdgeclsError("no quantisation mode chosen")
    unknown = [m for m in modes if m not in BY_NAME]
    if unknown:
        raise EdgeclsError(f"unknown quantisation mode {unknown[0]!r}: use {', '.join(MODES)} or all")
    if quantizer not in QUANTIZERS:
        raise EdgeclsError(f"unknown quantizer {quantizer!r}: use converter or litert")
    if quantizer == "litert" and any(not BY_NAME[m].in_all_for_litert for m in modes):
        raise EdgeclsError("--quantizer litert makes int8 input and output only: use --quantizer converter for uint8")
    if (any(made_by_litert(m, quantizer) for m in modes)
            and importlib.util.find_spec("ai_edge_quantizer") is None):
        raise EdgeclsError(f"--quantizer litert needs ai-edge-quantizer, which is not installed: {LITERT_INSTALL}")
    if mixed and not any(is_integer(m) for m in modes):
        raise EdgeclsError("--keep-float and --auto-fallback make a mixed int8 model: add int8 (or uint8) to --quant")
    if mixed and quantizer != "converter":
        raise EdgeclsError("--keep-float and --auto-fallback need --quantizer converter (its denylists keep ops float)")
