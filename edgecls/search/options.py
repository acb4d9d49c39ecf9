"""`edgecls search` options: one record, its defaults and its checks (no TensorFlow: the CLI reads them).

The search space is three grids: the .tflite backbones in --backbones × --heads × --views (a new head
on each, edgecls.transfer); the from-scratch CNNs --archs × --sizes × --widths (edgecls.train); and
--students distilled from the best backbone candidate into the from-scratch shapes that fit the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls.bounds import BOUNDS, check_bound
from edgecls.data import DEDUPE_MODES
from edgecls.errors import EdgeclsError
from edgecls.export.modes import DEFAULT_RUNS
from edgecls.options import shown
from edgecls.parsing import split_list
from edgecls.train.options import HEADS

SCRATCH_ARCHS = ("mobile", "seed")  # the from-scratch CNNs of edgecls.train.model
# The quantisation variants of a Keras candidate (export --target's, without the diagnosis fallbacks).
VARIANTS = ("int8", "float32", "dynamic", "float16", "int8-litert", "int8-pct99.9", "int8-pct99.99")


@dataclass
class SearchOptions:
    data: str
    target: str  # host | a device profile (rpi4, ...) | user@host
    max_latency_ms: float
    max_size_kb: Optional[float] = None
    backbones: Optional[str] = None  # a folder of pretrained .tflite backbones (or one file)
    budget_s: Optional[float] = None  # None: no limit
    out: Optional[str] = None  # None: runs/<data>-search
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    dedupe: Optional[str] = None  # as train's
    heads: str = "linear,mlp"
    views: str = "1,4"
    archs: str = "mobile,seed"
    sizes: str = "64,96,128"
    widths: str = "0.5,1"
    epochs: int = 30  # from-scratch candidates (early stopping on validation)
    students: int = 1  # from-scratch shapes that fit, each distilled from the best backbone candidate
    student_epochs: int = 120
    student_patience: int = 30
    distill_alpha: float = 0.0
    distill_temperature: float = 1.0
    mixup: float = 0.4
    variants: str = ",".join(VARIANTS)
    timing_runs: int = DEFAULT_RUNS
    remote: Any = field(default=None, repr=False)  # edgecls.transport.RemoteOptions for user@host

    @property
    def head_list(self) -> list[str]:
        return split_list(self.heads, unique=True)

    @property
    def view_list(self) -> list[int]:
        return _numbers(self.views, "--views", int)

    @property
    def arch_list(self) -> list[str]:
        return split_list(self.archs, unique=True)

    @property
    def size_list(self) -> list[int]:
        return _numbers(self.sizes, "--sizes", int)

    @property
    def width_list(self) -> list[float]:
        return _numbers(self.widths, "--widths", float)

    @property
    def variant_list(self) -> list[str]:
        return split_list(self.variants, unique=True)


def _numbers(text: str, option: str, kind: type) -> list:
    values = []
    for item in split_list(text, unique=True):
        try:
            values.append(kind(item))
        except ValueError:
            raise EdgeclsError(f"{option}: {item!r} is not a{'n integer' if kind is int else ' number'}") from None
    return values


def default_out(options: SearchOptions) -> Path:
    return Path("runs") / f"{Path(options.data.rstrip('/')).name}-search"


def backbone_files(options: SearchOptions) -> list[Path]:
    """The .tflite backbones --backbones names (a folder: every .tflite in it, sorted; or one file)."""
    if options.backbones is None:
        return []
    path = Path(options.backbones).expanduser()
    if path.is_file():
        files = [path] if path.suffix.lower() == ".tflite" else []
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".tflite" and p.is_file())
    else:
        raise EdgeclsError(f"--backbones {options.backbones}: no such folder or file")
    if not files:
        raise EdgeclsError(f"--backbones {options.backbones}: no .tflite files there")
    return files


def validate(o: SearchOptions) -> None:
    """One-line errors for everything that can be checked before any work."""
    def bad(message: str) -> None:
        raise EdgeclsError(message)

    for option, value in (("--max-latency-ms", o.max_latency_ms), ("--max-size-kb", o.max_size_kb),
                          ("--budget-s", o.budget_s), ("--seed", o.seed), ("--val-fraction", o.val_fraction),
                          ("--test-fraction", o.test_fraction), ("--epochs", o.epochs),
                          ("--student-epochs", o.student_epochs), ("--students", o.students),
                          ("--student-patience", o.student_patience), ("--distill-alpha", o.distill_alpha),
                          ("--distill-temperature", o.distill_temperature), ("--mixup", o.mixup),
                          ("--timing-runs", o.timing_runs)):
        if value is not None:  # None: no limit
            check_bound(option, value)
    if o.dedupe is not None and o.dedupe not in DEDUPE_MODES:
        bad(f"unknown --dedupe {o.dedupe!r}: use one of {', '.join(DEDUPE_MODES)}")
    for head in o.head_list:
        if head not in HEADS:
            bad(f"unknown head {shown(head)} in --heads: use a comma list of {', '.join(HEADS)}")
    for views in o.view_list:
        check_bound("--views", views)
    for arch in o.arch_list:
        if arch not in SCRATCH_ARCHS:
            bad(f"unknown architecture {shown(arch)} in --archs: use a comma list of {', '.join(SCRATCH_ARCHS)}")
    for size in o.size_list:
        low, high = BOUNDS["--img-size"].low, BOUNDS["--img-size"].high  # train's --img-size
        if not low <= size <= high:
            bad(f"--sizes must be between {low:g} and {high:g} pixels (got {size})")
    for width in o.width_list:
        if not 0 < width <= 2:
            bad(f"--widths must be in (0, 2] (got {width:g})")
    for variant in o.variant_list:
        if variant not in VARIANTS:
            bad(f"unknown variant {shown(variant)} in --variants: use a comma list of {', '.join(VARIANTS)}")
    if not o.variant_list:
        bad("--variants is empty: name at least one (int8 is the usual choice)")
    if not (o.head_list and o.view_list) and o.backbones is not None:
        bad("--heads and --views must each name at least one value with --backbones")
    if not (o.arch_list and o.size_list and o.width_list) and o.backbones is None:
        bad("nothing to search: give --backbones, or --archs, --sizes and --widths")
    backbone_files(o)


def options_table(o: SearchOptions) -> dict[str, Any]:
    """The options as search.json records them (what a resumed search compares)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(o).items() if k != "remote"}
